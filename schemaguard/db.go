package schemaguard

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"

	"github.com/dbproxy/dbproxy/rules"
)

// state is what the catalog says about one target.
type state struct {
	table, column string // the names as the database spells them
	typ           string // the column's type as the database prints it
	typeOK        bool
	// The constraint of the guard's name (found false: none).
	found, same, validated, noInherit bool
	notEnforced                       bool // MySQL 8: NOT ENFORCED
}

// problem describes a target that cannot carry a guard ("" if it can).
func (s *state) problem(d rules.Dialect) string {
	switch {
	case s.table == "":
		return "table not found"
	case s.column == "":
		return "column not found"
	case !s.typeOK:
		want := "bytea"
		if d == rules.DialectMySQL {
			want = "VARBINARY or BLOB"
		}
		return fmt.Sprintf("column type is %s, not %s: it cannot hold ciphertext", s.typ, want)
	}
	return ""
}

func inspect(ctx context.Context, db *sql.DB, d rules.Dialect, t Target) (*state, error) {
	if d == rules.DialectMySQL {
		return inspectMySQL(ctx, db, t)
	}
	return inspectPostgres(ctx, db, t)
}

func inspectPostgres(ctx context.Context, db *sql.DB, t Target) (*state, error) {
	s := &state{}
	var oid int64
	var attname sql.NullString
	err := db.QueryRowContext(ctx, `SELECT c.oid::int8, c.relname, a.attname,
	coalesce(pg_catalog.format_type(a.atttypid, a.atttypmod), ''), coalesce(a.atttypid = 'pg_catalog.bytea'::pg_catalog.regtype, false)
FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attname = $3 AND a.attnum > 0 AND NOT a.attisdropped
WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r', 'p')`, t.schema(), t.Table, t.Column).
		Scan(&oid, &s.table, &attname, &s.typ, &s.typeOK)
	if errors.Is(err, sql.ErrNoRows) {
		return s, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read the catalog: %w", err)
	}
	s.column = attname.String
	if s.column == "" || !s.typeOK {
		return s, nil
	}
	var def string
	err = db.QueryRowContext(ctx, `SELECT pg_catalog.pg_get_constraintdef(oid), convalidated, connoinherit
FROM pg_catalog.pg_constraint WHERE conrelid = $1 AND conname = $2 AND contype = 'c'`,
		oid, ConstraintName(rules.DialectPostgres, t.Table, t.Column)).Scan(&def, &s.validated, &s.noInherit)
	if errors.Is(err, sql.ErrNoRows) {
		return s, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read the constraints of %s: %w", t, err)
	}
	s.found = true
	def = strings.TrimSuffix(strings.TrimSpace(def), "NOT VALID")
	s.same = SameDefinition(rules.DialectPostgres, t, def)
	return s, nil
}

// mysqlBinaryTypes are the column types that keep ciphertext bytes as they
// are (BINARY(n) would pad them).
var mysqlBinaryTypes = map[string]bool{"varbinary": true, "tinyblob": true, "blob": true, "mediumblob": true, "longblob": true}

