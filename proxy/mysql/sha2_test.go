package mysql_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	driver "github.com/go-sql-driver/mysql"

	"github.com/dbproxy/dbproxy/internal/testenv"
	"github.com/dbproxy/dbproxy/internal/testlog"
	"github.com/dbproxy/dbproxy/proxy"
	"github.com/dbproxy/dbproxy/proxy/mysql"
)

// MariaDB has no caching_sha2_password and Debian packages no MySQL
// server, so these tests use go-mysql's server package as the upstream: it
// implements the server side of caching_sha2_password (fast path; full
// authentication with a clear password over TLS, or RSA-encrypted after a
// public key request), with its own scramble and cache.

// selectOne logs in with cfg and runs SELECT 1, whose answer it returns.
func selectOne(t *testing.T, cfg *driver.Config) (string, error) {
	t.Helper()
	conn, err := driver.NewConnector(cfg)
	if err != nil {
		t.Fatal(err)
	}
	db := sql.OpenDB(conn)
	defer db.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var v string
	err = db.QueryRowContext(ctx, "SELECT 1").Scan(&v)
	return v, err
}

// startProxy serves h on 127.0.0.1 until the test ends.
func startProxy(t *testing.T, opts mysql.Options) (addr string, logs *testlog.Buffer) {
	t.Helper()
	return startProxyOn(t, "127.0.0.1", opts)
}

// startProxyOn serves h on host until the test ends.
func startProxyOn(t *testing.T, host string, opts mysql.Options) (addr string, logs *testlog.Buffer) {
	t.Helper()
	logs = &testlog.Buffer{}
	opts.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	h, err := mysql.NewHandler(opts)
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		t.Fatal(err)
	}
	srv := &proxy.Server{Handler: h}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(l) }()
	t.Cleanup(func() {
		_ = srv.Close()
		<-done
		if t.Failed() {
			t.Logf("proxy logs:\n%s", logs.String())
		}
	})
	return l.Addr().String(), logs
}

func registerCA(t *testing.T, caFile string) string {
	t.Helper()
	pem, err := os.ReadFile(caFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	name := fmt.Sprintf("sha2-%d", time.Now().UnixNano())
	if err := driver.RegisterTLSConfig(name, &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { driver.DeregisterTLSConfig(name) })
	return name
}

// TestCachingSHA2 logs in through the proxy with every combination of TLS
// legs: the first login takes the full authentication path (the server's
// cache is empty), the second the fast path; a wrong password is refused
// with the server's error.
func TestCachingSHA2(t *testing.T) {
	const user, password = "alice", "s3cret-pw"
	for _, tc := range []struct {
		clientTLS, upstreamTLS bool
		full                   string // how the proxy handles full authentication
	}{
		{false, false, "relayed"},
		{true, true, "relayed"},
		{true, false, "bridged to the server's RSA key"},
		{false, true, "bridged with the proxy's RSA key"},
	} {
		t.Run(fmt.Sprintf("client_tls=%v/upstream_tls=%v", tc.clientTLS, tc.upstreamTLS), func(t *testing.T) {
			fake := startFakeServer(t, user, password)
			opts := mysql.Options{ListenerOptions: proxy.ListenerOptions{Upstream: fake.addr, UpstreamTLS: proxy.UpstreamTLS{Mode: proxy.SSLDisable}}}
			if tc.upstreamTLS {
				pool, err := proxy.LoadCertPool(fake.caFile)
				if err != nil {
					t.Fatal(err)
				}
				opts.UpstreamTLS = proxy.UpstreamTLS{Mode: proxy.SSLVerifyFull, RootCAs: pool, ServerName: "127.0.0.1"}
			}
			var clientCA string
			if tc.clientTLS {
				ca, cert, key := testenv.GenerateCert(t, t.TempDir(), "127.0.0.1")
				cfg, err := proxy.ServerTLSConfig(cert, key, "")
				if err != nil {
					t.Fatal(err)
				}
				opts.TLS, clientCA = cfg, ca
			}
			addr, logs := startProxy(t, opts)
			connect := func(pw string) error {
				cfg := driver.NewConfig()
				cfg.User, cfg.Passwd, cfg.Net, cfg.Addr = user, pw, "tcp", addr
				cfg.Timeout = 10 * time.Second
				if tc.clientTLS {
					cfg.TLSConfig = registerCA(t, clientCA)
				}
				v, err := selectOne(t, cfg)
				if err != nil {
					return err
				}
				if v != "SELECT 1" {
					return fmt.Errorf("query answered %q", v)
				}
				return nil
			}
			if err := connect(password); err != nil {
				t.Fatalf("first login (full authentication): %v", err)
			}
			if !strings.Contains(logs.String(), "caching_sha2_password full authentication "+tc.full) {
				t.Fatalf("full authentication was not %s", tc.full)
			}
			if err := connect(password); err != nil {
				t.Fatalf("second login (fast path): %v", err)
			}
			if n := strings.Count(logs.String(), "caching_sha2_password full authentication"); n != 1 {
				t.Fatalf("full authentication %d times, want once (then the fast path)", n)
			}
			err := connect("wrong")
			var me *driver.MySQLError
			if !errors.As(err, &me) || me.Number != 1045 {
				t.Fatalf("wrong password: %v, want the server's ERR 1045", err)
			}
			if strings.Contains(logs.String(), password) {
				t.Fatal("password in the logs")
			}
		})
	}
}
