package main

import (
	"context"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"testing"

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
