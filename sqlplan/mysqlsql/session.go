package mysqlsql

import (
	"strings"

	"github.com/pingcap/tidb/pkg/parser"
	"github.com/pingcap/tidb/pkg/parser/ast"
	"github.com/pingcap/tidb/pkg/parser/mysql"
	driver "github.com/pingcap/tidb/pkg/parser/test_driver"

	"github.com/dbproxy/dbproxy/rules"
)

// Setting is what a query string does to one session setting the lexer
// depends on (sql_mode, character_set_client). The zero value is "not
// changed".
type Setting uint8

const (
	// SettingUnchanged: the string does not change it.
	SettingUnchanged Setting = iota
	// SettingValue: set to a literal value (SessionChange.Mode or Charset).
	SettingValue
	// SettingDefault: set to DEFAULT, the global value.
	SettingDefault
	// SettingUnknown: changed in a way the proxy cannot follow (an
	// expression, a variable, a prepared or compound statement).
	SettingUnknown
)

// SessionChange is what a query string does to the session state that
// decides how the server reads text: the sql_mode and the client character
// set, composed over the string's statements in order. The wire layer
// applies it when the string succeeds.
type SessionChange struct {
	ModeSet Setting
	// Mode is the new lexing sql_mode bits (ModeSet == SettingValue);
	// ModeErr is set instead for a mode the proxy does not support.
	Mode    mysql.SQLMode
	ModeErr string
	// CharsetSet and Charset (lower case, as written) for
	// character_set_client (SET NAMES, SET CHARACTER SET, SET
	// character_set_client).
	CharsetSet Setting
	Charset    string
	// Global: the string changes the global sql_mode or
	// character_set_client, which new sessions start with.
	Global bool
	// RiskyPrepare: an SQL PREPARE whose text may change them (prepared
	// from a variable or an expression, or mentioning them): an EXECUTE
	// may then change them.
	RiskyPrepare bool
	// Executes: an SQL EXECUTE runs a prepared statement.
	Executes bool
	// Trailing: a statement follows a change (or an EXECUTE) in the same
	// string (the server lexes it under the new state).
	Trailing bool
}

// Changed reports whether the string changes a setting.
func (c *SessionChange) Changed() bool {
	return c.ModeSet != SettingUnchanged || c.CharsetSet != SettingUnchanged
}

func (c *SessionChange) unknown() {
	c.ModeSet, c.Mode, c.ModeErr = SettingUnknown, 0, ""
	c.CharsetSet, c.Charset = SettingUnknown, ""
}

// ClientCharset classifies a character_set_client name: safe charsets are
// those in which every byte 0x22, 0x27, 0x5C and 0x60 is that ASCII
// character (utf8mb3/utf8mb4, latin1, ascii, binary); singleByte ones also
// have bytes ≥ 0x80 that the server may read as whitespace. big5, cp932,
// gbk, gb18030 and sjis (whose multi-byte characters can end in 0x5C) and
// every other charset are not safe.
func ClientCharset(name string) (safe, singleByte bool) {
	switch strings.ToLower(name) {
	case "utf8", "utf8mb3", "utf8mb4":
		return true, false
	case "latin1", "ascii", "binary":
		return true, true
	}
	return false, false
}

// mayChangeSession is the cheap scan that spares most strings the
// analysis: it reports whether sql mentions a word that can change the
// sql_mode or the client character set (or run text that can), or holds a
// non-ASCII byte and "set" (system variable names are compared accent-
// and case-insensitively by the server: `sql_modé` is sql_mode).
func mayChangeSession(sql string) bool { return sessionWords.mentions(sql) }

var sessionWords = newWordScan("sql_mode", "names", "character", "charset", "execute", "prepare", "atomic")

// hasFold reports whether s has word (lower case) at i, in any ASCII case.
func hasFold(s string, i int, word string) bool { return rules.HasPrefixFold(s[i:], word) }

