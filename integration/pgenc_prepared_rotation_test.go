package integration

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
)

// TestPGEncPreparedLookupAcrossRotation: a lookup prepared (named, cached by
// pgx) before `keys rotate` still finds the rows written under every live
// version afterwards — the proxy prepares it again with one more slot — and
// its negation still excludes them. The statement the database holds
// compares with a bytea parameter while one version is live, then with an
// IN list of array elements; its generic plan looks either up in the index.
func TestPGEncPreparedLookupAcrossRotation(t *testing.T) {
	e := startEncProxy(t, usersDDL+`; CREATE INDEX ON users (email)`, usersSpecs())
	ctx := testCtx(t)
	c := e.connectMode(t, pgx.QueryExecModeCacheStatement)
	const lookup = `SELECT name FROM users WHERE email = $1 ORDER BY id`
	const others = `SELECT count(*) FROM users WHERE email <> $1`
	names := func() []string {
		t.Helper()
		rows, err := c.Query(ctx, lookup, "old@example.com")
		if err != nil {
			t.Fatal(err)
		}
		got, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	count := func() int {
		t.Helper()
		var n int
		if err := c.QueryRow(ctx, others, "old@example.com").Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	if _, err := c.Exec(ctx, `INSERT INTO users (email, name) VALUES ($1, $2), ($3, $4)`,
		"old@example.com", "v1", "other@example.com", "other"); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 8; i++ { // past PostgreSQL's five custom plans
		if got := names(); strings.Join(got, ",") != "v1" {
			t.Fatalf("lookup before rotation: %q", got)
		}
		if n := count(); n != 1 {
			t.Fatalf("<> before rotation: %d, want 1", n)
		}
	}
	upstreamSQL := func() (text, types string) {
		t.Helper()
		if err := c.QueryRow(ctx, `SELECT statement, parameter_types::text FROM pg_prepared_statements WHERE statement LIKE '%ORDER BY id%' AND statement LIKE 'SELECT name%'`,
			pgx.QueryExecModeSimpleProtocol).Scan(&text, &types); err != nil {
			t.Fatal(err)
		}
		return text, types
	}
	before, types := upstreamSQL()
	if !strings.Contains(before, "email = $1::bytea") || types != "{bytea}" {
		t.Fatalf("statement prepared upstream for one key version: %s, parameters %s", before, types)
	}
	// The generic plan of that statement uses the index.
	if _, err := e.direct.Exec(ctx, `INSERT INTO users (email) SELECT sha256(i::text::bytea) FROM generate_series(1, 2000) i; ANALYZE users`); err != nil {
		t.Fatal(err)
	}
	plan := explainGeneric(t, e.direct, before, "bytea", `'\x00'::bytea`)
	if !strings.Contains(plan, "Index") {
		t.Errorf("generic plan of %s is not an index lookup:\n%s", before, plan)
	}

	if _, err := e.mgr.Rotate(ctx, "users_email"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Exec(ctx, `INSERT INTO users (email, name) VALUES ($1, $2)`, "old@example.com", "v2"); err != nil {
		t.Fatal(err)
	}
	if got := names(); strings.Join(got, ",") != "v1,v2" {
		t.Fatalf("prepared lookup after rotation found %q, want both versions' rows", got)
	}
	if n := count(); n != 2001 {
		t.Fatalf("<> after rotation: %d, want 2001", n)
	}
	after, types := upstreamSQL()
	if !strings.Contains(after, "email IN ((($1::bytea[])[1]), (($1::bytea[])[2]))") || types != "{bytea[]}" {
		t.Fatalf("statement not prepared again for two key versions: %s, parameters %s", after, types)
	}
	if plan := explainGeneric(t, e.direct, after, "bytea[]", `ARRAY['\x00'::bytea, '\x01'::bytea]`); !strings.Contains(plan, "Index") {
		t.Errorf("generic plan of %s is not an index lookup:\n%s", after, plan)
	}
	// In a transaction and a batch too.
	tx, err := c.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	b := &pgx.Batch{}
	b.Queue(lookup, "old@example.com")
	b.Queue(others, "old@example.com")
	br := tx.SendBatch(ctx, b)
	rows, err := br.Query()
	if err != nil {
		t.Fatal(err)
	}
	got, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil || strings.Join(got, ",") != "v1,v2" {
		t.Fatalf("batched lookup: %q %v", got, err)
	}
	var n int
	if err := br.QueryRow().Scan(&n); err != nil || n != 2001 {
		t.Fatalf("batched <>: %d %v", n, err)
	}
	if err := br.Close(); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	// The filler rows were written directly, not as ciphertexts.
	if _, err := e.direct.Exec(ctx, `DELETE FROM users WHERE name IS NULL`); err != nil {
		t.Fatal(err)
	}
	e.checkAtRest(t, []string{"old@example.com", "other@example.com", "v1", "v2"})
}

// explainGeneric prepares sql (one parameter of type typ) on a direct
// connection and returns the text of its generic plan for the argument
// arg (SQL).
func explainGeneric(t *testing.T, direct *pgx.Conn, sql, typ, arg string) string {
	t.Helper()
	ctx := context.Background()
	name := fmt.Sprintf("explain_%d", len(sql))
	if _, err := direct.Exec(ctx, fmt.Sprintf("PREPARE %s (%s) AS %s", name, typ, sql)); err != nil {
		t.Fatal(err)
	}
	defer direct.Exec(ctx, "DEALLOCATE "+name) //nolint:errcheck
	if _, err := direct.Exec(ctx, `SET plan_cache_mode = force_generic_plan`); err != nil {
		t.Fatal(err)
	}
	rows, err := direct.Query(ctx, fmt.Sprintf(`EXPLAIN EXECUTE %s (%s)`, name, arg), pgx.QueryExecModeSimpleProtocol)
	if err != nil {
		t.Fatal(err)
	}
	lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	return strings.Join(lines, "\n")
}
