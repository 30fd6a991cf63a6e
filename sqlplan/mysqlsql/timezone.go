package mysqlsql

import (
	"strings"

	"github.com/pingcap/tidb/pkg/parser/ast"
	driver "github.com/pingcap/tidb/pkg/parser/test_driver"
)

// ZoneChange is what a query string does to the session time_zone, read
// with the server's grammar (the TiDB parser) statement by statement after
// the executable comments the server runs are opened: SET [SESSION |
// LOCAL] time_zone, SET @@[session. | local.]time_zone, several
// assignments in one SET, several statements in one string (the last
// change wins). A statement whose effect on time_zone the proxy cannot
// read exactly makes it SettingUnknown: an expression or variable value,
// text the parser cannot read, a non-ASCII variable name (the server
// compares names accent-insensitively), CALL, EXECUTE IMMEDIATE, a compound
// statement, text after a statement that changes how the rest is lexed.
// Copying time_zone into a user variable (SET @old = @@time_zone) and
// reading it change nothing.
type ZoneChange struct {
	Set Setting
	// Zone is the value as written (Set == SettingValue).
	Zone string
	// Global: the string changes the global time_zone, which new sessions
	// start with.
	Global bool
	// RiskyPrepare: an SQL PREPARE whose text may change time_zone
	// (prepared from a variable, or mentioning it): an EXECUTE may then
	// change it.
	RiskyPrepare bool
	// Executes: an SQL EXECUTE runs a prepared statement.
	Executes bool
	// Mixed: a statement of the string runs under a time_zone that an
	// earlier statement of the string (or a MariaDB SET STATEMENT) set, or
	// may have set: it cannot be planned under the session's.
	Mixed bool
	// Statements counts the statements of the string (when it may change
	// time_zone): if one of several fails, which changes ran is unknown.
	Statements int
}

// Changed reports whether the string may change the session time_zone.
func (z *ZoneChange) Changed() bool { return z.Set != SettingUnchanged }

func (z *ZoneChange) unknown() { z.Set, z.Zone = SettingUnknown, "" }

// mayTouchZone is the cheap scan that spares most strings the analysis:
// it reports whether sql mentions time_zone or a word that may run text
// that changes it (CALL, EXECUTE, PREPARE), or holds a non-ASCII byte and
// "set" (system variable names are compared accent-insensitively).
func mayTouchZone(sql string) bool { return zoneWords.mentions(sql) }

var zoneWords = newWordScan("time_zone", "call", "execute", "prepare")

// AnalyzeTimeZone returns what sql does to the session time_zone when the
// server reads it under lex. It never fails: text it cannot read makes the
// time_zone unknown.
func AnalyzeTimeZone(sql string, lex Lex) ZoneChange {
	var z ZoneChange
	if !mayTouchZone(sql) {
		return z
	}
	norm, err := normalize(sql, lex)
	if err != nil {
		z.unknown()
		return z
	}
	// lexShift: a statement ahead may have changed how the server lexes
	// the rest (sql_mode, character set), which the split below assumes.
	// compound: a statement ahead holds a body the split cannot follow.
	lexShift, compound := false, false
	for pos := 0; pos < len(norm); {
		stmt, n := splitFirst(norm[pos:], lex)
		pos += n
		if strings.TrimSpace(stmt) == "" {
			continue
		}
		z.Statements++
		if z.Changed() || z.Executes {
			z.Mixed = true
		}
		first, second := firstWords(stmt)
		if (lexShift || compound) && mayTouchZone(stmt) {
			z.unknown()
		} else {
			zoneStatement(&z, stmt, first, second, lex)
		}
		lexShift = lexShift || changesLex(stmt, first, second, lex)
		compound = compound || compoundStarts[first] || second == ":"
	}
	return z
}

// changesLex reports whether a statement may change how the server lexes
// the statements after it (sql_mode, character set), or runs one that may.
func changesLex(stmt, first, second string, lex Lex) bool {
	if !mayChangeSession(stmt) {
		return false
	}
	var c SessionChange
	analyzeStatement(&c, stmt, first, second, lex)
	return c.Changed() || c.Executes
}

// zoneStatement adds what one statement (normalised text) does to z.
func zoneStatement(z *ZoneChange, stmt, first, second string, lex Lex) {
	switch first {
	case "SET":
		if second != "STATEMENT" {
			zoneSet(z, stmt, lex)
			return
		}
		// MariaDB SET STATEMENT var = v[, …] FOR stmt: the variables apply
		// to stmt only (it runs under them); stmt itself may change the
		// session.
		vars, tail, ok := forStatement(stmt, lex)
		if !ok {
			z.unknown()
			return
		}
		z.Mixed = z.Mixed || containsFold(vars, "time_zone") || hasNonASCII(vars)
		f, s := firstWords(tail)
		zoneStatement(z, tail, f, s, lex)
	case "PREPARE", "EXECUTE":
		if preparedText(stmt, first, second, lex, mayTouchZone, &z.RiskyPrepare, &z.Executes) {
			z.unknown()
		}
	case "CALL":
		// A stored procedure may set time_zone; the server does not restore
		// it when the procedure returns.
		z.unknown()
	default:
		if (compoundStarts[first] || second == ":") && mayTouchZone(stmt) {
			z.unknown() // a compound statement, or a stored program's body
		}
	}
}

// zoneSet follows one SET statement.
func zoneSet(z *ZoneChange, stmt string, lex Lex) {
	st, err := parseOne(stmt, lex)
	set, ok := st.(*ast.SetStmt)
	if err != nil || !ok {
		if containsFold(stmt, "time_zone") || hasNonASCII(stmt) {
			// SET PERSIST time_zone, or text the parser cannot read (SET
			// NAMES of a character set it does not know, followed by
			// more).
			z.unknown()
			z.Global = true
		}
		return
	}
	for _, v := range set.Variables {
		if !v.IsSystem {
			continue // a user variable (SET @old = @@time_zone), SET NAMES
		}
		name := strings.ToLower(v.Name)
		switch {
		case hasNonASCII(name):
			// The server compares variable names accent-insensitively.
			z.unknown()
		case strings.HasSuffix(name, ".time_zone"):
			// @@persist.time_zone and the like: a scope the parser does
			// not know.
			z.Global = true
			z.unknown()
		case name != "time_zone":
		case v.IsGlobal || v.IsInstance:
			z.Global = true
		default:
			if _, isDefault := v.Value.(*ast.DefaultExpr); isDefault {
				z.Set, z.Zone = SettingDefault, ""
				continue
			}
			zone, ok := stringLiteral(v.Value)
			if !ok {
				z.unknown()
				continue
			}
			z.Set, z.Zone = SettingValue, zone
		}
	}
}

// stringLiteral returns the value of a string literal (an identifier, as
// "…" is under ANSI_QUOTES, is not one).
func stringLiteral(e ast.ExprNode) (string, bool) {
	if x, ok := e.(*driver.ValueExpr); ok && (x.Kind() == driver.KindString || x.Kind() == driver.KindBytes) {
		return x.GetString(), true
	}
	return "", false
}
