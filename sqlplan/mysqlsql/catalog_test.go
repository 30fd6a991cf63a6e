package mysqlsql_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/dbproxy/dbproxy/sqlplan"
	"github.com/dbproxy/dbproxy/sqlplan/mysqlsql"
)

// countingCatalog is a Catalog whose tables can change, counting lookups.
type countingCatalog struct {
	mu     sync.Mutex
	tables map[string][]string
	calls  int
	err    error
	during func() // run inside Columns (to race a Purge)
}

func (c *countingCatalog) Columns(_ context.Context, db, table string) ([]string, error) {
	c.mu.Lock()
	c.calls++
	err, cols, during := c.err, c.tables[db+"."+table], c.during
	c.mu.Unlock()
	if during != nil {
		during()
	}
	return cols, err
}

func (c *countingCatalog) set(table string, cols ...string) {
	c.mu.Lock()
	c.tables[table] = cols
	c.mu.Unlock()
}

func (c *countingCatalog) n() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.calls
}

func rewrite(t *testing.T, p *mysqlsql.Planner, db, sql string) (*mysqlsql.Plan, string) {
	t.Helper()
	plan, err := p.Plan(context.Background(), db, sql)
	if err != nil {
		t.Fatalf("Plan(%q): %v", sql, err)
	}
	if plan.Passthrough {
		t.Fatalf("Plan(%q): passthrough; a column-less INSERT into an encrypted table must be rewritten", sql)
	}
	got, err := plan.Rewrite(context.Background(), fakeEnc{}, nil, nil)
	if err != nil {
		t.Fatalf("Rewrite(%q): %v", sql, err)
	}
	return plan, string(got)
}

func TestCatalogInsertWithoutColumnList(t *testing.T) {
	cat := &countingCatalog{tables: map[string][]string{"app.users": {"id", "email", "ssn", "age"}}}
	p := newPlanner(t, cat)
	tests := []struct{ name, db, sql, want string }{
		{"single row", "app", "INSERT INTO users VALUES (1, 'a', 's', NULL)",
			"INSERT INTO `users` (`id`,`email`,`ssn`,`age`) VALUES (1," + hx("Sa") + "," + hx("Ss") + ",NULL)"},
		{"multi row", "app", "INSERT INTO users VALUES (1, 'a', NULL, NULL), (2, 'b', 'c', NULL)",
			"INSERT INTO `users` (`id`,`email`,`ssn`,`age`) VALUES (1," + hx("Sa") + ",NULL,NULL),(2," + hx("Sb") + "," + hx("Sc") + ",NULL)"},
		{"replace qualified", "", "REPLACE INTO app.users VALUES (1, 'a', 's', NULL)",
			"REPLACE INTO `app`.`users` (`id`,`email`,`ssn`,`age`) VALUES (1," + hx("Sa") + "," + hx("Ss") + ",NULL)"},
		// No value to encrypt, but the column list is still pinned: a
		// stale column order must never let a literal land, unencrypted,
		// in an encrypted column.
		{"only nulls in encrypted columns", "app", "INSERT INTO users VALUES (1, NULL, NULL, NULL)",
			"INSERT INTO `users` (`id`,`email`,`ssn`,`age`) VALUES (1,NULL,NULL,NULL)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, got := rewrite(t, p, tt.db, tt.sql); got != tt.want {
				t.Fatalf("got  %s\nwant %s", got, tt.want)
			}
		})
	}
	if n := cat.n(); n != 1 {
		t.Fatalf("catalog asked %d times for one table, want 1 (answers are cached)", n)
	}
}

