package pgsql_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/dbproxy/dbproxy/rules"
	"github.com/dbproxy/dbproxy/sqlplan"
	"github.com/dbproxy/dbproxy/sqlplan/pgsql"
)

func TestNew(t *testing.T) {
	set, _ := rules.New(rules.DialectPostgres, testSpecs())
	my, _ := rules.New(rules.DialectMySQL, testSpecs()[:1])
	empty, _ := rules.New(rules.DialectPostgres, nil)
	tests := []struct {
		name string
		opts pgsql.Options
		ok   bool
	}{
		{"no rules", pgsql.Options{Catalog: newFakeCatalog()}, false},
		{"mysql rules", pgsql.Options{Rules: my, Catalog: newFakeCatalog()}, false},
		{"rules without catalog", pgsql.Options{Rules: set}, false},
		{"empty rules need no catalog", pgsql.Options{Rules: empty}, true},
		{"rules of another database need no catalog", pgsql.Options{Rules: oneTextRule(t, rules.ModeRandomized, "x", "", "t", "c"), Database: "y"}, true},
		{"ok", pgsql.Options{Rules: set, Catalog: newFakeCatalog()}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := pgsql.New(tt.opts)
			if (err == nil) != tt.ok {
				t.Fatalf("New: %v, want ok=%v", err, tt.ok)
			}
		})
	}
}

func TestPassthroughSkipsParsing(t *testing.T) {
	ctx := context.Background()
	cat := newFakeCatalog()
	p := newPlanner(t, cat)
	for _, sql := range []string{
		"SELECT * FROM items WHERE id = $1",
		"SELECT 1",
		"this is not SQL at all (",
		"INSERT INTO items VALUES (1, 'x', 2)",
		"",
	} {
		pl, err := p.Plan(ctx, sql, "")
		if err != nil {
			t.Fatalf("Plan(%q): %v", sql, err)
		}
		if !pl.Passthrough() || pl.HasEdits() || len(pl.Statements) != 0 || len(pl.Params) != 0 {
			t.Errorf("Plan(%q) is not a bare passthrough plan: %+v", sql, pl)
		}
	}
	if n := cat.calls.Load(); n != 0 {
		t.Errorf("catalog called %d times for statements that cannot touch an encrypted table", n)
	}
	t.Run("invalid SQL behind a session keyword is left to the server", func(t *testing.T) {
		pl, err := p.Plan(ctx, "EXECUTE", "")
		if err != nil || !pl.Passthrough() {
			t.Fatalf("Plan = %+v, %v", pl, err)
		}
	})
	t.Run("empty rules", func(t *testing.T) {
		empty, _ := rules.New(rules.DialectPostgres, nil)
		p, err := pgsql.New(pgsql.Options{Rules: empty})
		if err != nil {
			t.Fatal(err)
		}
		pl, err := p.Plan(ctx, "EXECUTE x('users')", "")
		if err != nil || !pl.Passthrough() {
			t.Fatalf("Plan = %+v, %v", pl, err)
		}
	})
}

func TestPlanCache(t *testing.T) {
	ctx := context.Background()
	cat := newFakeCatalog()
	set, _ := rules.New(rules.DialectPostgres, testSpecs())
	p, err := pgsql.New(pgsql.Options{Rules: set, Database: "app", Catalog: cat, CacheSize: 2, MaxCachedSQL: 100})
	if err != nil {
		t.Fatal(err)
	}
	sql := "INSERT INTO users VALUES (1, $1)"
	a, err := p.Plan(ctx, sql, "")
	if err != nil {
		t.Fatal(err)
	}
	calls := cat.calls.Load()
	if calls == 0 {
		t.Fatal("the first plan did not use the catalog")
	}
	b, _ := p.Plan(ctx, sql, "")
	if a != b || cat.calls.Load() != calls {
		t.Fatal("second Plan of the same SQL was not a cache hit")
	}
	c, _ := p.Plan(ctx, sql, "app, public")
	if c == a {
		t.Fatal("search_path is not part of the cache key")
	}
	p.Purge()
	d, _ := p.Plan(ctx, sql, "")
	if d == a {
		t.Fatal("Purge kept the plan")
	}
	long := "SELECT * FROM users WHERE email = $1 AND id IN (" + strings.Repeat("1, ", 50) + "1)"
	e1, _ := p.Plan(ctx, long, "")
	e2, _ := p.Plan(ctx, long, "")
	if e1 == e2 {
		t.Fatal("SQL longer than MaxCachedSQL was cached")
	}
	t.Run("refusals are not cached", func(t *testing.T) {
		cat := newFakeCatalog()
		cat.user = "bob"
		p := newPlanner(t, cat)
		if _, err := p.Plan(ctx, "SELECT * FROM users", ""); err == nil {
			t.Fatal("bob.users shadowing public.users was not refused")
		}
		cat.user = "carol"
		if _, err := p.Plan(ctx, "SELECT * FROM users", ""); err != nil {
			t.Fatalf("refusal was cached: %v", err)
		}
	})
}