func inspectMySQL(ctx context.Context, db *sql.DB, t Target) (*state, error) {
	s := &state{}
	// Table names may or may not be case-sensitive (lower_case_table_names):
	// look them up without regard to case, as the proxy matches them, and
	// use the database's own spelling.
	err := db.QueryRowContext(ctx, `SELECT TABLE_NAME FROM information_schema.TABLES
WHERE TABLE_SCHEMA = ? AND LOWER(TABLE_NAME) = LOWER(?) AND TABLE_TYPE = 'BASE TABLE' ORDER BY TABLE_NAME = ? DESC LIMIT 1`,
		t.Database, t.Table, t.Table).Scan(&s.table)
	if errors.Is(err, sql.ErrNoRows) {
		return s, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read the catalog: %w", err)
	}
	var dataType string
	err = db.QueryRowContext(ctx, `SELECT COLUMN_NAME, DATA_TYPE, COLUMN_TYPE FROM information_schema.COLUMNS
WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? AND LOWER(COLUMN_NAME) = LOWER(?)`, t.Database, s.table, t.Column).
		Scan(&s.column, &dataType, &s.typ)
	if errors.Is(err, sql.ErrNoRows) {
		return s, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read the columns of %s: %w", t, err)
	}
	s.typeOK = mysqlBinaryTypes[strings.ToLower(dataType)]
	if !s.typeOK {
		return s, nil
	}
	// MariaDB scopes CHECK constraint names per table, MySQL 8 per
	// database; TABLE_CONSTRAINTS ties the name to this table.
	rows, err := db.QueryContext(ctx, `SELECT cc.CHECK_CLAUSE FROM information_schema.TABLE_CONSTRAINTS tc
JOIN information_schema.CHECK_CONSTRAINTS cc ON cc.CONSTRAINT_SCHEMA = tc.CONSTRAINT_SCHEMA AND cc.CONSTRAINT_NAME = tc.CONSTRAINT_NAME
WHERE tc.TABLE_SCHEMA = ? AND tc.TABLE_NAME = ? AND tc.CONSTRAINT_NAME = ? AND tc.CONSTRAINT_TYPE = 'CHECK'`,
		t.Database, s.table, ConstraintName(rules.DialectMySQL, t.Table, t.Column))
	if err != nil {
		return nil, fmt.Errorf("read the constraints of %s: %w", t, err)
	}
	defer rows.Close()
	s.same, s.validated = true, true // MySQL checks existing rows when it adds a constraint
	for rows.Next() {
		var clause string
		if err := rows.Scan(&clause); err != nil {
			return nil, fmt.Errorf("read the constraints of %s: %w", t, err)
		}
		s.found = true
		// Another table's constraint of the same name (MariaDB) must not
		// pass for this one: every row found must be the guard.
		s.same = s.same && SameDefinition(rules.DialectMySQL, t, clause)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read the constraints of %s: %w", t, err)
	}
	if s.found {
		// MySQL 8 can keep a CHECK constraint NOT ENFORCED; MariaDB always
		// enforces them and has no ENFORCED column (an error here means
		// that column does not exist).
		var enforced string
		err := db.QueryRowContext(ctx, `SELECT ENFORCED FROM information_schema.TABLE_CONSTRAINTS
WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? AND CONSTRAINT_NAME = ? AND CONSTRAINT_TYPE = 'CHECK'`,
			t.Database, s.table, ConstraintName(rules.DialectMySQL, t.Table, t.Column)).Scan(&enforced)
		s.notEnforced = err == nil && strings.EqualFold(enforced, "NO")
	}
	return s, nil
}

// Problem is one reason a column is not guarded as expected.
type Problem struct {
	Target  Target
	Message string
}

func (p Problem) String() string { return p.Target.String() + ": " + p.Message }

// Check verifies that each target exists, has a ciphertext type (bytea;
// VARBINARY or a BLOB type) and carries its guard with the expected
// definition (validated, and inherited by child tables, on PostgreSQL). It
// returns one Problem per target that fails; the error is for a failed
// catalog read only. On PostgreSQL db is a connection to the targets'
// database; on MySQL each target names its database.
func Check(ctx context.Context, db *sql.DB, d rules.Dialect, targets []Target) ([]Problem, error) {
	var out []Problem
	for _, t := range targets {
		if d == rules.DialectMySQL && t.Database == "" {
			out = append(out, Problem{t, "the rule names no database: set database: in the rule or pass --database"})
			continue
		}
		s, err := inspect(ctx, db, d, t)
		if err != nil {
			return out, err
		}
		msg := s.problem(d)
		if msg == "" {
			msg = s.guardProblem(d, t)
		}
		if msg != "" {
			out = append(out, Problem{t, msg})
		}
	}
	return out, nil
}

// guardProblem describes what is wrong with a target's guard ("" if
// nothing).
func (s *state) guardProblem(d rules.Dialect, t Target) string {
	name := ConstraintName(d, t.Table, t.Column)
	switch {
	case !s.found:
		return fmt.Sprintf("no guard (CHECK constraint %s): run dbproxy schema guard --apply", name)
	case !s.same:
		return fmt.Sprintf("CHECK constraint %s differs from the expected guard (the column's mode or type changed?): run dbproxy schema guard --apply", name)
	case !s.validated:
		return fmt.Sprintf("CHECK constraint %s is NOT VALID: rows stored before it are not checked; remove or re-encrypt the plaintext rows and run dbproxy schema guard --apply", name)
	case s.noInherit:
		return fmt.Sprintf("CHECK constraint %s is NO INHERIT: child tables are not guarded", name)
	case s.notEnforced:
		return fmt.Sprintf("CHECK constraint %s is NOT ENFORCED: run dbproxy schema guard --apply", name)
	}
	return ""
}

