package integration

import (
	"testing"

	"github.com/jackc/pgx/v5"
)

// Writes that use no key — NULL, a copy between columns under the same
// key, COPY FROM — never reach an Encrypt, so the sessions check them
// against the access policy themselves: a principal may not blank or
// overwrite a column it may not write, nor copy out of one it may not
// read in plaintext. The row inserted by app stays as it was.

// TestPGAccessKeylessWrites is the PostgreSQL side.
func TestPGAccessKeylessWrites(t *testing.T) {
	e, u := startPGAccess(t)
	ctx := testCtx(t)
	app := pgAs(t, e, u.app, pgx.QueryExecModeSimpleProtocol)
	if _, err := app.Exec(ctx, `INSERT INTO users VALUES (1, 'ann', '123-45-6789', 5000, '1980-02-03')`); err != nil {
		t.Fatalf("app insert: %v", err)
	}
	for _, m := range pgModes {
		rep := pgAs(t, e, u.reporting, m.mode)
		_, err := rep.Exec(ctx, `UPDATE users SET ssn = NULL WHERE id = 1`)
		wantPGDenied(t, "reporting blanks ssn ("+m.name+")", err, "users.ssn", "access.rules[0]")
		_, err = rep.Exec(ctx, `UPDATE users SET salary = DEFAULT WHERE id = 1`)
		wantPGDenied(t, "reporting resets salary ("+m.name+")", err, "users.salary", "reporting-pay")
		ing := pgAs(t, e, u.ingest, m.mode)
		_, err = ing.Exec(ctx, `UPDATE users SET ssn = ssn WHERE id = 1`)
		wantPGDenied(t, "ingest copies ssn it may not read ("+m.name+")", err, "users.ssn", "access.rules[2]")
	}
	rep := pgAs(t, e, u.reporting, pgx.QueryExecModeSimpleProtocol)
	_, err := rep.Exec(ctx, "COPY users (id, ssn) FROM STDIN")
	wantPGDenied(t, "reporting COPY FROM into ssn", err, "users.ssn", "access.rules[0]")
	// The client's own value in an upsert is not a read of a stored one.
	ing := pgAs(t, e, u.ingest, pgx.QueryExecModeCacheStatement)
	if _, err := ing.Exec(ctx, `INSERT INTO users (id, name, ssn) VALUES (2, 'bo', $1) ON CONFLICT (id) DO UPDATE SET ssn = EXCLUDED.ssn`, "987-65-4321"); err != nil {
		t.Fatalf("ingest upsert with EXCLUDED.ssn: %v", err)
	}
	// app may do all of it.
	if _, err := app.Exec(ctx, `UPDATE users SET ssn = ssn, salary = NULL WHERE id = 1`); err != nil {
		t.Fatalf("app keyless writes: %v", err)
	}
	var ssn string
	if err := app.QueryRow(ctx, `SELECT ssn FROM users WHERE id = 1`).Scan(&ssn); err != nil || ssn != "123-45-6789" {
		t.Fatalf("ssn after the refused writes: %q %v", ssn, err)
	}
}

// TestMySQLAccessKeylessWrites is the MariaDB side.
func TestMySQLAccessKeylessWrites(t *testing.T) {
	e, u := startMyAccess(t)
	ctx := testCtx(t)
	app := myAs(t, e, u.app)
	if _, err := app.ExecContext(ctx, `INSERT INTO users (id, name, ssn, salary, born) VALUES (1, 'ann', '123-45-6789', 5000, '1980-02-03')`); err != nil {
		t.Fatalf("app insert: %v", err)
	}
	rep := myAs(t, e, u.reporting)
	for _, p := range myProtocols {
		_, err := rep.ExecContext(ctx, `UPDATE users SET ssn = NULL WHERE `+p.cond, p.args...)
		wantMyDenied(t, "reporting blanks ssn ("+p.name+")", err, "users.ssn", "access.rules[0]")
	}
	ing := myAs(t, e, u.ingest)
	_, err := ing.ExecContext(ctx, `UPDATE users SET ssn = ssn WHERE id = 1`)
	wantMyDenied(t, "ingest copies ssn it may not read", err, "users.ssn", "access.rules[2]")
	if _, err := ing.ExecContext(ctx, `INSERT INTO users (id, name, ssn) VALUES (2, 'bo', '987-65-4321') ON DUPLICATE KEY UPDATE ssn = VALUES(ssn)`); err != nil {
		t.Fatalf("ingest upsert with VALUES(ssn): %v", err)
	}
	if _, err := app.ExecContext(ctx, `UPDATE users SET ssn = ssn, salary = NULL WHERE id = 1`); err != nil {
		t.Fatalf("app keyless writes: %v", err)
	}
	var ssn string
	if err := app.QueryRowContext(ctx, `SELECT ssn FROM users WHERE id = 1`).Scan(&ssn); err != nil || ssn != "123-45-6789" {
		t.Fatalf("ssn after the refused writes: %q %v", ssn, err)
	}
}