// compoundStarts are statements whose bodies hold ; (stored programs,
// MariaDB's compound statements outside them): a string holding one cannot
// be split into statements at ; by the proxy.
var compoundStarts = map[string]bool{"CREATE": true, "ALTER": true, "BEGIN": true, "IF": true, "CASE": true,
	"LOOP": true, "WHILE": true, "REPEAT": true, "FOR": true, "DECLARE": true}

// AnalyzeSession returns what sql does to the session's sql_mode and client
// character set when the server reads it under lex, statement by statement
// (a change applies to the statements after it). It never fails: text it
// cannot read makes the settings unknown.
func AnalyzeSession(sql string, lex Lex) SessionChange {
	var c SessionChange
	norm, err := normalize(sql, lex)
	if err != nil {
		c.unknown()
		return c
	}
	compound := false
	// norm has the length of sql: pos indexes both.
	for pos := 0; pos < len(norm); {
		stmt, n := splitFirst(norm[pos:], lex)
		next := pos + n
		more := next < len(norm) && strings.TrimSpace(norm[next:]) != ""
		if strings.TrimSpace(stmt) != "" {
			if c.Changed() || c.Executes {
				// (What EXECUTE runs may change them too.)
				c.Trailing = true
			}
			before := c
			first, second := firstWords(stmt)
			if first == "EXECUTE" || mayChangeSession(stmt) {
				analyzeStatement(&c, stmt, first, second, lex)
			}
			if compound && c != before {
				c.unknown()
			}
			if compoundStarts[first] || second == ":" {
				compound = true
			}
			if more && lexChanged(&c, &before) {
				// The rest of the string is lexed under the new state.
				if !nextLex(&c, &lex) {
					c.unknown()
					c.Trailing = true
					return c
				}
				rest, err := normalize(sql[next:], lex)
				if err != nil {
					c.unknown()
					return c
				}
				norm = norm[:next] + rest
			}
		}
		pos = next
	}
	return c
}

func lexChanged(c, before *SessionChange) bool {
	return c.ModeSet != before.ModeSet || c.Mode != before.Mode || c.ModeErr != before.ModeErr ||
		c.CharsetSet != before.CharsetSet || c.Charset != before.Charset
}

// nextLex updates lex for the statements after a change; false when the
// new state cannot be followed within the string.
func nextLex(c *SessionChange, lex *Lex) bool {
	switch {
	case c.ModeSet == SettingValue && c.ModeErr == "":
		lex.Mode, lex.ModeAssumed = c.Mode, false
	case c.ModeSet != SettingUnchanged:
		return false
	}
	switch c.CharsetSet {
	case SettingValue:
		safe, single := ClientCharset(c.Charset)
		if !safe {
			return false
		}
		lex.SingleByte = single
	case SettingDefault, SettingUnknown:
		return false
	}
	return true
}

// splitFirst returns the first statement of norm (normalised text, without
// its ;) and the index after its ;.
func splitFirst(norm string, lex Lex) (string, int) {
	for i := 0; i < len(norm); {
		if j, quoted, err := quotedEnd(norm, i, lex); quoted {
			if err != nil {
				return norm, len(norm)
			}
			i = j
			continue
		}
		if norm[i] == ';' {
			return norm[:i], i + 1
		}
		i++
	}
	return norm, len(norm)
}

// quotedEnd reports whether s[i] opens a string or a quoted identifier
// under lex's sql_mode, and if so returns the index after it (an error if
// it is not closed).
func quotedEnd(s string, i int, lex Lex) (int, bool, error) {
	c := s[i]
	switch {
	case c == '\'' || (c == '"' && lex.Mode&mysql.ModeANSIQuotes == 0):
		j, err := skipQuoted(s, i, c, lex.Mode&mysql.ModeNoBackslashEscapes == 0, false)
		return j, true, err
	case c == '`' || c == '"':
		j, err := skipQuoted(s, i, c, false, false)
		return j, true, err
	}
	return i, false, nil
}

