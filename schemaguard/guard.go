package schemaguard

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/dbproxy/dbproxy/crypto"
	"github.com/dbproxy/dbproxy/rules"
	"github.com/dbproxy/dbproxy/value"
)

// Target is one encrypted column to guard.
type Target struct {
	// Database: PostgreSQL, the database the connection is to (only shown
	// in messages); MySQL, the database that qualifies Table ("" leaves
	// the name unqualified, for printed DDL only).
	Database string
	Schema   string // PostgreSQL; "" means public. Ignored for MySQL.
	Table    string
	Column   string
	Mode     rules.Mode
	Type     value.Type
}

// String names the column as messages show it.
func (t Target) String() string {
	var parts []string
	if t.Database != "" {
		parts = append(parts, t.Database)
	}
	if t.Schema != "" {
		parts = append(parts, t.Schema)
	}
	return strings.Join(append(parts, t.Table, t.Column), ".")
}

func (t Target) schema() string {
	if t.Schema == "" {
		return "public"
	}
	return t.Schema
}

// accepted is one algorithm a column's ciphertexts may carry and its
// minimum length.
type accepted struct {
	alg    crypto.Algorithm
	minLen int
}

// algorithms returns what t's guard accepts in byte 1, shortest first.
func (t Target) algorithms() []accepted {
	if t.Mode == rules.ModeDeterministic {
		return []accepted{{crypto.AlgorithmAESSIV, crypto.AlgorithmAESSIV.Overhead()}}
	}
	// A randomized column may hold legacy AES-256-GCM versions next to
	// XAES-256-GCM ones (each key version has one algorithm).
	return []accepted{{crypto.AlgorithmAESGCM, crypto.AlgorithmAESGCM.Overhead()}, {crypto.AlgorithmXAESGCM, crypto.AlgorithmXAESGCM.Overhead()}}
}

// maxIdent is the longest identifier both databases accept (PostgreSQL's
// NAMEDATALEN-1; MySQL allows 64).
const maxIdent = 63

// ConstraintName is the name of the guard of table.column:
// dbproxy_guard_<column> on PostgreSQL (constraint names are per table
// there, and a child table inherits the name), dbproxy_guard_<table>_<column>
// on MySQL (MySQL 8 makes CHECK constraint names unique per database). A
// name longer than 63 bytes is cut and ends in 8 hex digits of a hash of
// the table and column names, so it stays deterministic and distinct.
func ConstraintName(d rules.Dialect, table, column string) string {
	name := "dbproxy_guard_" + column
	if d == rules.DialectMySQL {
		name = "dbproxy_guard_" + table + "_" + column
	}
	if len(name) <= maxIdent {
		return name
	}
	sum := sha256.Sum256([]byte(table + "\x00" + column))
	suffix := "_" + hex.EncodeToString(sum[:4])
	n := maxIdent - len(suffix)
	for n > 0 && !utf8.RuneStart(name[n]) {
		n--
	}
	return name[:n] + suffix
}

// QuoteIdent quotes an identifier for d.
func QuoteIdent(d rules.Dialect, s string) string {
	if d == rules.DialectMySQL {
		return "`" + strings.ReplaceAll(s, "`", "``") + "`"
	}
	return `"` + strings.ReplaceAll(s, `"`, `""`) + `"`
}

// tableName is t's table, qualified and quoted for d.
func (t Target) tableName(d rules.Dialect) string {
	if d == rules.DialectMySQL {
		if t.Database == "" {
			return QuoteIdent(d, t.Table)
		}
		return QuoteIdent(d, t.Database) + "." + QuoteIdent(d, t.Table)
	}
	return QuoteIdent(d, t.schema()) + "." + QuoteIdent(d, t.Table)
}

// Expression is the CHECK expression of t's guard: NULL, or byte 0 is the
// format version, byte 1 one of the column's algorithms, byte 6 the
// column's plaintext type code, and the value at least as long as the
// algorithm's header, nonce/SIV and tag.
//
// PostgreSQL's get_byte fails beyond the end of the value, so the length is
// tested first inside a CASE (the only construct whose order of evaluation
// PostgreSQL guarantees). MySQL's SUBSTRING past the end is ” and ASCII(”)
// is 0, so a plain conjunction is safe there.
func Expression(d rules.Dialect, t Target) string {
	algs := t.algorithms()
	minLen := algs[0].minLen
	c := QuoteIdent(d, t.Column)
	b := func(i int) string { return fmt.Sprintf("get_byte(%s, %d)", c, i) }
	length := "octet_length"
	if d == rules.DialectMySQL {
		b = func(i int) string { return fmt.Sprintf("ASCII(SUBSTRING(%s, %d, 1))", c, i+1) }
		length = "LENGTH"
	}
	var alts []string
	for _, a := range algs {
		if a.minLen > minLen {
			alts = append(alts, fmt.Sprintf("(%s = %d AND %s(%s) >= %d)", b(1), a.alg, length, c, a.minLen))
		} else {
			alts = append(alts, fmt.Sprintf("%s = %d", b(1), a.alg))
		}
	}
	if d == rules.DialectMySQL {
		return fmt.Sprintf("%s IS NULL OR (LENGTH(%s) >= %d AND %s = %d AND %s = %d AND (%s))",
			c, c, minLen, b(0), crypto.FormatVersion, b(6), t.Type, strings.Join(alts, " OR "))
	}
	return fmt.Sprintf("CASE WHEN %s IS NULL THEN true WHEN octet_length(%s) < %d THEN false ELSE %s = %d AND %s = %d AND (%s) END",
		c, c, minLen, b(0), crypto.FormatVersion, b(6), t.Type, strings.Join(alts, " OR "))
}

