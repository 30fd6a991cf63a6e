package integration

import (
	"context"
	"fmt"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/dbproxy/dbproxy/rules"
	"github.com/dbproxy/dbproxy/value"
)

// TestPGEncSearchPathSessionState: the proxy follows search_path changes
// that no SET statement spells out — a DO block, a prepared set_config run
// by EXECUTE or by an extended-protocol Execute in a later batch — and lets
// through what only reads it or sets something else. tenant.accounts.email
// is encrypted; public.accounts is a plaintext table of the same shape.
func TestPGEncSearchPathSessionState(t *testing.T) {
	e, ctx := startTenantAccounts(t)
	// inPublic reports whether email landed in public.accounts in plaintext.
	inPublic := func(email string) bool {
		t.Helper()
		var n int
		if err := e.direct.QueryRow(ctx, `SELECT count(*) FROM public.accounts WHERE email = $1::text::bytea`, email).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n == 1
	}
	c := e.connectMode(t, pgx.QueryExecModeSimpleProtocol)
	exec := func(sql string) {
		t.Helper()
		if _, err := c.PgConn().Exec(ctx, sql).ReadAll(); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	insert := func(email string) {
		t.Helper()
		exec(`INSERT INTO accounts (email) VALUES ('` + email + `')`)
	}
	reset := func() {
		t.Helper()
		exec(`SET search_path TO tenant, public`)
		insert("probe@example.com") // the proxy knows the path again
	}

	reset()
	// Reading search_path, or setting something else, in a string that
	// needs a plan.
	exec(`SELECT current_setting('search_path'), email FROM accounts`)
	exec(`SET statement_timeout = 0; INSERT INTO accounts (email) VALUES ('timeout@example.com')`)
	if inPublic("timeout@example.com") {
		t.Fatal("a row went to public.accounts after SET statement_timeout")
	}
	// A change at the end of a string is fine: nothing runs after it.
	exec(`SELECT email FROM accounts; SET search_path TO tenant, public`)

	// A DO block whose setting name no word of the text spells (DO with
	// EXECUTE is refused by the planner unless dynamic SQL is allowed).
	exec(`DO $$BEGIN PERFORM set_config('search' || '_path', 'public', false); END$$`)
	insert("do@example.com")
	if !inPublic("do@example.com") {
		t.Fatal("after DO set search_path to public the row went elsewhere")
	}

	// SQL PREPARE of set_config, EXECUTE in a later string.
	reset()
	exec(`PREPARE sp AS SELECT set_config('search_path', 'public', false)`)
	insert("before-execute@example.com")
	if inPublic("before-execute@example.com") {
		t.Fatal("PREPARE alone changed where the row went")
	}
	exec(`EXECUTE sp`)
	insert("execute@example.com")
	if !inPublic("execute@example.com") {
		t.Fatal("after EXECUTE of set_config the row went elsewhere")
	}

	// Extended protocol: Parse in one batch, Execute in a later one.
	reset()
	cc := e.connectMode(t, pgx.QueryExecModeCacheStatement)
	if _, err := cc.Prepare(ctx, "spx", `SELECT set_config('search_path', $1, false)`); err != nil {
		t.Fatal(err)
	}
	if _, err := cc.Exec(ctx, `INSERT INTO accounts (email) VALUES ($1)`, "x-before@example.com"); err != nil {
		t.Fatal(err)
	}
	if _, err := cc.Exec(ctx, "spx", "public"); err != nil {
		t.Fatal(err)
	}
	if _, err := cc.Exec(ctx, `INSERT INTO accounts (email) VALUES ($1)`, "x-after@example.com"); err != nil {
		t.Fatal(err)
	}
	if inPublic("x-before@example.com") || !inPublic("x-after@example.com") {
		t.Fatalf("extended protocol: before in public %v, after in public %v (want false, true)",
			inPublic("x-before@example.com"), inPublic("x-after@example.com"))
	}
}

// startTenantAccounts starts a proxy over tenant.accounts (email
// encrypted) and public.accounts (plaintext, the same shape), with the
// role's search_path set to tenant, public (which the proxy cannot see in
// the startup packet).
func startTenantAccounts(t *testing.T) (*encEnv, context.Context) {
	t.Helper()
	specs := []rules.Spec{{Schema: "tenant", Table: "accounts", Column: "email", Mode: rules.ModeDeterministic, Type: value.TypeText, Key: "tenant_email"}}
	e := startEncProxy(t, `CREATE SCHEMA tenant; CREATE TABLE tenant.accounts (id serial, email bytea); CREATE TABLE public.accounts (id serial, email bytea)`, specs)
	ctx := testCtx(t)
	if _, err := e.direct.Exec(ctx, fmt.Sprintf(`ALTER ROLE %s SET search_path = tenant, public`, pgx.Identifier{e.pg.User}.Sanitize())); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_, _ = e.direct.Exec(context.Background(), fmt.Sprintf(`ALTER ROLE %s RESET search_path`, pgx.Identifier{e.pg.User}.Sanitize()))
	})
	return e, ctx
}
