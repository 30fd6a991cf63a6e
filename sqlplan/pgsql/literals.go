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
