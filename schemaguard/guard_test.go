package schemaguard

import (
	"strings"
	"testing"

	"github.com/dbproxy/dbproxy/rules"
	"github.com/dbproxy/dbproxy/value"
)

func TestConstraintName(t *testing.T) {
	if got := ConstraintName(rules.DialectPostgres, "users", "email"); got != "dbproxy_guard_email" {
		t.Errorf("postgres: %q", got)
	}
	if got := ConstraintName(rules.DialectMySQL, "users", "email"); got != "dbproxy_guard_users_email" {
		t.Errorf("mysql: %q", got)
	}
	long := strings.Repeat("c", 60)
	a := ConstraintName(rules.DialectPostgres, "t1", long)
	b := ConstraintName(rules.DialectPostgres, "t2", long)
	if len(a) > 63 || len(b) > 63 || a == b || a != ConstraintName(rules.DialectPostgres, "t1", long) {
		t.Errorf("long names: %q (%d) %q (%d)", a, len(a), b, len(b))
	}
	// A cut never splits a UTF-8 sequence.
	u := ConstraintName(rules.DialectMySQL, "tbl", strings.Repeat("é", 40))
	if len(u) > 63 || !strings.HasPrefix(u, "dbproxy_guard_tbl_é") || strings.ToValidUTF8(u, "?") != u {
		t.Errorf("utf-8 name: %q", u)
	}
}

func TestExpression(t *testing.T) {
	det := Target{Table: "users", Column: "Email", Mode: rules.ModeDeterministic, Type: value.TypeText}
	if got, want := Expression(rules.DialectPostgres, det),
		`CASE WHEN "Email" IS NULL THEN true WHEN octet_length("Email") < 23 THEN false ELSE get_byte("Email", 0) = 1 AND get_byte("Email", 6) = 1 AND (get_byte("Email", 1) = 2) END`; got != want {
		t.Errorf("postgres deterministic:\n got %s\nwant %s", got, want)
	}
	rnd := Target{Database: "app", Table: "users", Column: "ssn", Mode: rules.ModeRandomized, Type: value.TypeBigint}
	if got, want := Expression(rules.DialectMySQL, rnd),
		"`ssn` IS NULL OR (LENGTH(`ssn`) >= 35 AND ASCII(SUBSTRING(`ssn`, 1, 1)) = 1 AND ASCII(SUBSTRING(`ssn`, 7, 1)) = 4 AND (ASCII(SUBSTRING(`ssn`, 2, 1)) = 1 OR (ASCII(SUBSTRING(`ssn`, 2, 1)) = 3 AND LENGTH(`ssn`) >= 47)))"; got != want {
		t.Errorf("mysql randomized:\n got %s\nwant %s", got, want)
	}
	if got := AddStatements(rules.DialectMySQL, rnd)[0]; !strings.HasPrefix(got, "ALTER TABLE `app`.`users` ADD CONSTRAINT `dbproxy_guard_users_ssn` CHECK (") {
		t.Errorf("mysql add: %s", got)
	}
	if got := DropStatement(rules.DialectPostgres, det); got != `ALTER TABLE "public"."users" DROP CONSTRAINT "dbproxy_guard_Email"` {
		t.Errorf("postgres drop: %s", got)
	}
}

// TestSameDefinition compares with the forms the servers print back
// (PostgreSQL 15's pg_get_constraintdef, MySQL 8's CHECK_CLAUSE) and
// rejects other definitions.
func TestSameDefinition(t *testing.T) {
	det := Target{Table: "users", Column: "email", Mode: rules.ModeDeterministic, Type: value.TypeText}
	pg := `CHECK (CASE WHEN (email IS NULL) THEN true WHEN (octet_length(email) < 23) THEN false ELSE ((get_byte(email, 0) = 1) AND (get_byte(email, 6) = 1) AND (get_byte(email, 1) = 2)) END)`
	if !SameDefinition(rules.DialectPostgres, det, pg) {
		t.Error("postgres form not recognised")
	}
	my := "((`email` is null) or ((length(`email`) >= 23) and (ascii(substr(`email`,1,1)) = 1) and (ascii(substr(`email`,7,1)) = 1) and (ascii(substr(`email`,2,1)) = 2)))"
	if !SameDefinition(rules.DialectMySQL, det, my) {
		t.Error("mysql form not recognised")
	}
	for _, other := range []string{
		strings.Replace(pg, "get_byte(email, 6) = 1", "get_byte(email, 6) = 4", 1), // another type
		strings.Replace(pg, "< 23", "< 2", 1),
		`CHECK (true)`,
	} {
		if SameDefinition(rules.DialectPostgres, det, other) {
			t.Errorf("accepted %s", other)
		}
	}
}
