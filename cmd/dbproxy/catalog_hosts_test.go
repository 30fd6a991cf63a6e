package main

import (
	"context"
	"log/slog"
	"testing"

	"github.com/dbproxy/dbproxy/config"
	"github.com/dbproxy/dbproxy/internal/testenv"
)

// TestCatalogFollowsUpstreamHosts: the catalog connection picks its host
// as sessions do: in order, skipping a host that is down, and under
// target_session_attrs read-write one whose sessions are read-only.
func TestCatalogFollowsUpstreamHosts(t *testing.T) {
	ctx := context.Background()
	s1 := testenv.StartPostgres(t, testenv.PGOptions{Dedicated: true})
	s2 := testenv.StartPostgres(t, testenv.PGOptions{Dedicated: true})
	for i, pg := range []*testenv.Postgres{s1, s2} {
		admin := testenv.ConnectPG(t, pg.Superuser().DSN())
		stmts := []string{"CREATE ROLE catalog_reader LOGIN"}
		if i == 0 {
			stmts = append(stmts, "ALTER ROLE catalog_reader SET default_transaction_read_only = on")
		}
		for _, s := range stmts {
			if _, err := admin.Exec(ctx, s); err != nil {
				t.Fatalf("%s: %v", s, err)
			}
		}
	}
	for _, tc := range []struct{ name, upstream, target string }{
		{"first host down", freeAddr(t) + "," + s2.Addr(), "any"},
		{"first host read-only", s1.Addr() + "," + s2.Addr(), "read-write"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			lc := &config.Listener{Protocol: config.ProtocolPostgres, Upstream: tc.upstream, TargetSessionAttrs: tc.target,
				UpstreamTLS: config.UpstreamTLS{Mode: config.SSLDisable}, Catalog: &config.Catalog{User: "catalog_reader"}}
			conn, err := newCatalogLogin(lc, 0, func(string) string { return "" }).pgConnect(ctx, "postgres", "")
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close(ctx)
			var port int
			if err := conn.QueryRow(ctx, "select inet_server_port()").Scan(&port); err != nil || port != s2.Port {
				t.Fatalf("catalog on port %d (%v), want %d", port, err, s2.Port)
			}
		})
	}

	my := testenv.StartMariaDB(t)
	lc := &config.Listener{Protocol: config.ProtocolMySQL, Upstream: freeAddr(t) + "," + my.Addr(),
		UpstreamTLS: config.UpstreamTLS{Mode: config.SSLDisable}}
	db, err := mysqlCatalogDB(newCatalogLogin(lc, 0, func(string) string { return "" }), my.User, my.Password, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var port int
	if err := db.QueryRowContext(ctx, "SELECT @@port").Scan(&port); err != nil || port != my.Port {
		t.Fatalf("mysql catalog on port %d (%v), want %d", port, err, my.Port)
	}
}

// TestServeUpstreamHosts: serve takes a comma-separated upstream and
// target_session_attrs from the YAML; with the first host down, sessions
// and the catalog they need (an encrypted column) use the second.
func TestServeUpstreamHosts(t *testing.T) {
	pg, ctx, _ := startPostgresWith(t, usersTablePG)
	noLibpqEnv(t)
	addr := freeAddr(t)
	upstream := `"` + freeAddr(t) + ", " + pg.Addr() + `"`
	cfgPath := writeConfig(t, listenerYAML("postgres", addr, upstream, "target_session_attrs: read-write")+localConfig)
	serveInBackground(t, cfgPath, func(string) string { return "" })
	c := connectRetry(ctx, t, pgURL(pg, addr))
	if _, err := c.Exec(ctx, `INSERT INTO users (email, ssn, salary) VALUES ($1, $2, $3)`, "hosts@example.com", "111-22-3333", int64(5)); err != nil {
		t.Fatalf("insert: %v", err)
	}
	var ssn string
	if err := c.QueryRow(ctx, `SELECT ssn FROM users WHERE email = $1`, "hosts@example.com").Scan(&ssn); err != nil || ssn != "111-22-3333" {
		t.Fatalf("lookup: %q %v", ssn, err)
	}
}
