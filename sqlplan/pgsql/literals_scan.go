package pgsql

import (
	"strconv"
	"strings"
)

// skipLineComment skips the -- comment that starts at i, up to the end
// of its line.
func skipLineComment(sql string, i int) (int, bool) {
	n := len(sql)
	i += 2
	for i < n && sql[i] != '\n' && sql[i] != '\r' {
		if sql[i] == 0 {
			return 0, false
		}
		i++
	}
	return i, true
}

// skipQuotedIdent skips the quoted identifier that starts at i.
func skipQuotedIdent(sql string, i int) (int, bool) {
	n := len(sql)
	j := i + 1
	for {
		k := strings.IndexByte(sql[j:], '"')
		if k < 0 {
			return 0, false
		}
		j += k + 1
		if j < n && sql[j] == '"' {
			j++
			continue
		}
		break
	}
	if strings.IndexByte(sql[i:j], 0) >= 0 {
		return 0, false
	}
	return j, true
}

// skipParam skips the parameter ($1) that starts at i.
func skipParam(sql string, i int) (int, bool) {
	n := len(sql)
	j := i + 1
	for j < n && isDigit(sql[j]) {
		j++
	}
	if j < n && (isIdentCont(sql[j]) || sql[j] == '.') {
		return 0, false
	}
	return j, true
}

// scanWord scans the identifier or key word that starts at i. When it is
// the prefix of a string constant (E'…', B'…', X'…', U&'…'), lit is true
// and l is that constant; otherwise next is the end of the word.
func scanWord(sql string, i int) (l litSpan, next int, lit, ok bool) {
	n := len(sql)
	c := sql[i]
	j := i + 1
	for j < n && isIdentCont(sql[j]) {
		j++
	}
	if j == i+1 && j < n && sql[j] == '\'' {
		switch c | 0x20 {
		case 'e':
			l, ok := scanString(sql, i, j+1, true)
			return l, 0, true, ok
		case 'b', 'x':
			l, ok := scanBits(sql, i, j+1)
			return l, 0, true, ok
		}
	}
	if j == i+1 && c|0x20 == 'u' && j+1 < n && sql[j] == '&' && sql[j+1] == '\'' {
		l, ok := scanString(sql, i, j+2, false)
		if !ok {
			return l, 0, true, false
		}
		l.class = litOpaque
		return l, 0, true, true
	}
	return litSpan{}, j, false, true
}

// skipBlockComment skips the (nested) comment that starts at i.
func skipBlockComment(sql string, i int) (int, bool) {
	depth := 0
	for i+1 < len(sql) {
		switch {
		case sql[i] == 0:
			return 0, false
		case sql[i] == '/' && sql[i+1] == '*':
			depth++
			i += 2
		case sql[i] == '*' && sql[i+1] == '/':
			depth--
			i += 2
			if depth == 0 {
				return i, true
			}
		default:
			i++
		}
	}
	return 0, false
}

// scanString scans a quoted string whose prefix starts at start and whose
// body starts at body (after the opening quote). escapes: an E'…' string,
// where a backslash escapes the next byte.
func scanString(sql string, start, body int, escapes bool) (litSpan, bool) {
	l := litSpan{start: start, vstart: body, class: litString}
	n := len(sql)
	j := body
	for {
		if j >= n {
			return l, false
		}
		switch sql[j] {
		case 0:
			return l, false
		case '\\':
			l.class = litOpaque
			if escapes {
				j++
			}
			j++
		case '\'':
			if j+1 < n && sql[j+1] == '\'' {
				l.quotes = true
				j += 2
				continue
			}
			l.vend, l.end = j, j+1
			return l, !continues(sql, l.end)
		default:
			j++
		}
	}
}

// scanBits scans B'…' or X'…'. A doubled quote gives up.
func scanBits(sql string, start, body int) (litSpan, bool) {
	k := strings.IndexByte(sql[body:], '\'')
	if k < 0 {
		return litSpan{}, false
	}
	end := body + k + 1
	if strings.IndexByte(sql[body:end], 0) >= 0 || (end < len(sql) && sql[end] == '\'') {
		return litSpan{}, false
	}
	return litSpan{start: start, end: end, vstart: body, vend: end - 1, class: litBits}, !continues(sql, end)
}

// continues reports whether a quote follows the string ending at i after
// only whitespace and comments: PostgreSQL may read that as a
// continuation of the same string (when a newline separates them), which
// this scan does not model.
func continues(sql string, i int) bool {
	n := len(sql)
	for i < n {
		switch c := sql[i]; {
		case isSpace(c):
			i++
		case c == '-' && i+1 < n && sql[i+1] == '-':
			for i < n && sql[i] != '\n' && sql[i] != '\r' {
				i++
			}
		case c == '/' && i+1 < n && sql[i+1] == '*':
			j, ok := skipBlockComment(sql, i)
			if !ok {
				return true
			}
			i = j
		default:
			return c == '\''
		}
	}
	return false
}

// scanDollar scans a dollar-quoted string starting at i ($tag$…$tag$).
func scanDollar(sql string, i int) (litSpan, bool) {
	n := len(sql)
	j := i + 1
	if j < n && isIdentStart(sql[j]) {
		j++
		for j < n && (isIdentStart(sql[j]) || isDigit(sql[j])) {
			j++
		}
	}
	if j >= n || sql[j] != '$' {
		return litSpan{}, false
	}
	delim := sql[i : j+1]
	body := j + 1
	k := strings.Index(sql[body:], delim)
	if k < 0 || strings.IndexByte(sql[body:body+k], 0) >= 0 {
		return litSpan{}, false
	}
	return litSpan{start: i, end: body + k + len(delim), vstart: body, vend: body + k, class: litString}, true
}

// scanNumber scans a decimal number starting at i: digits, an optional
// fraction and exponent. Anything else attached to it gives up.
func scanNumber(sql string, i int) (litSpan, bool) {
	n := len(sql)
	j := i
	for j < n && isDigit(sql[j]) {
		j++
	}
	float := false
	if j < n && sql[j] == '.' {
		if j+1 < n && sql[j+1] == '.' {
			return litSpan{}, false
		}
		float = true
		j++
		for j < n && isDigit(sql[j]) {
			j++
		}
	}
	if j < n && (sql[j] == 'e' || sql[j] == 'E') {
		k := j + 1
		if k < n && (sql[k] == '+' || sql[k] == '-') {
			k++
		}
		if k >= n || !isDigit(sql[k]) {
			return litSpan{}, false
		}
		for k < n && isDigit(sql[k]) {
			k++
		}
		j, float = k, true
	}
	if j < n && (isIdentCont(sql[j]) || sql[j] == '.') {
		return litSpan{}, false
	}
	l := litSpan{start: i, end: j, vstart: i, vend: j, class: litNum}
	if !float {
		if _, err := strconv.ParseInt(sql[i:j], 10, 32); err == nil {
			l.class = litInt
		}
	}
	return l, true
}
