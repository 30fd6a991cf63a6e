package integration

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"

	"github.com/dbproxy/dbproxy/internal/testenv"
	"github.com/dbproxy/dbproxy/internal/testlog"
	"github.com/dbproxy/dbproxy/proxy"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// TestPGAuthMatrix logs in through the proxy for every server auth method ×
// client leg TLS on/off × upstream leg TLS on/off, with the right and a
// wrong password. A wrong password must give the client the same SQLSTATE
// as a direct login (28P01) and leave no session upstream.
func TestPGAuthMatrix(t *testing.T) {
	for _, auth := range []string{"trust", "md5", "scram-sha-256", "password"} {
		t.Run(auth, func(t *testing.T) {
			pg := testenv.StartPostgres(t, testenv.PGOptions{Auth: auth, TLS: true})
			admin := testenv.ConnectPG(t, pg.Superuser().DSN())
			directWrong := loginErrCode(t, pg.ConnString("disable"), pg.User, "wrong-password")
			if auth != "trust" && directWrong != "28P01" {
				t.Fatalf("direct login with a wrong password: %q, want 28P01", directWrong)
			}
			for _, clientTLS := range []bool{false, true} {
				for _, upTLS := range []bool{false, true} {
					name := fmt.Sprintf("client_tls=%t/upstream_tls=%t", clientTLS, upTLS)
					t.Run(name, func(t *testing.T) {
						mode := proxy.SSLDisable
						if upTLS {
							mode = proxy.SSLVerifyFull
						}
						p := startPGProxy(t, pg, proxyOpts{ClientTLS: clientTLS, Upstream: mode})
						sslmode := "disable"
						if clientTLS {
							sslmode = "verify-full"
						}
						c := testenv.ConnectPG(t, p.DSN(sslmode))
						var user string
						var upstreamSSL bool
						if err := c.QueryRow(testCtx(t), `select current_user, ssl from pg_stat_ssl where pid = pg_backend_pid()`).Scan(&user, &upstreamSSL); err != nil {
							t.Fatal(err)
						}
						if user != pg.User || upstreamSSL != upTLS {
							t.Fatalf("session user %q upstream ssl %t; want %q %t", user, upstreamSSL, pg.User, upTLS)
						}
						_ = c.Close(testCtx(t))

						got := loginErrCode(t, p.DSNFor(pg.User, "wrong-password", sslmode), pg.User, "")
						if got != directWrong {
							t.Fatalf("wrong password through proxy: %q, direct: %q", got, directWrong)
						}
						if auth != "trust" {
							waitFor(t, "no leftover upstream session", func() bool {
								var n int
								err := admin.QueryRow(testCtx(t), `select count(*) from pg_stat_activity where usename = $1`, pg.User).Scan(&n)
								return err == nil && n == 0
							})
						}
						logs := p.Logs.String()
						if strings.Contains(logs, pg.Password) || strings.Contains(logs, "wrong-password") {
							t.Fatalf("a password appears in the proxy logs:\n%s", logs)
						}
						if auth == "scram-sha-256" && clientTLS {
							want := "mechanism=SCRAM-SHA-256"
							if upTLS {
								want = "mechanism=SCRAM-SHA-256-PLUS"
							}
							if !strings.Contains(logs, want+"\n") && !strings.Contains(logs, want+" ") {
								t.Fatalf("proxy did not terminate SCRAM with %s:\n%s", want, logs)
							}
						}
					})
				}
			}
		})
	}
}

// loginErrCode connects and returns the SQLSTATE of the failure, "" on
// success (closing the connection), or "non-pg error: ..." otherwise.
func loginErrCode(t *testing.T, dsn, user, password string) string {
	t.Helper()
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		t.Fatal(err)
	}
	if password != "" {
		cfg.User, cfg.Password = user, password
	}
	c, err := pgx.ConnectConfig(context.Background(), cfg)
	if err == nil {
		_ = c.Close(context.Background())
		return ""
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code
	}
	return "non-pg error: " + err.Error()
}

