package integration

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/dbproxy/dbproxy/rules"
	"github.com/dbproxy/dbproxy/schemaguard"
	"github.com/dbproxy/dbproxy/value"
)

// pgTargets turns rule specs into guard targets.
func guardTargets(specs []rules.Spec) []schemaguard.Target {
	out := make([]schemaguard.Target, 0, len(specs))
	for _, sp := range specs {
		out = append(out, schemaguard.Target{Database: sp.Database, Schema: sp.Schema, Table: sp.Table, Column: sp.Column, Mode: sp.Mode, Type: sp.Type})
	}
	return out
}

// openPGSQL opens database/sql over pgx for dsn.
func openPGSQL(t testing.TB, dsn string) *sql.DB {
	t.Helper()
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		t.Fatal(err)
	}
	db := stdlib.OpenDB(*cfg)
	t.Cleanup(func() { _ = db.Close() })
	return db
}

// wantCheckViolation asserts that err is PostgreSQL's check_violation
// (23514) raised by the guard of column.
func wantCheckViolation(t testing.TB, what string, err error, column string) {
	t.Helper()
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != "23514" || pe.ConstraintName != "dbproxy_guard_"+column {
		t.Fatalf("%s: got %v, want check_violation 23514 of dbproxy_guard_%s", what, err, column)
	}
}

func applyGuards(t testing.TB, ctx context.Context, db *sql.DB, d rules.Dialect, targets []schemaguard.Target) map[string]string {
	t.Helper()
	outcomes, err := schemaguard.Apply(ctx, db, d, targets)
	if err != nil {
		for _, o := range outcomes {
			t.Logf("%s: %s %v", o.Target, o.Done, o.Err)
		}
		t.Fatalf("apply: %v", err)
	}
	done := map[string]string{}
	for _, o := range outcomes {
		done[o.Target.Column] = o.Done
	}
	return done
}

// applyGuardsTwice applies the guard of targets and requires that the first
// apply adds it on every column of added, that the check then finds
// nothing wrong, and that a second apply changes nothing.
func applyGuardsTwice(t testing.TB, ctx context.Context, db *sql.DB, d rules.Dialect, targets []schemaguard.Target, added []string) {
	t.Helper()
	done := applyGuards(t, ctx, db, d, targets)
	for _, c := range added {
		if done[c] != "added" {
			t.Errorf("first apply: %s %q, want added", c, done[c])
		}
	}
	if problems, err := schemaguard.Check(ctx, db, d, targets); err != nil || len(problems) != 0 {
		t.Fatalf("check after apply: %v %v", problems, err)
	}
	for c, done := range applyGuards(t, ctx, db, d, targets) {
		if done != "unchanged" {
			t.Errorf("second apply: %s %q, want unchanged", c, done)
		}
	}
}

// checkBadTargets adds to targets (in database) a column of the wrong type
// (wrongtype.wt), a missing column and a missing table, and requires that
// the check reports exactly those and the guard missing on unguarded, with
// wrongType the message of the wrong type. It returns the extended targets.
func checkBadTargets(t testing.TB, ctx context.Context, db *sql.DB, d rules.Dialect, database string, targets []schemaguard.Target, unguarded, wrongType string) []schemaguard.Target {
	t.Helper()
	bad := append(targets,
		schemaguard.Target{Database: database, Table: "wrongtype", Column: "wt", Mode: rules.ModeRandomized, Type: value.TypeText},
		schemaguard.Target{Database: database, Table: "guarded", Column: "nosuch", Mode: rules.ModeRandomized, Type: value.TypeText},
		schemaguard.Target{Database: database, Table: "nosuchtable", Column: "x", Mode: rules.ModeRandomized, Type: value.TypeText},
	)
	problems, err := schemaguard.Check(ctx, db, d, bad)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{unguarded: "no guard", "wt": wrongType, "nosuch": "column not found", "x": "table not found"}
	if len(problems) != len(want) {
		t.Fatalf("check: %d problems, want %d: %v", len(problems), len(want), problems)
	}
	for _, p := range problems {
		if w := want[p.Target.Column]; w == "" || !strings.Contains(p.Message, w) {
			t.Errorf("check: %s, want %q", p, w)
		}
	}
	return bad
}

