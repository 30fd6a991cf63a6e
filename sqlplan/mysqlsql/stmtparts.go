package mysqlsql

import "github.com/pingcap/tidb/pkg/parser/ast"

// forStatement splits MariaDB's SET STATEMENT var = v[, …] FOR stmt
// (normalised text) into its variable assignments and stmt; ok is false
// when the top-level FOR cannot be found.
func forStatement(stmt string, lex Lex) (vars, tail string, ok bool) {
	tail, ok = afterFor(stmt, lex)
	if !ok {
		return "", "", false
	}
	return stmt[:len(stmt)-len(tail)], tail, true
}

// preparesRisky reports whether an SQL PREPARE statement prepares text
// that may change a setting (mayChange), text from a variable, or text the
// parser cannot read: an EXECUTE of it may then change the setting.
func preparesRisky(stmt string, lex Lex, mayChange func(string) bool) bool {
	st, err := parseOne(stmt, lex)
	p, ok := st.(*ast.PrepareStmt)
	return err != nil || !ok || p.SQLVar != nil || mayChange(p.SQLText)
}

// preparedText follows a PREPARE or an EXECUTE, which the session and the
// time_zone analyses treat alike: a PREPARE whose text may do what mentions
// looks for sets *risky (an EXECUTE may then run it), an EXECUTE sets
// *executes. It reports whether the statement's effect is unknown: EXECUTE
// IMMEDIATE runs text the proxy does not see.
func preparedText(stmt, first, second string, lex Lex, mentions func(string) bool, risky, executes *bool) (unknown bool) {
	if first == "PREPARE" {
		*risky = *risky || preparesRisky(stmt, lex, mentions)
		return false
	}
	*executes = true
	return second == "IMMEDIATE"
}

// wordScan finds which strings may change a session setting: those that
// mention one of its words (lower case ASCII, starting with a letter) in
// any case, or hold a non-ASCII byte and "set" (the server compares system
// variable names accent- and case-insensitively: `sql_modé` is sql_mode).
// Built once; read-only afterwards.
type wordScan struct {
	byFirst [256][]string // the words by their first byte, lower case
}

func newWordScan(words ...string) *wordScan {
	ws := &wordScan{}
	for _, w := range words {
		ws.byFirst[w[0]] = append(ws.byFirst[w[0]], w)
	}
	return ws
}

// mentions reports whether sql may change the setting (see wordScan).
func (ws *wordScan) mentions(sql string) bool {
	nonASCII, set := false, false
	for i := 0; i < len(sql); i++ {
		c := sql[i]
		if c >= 0x80 {
			nonASCII = true
			continue
		}
		for _, w := range ws.byFirst[c|0x20] {
			if hasFold(sql, i, w) {
				return true
			}
		}
		if c|0x20 == 's' && hasFold(sql, i, "set") {
			set = true
		}
	}
	return nonASCII && set
}
