package pgsql

import (
	"hash/maphash"
	"strconv"
	"strings"
)

// The literal scan: a hand-written lexer, much simpler than PostgreSQL's,
// that finds the constants of a SQL string without parsing it, so that
// statements differing only in their constants can share one cached plan
// (see template.go). It recognises exactly the token boundaries that
// matter for finding constants (comments, quoted identifiers, identifiers,
// parameters, strings and numbers) and gives up — the caller then keys
// the cache by the exact text — on anything it is not sure it reads the
// way PostgreSQL's scanner does: unterminated quotes or comments, NUL
// bytes, string continuation (a quote after whitespace or a comment that
// follows a string), stray $, numbers with junk after them (1_000, 0x1F,
// 1e, 1..2, 5abc) and a parameter followed by an identifier character.
//
// It classifies each constant; the class is part of the normalized key,
// so that a cached plan is only reused for a constant the grammar reads
// as the same token type:
//
//	litString  '…' without backslash, E'…' without backslash, $tag$…$tag$
//	           (SCONST; the value is decoded here)
//	litOpaque  a '…' or E'…' string with a backslash (escape processing
//	           depends on standard_conforming_strings or is not decoded
//	           here) and U&'…' (UESCAPE may follow)
//	litBits    B'…' and X'…' (BCONST, XCONST)
//	litInt     digits whose value fits int32 (ICONST)
//	litNum     other numbers: a decimal point, an exponent, or beyond int32
//	           (FCONST)
//
// Opaque and bit-string constants are placeholders in the key but never
// variable in a template: they must be byte-identical for a cache hit.

// Literal classes (the byte that follows the placeholder NUL in the key).
const (
	litString byte = 's'
	litOpaque byte = 'o'
	litBits   byte = 'b'
	litInt    byte = 'i'
	litNum    byte = 'n'
)

// litSpan is one constant of a scanned SQL string: bytes [start, end),
// its class and, for litString, the bytes [vstart, vend) of its body and
// whether the body has doubled quotes to undo.
type litSpan struct {
	start, end   int
	vstart, vend int
	class        byte
	quotes       bool
}

// decodable reports whether the value of the constant is decoded here
// (and so whether it can vary between uses of a cached plan).
func (l *litSpan) decodable() bool {
	return l.class == litString || l.class == litInt || l.class == litNum
}

// value returns the constant as the parse tree holds it (the text of a
// Literal): a string's contents with quotes resolved, an integer's decimal
// value, any other number as written. neg applies a unary minus folded
// into the constant by the grammar (-5).
func (l *litSpan) value(sql string, neg bool) string {
	switch l.class {
	case litString:
		v := sql[l.vstart:l.vend]
		if l.quotes {
			v = strings.ReplaceAll(v, "''", "'")
		}
		return v
	case litInt:
		raw := sql[l.start:l.end]
		if !neg && (len(raw) == 1 || raw[0] != '0') {
			return raw
		}
		v, err := strconv.ParseInt(raw, 10, 32)
		if err != nil { // cannot happen: the scan checked it
			return raw
		}
		if neg {
			v = -v
		}
		return strconv.FormatInt(v, 10)
	case litNum:
		if neg {
			return "-" + sql[l.start:l.end]
		}
		return sql[l.start:l.end]
	}
	return sql[l.start:l.end]
}

func isSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// isIdentStart: [A-Za-z\200-\377_], as PostgreSQL's ident_start (and
// dolq_start).
func isIdentStart(c byte) bool {
	return ('a' <= c|0x20 && c|0x20 <= 'z') || c == '_' || c >= 0x80
}

// isIdentCont: ident_cont, [A-Za-z\200-\377_0-9$].
func isIdentCont(c byte) bool { return isIdentStart(c) || isDigit(c) || c == '$' }

// scanLiterals appends the constants of sql to dst. ok is false when the
// scan gave up (see above); the caller must then not use a normalized key.
func scanLiterals(sql string, dst []litSpan) (lits []litSpan, ok bool) {
	n := len(sql)
	i := 0
	for i < n {
		c := sql[i]
		switch {
		case c == 0:
			return dst, false
		case c == '-' && i+1 < n && sql[i+1] == '-':
			j, ok := skipLineComment(sql, i)
			if !ok {
				return dst, false
			}
			i = j
		case c == '/' && i+1 < n && sql[i+1] == '*':
			j, ok := skipBlockComment(sql, i)
			if !ok {
				return dst, false
			}
			i = j
		case c == '\'':
			l, ok := scanString(sql, i, i+1, false)
			if !ok {
				return dst, false
			}
			dst = append(dst, l)
			i = l.end
		case c == '"':
			j, ok := skipQuotedIdent(sql, i)
			if !ok {
				return dst, false
			}
			i = j
		case c == '$':
			if i+1 < n && isDigit(sql[i+1]) {
				j, ok := skipParam(sql, i)
				if !ok {
					return dst, false
				}
				i = j
				continue
			}
			l, ok := scanDollar(sql, i)
			if !ok {
				return dst, false
			}
			dst = append(dst, l)
			i = l.end
		case isDigit(c) || (c == '.' && i+1 < n && isDigit(sql[i+1])):
			l, ok := scanNumber(sql, i)
			if !ok {
				return dst, false
			}
			dst = append(dst, l)
			i = l.end
		case isIdentStart(c):
			l, j, lit, ok := scanWord(sql, i)
			if !ok {
				return dst, false
			}
			if lit {
				dst = append(dst, l)
				i = l.end
				continue
			}
			i = j
		default:
			i++
		}
	}
	return dst, true
}

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

// skeletonHash hashes the normalized SQL: sql with every constant
// replaced by a NUL byte and its class. The scan gives up on SQL with a
// NUL byte, so the placeholders cannot be confused with the text.
func skeletonHash(seed maphash.Seed, sql string, lits []litSpan) uint64 {
	var h maphash.Hash
	h.SetSeed(seed)
	pos := 0
	for i := range lits {
		h.WriteString(sql[pos:lits[i].start])
		h.WriteByte(0)
		h.WriteByte(lits[i].class)
		pos = lits[i].end
	}
	h.WriteString(sql[pos:])
	return h.Sum64()
}

// sameSkeleton reports whether a (constants al) and b (constants bl) have
// the same normalized SQL.
func sameSkeleton(a string, al []litSpan, b string, bl []litSpan) bool {
	if len(al) != len(bl) {
		return false
	}
	pa, pb := 0, 0
	for i := range al {
		if al[i].class != bl[i].class || a[pa:al[i].start] != b[pb:bl[i].start] {
			return false
		}
		pa, pb = al[i].end, bl[i].end
	}
	return a[pa:] == b[pb:]
}