// TestErrorsCarryNoValues plans refused statements full of a marker value
// and checks that no error, reason or column mentions it.
func TestErrorsCarryNoValues(t *testing.T) {
	const v = "Sup3rSecretValue"
	p := newPlanner(t, nil)
	var sess pgsql.Prepared
	for _, sql := range []string{
		"SELECT * FROM users WHERE email LIKE '" + v + "%'",
		"SELECT * FROM users WHERE ssn = '" + v + "'",
		"SELECT * FROM users WHERE age > '" + v + "'",
		"INSERT INTO users (email) VALUES (lower('" + v + "'))",
		"INSERT INTO users (age) VALUES ('" + v + "')",
		"INSERT INTO users (email) VALUES ('" + v + "'",
		"INSERT INTO users (email) VALUES ('" + v + "' " + v,
		"INSERT INTO users (email) VALUES ($$" + v,
		"SELECT * FROM users WHERE email = '" + v + "' AND",
		"UPDATE users SET email = '" + v + "' || name",
		"SELECT * FROM users WHERE email = '" + v + "'::int",
		"SELECT * FROM users WHERE email = ANY('{" + v + "')",
		"DO $$ BEGIN INSERT INTO users(email) VALUES ('" + v + "'); END $$",
		"EXECUTE unknown('" + v + "')",
		"SELECT * FROM docs WHERE born = '" + v + "'",
		"COPY (SELECT '" + v + "' || email FROM users) TO STDOUT",
	} {
		pl, err := p.Plan(context.Background(), sql, "")
		if err == nil {
			_, err = rewrite(t, pl, sql, &sess)
		}
		if err == nil {
			t.Errorf("%q was not refused", sql)
			continue
		}
		var r *sqlplan.Refusal
		if !errors.As(err, &r) {
			t.Errorf("%q: %T %v is not a Refusal", sql, err, err)
		}
		if strings.Contains(err.Error(), v) || strings.Contains(strings.ToLower(err.Error()), strings.ToLower(v)) {
			t.Errorf("%q: error contains the value: %s", sql, err)
		}
	}
}

func TestRewriteErrors(t *testing.T) {
	ctx := context.Background()
	p := newPlanner(t, nil)
	sql := "SELECT * FROM users WHERE email = 'x'"
	pl, err := p.Plan(ctx, sql, "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pl.Rewrite(ctx, nil, sql, pgsql.Env{}); err == nil {
		t.Error("Rewrite without an Encrypter succeeded")
	}
	if _, err := pl.Rewrite(ctx, nil, "SELECT 1", pgsql.Env{Encrypter: fakeEncrypter{}}); err == nil {
		t.Error("Rewrite with a shorter SQL string succeeded")
	}
	t.Run("parameters only need no encrypter", func(t *testing.T) {
		sql := "SELECT * FROM users WHERE email = $1 AND id = $2"
		pl, err := p.Plan(ctx, sql, "")
		if err != nil {
			t.Fatal(err)
		}
		out, err := pl.Rewrite(ctx, []byte("prefix:"), sql, pgsql.Env{})
		if err != nil {
			t.Fatal(err)
		}
		if string(out) != "prefix:SELECT * FROM users WHERE (email = ANY($1::bytea[])) AND id = $2" {
			t.Fatalf("got %s", out)
		}
	})
	t.Run("encrypter failure", func(t *testing.T) {
		_, err := pl.Rewrite(ctx, nil, sql, pgsql.Env{Encrypter: failingEncrypter{}})
		if err == nil || !strings.Contains(err.Error(), "key unavailable") {
			t.Fatalf("got %v", err)
		}
	})
}

type failingEncrypter struct{}

func (failingEncrypter) AppendStore(context.Context, []byte, *rules.ColumnRule, []byte) ([]byte, error) {
	return nil, errors.New("key unavailable")
}

func (failingEncrypter) AppendMatch(context.Context, []byte, [][]byte, *rules.ColumnRule, []byte) ([]byte, [][]byte, error) {
	return nil, nil, errors.New("key unavailable")
}

// TestPlanConcurrent shares one Planner between goroutines (run with
// -race): plans, cache hits, purges and rewrites of shared plans.
func TestPlanConcurrent(t *testing.T) {
	p := newPlanner(t, nil)
	sqls := []string{
		"SELECT * FROM users WHERE email = $1",
		"INSERT INTO users VALUES (1, 'a@x')",
		"SELECT * FROM users u JOIN admins a ON a.email = u.email WHERE u.email IN ('a', 'b')",
		"COPY users FROM STDIN",
		"SELECT 1",
	}
	done := make(chan error)
	for g := range 4 {
		go func() {
			var err error
			for i := 0; i < 50 && err == nil; i++ {
				sql := sqls[(g+i)%len(sqls)]
				var pl *pgsql.Plan
				if pl, err = p.Plan(context.Background(), sql, ""); err == nil {
					_, err = pl.Rewrite(context.Background(), nil, sql, pgsql.Env{Encrypter: fakeEncrypter{}})
				}
				if i%17 == 0 {
					p.Purge()
				}
			}
			done <- err
		}()
	}
	for range 4 {
		if err := <-done; err != nil {
			t.Error(err)
		}
	}
}
