package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/dbproxy/dbproxy/internal/testenv"
)

// refusedValue is the literal of the refused statements: it must reach
// neither the database nor the log.
const refusedValue = "refused-secret-4711"

// TestAdminMetricsWorkload runs `dbproxy serve` with an admin listener and
// an encrypting listener of each protocol in front of real servers, runs a
// workload through both (plain statements, encrypted inserts and lookups,
// a refused statement, a failed login), and checks that every per-listener
// metric moved, and that the refusals are logged once each as JSON with
// their fingerprint, principal, column and reason but no value.
func TestAdminMetricsWorkload(t *testing.T) {
	pg, ctx, _ := startPostgresWith(t, usersTablePG, testenv.PGOptions{Auth: "scram-sha-256"})
	my, _, _ := startMariaDBWith(t, usersTableMySQL)
	pgAddr, myAddr, adminAddr := freeAddr(t), freeAddr(t), freeAddr(t)
	cfgPath := adminConfig(t, adminAddr,
		catalogListenerYAML("pg", "postgres", pgAddr, pg.Addr(), pg.User, "PG_CATALOG_PASSWORD"),
		catalogListenerYAML("my", "mysql", myAddr, my.Addr(), my.User, "MY_CATALOG_PASSWORD"))
	logs := serveInBackground(t, cfgPath, func(k string) string {
		switch k {
		case "PG_CATALOG_PASSWORD":
			return pg.Password
		case "MY_CATALOG_PASSWORD":
			return my.Password
		}
		return ""
	})
	a := adminClient{t: t, base: "http://" + adminAddr}
	a.waitReady(200, "ready\n")

	pgWorkload(ctx, t, pg, pgAddr)
	myWorkload(ctx, t, my, myAddr)
	a.waitMetric(`dbproxy_connections_open{listener="pg"}`, 0)

	m := a.metrics()
	for _, l := range []string{"pg", "my"} {
		ln := `listener="` + l + `"`
		for _, want := range []struct{ name, labels string }{
			{"dbproxy_connections_total", ln},
			{"dbproxy_handshakes_total", ln},
			{"dbproxy_auth_failures_total", ln},
			{"dbproxy_statements_total", ln + `,outcome="forwarded"`},
			{"dbproxy_statements_total", ln + `,outcome="rewritten"`},
			{"dbproxy_statements_total", ln + `,outcome="refused",reason="feature_not_supported"`},
			{"dbproxy_bytes_total", `direction="client_to_upstream",` + ln},
			{"dbproxy_bytes_total", `direction="upstream_to_client",` + ln},
			{"dbproxy_upstream_connect_duration_seconds_count", ln},
			{"dbproxy_catalog_refreshes_total", ln + `,outcome="success"`},
			{"dbproxy_statement_plans_total", ln + `,source="skipped"`},
			{"dbproxy_statement_plans_total", ln + `,source="cached"`},
			{"dbproxy_statement_plans_total", ln + `,source="template"`},
			{"dbproxy_statement_plans_total", ln + `,source="parsed"`},
		} {
			if v := metricSum(m, want.name, want.labels); v < 1 {
				t.Errorf("%s{%s} = %v, want at least 1", want.name, want.labels, v)
			}
		}
	}
	for _, name := range []string{`dbproxy_key_cache_misses_total`, `dbproxy_key_cache_hits_total`,
		`dbproxy_key_operations_total{key="public.users.email",op="encrypt"}`,
		`dbproxy_key_operations_total{key="public.users.email",op="lookup"}`} {
		if v, ok := metricValue(m, name); !ok || v < 1 {
			t.Errorf("%s = %v (present %v), want at least 1", name, v, ok)
		}
	}
	t.Logf("metrics:\n%s", interesting(m))
	checkRefusalLogs(t, logs.String(), map[string]string{"pg": pg.User, "my": my.User})
}

// pgWorkload: a plain query, an encrypted insert and lookup, lookups with
// literals (parsed, from its template, the first text again: cached), a refused
// statement and a failed login through the PostgreSQL listener at addr.
func pgWorkload(ctx context.Context, t *testing.T, pg *testenv.Postgres, addr string) {
	t.Helper()
	u := url.URL{Scheme: "postgres", User: url.UserPassword(pg.User, pg.Password), Host: addr, Path: "/" + pg.Database, RawQuery: "sslmode=disable"}
	c, err := pgx.Connect(ctx, u.String())
	if err != nil {
		t.Fatalf("connect through serve: %v", err)
	}
	defer c.Close(ctx)
	if _, err := c.Exec(ctx, `SELECT 1`, pgx.QueryExecModeSimpleProtocol); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Exec(ctx, `INSERT INTO users (email, ssn, salary) VALUES ($1, $2, $3)`, "m@example.com", "123-45-6789", int64(1)); err != nil {
		t.Fatalf("insert: %v", err)
	}
	var id int
	if err := c.QueryRow(ctx, `SELECT id FROM users WHERE email = $1`, "m@example.com").Scan(&id); err != nil {
		t.Fatalf("lookup: %v", err)
	}
	for _, email := range []string{"m@example.com", "n@example.com", "m@example.com"} {
		if _, err := c.Exec(ctx, `SELECT id FROM users WHERE email = '`+email+`'`, pgx.QueryExecModeSimpleProtocol); err != nil {
			t.Fatalf("lookup by literal: %v", err)
		}
	}
	_, err = c.Exec(ctx, `SELECT id FROM users WHERE ssn = '`+refusedValue+`'`, pgx.QueryExecModeSimpleProtocol)
	if err == nil || !strings.Contains(err.Error(), "randomized") {
		t.Fatalf("equality on a randomized column: %v, want a refusal", err)
	}
	u.User = url.UserPassword(pg.User, "wrong password")
	if c, err := pgx.Connect(ctx, u.String()); err == nil {
		c.Close(ctx)
		t.Fatal("login with a wrong password succeeded")
	}
}