// AddStatements is the DDL that installs t's guard on a table that has
// none: on PostgreSQL an ADD CONSTRAINT … NOT VALID (enforced at once for
// new rows, a short lock) followed by VALIDATE CONSTRAINT (checks the rows
// already there without blocking writes); on MySQL one ADD CONSTRAINT,
// which checks the existing rows itself.
func AddStatements(d rules.Dialect, t Target) []string {
	name := QuoteIdent(d, ConstraintName(d, t.Table, t.Column))
	if d == rules.DialectMySQL {
		return []string{fmt.Sprintf("ALTER TABLE %s ADD CONSTRAINT %s CHECK (%s)", t.tableName(d), name, Expression(d, t))}
	}
	return []string{
		fmt.Sprintf("ALTER TABLE %s ADD CONSTRAINT %s CHECK (%s) NOT VALID", t.tableName(d), name, Expression(d, t)),
		fmt.Sprintf("ALTER TABLE %s VALIDATE CONSTRAINT %s", t.tableName(d), name),
	}
}

// ReplaceStatements is the DDL that swaps an existing constraint of the
// guard's name for the expected guard, in one ALTER TABLE (and, on
// PostgreSQL, validates it).
func ReplaceStatements(d rules.Dialect, t Target) []string {
	name := QuoteIdent(d, ConstraintName(d, t.Table, t.Column))
	if d == rules.DialectMySQL {
		return []string{fmt.Sprintf("ALTER TABLE %s DROP CONSTRAINT %s, ADD CONSTRAINT %s CHECK (%s)", t.tableName(d), name, name, Expression(d, t))}
	}
	return []string{
		fmt.Sprintf("ALTER TABLE %s DROP CONSTRAINT %s, ADD CONSTRAINT %s CHECK (%s) NOT VALID", t.tableName(d), name, name, Expression(d, t)),
		fmt.Sprintf("ALTER TABLE %s VALIDATE CONSTRAINT %s", t.tableName(d), name),
	}
}

// ScriptStatements is the DDL printed by `dbproxy schema guard`: it can be
// run as is, also where a guard already exists (PostgreSQL and MariaDB
// drop a constraint of the guard's name first, if there is one; MySQL 8
// has no DROP CONSTRAINT IF EXISTS, so its script only adds).
func ScriptStatements(d rules.Dialect, t Target) []string {
	name := QuoteIdent(d, ConstraintName(d, t.Table, t.Column))
	if d == rules.DialectMySQL {
		return AddStatements(d, t)
	}
	return []string{
		fmt.Sprintf("ALTER TABLE %s DROP CONSTRAINT IF EXISTS %s, ADD CONSTRAINT %s CHECK (%s) NOT VALID", t.tableName(d), name, name, Expression(d, t)),
		fmt.Sprintf("ALTER TABLE %s VALIDATE CONSTRAINT %s", t.tableName(d), name),
	}
}

// DropStatement is the DDL that removes t's guard.
func DropStatement(d rules.Dialect, t Target) string {
	return fmt.Sprintf("ALTER TABLE %s DROP CONSTRAINT %s", t.tableName(d), QuoteIdent(d, ConstraintName(d, t.Table, t.Column)))
}

// skeleton reduces a CHECK expression to what both databases keep when they
// print one back: PostgreSQL and MySQL normalise case, spacing, quoting
// and parentheses (and MySQL spells SUBSTRING substr and LENGTH either
// way), so an expression read from the catalog is compared with the
// expected one after both are reduced.
func skeleton(expr string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(expr) {
		switch r {
		case ' ', '\t', '\n', '\r', '(', ')', '`', '"':
			continue
		}
		b.WriteRune(r)
	}
	s := b.String()
	s = strings.ReplaceAll(s, "substring", "substr")
	s = strings.ReplaceAll(s, "octet_length", "length")
	s = strings.TrimPrefix(s, "check")
	return s
}

// SameDefinition reports whether a CHECK expression read from the catalog
// (pg_get_constraintdef, information_schema.CHECK_CONSTRAINTS) is t's
// guard.
func SameDefinition(d rules.Dialect, t Target, fromCatalog string) bool {
	return skeleton(fromCatalog) == skeleton(Expression(d, t))
}