func TestPGRequireTLS(t *testing.T) {
	pg := testenv.StartPostgres(t)
	p := startPGProxy(t, pg, proxyOpts{RequireTLS: true})
	cfg, err := pgx.ParseConfig(p.DSN("disable"))
	if err != nil {
		t.Fatal(err)
	}
	_, err = pgx.ConnectConfig(testCtx(t), cfg)
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != "28000" || !strings.Contains(pe.Message, "SSL required") {
		t.Fatalf("plaintext client: %v, want FATAL 28000 SSL required", err)
	}
	c := testenv.ConnectPG(t, p.DSN("verify-full"))
	var n int
	if err := c.QueryRow(testCtx(t), `select 1`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	// sslmode=prefer falls back to nothing: it negotiates TLS and works.
	c2 := testenv.ConnectPG(t, p.DSN("prefer"))
	if err := c2.QueryRow(testCtx(t), `select 1`).Scan(&n); err != nil {
		t.Fatal(err)
	}
}

func TestPGUpstreamSSLModes(t *testing.T) {
	tlsPG := testenv.StartPostgres(t, testenv.PGOptions{TLS: true})
	plainPG := testenv.StartPostgres(t)
	cases := []struct {
		name    string
		pg      *testenv.Postgres
		mode    proxy.SSLMode
		wantSSL bool
		wantErr bool
	}{
		{"disable", tlsPG, proxy.SSLDisable, false, false},
		{"prefer/tls server", tlsPG, proxy.SSLPrefer, true, false},
		{"prefer/plain server", plainPG, proxy.SSLPrefer, false, false},
		{"require/tls server", tlsPG, proxy.SSLRequire, true, false},
		{"require/plain server", plainPG, proxy.SSLRequire, false, true},
		{"verify-ca", tlsPG, proxy.SSLVerifyCA, true, false},
		{"verify-full", tlsPG, proxy.SSLVerifyFull, true, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := startPGProxy(t, tc.pg, proxyOpts{Upstream: tc.mode})
			c, err := pgx.Connect(testCtx(t), p.DSN("disable"))
			if tc.wantErr {
				var pe *pgconn.PgError
				if !errors.As(err, &pe) || pe.Code != "08001" {
					t.Fatalf("err = %v, want FATAL 08001", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close(testCtx(t))
			var ssl bool
			if err := c.QueryRow(testCtx(t), `select ssl from pg_stat_ssl where pid = pg_backend_pid()`).Scan(&ssl); err != nil {
				t.Fatal(err)
			}
			if ssl != tc.wantSSL {
				t.Fatalf("upstream ssl = %t, want %t", ssl, tc.wantSSL)
			}
		})
	}
}

// TestPGUpstreamVerifyFailures: verification must fail against a CA that
// did not sign the server, and verify-full against a wrong host name.
func TestPGUpstreamVerifyFailures(t *testing.T) {
	pg := testenv.StartPostgres(t, testenv.PGOptions{TLS: true})
	otherCA, _, _ := testenv.GenerateCert(t, t.TempDir(), "localhost")
	otherPool := caPool(t, otherCA)
	goodPool := caPool(t, pg.CAFile)
	cases := []struct {
		name string
		up   proxy.UpstreamTLS
	}{
		{"verify-ca/wrong CA", proxy.UpstreamTLS{Mode: proxy.SSLVerifyCA, RootCAs: otherPool, ServerName: "127.0.0.1"}},
		{"verify-full/wrong CA", proxy.UpstreamTLS{Mode: proxy.SSLVerifyFull, RootCAs: otherPool, ServerName: "127.0.0.1"}},
		{"verify-full/wrong host", proxy.UpstreamTLS{Mode: proxy.SSLVerifyFull, RootCAs: goodPool, ServerName: "db.example.com"}},
		{"require with CA file verifies", proxy.UpstreamTLS{Mode: proxy.SSLRequire, RootCAs: otherPool, ServerName: "127.0.0.1"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := startPGProxyUpstream(t, pg, tc.up)
			_, err := pgx.Connect(testCtx(t), p.DSN("disable"))
			var pe *pgconn.PgError
			if !errors.As(err, &pe) || pe.Code != "08001" {
				t.Fatalf("err = %v, want FATAL 08001", err)
			}
			if !strings.Contains(p.Logs.String(), "certificate") {
				t.Fatalf("log does not say why:\n%s", p.Logs.String())
			}
		})
	}
}

// TestPGCleartextPasswordLegs: with the server's `password` method (the
// password in clear on the wire), the proxy relays the server's request
// only when each leg is TLS or loopback, the upstream leg's TLS verified
// (verify-ca/verify-full). Otherwise the client gets FATAL 28000 naming the
// setting to change before it is asked for its password, the proxy logs the
// refusal, and the password crosses neither leg. Non-loopback legs are real:
// the proxy listens on, and reaches the server through, an address of this
// machine that is not loopback.
func TestPGCleartextPasswordLegs(t *testing.T) {
	pg := testenv.StartPostgres(t, testenv.PGOptions{Auth: "password", TLS: true})
	ip := testenv.NonLoopbackIP(t)
	roots := caPool(t, pg.CAFile)
	type upstream struct {
		name string
		fwd  bool // through a forwarder on the non-loopback address
		tls  proxy.UpstreamTLS
		ok   bool
	}
	upstreams := []upstream{
		{"loopback/disable", false, proxy.UpstreamTLS{Mode: proxy.SSLDisable}, true},
		{"loopback/prefer", false, proxy.UpstreamTLS{Mode: proxy.SSLPrefer, ServerName: "localhost"}, true},
		{"network/disable", true, proxy.UpstreamTLS{Mode: proxy.SSLDisable}, false},
		{"network/prefer", true, proxy.UpstreamTLS{Mode: proxy.SSLPrefer, ServerName: "localhost"}, false},
		{"network/require", true, proxy.UpstreamTLS{Mode: proxy.SSLRequire, ServerName: "localhost"}, false},
		{"network/verify-ca", true, proxy.UpstreamTLS{Mode: proxy.SSLVerifyCA, RootCAs: roots, ServerName: "localhost"}, true},
		{"network/verify-full", true, proxy.UpstreamTLS{Mode: proxy.SSLVerifyFull, RootCAs: roots, ServerName: "localhost"}, true},
	}
	clients := []struct {
		name, host, sslmode string
		ok                  bool
	}{
		{"loopback/plaintext", "127.0.0.1", "disable", true},
		{"network/plaintext", ip.String(), "disable", false},
		{"network/tls", ip.String(), "require", true},
	}
	for _, up := range upstreams {
		for _, cl := range clients {
			t.Run("upstream="+up.name+"/client="+cl.name, func(t *testing.T) {
				o := proxyOpts{ClientTLS: true, ListenHost: cl.host, UpstreamTLS: &up.tls}
				var fwd *testenv.Forwarder
				if up.fwd {
					fwd = testenv.Forward(t, ip, pg.Addr())
					o.UpstreamAddr = fwd.Addr
				}
				p := startPGProxy(t, pg, o)
				cfg, err := pgx.ParseConfig(p.DSN(cl.sslmode))
				if err != nil {
					t.Fatal(err)
				}
				var clientSent testlog.Buffer
				dial := cfg.DialFunc
				cfg.DialFunc = func(ctx context.Context, network, addr string) (net.Conn, error) {
					c, err := dial(ctx, network, addr)
					if err != nil {
						return nil, err
					}
					return recordingConn{Conn: c, w: &clientSent}, nil
				}
				c, err := pgx.ConnectConfig(testCtx(t), cfg)
				if up.ok && cl.ok {
					if err != nil {
						t.Fatalf("login refused: %v", err)
					}
					var one int
					if err := c.QueryRow(testCtx(t), `select 1`).Scan(&one); err != nil {
						t.Fatal(err)
					}
					_ = c.Close(testCtx(t))
					return
				}
				if err == nil {
					_ = c.Close(testCtx(t))
					t.Fatal("login succeeded; want FATAL 28000")
				}
				var pe *pgconn.PgError
				if !errors.As(err, &pe) || pe.Code != "28000" || pe.Severity != "FATAL" {
					t.Fatalf("login: %v; want FATAL 28000", err)
				}
				want := "set upstream_tls.mode: verify-full"
				if !cl.ok {
					want = "connect with sslmode=require"
				}
				if !strings.Contains(pe.Message, want) {
					t.Fatalf("message %q does not say %q", pe.Message, want)
				}
				if !strings.Contains(p.Logs.String(), "cleartext password refused") {
					t.Fatalf("no log line for the refusal:\n%s", p.Logs.String())
				}
				if strings.Contains(clientSent.String(), pg.Password) {
					t.Fatal("the client sent its password to the proxy")
				}
				if fwd != nil && bytes.Contains(fwd.Sent(), []byte(pg.Password)) {
					t.Fatal("the password crossed the upstream leg")
				}
			})
		}
	}
}

// recordingConn copies what is written to it into w.
type recordingConn struct {
	net.Conn
	w io.Writer
}

func (c recordingConn) Write(p []byte) (int, error) {
	_, _ = c.w.Write(p)
	return c.Conn.Write(p)
}
