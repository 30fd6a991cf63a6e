package proxy

import (
	"crypto/sha256"
	"encoding/hex"
)

// Fingerprint returns a short hash of a SQL statement with its literals,
// comments and spacing taken out: statements that differ only in their
// values share it, so that a log can tell which statement shape was
// refused without holding any value. It is 16 hex digits of a SHA-256.
//
// The normalization is lexical and dialect-neutral (PostgreSQL and MySQL):
// quoted strings ('…', "…", `…`, $tag$…$tag$, with backslash escapes
// taken as MySQL takes them) and numbers become "?", comments (--, #,
// /* */) and runs of white space one space, keywords lowercase. A text it
// lexes differently from the server only changes the hash, which never
// shows a value.
func Fingerprint(sql []byte) string {
	h := sha256.New()
	var out [64]byte
	buf := out[:0]
	flush := func() {
		h.Write(buf)
		buf = buf[:0]
	}
	emit := func(b ...byte) {
		if len(buf)+len(b) > cap(buf) {
			flush()
		}
		buf = append(buf, b...)
	}
	space := false
	for i := 0; i < len(sql); {
		c := sql[i]
		n := 1
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f':
			space = true
			i++
			continue
		case c == '-' && i+1 < len(sql) && sql[i+1] == '-', c == '#':
			n = skipLine(sql, i)
			space = true
			i += n
			continue
		case c == '/' && i+1 < len(sql) && sql[i+1] == '*':
			n = skipBlock(sql, i)
			space = true
			i += n
			continue
		case c == '\'' || c == '"' || c == '`':
			n = skipQuoted(sql, i, c)
			c = '?'
		case c == '$' && i+1 < len(sql) && (sql[i+1] == '$' || isIdentStart(sql[i+1])):
			if m := skipDollar(sql, i); m > 0 {
				n, c = m, '?'
			}
		case c >= '0' && c <= '9' && (i == 0 || !isIdentByte(sql[i-1])):
			for n < len(sql)-i && (isIdentByte(sql[i+n]) || sql[i+n] == '.') {
				n++
			}
			c = '?'
		case c >= 'A' && c <= 'Z':
			c += 'a' - 'A'
		}
		if space {
			emit(' ')
			space = false
		}
		emit(c)
		i += n
	}
	flush()
	var sum [sha256.Size]byte
	return hex.EncodeToString(h.Sum(sum[:0])[:8])
}

// firstKeyword returns the statement's first word in upper case (SELECT,
// INSERT, ...), at most 16 letters, or "" if it does not start with one.
func firstKeyword(sql []byte) string {
	i := 0
	for i < len(sql) {
		switch {
		case sql[i] == ' ' || sql[i] == '\t' || sql[i] == '\n' || sql[i] == '\r' || sql[i] == '(':
			i++
		case sql[i] == '-' && i+1 < len(sql) && sql[i+1] == '-':
			i += skipLine(sql, i)
		case sql[i] == '/' && i+1 < len(sql) && sql[i+1] == '*':
			i += skipBlock(sql, i)
		default:
			var w []byte
			for j := i; j < len(sql) && len(w) < 16; j++ {
				c := sql[j]
				if c >= 'a' && c <= 'z' {
					c -= 'a' - 'A'
				}
				if c < 'A' || c > 'Z' {
					break
				}
				w = append(w, c)
			}
			return string(w)
		}
	}
	return ""
}

func isIdentStart(c byte) bool { return c == '_' || c|0x20 >= 'a' && c|0x20 <= 'z' || c >= 0x80 }

func isIdentByte(c byte) bool { return isIdentStart(c) || c >= '0' && c <= '9' || c == '$' }

// skipLine returns the length of the comment at sql[i:] up to its line end.
func skipLine(sql []byte, i int) int {
	j := i
	for j < len(sql) && sql[j] != '\n' {
		j++
	}
	return j - i
}

// skipBlock returns the length of the /* */ comment at sql[i:] (nested,
// as PostgreSQL reads them).
func skipBlock(sql []byte, i int) int {
	depth, j := 0, i
	for j+1 < len(sql) {
		switch {
		case sql[j] == '/' && sql[j+1] == '*':
			depth++
			j += 2
		case sql[j] == '*' && sql[j+1] == '/':
			depth--
			j += 2
			if depth == 0 {
				return j - i
			}
		default:
			j++
		}
	}
	return len(sql) - i
}

// skipQuoted returns the length of the quoted string at sql[i:], closed
// by q (doubled q and backslash escape q inside).
func skipQuoted(sql []byte, i int, q byte) int {
	j := i + 1
	for j < len(sql) {
		switch sql[j] {
		case '\\':
			j += 2
			continue
		case q:
			if j+1 < len(sql) && sql[j+1] == q {
				j += 2
				continue
			}
			return j + 1 - i
		}
		j++
	}
	return len(sql) - i
}

// skipDollar returns the length of the dollar-quoted string at sql[i:]
// ($$…$$ or $tag$…$tag$), or 0 if none starts there.
func skipDollar(sql []byte, i int) int {
	j := i + 1
	for j < len(sql) && sql[j] != '$' {
		if !isIdentByte(sql[j]) {
			return 0
		}
		j++
	}
	if j >= len(sql) {
		return 0
	}
	tag := sql[i : j+1]
	for k := j + 1; k+len(tag) <= len(sql); k++ {
		if string(sql[k:k+len(tag)]) == string(tag) {
			return k + len(tag) - i
		}
	}
	return len(sql) - i
}
