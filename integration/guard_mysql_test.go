package integration

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	driver "github.com/go-sql-driver/mysql"

	"github.com/dbproxy/dbproxy/rules"
	"github.com/dbproxy/dbproxy/schemaguard"
	"github.com/dbproxy/dbproxy/value"
)

// wantMyCheckViolation asserts that err is MariaDB's ER_CONSTRAINT_FAILED
// (4025) for the guard of table.column (MySQL 8 says 3819).
func wantMyCheckViolation(t testing.TB, what string, err error, table, column string) {
	t.Helper()
	var me *driver.MySQLError
	name := schemaguard.ConstraintName(rules.DialectMySQL, table, column)
	if !errors.As(err, &me) || (me.Number != 4025 && me.Number != 3819) || !strings.Contains(me.Message, name) {
		t.Fatalf("%s: got %v, want ER 4025 naming %s", what, err, name)
	}
}

// TestMySQLGuard: the guard on MariaDB. Writes through the proxy (every
// type, both modes, placeholders and literals) pass; plaintext written
// directly, by a trigger or by a stored procedure is rejected by the
// server; apply is idempotent and replaces a changed definition; check
// reports what is wrong, one problem per column.
func TestMySQLGuard(t *testing.T) {
	type col struct {
		name string
		typ  value.Type
		arg  any
	}
	cols := []col{
		{"t", value.TypeText, "some text"}, {"s", value.TypeSmallint, -32768}, {"i", value.TypeInt, 42},
		{"b", value.TypeBigint, int64(-9223372036854775808)}, {"r", value.TypeReal, float32(1.5)}, {"d", value.TypeDouble, 0.1},
		{"n", value.TypeNumeric, "-0.50"}, {"bo", value.TypeBoolean, true}, {"dt", value.TypeDate, "2024-02-29"},
		{"ts", value.TypeTimestamp, "2023-12-31 23:59:58"}, {"tz", value.TypeTimestamptz, time.Date(2023, 12, 31, 23, 59, 58, 0, time.UTC)},
		{"u", value.TypeUUID, "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"}, {"y", value.TypeBytes, []byte{0, 1, 0xff}}, {"j", value.TypeJSON, `{"a": [1]}`},
	}
	var ddl strings.Builder
	ddl.WriteString("CREATE TABLE guarded (id INT PRIMARY KEY")
	var specs []rules.Spec
	var names []string
	var args []any
	for _, c := range cols {
		for _, mode := range []rules.Mode{rules.ModeRandomized, rules.ModeDeterministic} {
			name := fmt.Sprintf("%s_%s", c.name, mode.String()[:3])
			fmt.Fprintf(&ddl, ", %s VARBINARY(200)", name)
			specs = append(specs, rules.Spec{Table: "guarded", Column: name, Key: "k_" + name, Mode: mode, Type: c.typ})
			names = append(names, name)
			args = append(args, c.arg)
		}
	}
	ddl.WriteString(")")
	specs = append(specs, rules.Spec{Table: "Mixed", Column: "Secret", Key: "k_mixed", Mode: rules.ModeRandomized, Type: value.TypeText})
	e := startMyEncProxy(t, []string{ddl.String(), "CREATE TABLE Mixed (id INT, Secret BLOB)", "CREATE TABLE wrongtype (id INT, wt VARCHAR(100))"}, specs)
	ctx := testCtx(t)
	targets := guardTargets(specs) // Database set by startMyEncProxy
	db := e.direct

	applyGuardsTwice(t, ctx, db, rules.DialectMySQL, targets, append(names, "Secret"))

	// Through the proxy, binary protocol and interpolated literals.
	placeholders := strings.TrimSuffix(strings.Repeat("?, ", len(names)), ", ")
	for i, mode := range []string{"interpolateParams=false", "interpolateParams=true"} {
		p := openDB(t, e.proxy.config(t, mode, "parseTime=true"))
		q := fmt.Sprintf("INSERT INTO guarded (id, %s) VALUES (?, %s)", strings.Join(names, ", "), placeholders)
		if _, err := p.ExecContext(ctx, q, append([]any{i + 1}, args...)...); err != nil {
			t.Fatalf("%s: insert through the proxy under the guard: %v", mode, err)
		}
		if _, err := p.ExecContext(ctx, "INSERT INTO Mixed (id, Secret) VALUES (?, ?)", i, "mixed case"); err != nil {
			t.Fatalf("%s: insert into Mixed: %v", mode, err)
		}
		var got string
		if err := p.QueryRowContext(ctx, "SELECT t_ran FROM guarded WHERE t_det = ? AND id = ?", "some text", i+1).Scan(&got); err != nil || got != "some text" {
			t.Fatalf("%s: read back: %q %v", mode, got, err)
		}
	}
	e.checkAtRest(t, []string{"some text", "mixed case"})

	_, err := db.ExecContext(ctx, "INSERT INTO guarded (id, t_ran) VALUES (10, 'plaintext long enough to pass any length test at all')")
	wantMyCheckViolation(t, "direct plaintext insert", err, "guarded", "t_ran")
	_, err = db.ExecContext(ctx, "UPDATE guarded SET b_det = t_det WHERE id = 1")
	wantMyCheckViolation(t, "ciphertext of another type", err, "guarded", "b_det")
	_, err = db.ExecContext(ctx, "UPDATE guarded SET t_det = t_ran WHERE id = 1")
	wantMyCheckViolation(t, "ciphertext of another algorithm", err, "guarded", "t_det")
	for _, q := range []string{
		"CREATE TABLE staging (v TEXT)",
		"CREATE TRIGGER copy_plain AFTER INSERT ON staging FOR EACH ROW INSERT INTO guarded (id, j_ran) VALUES (20, NEW.v)",
		"CREATE PROCEDURE put_plain(v TEXT) UPDATE guarded SET u_ran = v WHERE id = 1",
	} {
		if _, err := db.ExecContext(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	_, err = db.ExecContext(ctx, "INSERT INTO staging VALUES ('{\"copied\": \"by a trigger, long enough to pass\"}')")
	wantMyCheckViolation(t, "trigger", err, "guarded", "j_ran")
	_, err = db.ExecContext(ctx, "CALL put_plain('a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11 as plaintext')")
	wantMyCheckViolation(t, "stored procedure", err, "guarded", "u_ran")

	// A changed definition is reported, then replaced.
	name := schemaguard.ConstraintName(rules.DialectMySQL, "guarded", "i_ran")
	if _, err := db.ExecContext(ctx, fmt.Sprintf("ALTER TABLE guarded DROP CONSTRAINT %s, ADD CONSTRAINT %s CHECK (i_ran IS NOT NULL OR 1)", name, name)); err != nil {
		t.Fatal(err)
	}
	problems, err := schemaguard.Check(ctx, db, rules.DialectMySQL, targets)
	if err != nil || len(problems) != 1 || problems[0].Target.Column != "i_ran" || !strings.Contains(problems[0].Message, "differs") {
		t.Fatalf("check with a changed guard: %v %v", problems, err)
	}
	if done := applyGuards(t, ctx, db, rules.DialectMySQL, targets); done["i_ran"] != "replaced" || done["t_ran"] != "unchanged" {
		t.Fatalf("apply over a changed guard: %v", done)
	}

	// check: a missing guard, a wrong type, a missing column and table.
	if _, err := db.ExecContext(ctx, "ALTER TABLE guarded DROP CONSTRAINT "+schemaguard.ConstraintName(rules.DialectMySQL, "guarded", "bo_ran")); err != nil {
		t.Fatal(err)
	}
	checkBadTargets(t, ctx, db, rules.DialectMySQL, e.db.Database, targets, "bo_ran", "column type is varchar(100), not VARBINARY or BLOB")
}

// TestMySQLGuardExistingPlaintext: MariaDB checks existing rows when the
// constraint is added, so a column holding plaintext gets no guard, and
// apply says why.
func TestMySQLGuardExistingPlaintext(t *testing.T) {
	specs := []rules.Spec{{Table: "legacy", Column: "secret", Key: "k", Mode: rules.ModeDeterministic, Type: value.TypeText}}
	e := startMyEncProxy(t, []string{"CREATE TABLE legacy (id INT, secret VARBINARY(100))", "INSERT INTO legacy VALUES (1, 'stored before the proxy')"}, specs)
	ctx := testCtx(t)
	targets := guardTargets(specs)
	outcomes, err := schemaguard.Apply(ctx, e.direct, rules.DialectMySQL, targets)
	if err == nil || len(outcomes) != 1 || outcomes[0].Err == nil || !strings.Contains(outcomes[0].Err.Error(), "was not added") {
		t.Fatalf("apply over plaintext rows: %v %v", outcomes, err)
	}
	if problems, err := schemaguard.Check(ctx, e.direct, rules.DialectMySQL, targets); err != nil || len(problems) != 1 || !strings.Contains(problems[0].Message, "no guard") {
		t.Fatalf("check: %v %v", problems, err)
	}
	var n int
	if err := e.direct.QueryRowContext(ctx, "SELECT COUNT(*) FROM legacy").Scan(&n); err != nil || n != 1 {
		t.Fatalf("rows: %d %v", n, err)
	}
}
