package config_test

import (
	"strings"
	"testing"
)

// TestUpstreamHostsAndTargetSessionAttrs: upstream takes one host:port or
// several separated by commas, each checked; target_session_attrs is any
// (default) or read-write, the latter for postgres only; with several
// hosts the TLS server name stays unset (each host's own is used).
func TestUpstreamHostsAndTargetSessionAttrs(t *testing.T) {
	cfg := mustParse(t, `
listeners:
  - protocol: postgres
    listen: 127.0.0.1:6432
    upstream: "db1.example:5432, db2.example:5433"
    upstream_tls:
      mode: require
    target_session_attrs: read-write
  - protocol: mysql
    listen: 127.0.0.1:3307
    upstream: db.example:3306
`)
	pg, my := cfg.Listeners[0], cfg.Listeners[1]
	if got := strings.Join(pg.UpstreamHosts(), " "); got != "db1.example:5432 db2.example:5433" {
		t.Errorf("UpstreamHosts() = %q", got)
	}
	if pg.TargetSessionAttrs != "read-write" || my.TargetSessionAttrs != "any" {
		t.Errorf("target_session_attrs %q, %q; want read-write, any (default)", pg.TargetSessionAttrs, my.TargetSessionAttrs)
	}
	if pg.UpstreamTLS.ServerName != "" || my.UpstreamTLS.ServerName != "db.example" {
		t.Errorf("server names %q, %q; want \"\" (per host), db.example", pg.UpstreamTLS.ServerName, my.UpstreamTLS.ServerName)
	}

	_, err := parse(t, `
listeners:
  - protocol: postgres
    listen: 127.0.0.1:6432
    upstream: db1:5432,db2
    target_session_attrs: primary
  - protocol: mysql
    listen: 127.0.0.1:3307
    upstream: db1:3306,db2:3306
    target_session_attrs: read-write
`)
	checkErrors(t, err, []want{
		{"4:15", "listeners[0].upstream", `invalid address "db2": must be host:port`},
		{"5:27", "listeners[0].target_session_attrs", `unknown value "primary": must be any or read-write`},
		{"9:27", "listeners[1].target_session_attrs", "read-write is supported for protocol postgres only"},
	})
}