// TestPGGuard installs the guard on a table with every plaintext type in
// both modes and shows that the database itself then rejects plaintext
// from every path that bypasses the proxy (direct INSERT, trigger, DO
// block, renamed column, inheritance child, partition), while writes
// through the proxy still work; apply is idempotent and replaces a
// constraint of the guard's name with another definition; check reports
// missing columns, tables and wrong types.
func TestPGGuard(t *testing.T) {
	ddl, specs := typedTable("guarded", "id int PRIMARY KEY", len(encTypeCases), func(i int) value.Type { return encTypeCases[i].typ })
	var cols []string
	for _, sp := range specs {
		cols = append(cols, sp.Column)
	}
	ddl += `;
CREATE TABLE parted (id int, k int, secret bytea) PARTITION BY RANGE (k);
CREATE TABLE parted_1 PARTITION OF parted FOR VALUES FROM (0) TO (100);
CREATE TABLE wrongtype (id int, wt text);`
	specs = append(specs, encSpec("parted", "secret", rules.ModeRandomized, value.TypeText, "parted.secret"))
	e := startEncProxy(t, ddl, specs)
	ctx := testCtx(t)
	db := openPGSQL(t, e.pg.DSN())
	targets := guardTargets(specs)

	applyGuardsTwice(t, ctx, db, rules.DialectPostgres, targets, append(cols, "secret"))

	// Through the proxy: every type, both modes.
	proxied := e.connectMode(t, pgx.QueryExecModeSimpleProtocol)
	var names, lits []string
	for _, tc := range encTypeCases {
		for _, mode := range []rules.Mode{rules.ModeRandomized, rules.ModeDeterministic} {
			names = append(names, typedColumn(tc.typ, mode))
			lits = append(lits, tc.lits[len(tc.lits)-1])
		}
	}
	if _, err := proxied.Exec(ctx, fmt.Sprintf("INSERT INTO guarded (id, %s) VALUES (1, %s)", strings.Join(names, ", "), strings.Join(lits, ", "))); err != nil {
		t.Fatalf("insert through the proxy under the guard: %v", err)
	}
	extended := e.connectMode(t, pgx.QueryExecModeCacheStatement)
	if _, err := extended.Exec(ctx, `INSERT INTO guarded (id, c_text_randomized, c_text_deterministic, c_bigint_randomized) VALUES (2, $1, $2, $3)`, "secret text", "det text", int64(7)); err != nil {
		t.Fatalf("bound insert through the proxy under the guard: %v", err)
	}
	var got string
	if err := extended.QueryRow(ctx, `SELECT c_text_randomized FROM guarded WHERE c_text_deterministic = $1`, "det text").Scan(&got); err != nil || got != "secret text" {
		t.Fatalf("read back: %q %v", got, err)
	}
	if _, err := proxied.Exec(ctx, `INSERT INTO parted (id, k, secret) VALUES (1, 5, 'in a partition')`); err != nil {
		t.Fatalf("insert into the partitioned table through the proxy: %v", err)
	}

	direct := e.direct
	// A direct plaintext write, also one that looks almost right.
	_, err := direct.Exec(ctx, `INSERT INTO guarded (id, c_text_randomized) VALUES (10, convert_to('plaintext secret here, long enough to pass a length test', 'UTF8'))`)
	wantCheckViolation(t, "direct plaintext insert", err, "c_text_randomized")
	// A deterministic ciphertext of type text copied into a bigint column:
	// right shape, wrong type code.
	_, err = direct.Exec(ctx, `UPDATE guarded SET c_bigint_deterministic = c_text_deterministic WHERE id = 2`)
	wantCheckViolation(t, "ciphertext of another type", err, "c_bigint_deterministic")
	// A randomized ciphertext in a deterministic column: wrong algorithm.
	_, err = direct.Exec(ctx, `UPDATE guarded SET c_text_deterministic = c_text_randomized WHERE id = 2`)
	wantCheckViolation(t, "ciphertext of another algorithm", err, "c_text_deterministic")

	// A trigger that copies plaintext into the column.
	if _, err := direct.Exec(ctx, `CREATE TABLE staging (v text);
CREATE FUNCTION copy_plain() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN INSERT INTO guarded (id, c_text_randomized) VALUES (20, convert_to(NEW.v, 'UTF8')); RETURN NEW; END $$;
CREATE TRIGGER copy_plain AFTER INSERT ON staging FOR EACH ROW EXECUTE FUNCTION copy_plain();`); err != nil {
		t.Fatal(err)
	}
	_, err = direct.Exec(ctx, `INSERT INTO staging VALUES ('a secret copied by a trigger, long enough to pass')`)
	wantCheckViolation(t, "trigger", err, "c_text_randomized")
	// A DO block.
	_, err = direct.Exec(ctx, `DO $$ BEGIN UPDATE guarded SET c_uuid_randomized = decode(repeat('ab', 40), 'hex') WHERE id = 1; END $$`)
	wantCheckViolation(t, "DO block", err, "c_uuid_randomized")
	// An inheritance child inherits the guard.
	if _, err := direct.Exec(ctx, `CREATE TABLE guarded_child () INHERITS (guarded)`); err != nil {
		t.Fatal(err)
	}
	_, err = direct.Exec(ctx, `INSERT INTO guarded_child (id, c_json_randomized) VALUES (30, convert_to('{"plain": "text in a child table"}', 'UTF8'))`)
	wantCheckViolation(t, "inheritance child", err, "c_json_randomized")
	// A partition of a guarded partitioned table.
	_, err = direct.Exec(ctx, `INSERT INTO parted_1 (id, k, secret) VALUES (2, 6, convert_to('plaintext straight into the partition', 'UTF8'))`)
	wantCheckViolation(t, "partition", err, "secret")
	// A renamed column keeps its guard (the constraint follows the column).
	if _, err := direct.Exec(ctx, `ALTER TABLE guarded RENAME COLUMN c_date_randomized TO renamed`); err != nil {
		t.Fatal(err)
	}
	_, err = direct.Exec(ctx, `UPDATE guarded SET renamed = convert_to('1999-12-31 as plaintext bytes here', 'UTF8') WHERE id = 1`)
	wantCheckViolation(t, "renamed column", err, "c_date_randomized")
	if _, err := direct.Exec(ctx, `ALTER TABLE guarded RENAME COLUMN renamed TO c_date_randomized`); err != nil {
		t.Fatal(err)
	}
	e.checkAtRest(t, []string{"secret text", "det text", "in a partition"})

	// A constraint of the guard's name with another definition is
	// reported, then replaced.
	if _, err := direct.Exec(ctx, `ALTER TABLE guarded DROP CONSTRAINT dbproxy_guard_c_int_randomized, ADD CONSTRAINT dbproxy_guard_c_int_randomized CHECK (c_int_randomized IS NOT NULL OR true)`); err != nil {
		t.Fatal(err)
	}
	problems, err := schemaguard.Check(ctx, db, rules.DialectPostgres, targets)
	if err != nil || len(problems) != 1 || problems[0].Target.Column != "c_int_randomized" || !strings.Contains(problems[0].Message, "differs") {
		t.Fatalf("check with a changed guard: %v %v", problems, err)
	}
	done := applyGuards(t, ctx, db, rules.DialectPostgres, targets)
	if done["c_int_randomized"] != "replaced" || done["c_text_randomized"] != "unchanged" {
		t.Fatalf("apply over a changed guard: %v", done)
	}
	if problems, err := schemaguard.Check(ctx, db, rules.DialectPostgres, targets); err != nil || len(problems) != 0 {
		t.Fatalf("check after replacing: %v %v", problems, err)
	}

	// check reports a missing guard, a wrong type, a missing column and a
	// missing table, one line each.
	if _, err := direct.Exec(ctx, `ALTER TABLE guarded DROP CONSTRAINT dbproxy_guard_c_boolean_randomized`); err != nil {
		t.Fatal(err)
	}
	bad := checkBadTargets(t, ctx, db, rules.DialectPostgres, "", targets, "c_boolean_randomized", "column type is text, not bytea")
	// apply guards what it can and reports the rest.
	outcomes, err := schemaguard.Apply(ctx, db, rules.DialectPostgres, bad)
	if err == nil {
		t.Fatal("apply with missing tables reported no error")
	}
	for _, o := range outcomes {
		if c := o.Target.Column; c == "wt" || c == "nosuch" || c == "x" { // the targets check found broken
			if o.Err == nil {
				t.Errorf("apply %s: no error", o.Target)
			}
		} else if o.Err != nil {
			t.Errorf("apply %s: %v", o.Target, o.Err)
		}
	}
}

