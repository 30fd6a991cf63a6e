package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	mysqldriver "github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/dbproxy/dbproxy/config"
	"github.com/dbproxy/dbproxy/internal/testenv"
	"github.com/dbproxy/dbproxy/proxy"
)

func TestRunServeRefusesBadListenersBeforeBinding(t *testing.T) {
	pgAddr := freeAddr(t)
	cases := []struct {
		name string
		bad  config.Listener
		want string
	}{
		{"unknown protocol", config.Listener{Name: "x", Protocol: "oracle", Listen: "127.0.0.1:0", Upstream: "127.0.0.1:1521"},
			`listener "x": unknown protocol "oracle"`},
		{"bad CA file", config.Listener{Name: "pg2", Protocol: config.ProtocolPostgres, Listen: "127.0.0.1:0", Upstream: "127.0.0.1:5432",
			UpstreamTLS: config.UpstreamTLS{Mode: config.SSLVerifyFull, CAFile: filepath.Join(t.TempDir(), "missing.pem")}},
			`listener "pg2": upstream_tls.ca_file`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := &config.Config{Listeners: []config.Listener{
				{Name: "pg", Protocol: config.ProtocolPostgres, Listen: pgAddr, Upstream: "127.0.0.1:5432",
					UpstreamTLS: config.UpstreamTLS{Mode: config.SSLDisable}},
				tc.bad,
			}}
			// Cancelled: a start that wrongly succeeds returns at once.
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			err := runServe(ctx, cfg, slog.New(slog.DiscardHandler))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("runServe: %v, want %q", err, tc.want)
			}
			// The good listener before it was never bound (or was released).
			l, err := net.Listen("tcp", pgAddr)
			if err != nil {
				t.Fatalf("address still bound after a failed start: %v", err)
			}
			l.Close()
		})
	}
}

func TestUpstreamTLSTranslation(t *testing.T) {
	ca, _, _ := testenv.GenerateCert(t, t.TempDir(), "db.internal")
	cases := []struct {
		name     string
		in       config.Listener
		mode     proxy.SSLMode
		server   string
		withPool bool
	}{
		{"default is prefer, server name from upstream", config.Listener{Upstream: "db.internal:5432"}, proxy.SSLPrefer, "db.internal", false},
		{"explicit server name", config.Listener{Upstream: "10.0.0.5:5432",
			UpstreamTLS: config.UpstreamTLS{Mode: config.SSLVerifyFull, CAFile: ca, ServerName: "db.internal"}}, proxy.SSLVerifyFull, "db.internal", true},
		{"verify-ca with a bundle", config.Listener{Upstream: "db.internal:5432",
			UpstreamTLS: config.UpstreamTLS{Mode: config.SSLVerifyCA, CAFile: ca}}, proxy.SSLVerifyCA, "db.internal", true},
		{"disable", config.Listener{Upstream: "[::1]:5432", UpstreamTLS: config.UpstreamTLS{Mode: config.SSLDisable}}, proxy.SSLDisable, "::1", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			u, err := upstreamTLS(&tc.in)
			if err != nil {
				t.Fatal(err)
			}
			if u.Mode != tc.mode || u.ServerName != tc.server || (u.RootCAs != nil) != tc.withPool {
				t.Fatalf("got mode %v server %q pool %t", u.Mode, u.ServerName, u.RootCAs != nil)
			}
		})
	}
	if _, err := upstreamTLS(&config.Listener{Upstream: "h:1", UpstreamTLS: config.UpstreamTLS{Mode: "allow"}}); err == nil {
		t.Fatal("unknown sslmode accepted")
	}
}

// TestServeLimitsFromConfig: the limits of a listener's YAML reach its
// server and handler: a second connection past max_connections: 1 gets
// the protocol's error naming the setting, on both protocols.
func TestServeLimitsFromConfig(t *testing.T) {
	pg := testenv.StartPostgres(t)
	db := testenv.StartMariaDB(t)
	pgAddr, myAddr := freeAddr(t), freeAddr(t)
	cfgPath := writeConfig(t, fmt.Sprintf(`
listeners:
  - protocol: postgres
    listen: %s
    upstream: %s
    upstream_tls: {mode: disable}
    limits: {max_connections: 1, handshake_timeout: 3s, upstream_keepalive: 5s}
  - protocol: mysql
    listen: %s
    upstream: %s
    upstream_tls: {mode: disable}
    limits: {max_connections: 1, idle_timeout: 1h, upstream_keepalive: 0s}
`, pgAddr, pg.Addr(), myAddr, db.Addr()))
	cfg := loadConfig(t, cfgPath)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	sctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- runServe(sctx, cfg, slog.New(slog.DiscardHandler)) }()
	defer func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	}()

	dsn := pgURL(pg, pgAddr)
	connectRetry(ctx, t, dsn) // the first connection, held until the test ends
	_, err := pgx.Connect(ctx, dsn)
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != "53300" || !strings.Contains(pe.Message, "limits.max_connections = 1") {
		t.Fatalf("second PostgreSQL connection: %v, want 53300 naming limits.max_connections", err)
	}

	mcfg := mysqldriver.NewConfig()
	mcfg.User, mcfg.Passwd, mcfg.Net, mcfg.Addr, mcfg.DBName = db.User, db.Password, "tcp", myAddr, db.Database
	connector, err := mysqldriver.NewConnector(mcfg)
	if err != nil {
		t.Fatal(err)
	}
	mfirst, err := connector.Connect(ctx)
	if err != nil {
		t.Fatalf("connect through serve: %v", err)
	}
	defer mfirst.Close()
	_, err = connector.Connect(ctx)
	var me *mysqldriver.MySQLError
	if !errors.As(err, &me) || me.Number != 1040 || !strings.Contains(me.Message, "limits.max_connections = 1") {
		t.Fatalf("second MySQL connection: %v, want 1040 naming limits.max_connections", err)
	}
}

func TestUpstreamKeepaliveTranslation(t *testing.T) {
	if got := upstreamKeepalive(config.Limits{}); got >= 0 {
		t.Fatalf("upstream_keepalive 0s: %v, want negative (system defaults)", got)
	}
	if got := upstreamKeepalive(config.Limits{UpstreamKeepalive: 20 * time.Second}); got != 20*time.Second {
		t.Fatalf("upstream_keepalive 20s: %v", got)
	}
}
