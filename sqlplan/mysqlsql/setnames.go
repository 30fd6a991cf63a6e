package mysqlsql

import "strings"

// setNamesOnly reads a statement (normalised text: no comments) that the
// parser rejected because it does not implement a character set or
// collation the server may know (sjis, big5, utf8mb4_uca1400_ai_ci, …):
// it returns the character set (lower case) when the statement is exactly
// SET NAMES | SET CHARACTER SET | SET CHARSET, a name, and optionally
// COLLATE and a name, each name a word or a quoted word of letters,
// digits and underscores. DEFAULT is not a name.
func setNamesOnly(stmt string) (string, bool) {
	r := tokenReader{s: stmt}
	if !r.keyword("SET") {
		return "", false
	}
	if !r.keyword("NAMES") && !r.keyword("CHARSET") && !(r.keyword("CHARACTER") && r.keyword("SET")) {
		return "", false
	}
	cs, ok := r.name()
	if !ok || strings.EqualFold(cs, "default") {
		return "", false
	}
	if r.keyword("COLLATE") {
		if _, ok := r.name(); !ok {
			return "", false
		}
	}
	if skipSpace(r.s, r.i) != len(r.s) {
		return "", false
	}
	return strings.ToLower(cs), true
}

// tokenReader reads the words of a short statement left to right.
type tokenReader struct {
	s string
	i int
}

// keyword consumes the word w (upper case) if it comes next, in any case.
func (r *tokenReader) keyword(w string) bool {
	i := skipSpace(r.s, r.i)
	j := wordEnd(r.s, i)
	if !strings.EqualFold(r.s[i:j], w) {
		return false
	}
	r.i = j
	return true
}

// name consumes a word of ASCII letters, digits and underscores, bare or
// between ' or " quotes.
func (r *tokenReader) name() (string, bool) {
	i := skipSpace(r.s, r.i)
	quote := byte(0)
	if i < len(r.s) && (r.s[i] == '\'' || r.s[i] == '"') {
		quote = r.s[i]
		i++
	}
	j := i
	for j < len(r.s) && (r.s[j] == '_' || ('0' <= r.s[j] && r.s[j] <= '9') || ('a' <= r.s[j]|0x20 && r.s[j]|0x20 <= 'z')) {
		j++
	}
	if j == i {
		return "", false
	}
	name := r.s[i:j]
	if quote != 0 {
		if j >= len(r.s) || r.s[j] != quote {
			return "", false
		}
		j++
	} else if wordEnd(r.s, j) != j {
		return "", false // a word with other bytes ($, non-ASCII)
	}
	r.i = j
	return name, true
}