// TestPGGuardExistingPlaintext: a column that already holds plaintext gets
// a guard that rejects new plaintext but stays NOT VALID; apply and check
// both say so, and once the row is gone apply validates it.
func TestPGGuardExistingPlaintext(t *testing.T) {
	specs := []rules.Spec{encSpec("legacy", "secret", rules.ModeDeterministic, value.TypeText, "legacy.secret")}
	e := startEncProxy(t, `CREATE TABLE legacy (id int, secret bytea); INSERT INTO legacy VALUES (1, 'stored before the proxy')`, specs)
	ctx := testCtx(t)
	db := openPGSQL(t, e.pg.DSN())
	targets := guardTargets(specs)
	outcomes, err := schemaguard.Apply(ctx, db, rules.DialectPostgres, targets)
	if err == nil || len(outcomes) != 1 || outcomes[0].Err == nil || !strings.Contains(outcomes[0].Err.Error(), "NOT VALID") {
		t.Fatalf("apply over plaintext rows: %v %v", outcomes, err)
	}
	_, err = e.direct.Exec(ctx, `INSERT INTO legacy VALUES (2, 'new plaintext row')`)
	wantCheckViolation(t, "insert under a NOT VALID guard", err, "secret")
	problems, err := schemaguard.Check(ctx, db, rules.DialectPostgres, targets)
	if err != nil || len(problems) != 1 || !strings.Contains(problems[0].Message, "NOT VALID") {
		t.Fatalf("check: %v %v", problems, err)
	}
	if _, err := e.direct.Exec(ctx, `DELETE FROM legacy`); err != nil {
		t.Fatal(err)
	}
	if done := applyGuards(t, ctx, db, rules.DialectPostgres, targets); done["secret"] != "validated" {
		t.Fatalf("apply after cleanup: %v", done)
	}
	if problems, err := schemaguard.Check(ctx, db, rules.DialectPostgres, targets); err != nil || len(problems) != 0 {
		t.Fatalf("check after validation: %v %v", problems, err)
	}
}
