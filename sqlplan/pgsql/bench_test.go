package pgsql_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/dbproxy/dbproxy/sqlplan/pgsql"
)

var benchSQL = []struct{ name, sql string }{
	{"point-select", "SELECT id, email, ssn, age FROM users WHERE email = $1"},
	{"insert", "INSERT INTO users (id, email, ssn, age, name) VALUES ($1, $2, $3, $4, $5)"},
	{"join-subquery", "SELECT u.id, a.email FROM users u JOIN admins a ON a.email = u.email WHERE u.id IN (SELECT id FROM orders WHERE total > $1) AND u.email = 'x@example.com'"},
}

// BenchmarkPlan measures Plan on a cache hit, on a miss (parse and analyze)
// and on a statement the pre-filter skips.
func BenchmarkPlan(b *testing.B) {
	ctx := context.Background()
	set := mustRules(b, testSpecs()...)
	hit := plannerWith(b, pgsql.Options{Rules: set, Database: "app"})
	miss := plannerWith(b, pgsql.Options{Rules: set, Database: "app", MaxCachedSQL: 1})
	for _, bc := range benchSQL {
		b.Run("hit/"+bc.name, func(b *testing.B) {
			if _, err := hit.Plan(ctx, bc.sql, ""); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := hit.Plan(ctx, bc.sql, ""); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run("miss/"+bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := miss.Plan(ctx, bc.sql, ""); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	skip := "SELECT o.id, o.total FROM invoices o WHERE o.customer_id = $1 AND o.created_at > now() - interval '1 day' ORDER BY o.total DESC LIMIT 20"
	b.Run("skip", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			pl, err := hit.Plan(ctx, skip, "")
			if err != nil || !pl.Passthrough() {
				b.Fatal("not skipped")
			}
		}
	})
	b.Run("maytouch-skip", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if set.MayTouch(skip) {
				b.Fatal("touched")
			}
		}
	})
}

// BenchmarkRewrite measures rendering a cached plan (with a trivial
// encrypter, so that only the planner's own cost shows).
func BenchmarkRewrite(b *testing.B) {
	ctx := context.Background()
	p := newPlanner(b, nil)
	for _, bc := range []struct{ name, sql string }{
		{"params-only", benchSQL[0].sql},
		{"literal-lookup", "SELECT id, email FROM users WHERE email = 'a@example.com'"},
		{"literal-insert", "INSERT INTO users (id, email, ssn, age) VALUES (1, 'a@example.com', '123-45-6789', 42)"},
	} {
		pl, err := p.Plan(ctx, bc.sql, "")
		if err != nil {
			b.Fatal(err)
		}
		env := pgsql.Env{Encrypter: fakeEncrypter{versions: 1}}
		buf := make([]byte, 0, 1024)
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := pl.Rewrite(ctx, buf[:0], bc.sql, env); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkPlanLiterals plans simple-protocol statements whose constants
// change every iteration (as pgbench -M simple or an ORM inlining values
// sends them): 4096 distinct texts, more than the cache holds, so a cache
// keyed by the exact text always misses, while a normalized key hits.
func BenchmarkPlanLiterals(b *testing.B) {
	ctx := context.Background()
	for _, bc := range []struct{ name, format string }{
		{"insert", "INSERT INTO users (id, email, ssn, salary) VALUES (%d, 'u%d@example.com', '%03d-45-6789', %d)"},
		{"select", "SELECT id, email, ssn FROM users WHERE email = 'u%d@example.com' AND id > %d"},
	} {
		sqls := make([]string, 4096)
		for i := range sqls {
			switch bc.name {
			case "insert":
				sqls[i] = fmt.Sprintf(bc.format, i, i, i%1000, 1000+i)
			default:
				sqls[i] = fmt.Sprintf(bc.format, i, i)
			}
		}
		p := newPlanner(b, nil)
		env := pgsql.Env{Encrypter: fakeEncrypter{versions: 1}}
		buf := make([]byte, 0, 1024)
		b.Run(bc.name, func(b *testing.B) {
			if _, err := p.Plan(ctx, sqls[0], ""); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				i++
				if _, err := p.Plan(ctx, sqls[i%len(sqls)], ""); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(bc.name+"+rewrite", func(b *testing.B) {
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				i++
				sql := sqls[i%len(sqls)]
				pl, err := p.Plan(ctx, sql, "")
				if err != nil {
					b.Fatal(err)
				}
				if buf, err = pl.Rewrite(ctx, buf[:0], sql, env); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
