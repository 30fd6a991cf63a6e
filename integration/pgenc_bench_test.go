package integration

import (
	"context"
	"fmt"
	"testing"

	"github.com/jackc/pgx/v5"
)

// BenchmarkPGEncPointSelect looks a user up by email through the encrypting
// proxy (simple and extended protocol): on a table whose email, name and salary are
// encrypted (email deterministic), and on the same table in plaintext.
//
//	go test -run XXX -bench PGEncPointSelect -benchmem ./integration/
func BenchmarkPGEncPointSelect(b *testing.B) {
	e := startEncProxy(b, usersDDL+`; CREATE TABLE plain_users (id bigserial PRIMARY KEY, email text, name text, salary bigint, note text);
CREATE INDEX ON users (email); CREATE INDEX ON plain_users (email)`, usersSpecs())
	ctx := context.Background()
	c := e.connectMode(b, pgx.QueryExecModeCacheStatement)
	const n = 1000
	for _, table := range []string{"users", "plain_users"} {
		for i := range n {
			if _, err := c.Exec(ctx, fmt.Sprintf(`INSERT INTO %s (email, name, salary, note) VALUES ($1, $2, $3, 'n')`, table),
				fmt.Sprintf("user%d@example.com", i), fmt.Sprintf("User %d", i), int64(i)); err != nil {
				b.Fatal(err)
			}
		}
	}
	if _, err := e.direct.Exec(ctx, `ANALYZE`); err != nil {
		b.Fatal(err)
	}
	for _, run := range []struct {
		table string
		mode  pgx.QueryExecMode
	}{
		{"users", pgx.QueryExecModeSimpleProtocol}, {"plain_users", pgx.QueryExecModeSimpleProtocol},
		{"users", pgx.QueryExecModeCacheStatement}, {"plain_users", pgx.QueryExecModeCacheStatement},
	} {
		table := run.table
		c := e.connectMode(b, run.mode)
		b.Run(run.mode.String()+"/"+table, func(b *testing.B) {
			q := fmt.Sprintf(`SELECT id, name, salary FROM %s WHERE email = $1`, table)
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				var id, salary int64
				var name string
				if err := c.QueryRow(ctx, q, fmt.Sprintf("user%d@example.com", i%n)).Scan(&id, &name, &salary); err != nil {
					b.Fatal(err)
				}
				if salary != int64(i%n) {
					b.Fatalf("salary %d", salary)
				}
				i++
			}
		})
	}
}