func TestCatalogPlaceholders(t *testing.T) {
	cat := &countingCatalog{tables: map[string][]string{"app.users": {"id", "email", "ssn", "age"}}}
	p := newPlanner(t, cat)
	plan, got := rewrite(t, p, "app", "INSERT INTO users VALUES (?, ?, ?, ?), (?, ?, NULL, 7)")
	if want := "INSERT INTO `users` (`id`,`email`,`ssn`,`age`) VALUES (?,?,?,?),(?,?,NULL," + hx("S\x00\x00\x00\x07") + ")"; got != want {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
	want := []sqlplan.Role{sqlplan.RolePlain, sqlplan.RoleStore, sqlplan.RoleStore, sqlplan.RoleStore, sqlplan.RolePlain, sqlplan.RoleStore}
	if len(plan.Params) != len(want) {
		t.Fatalf("params %+v", plan.Params)
	}
	for i, r := range want {
		if plan.Params[i].Role != r {
			t.Fatalf("param %d: role %d, want %d", i, plan.Params[i].Role, r)
		}
	}
	if len(plan.ServerParams) != 6 {
		t.Fatalf("server params %+v", plan.ServerParams)
	}
	// Only plain columns: still pinned, placeholders mapped one to one.
	plan, got = rewrite(t, p, "app", "INSERT INTO users VALUES (?, NULL, NULL, NULL)")
	if want := "INSERT INTO `users` (`id`,`email`,`ssn`,`age`) VALUES (?,NULL,NULL,NULL)"; got != want {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
	if len(plan.ServerParams) != 1 || plan.Params[0].Role != sqlplan.RolePlain {
		t.Fatalf("params %+v server %+v", plan.Params, plan.ServerParams)
	}
}

func TestCatalogCacheAndPurge(t *testing.T) {
	cat := &countingCatalog{tables: map[string][]string{"app.users": {"id", "email"}}}
	p := newPlanner(t, cat)
	ctx := context.Background()
	sql := "INSERT INTO users VALUES (1, 'a')"
	rewrite(t, p, "app", sql)
	rewrite(t, p, "app", sql)
	rewrite(t, p, "app", "INSERT INTO users VALUES (2, 'b')")
	if n := cat.n(); n != 1 {
		t.Fatalf("catalog asked %d times, want 1", n)
	}

	// ALTER TABLE through the proxy: the plan says DDL; after Purge the
	// new column order is read.
	plan, err := p.Plan(ctx, "app", "ALTER TABLE users ADD COLUMN ssn VARBINARY(100)")
	if err != nil || !plan.DDL {
		t.Fatalf("ALTER TABLE: DDL=%v err=%v", plan != nil && plan.DDL, err)
	}
	cat.set("app.users", "id", "email", "ssn")
	p.Purge()
	_, got := rewrite(t, p, "app", "INSERT INTO users VALUES (3, 'c', 'd')")
	if want := "INSERT INTO `users` (`id`,`email`,`ssn`) VALUES (3," + hx("Sc") + "," + hx("Sd") + ")"; got != want {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
	if n := cat.n(); n != 2 {
		t.Fatalf("catalog asked %d times, want 2", n)
	}
	// A change that keeps the width (MODIFY … FIRST) is only seen thanks
	// to the purge.
	cat.set("app.users", "email", "id", "ssn")
	p.Purge()
	_, got = rewrite(t, p, "app", "INSERT INTO users VALUES ('e', 4, 'f')")
	if want := "INSERT INTO `users` (`email`,`id`,`ssn`) VALUES (" + hx("Se") + ",4," + hx("Sf") + ")"; got != want {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
	// The cached plan of the old statement was dropped too: it is planned
	// again against the new order (and refused: 2 values for 3 columns).
	_, got = rewrite(t, p, "app", "INSERT INTO users VALUES (3, 'c', 'd')")
	if want := "INSERT INTO `users` (`email`,`id`,`ssn`) VALUES (" + hx("S3") + ",_UTF8MB4'c'," + hx("Sd") + ")"; got != want {
		t.Fatalf("statement planned before the reorder kept its plan:\ngot  %s\nwant %s", got, want)
	}
	if _, err := p.Plan(ctx, "app", sql); err == nil || !strings.Contains(err.Error(), "does not match") {
		t.Fatalf("old statement after ALTER: %v", err)
	}
}

func TestCatalogStaleCacheIsRefreshedOnMismatch(t *testing.T) {
	cat := &countingCatalog{tables: map[string][]string{"app.users": {"id", "email"}}}
	p := newPlanner(t, cat)
	rewrite(t, p, "app", "INSERT INTO users VALUES (1, 'a')")
	// The table changed behind the proxy (DDL run directly on the server).
	cat.set("app.users", "id", "age", "email")
	_, got := rewrite(t, p, "app", "INSERT INTO users VALUES (2, 5, 'b')")
	if want := "INSERT INTO `users` (`id`,`age`,`email`) VALUES (2," + hx("S\x00\x00\x00\x05") + "," + hx("Sb") + ")"; got != want {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
	if n := cat.n(); n != 2 {
		t.Fatalf("catalog asked %d times, want 2", n)
	}
}

func TestCatalogFailureRefuses(t *testing.T) {
	boom := errors.New("connection refused")
	cat := &countingCatalog{tables: map[string][]string{}, err: boom}
	p := newPlanner(t, cat)
	ctx := context.Background()
	sql := "INSERT INTO users VALUES (1, 'secret@example.com')"
	for i := 0; i < 2; i++ {
		_, err := p.Plan(ctx, "app", sql)
		var r *sqlplan.Refusal
		if !errors.As(err, &r) || !strings.Contains(r.Error(), "catalog") || !errors.Is(err, boom) {
			t.Fatalf("want a refusal naming the catalog with the cause, got %v", err)
		}
		if strings.Contains(r.Error(), "secret") || strings.Contains(r.Error(), "connection refused") {
			t.Fatalf("refusal message leaks: %q", r.Error())
		}
	}
	if n := cat.n(); n != 2 {
		t.Fatalf("catalog asked %d times, want 2 (failures are not cached)", n)
	}
	// Unknown table (no columns): refused, not passed through.
	cat.err = nil
	if _, err := p.Plan(ctx, "app", sql); err == nil || !strings.Contains(err.Error(), "name the columns") {
		t.Fatalf("table unknown to the catalog: %v", err)
	}
	// No catalog at all: refused.
	if _, err := newPlanner(t, nil).Plan(ctx, "app", sql); err == nil || !strings.Contains(err.Error(), "column list") {
		t.Fatalf("nil catalog: %v", err)
	}
}

func TestCatalogPurgeDuringLookupIsNotCached(t *testing.T) {
	cat := &countingCatalog{tables: map[string][]string{"app.users": {"id", "email"}}}
	p := newPlanner(t, cat)
	cat.during = p.Purge // DDL completes while the answer is in flight
	sql := "INSERT INTO users VALUES (1, 'a')"
	rewrite(t, p, "app", sql)
	cat.during = nil
	rewrite(t, p, "app", sql)
	if n := cat.n(); n != 2 {
		t.Fatalf("catalog asked %d times, want 2 (an answer raced by a purge is not kept)", n)
	}
}

func TestPlanDDLFlag(t *testing.T) {
	p := newPlanner(t, nil)
	for sql, want := range map[string]bool{
		"ALTER TABLE users ADD COLUMN x int":                  true,
		"CREATE TABLE users (id int, email varbinary(300))":   true,
		"DROP TABLE users":                                    true,
		"RENAME TABLE orders TO orders_old":                   true,
		"SELECT email FROM users WHERE id = 1":                false,
		"INSERT INTO users (id, email) VALUES (1, 'a')":       false,
		"SELECT 1; ALTER TABLE users DROP COLUMN note":        true,
		"ALTER TABLE orders ADD COLUMN x int /* not users */": true,
		"ALTER TABLE orders ADD COLUMN x int":                 true, // may rename a table: parsed
		"SELECT 1 FROM orders":                                false,
	} {
		plan, err := p.Plan(context.Background(), "app", sql)
		if err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
		if plan.DDL != want {
			t.Errorf("%s: DDL=%v, want %v", sql, plan.DDL, want)
		}
	}
}