// Outcome is what Apply did for one target.
type Outcome struct {
	Target Target
	// Done: "added", "replaced", "validated" or "unchanged" (nothing to do);
	// "" when Err is set.
	Done string
	Err  error
}

// Apply installs each target's guard, replacing a constraint of the
// guard's name with another definition, and validates it against the rows
// already stored. A target that cannot be guarded (missing table or
// column, wrong type, plaintext rows) gets an Outcome with Err and does not
// stop the others. A second run does nothing. The returned error is set
// when some outcome has one.
func Apply(ctx context.Context, db *sql.DB, d rules.Dialect, targets []Target) ([]Outcome, error) {
	var out []Outcome
	failed := 0
	for _, t := range targets {
		o := applyOne(ctx, db, d, t)
		if o.Err != nil {
			failed++
		}
		out = append(out, o)
	}
	if failed > 0 {
		return out, fmt.Errorf("%d of %d column(s) not guarded", failed, len(targets))
	}
	return out, nil
}

func applyOne(ctx context.Context, db *sql.DB, d rules.Dialect, t Target) Outcome {
	if d == rules.DialectMySQL && t.Database == "" {
		return Outcome{Target: t, Err: errors.New("the rule names no database: set database: in the rule or pass --database")}
	}
	s, err := inspect(ctx, db, d, t)
	if err != nil {
		return Outcome{Target: t, Err: err}
	}
	if msg := s.problem(d); msg != "" {
		return Outcome{Target: t, Err: errors.New(msg)}
	}
	// Use the database's spelling of the names (MySQL lookups ignore case).
	t.Table, t.Column = s.table, s.column
	var stmts []string
	var done string
	switch {
	case !s.found:
		stmts, done = AddStatements(d, t), "added"
	case !s.same || s.noInherit || s.notEnforced:
		stmts, done = ReplaceStatements(d, t), "replaced"
	case !s.validated:
		stmts, done = AddStatements(d, t)[1:], "validated"
	default:
		return Outcome{Target: t, Done: "unchanged"}
	}
	for i, q := range stmts {
		if _, err := db.ExecContext(ctx, q); err != nil {
			return Outcome{Target: t, Err: applyError(d, t, i, err)}
		}
	}
	return Outcome{Target: t, Done: done}
}

// applyError explains a failed guard statement; the usual cause is rows
// that are not ciphertext of the column (PostgreSQL 23514 on VALIDATE, the
// guard then stays NOT VALID but rejects new plaintext; MariaDB 4025 and
// MySQL 3819 on ADD, the guard is not added).
func applyError(d rules.Dialect, t Target, stmt int, err error) error {
	msg := err.Error()
	name := ConstraintName(d, t.Table, t.Column)
	violated := strings.Contains(msg, "23514") || strings.Contains(msg, "4025") || strings.Contains(msg, "3819") ||
		strings.Contains(strings.ToLower(msg), "is violated")
	switch {
	case violated && d == rules.DialectPostgres && stmt > 0:
		return fmt.Errorf("rows already stored are not ciphertext of this column: the guard %s rejects new plaintext but stays NOT VALID; remove or re-encrypt those rows (they fail: %s) and run again: %w",
			name, Expression(d, t), err)
	case violated:
		return fmt.Errorf("rows already stored are not ciphertext of this column, so the guard %s was not added; remove or re-encrypt those rows and run again: %w", name, err)
	}
	if strings.Contains(msg, "42501") || strings.Contains(msg, "must be owner") || strings.Contains(msg, "1142") {
		return fmt.Errorf("install guard %s: the login may not alter the table (PostgreSQL: it must own the table; MySQL: it needs ALTER on it): %w", name, err)
	}
	return fmt.Errorf("install guard %s: %w", name, err)
}
