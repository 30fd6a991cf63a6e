package integration

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/dbproxy/dbproxy/crypto"
	"github.com/dbproxy/dbproxy/rules"
	"github.com/dbproxy/dbproxy/value"
)

// TestPGEncSearchPath: unqualified names resolve through the session's
// real search_path — the role's setting, SET, SET LOCAL, ROLLBACK — so a
// table called accounts in an encrypted schema is never mistaken for the
// plaintext accounts of another schema. tenant.accounts.email is
// encrypted; public.accounts is a plaintext table of the same shape.
func TestPGEncSearchPath(t *testing.T) {
	e, ctx := startTenantAccounts(t) // the role's own default search_path: tenant, public
	// where reports which schema holds the row of email and whether it is
	// stored encrypted.
	where := func(email string) string {
		t.Helper()
		for _, schema := range []string{"tenant", "public"} {
			rows, err := e.direct.Query(ctx, fmt.Sprintf(`SELECT email FROM %s.accounts`, schema))
			if err != nil {
				t.Fatal(err)
			}
			vals, err := pgx.CollectRows(rows, pgx.RowTo[[]byte])
			if err != nil {
				t.Fatal(err)
			}
			for _, v := range vals {
				if string(v) == email {
					return schema + " plaintext"
				}
			}
		}
		var n int
		if err := e.direct.QueryRow(ctx, `SELECT count(*) FROM tenant.accounts`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return fmt.Sprintf("tenant encrypted (%d rows)", n)
	}
	for _, mode := range []pgx.QueryExecMode{pgx.QueryExecModeSimpleProtocol, pgx.QueryExecModeCacheStatement} {
		t.Run(mode.String(), func(t *testing.T) {
			for _, stmt := range []string{`DELETE FROM tenant.accounts`, `DELETE FROM public.accounts`} {
				if _, err := e.direct.Exec(ctx, stmt); err != nil {
					t.Fatal(err)
				}
			}
			c := e.connectMode(t, mode)
			insert := func(email string) {
				t.Helper()
				if _, err := c.Exec(ctx, `INSERT INTO accounts (email) VALUES ($1)`, email); err != nil {
					t.Fatalf("insert %s: %v", email, err)
				}
			}
			insert("role@example.com") // the role's search_path: tenant first
			if got := where("role@example.com"); got != "tenant encrypted (1 rows)" {
				t.Fatalf("under the role's search_path the row went to %s", got)
			}
			var email string
			if err := c.QueryRow(ctx, `SELECT email FROM accounts WHERE email = $1`, "role@example.com").Scan(&email); err != nil || email != "role@example.com" {
				t.Fatalf("lookup under the role's search_path: %q %v", email, err)
			}

			if _, err := c.Exec(ctx, `SET search_path TO public`); err != nil {
				t.Fatalf("SET search_path: %v", err)
			}
			insert("public@example.com") // public.accounts is not encrypted
			if got := where("public@example.com"); got != "public plaintext" {
				t.Fatalf("after SET search_path TO public the row went to %s", got)
			}

			tx, err := c.Begin(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := tx.Exec(ctx, `SET LOCAL search_path TO tenant`); err != nil {
				t.Fatal(err)
			}
			if _, err := tx.Exec(ctx, `INSERT INTO accounts (email) VALUES ($1)`, "local@example.com"); err != nil {
				t.Fatal(err)
			}
			if err := tx.Commit(ctx); err != nil {
				t.Fatal(err)
			}
			if got := where("local@example.com"); got != "tenant encrypted (2 rows)" {
				t.Fatalf("under SET LOCAL the row went to %s", got)
			}
			insert("after-commit@example.com") // SET LOCAL ended with the transaction
			if got := where("after-commit@example.com"); got != "public plaintext" {
				t.Fatalf("after the SET LOCAL transaction the row went to %s", got)
			}

			tx, err = c.Begin(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := tx.Exec(ctx, `SET search_path TO tenant`); err != nil {
				t.Fatal(err)
			}
			if err := tx.Rollback(ctx); err != nil {
				t.Fatal(err)
			}
			insert("after-rollback@example.com") // the SET was rolled back
			if got := where("after-rollback@example.com"); got != "public plaintext" {
				t.Fatalf("after a rolled-back SET the row went to %s", got)
			}

			// Changing search_path and using it in one string is refused.
			_, err = c.PgConn().Exec(ctx, `SET search_path TO tenant; INSERT INTO accounts (email) VALUES ('mixed@example.com')`).ReadAll()
			var pgErr *pgconn.PgError
			if !errors.As(err, &pgErr) || pgErr.Code != "0A000" {
				t.Fatalf("SET search_path with an INSERT in one string: %v", err)
			}
			if got := where("mixed@example.com"); got != "tenant encrypted (2 rows)" {
				t.Fatalf("refused string wrote something: %s", got)
			}
			// A SQL-level PREPARE made under another search_path is not
			// EXECUTEd: the server would resolve its table again.
			if _, err := c.PgConn().Exec(ctx, `PREPARE insacc(bytea) AS INSERT INTO accounts (email) VALUES ($1)`).ReadAll(); err != nil {
				t.Fatal(err)
			}
			if _, err := c.PgConn().Exec(ctx, `SET search_path TO tenant`).ReadAll(); err != nil {
				t.Fatal(err)
			}
			_, err = c.PgConn().Exec(ctx, `EXECUTE insacc('exec@example.com')`).ReadAll()
			if !errors.As(err, &pgErr) || pgErr.Code != "0A000" {
				t.Fatalf("EXECUTE of a statement prepared under another search_path: %v", err)
			}
			if got := where("exec@example.com"); got != "tenant encrypted (2 rows)" {
				t.Fatalf("refused EXECUTE wrote something: %s", got)
			}
			for _, ct := range e.rawColumn(t, "accounts", "email") { // public.accounts under the direct connection's path
				if crypto.IsCiphertext(ct) {
					t.Errorf("public.accounts holds a ciphertext")
				}
			}
		})
	}
}

// TestPGEncSearchPathCommitInString: COMMIT (or END) ends the transaction
// that ran SET LOCAL search_path, so a statement later in the same string
// runs under the role's default path again, not under the path the proxy
// knew. Such a string is refused; nothing lands in the encrypted table in
// plaintext.
func TestPGEncSearchPathCommitInString(t *testing.T) {
	e, ctx := startTenantAccounts(t)
	for _, end := range []string{"COMMIT", "END", "SELECT 1; COMMIT", "ABORT"} {
		c := e.connectMode(t, pgx.QueryExecModeSimpleProtocol)
		for _, q := range []string{"BEGIN", "SET LOCAL search_path TO public"} {
			if _, err := c.Exec(ctx, q); err != nil {
				t.Fatalf("%s: %v", q, err)
			}
		}
		_, err := c.PgConn().Exec(ctx, end+`; INSERT INTO accounts (email) VALUES ('commit-leak@example.com')`).ReadAll()
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) || pgErr.Code != "0A000" {
			t.Errorf("%s; INSERT in one string after SET LOCAL: %v, want a 0A000 refusal", end, err)
		}
		_ = c.Close(ctx)
	}
	var n int
	if err := e.direct.QueryRow(ctx, `SELECT count(*) FROM tenant.accounts WHERE email = 'commit-leak@example.com'::bytea`).Scan(&n); err != nil || n != 0 {
		t.Fatalf("tenant.accounts holds %d plaintext rows (%v)", n, err)
	}
}

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