// firstWords returns the first word of a statement in upper case and the
// second token (a word in upper case, or one punctuation byte).
func firstWords(stmt string) (string, string) {
	i := skipSpace(stmt, 0)
	j := wordEnd(stmt, i)
	first := strings.ToUpper(stmt[i:j])
	k := skipSpace(stmt, j)
	if k >= len(stmt) {
		return first, ""
	}
	if e := wordEnd(stmt, k); e > k {
		return first, strings.ToUpper(stmt[k:e])
	}
	return first, stmt[k : k+1]
}

func skipSpace(s string, i int) int {
	for i < len(s) && (s[i] == ' ' || (s[i] >= '\t' && s[i] <= '\r')) {
		i++
	}
	return i
}

func wordEnd(s string, i int) int {
	for i < len(s) {
		c := s[i]
		if !(c == '_' || c == '$' || c >= 0x80 || (c >= '0' && c <= '9') || (c|0x20 >= 'a' && c|0x20 <= 'z')) {
			break
		}
		i++
	}
	return i
}

// analyzeStatement adds what one statement (normalised text) does to c.
func analyzeStatement(c *SessionChange, stmt, first, second string, lex Lex) {
	switch first {
	case "SET":
		if second == "STATEMENT" {
			// MariaDB SET STATEMENT var = v[, …] FOR stmt: the variables
			// apply to stmt only (and the string is lexed before they
			// do); stmt itself may change the session.
			if _, tail, ok := forStatement(stmt, lex); ok {
				f, s := firstWords(tail)
				analyzeStatement(c, tail, f, s, lex)
			} else {
				c.unknown()
			}
			return
		}
		analyzeSet(c, stmt, lex)
	case "PREPARE", "EXECUTE":
		if preparedText(stmt, first, second, lex, mayChangeSession, &c.RiskyPrepare, &c.Executes) {
			c.unknown()
		}
	case "BEGIN", "IF", "CASE", "LOOP", "WHILE", "REPEAT", "FOR", "DECLARE":
		if first != "BEGIN" || second == "NOT" {
			c.unknown()
		}
	default:
		if second == ":" {
			c.unknown() // a labelled compound statement
		}
	}
}

// afterFor returns the statement after the top-level FOR of SET STATEMENT.
func afterFor(stmt string, lex Lex) (string, bool) {
	for i := 0; i < len(stmt); {
		if j, quoted, err := quotedEnd(stmt, i, lex); quoted {
			if err != nil {
				return "", false
			}
			i = j
			continue
		}
		if j := wordEnd(stmt, i); j > i {
			if strings.EqualFold(stmt[i:j], "FOR") && (i == 0 || wordEnd(stmt, i-1) == i-1) {
				return stmt[j:], true
			}
			i = j
			continue
		}
		i++
	}
	return "", false
}

func parseOne(stmt string, lex Lex) (ast.StmtNode, error) {
	p := parser.New()
	p.SetSQLMode(lex.Mode)
	return p.ParseOneStmt(stmt, "", "")
}

// analyzeSet follows SET statements: sql_mode and character_set_client set
// to a literal (a string, a name, 0 for sql_mode) or DEFAULT, SET NAMES
// and SET CHARACTER SET with a literal; GLOBAL and PERSIST assignments
// change new sessions only; assignments to user variables and other
// system variables change neither. Anything else naming them is unknown.
func analyzeSet(c *SessionChange, stmt string, lex Lex) {
	st, err := parseOne(stmt, lex)
	set, ok := st.(*ast.SetStmt)
	if err != nil || !ok {
		unparsedSet(c, stmt, err)
		return
	}
	for _, v := range set.Variables {
		if !analyzeAssignment(c, v) {
			return
		}
	}
}

// unparsedSet follows a SET statement the parser did not read as one (err
// when it could not read it at all).
func unparsedSet(c *SessionChange, stmt string, err error) {
	if err != nil {
		if cs, ok := setNamesOnly(stmt); ok {
			// SET NAMES / CHARACTER SET of a character set or collation
			// the parser does not implement.
			c.CharsetSet, c.Charset = SettingValue, cs
			return
		}
	}
	c.CharsetSet, c.Charset = SettingUnknown, ""
	if containsFold(stmt, "sql_mode") || hasNonASCII(stmt) {
		c.ModeSet, c.Mode, c.ModeErr = SettingUnknown, 0, ""
	}
}