// myWorkload is pgWorkload through the MySQL listener at addr.
func myWorkload(ctx context.Context, t *testing.T, my *testenv.MariaDB, addr string) {
	t.Helper()
	db := openMySQLRetry(ctx, t, my, addr)
	if _, err := db.ExecContext(ctx, `SELECT 1`); err != nil {
		t.Fatal(err)
	}
	if _, err := db.ExecContext(ctx, `INSERT INTO users (email, ssn, salary) VALUES (?, ?, ?)`, "m@example.com", "123-45-6789", int64(1)); err != nil {
		t.Fatalf("insert: %v", err)
	}
	var id int
	if err := db.QueryRowContext(ctx, `SELECT id FROM users WHERE email = ?`, "m@example.com").Scan(&id); err != nil {
		t.Fatalf("lookup: %v", err)
	}
	// COM_QUERY with literals: two parsed (the second builds the
	// template), one from the template, the first text again: cached.
	for _, email := range []string{"m@example.com", "n@example.com", "o@example.com", "m@example.com"} {
		if _, err := db.ExecContext(ctx, `SELECT id FROM users WHERE email = '`+email+`'`); err != nil {
			t.Fatalf("lookup by literal: %v", err)
		}
	}
	_, err := db.ExecContext(ctx, `SELECT id FROM users WHERE ssn = '`+refusedValue+`'`)
	if err == nil || !strings.Contains(err.Error(), "randomized") {
		t.Fatalf("equality on a randomized column: %v, want a refusal", err)
	}
	bad, err := sql.Open("mysql", fmt.Sprintf("%s:%s@tcp(%s)/%s", my.User, "wrong-password", addr, my.Database))
	if err != nil {
		t.Fatal(err)
	}
	defer bad.Close()
	if err := bad.PingContext(ctx); err == nil {
		t.Fatal("login with a wrong password succeeded")
	}
}

// checkRefusalLogs checks that every line of logs is JSON, and that each
// listener logged its refusal once, with the principal, column, reason and
// fingerprint, and no line holds the refused value.
func checkRefusalLogs(t *testing.T, logs string, users map[string]string) {
	t.Helper()
	refusals := map[string]int{}
	for line := range strings.Lines(logs) {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Errorf("log line is not JSON: %q", line)
			continue
		}
		if strings.Contains(line, refusedValue) {
			t.Errorf("log line holds the refused value: %s", line)
		}
		if rec["msg"] != "statement refused" {
			continue
		}
		l, _ := rec["listener"].(string)
		refusals[l]++
		fp, _ := rec["fingerprint"].(string)
		if rec["user"] != users[l] || rec["database"] == nil || rec["remote"] == nil || len(fp) != 16 ||
			!strings.HasSuffix(fmt.Sprint(rec["column"]), "users.ssn") || rec["reason"] != "feature_not_supported" ||
			rec["command"] != "SELECT" {
			t.Errorf("refusal log lacks a field: %s", line)
		}
	}
	if refusals["pg"] != 1 || refusals["my"] != 1 {
		t.Errorf("refusals logged per listener: %v, want one each\n%s", refusals, logs)
	}
}

// metricSum adds the samples of metric name whose labels contain labels.
func metricSum(exposition, name, labels string) float64 {
	sum := 0.0
	for line := range strings.Lines(exposition) {
		rest, ok := strings.CutPrefix(line, name+"{")
		if !ok || !strings.Contains(rest, labels) {
			continue
		}
		_, v, _ := strings.Cut(rest, "} ")
		if f, err := strconv.ParseFloat(strings.TrimSpace(v), 64); err == nil {
			sum += f
		}
	}
	return sum
}

// interesting keeps the per-listener and key samples of an exposition.
func interesting(exposition string) string {
	var b strings.Builder
	for line := range strings.Lines(exposition) {
		if strings.HasPrefix(line, "dbproxy_") && !strings.Contains(line, "_bucket{") && !strings.HasSuffix(strings.TrimSpace(line), " 0") {
			b.WriteString(line)
		}
	}
	return b.String()
}