// analyzeAssignment adds one assignment of a SET statement to c; false
// when the rest of the statement need not be read (everything is unknown).
func analyzeAssignment(c *SessionChange, v *ast.VariableAssignment) bool {
	name := strings.ToLower(v.Name)
	if hasNonASCII(name) {
		// The server compares variable names accent-insensitively.
		c.unknown()
		return false
	}
	if v.IsSystem && (strings.HasSuffix(name, ".sql_mode") || strings.HasSuffix(name, ".character_set_client")) {
		// @@persist.sql_mode and the like: a scope the parser does not
		// know; follow neither the session nor the global value.
		c.Global = true
		c.unknown()
		return true
	}
	switch {
	case v.Name == ast.SetNames || v.Name == ast.SetCharset:
		cs, ok := literalName(v.Value)
		if !ok || strings.EqualFold(cs, "default") {
			c.CharsetSet, c.Charset = SettingUnknown, ""
			return true
		}
		c.CharsetSet, c.Charset = SettingValue, strings.ToLower(cs)
	case !v.IsSystem:
		// A user variable: no session setting changes.
	case name != "sql_mode" && name != "character_set_client":
	case v.IsGlobal || v.IsInstance:
		c.Global = true
	case name == "sql_mode":
		setSQLMode(c, v.Value)
	default:
		setClientCharset(c, v.Value)
	}
	return true
}

// setSQLMode follows SET sql_mode = value.
func setSQLMode(c *SessionChange, value ast.ExprNode) {
	if _, isDefault := value.(*ast.DefaultExpr); isDefault {
		c.ModeSet, c.Mode, c.ModeErr = SettingDefault, 0, ""
		return
	}
	s, ok := literalName(value)
	if !ok {
		if n, isNum := value.(*driver.ValueExpr); isNum && n.Kind() == driver.KindInt64 && n.GetInt64() == 0 {
			s, ok = "", true
		}
	}
	if !ok {
		c.ModeSet, c.Mode, c.ModeErr = SettingUnknown, 0, ""
		return
	}
	m, err := ParseSQLMode(s)
	c.ModeSet, c.Mode, c.ModeErr = SettingValue, m, ""
	if err != nil {
		c.ModeErr = "sql_mode '" + strings.ToUpper(s) + "' is not supported by the proxy"
		if len(s) > 64 {
			c.ModeErr = "this sql_mode is not supported by the proxy"
		}
	}
}

// setClientCharset follows SET character_set_client = value.
func setClientCharset(c *SessionChange, value ast.ExprNode) {
	if _, isDefault := value.(*ast.DefaultExpr); isDefault {
		c.CharsetSet, c.Charset = SettingDefault, ""
		return
	}
	cs, ok := literalName(value)
	if !ok {
		c.CharsetSet, c.Charset = SettingUnknown, ""
		return
	}
	c.CharsetSet, c.Charset = SettingValue, strings.ToLower(cs)
}

// containsFold reports whether s contains word (lower case) in any ASCII
// case, anywhere.
func containsFold(s, word string) bool {
	for i := 0; i < len(s); i++ {
		if hasFold(s, i, word) {
			return true
		}
	}
	return false
}

func hasNonASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return true
		}
	}
	return false
}

// literalName returns the text of a string literal or a bare name.
func literalName(e ast.ExprNode) (string, bool) {
	switch x := e.(type) {
	case *driver.ValueExpr:
		if x.Kind() == driver.KindString || x.Kind() == driver.KindBytes {
			return x.GetString(), true
		}
	case *ast.ColumnNameExpr:
		if x.Name.Table.L == "" && x.Name.Schema.L == "" {
			return x.Name.Name.O, true
		}
	}
	return "", false
}
