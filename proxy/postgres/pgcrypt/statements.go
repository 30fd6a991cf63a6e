package pgcrypt

import (
	"bytes"
	"math/bits"
)

// Scanning statement text without parsing it: which words it holds, and
// whether a statement starts with one of them (lexChanges and
// mayChangeSearchPath decide with these whether a request needs a plan).

// wordScan finds which of up to 8 lower-case ASCII words occur in a text,
// ignoring ASCII case, in one pass: only positions whose byte starts one of
// the words are compared. Built once per word list; read-only afterwards.
type wordScan struct {
	words []string
	first [256]uint8 // bit i: words[i] starts with this byte (either case)
}

func newWordScan(words ...string) *wordScan {
	if len(words) > 8 {
		panic("wordScan: more than 8 words")
	}
	ws := &wordScan{words: words}
	for i, w := range words {
		ws.first[w[0]] |= 1 << i
		ws.first[w[0]&^0x20] |= 1 << i
	}
	return ws
}

// scan returns the set of words found in text, bit i for words[i].
func (ws *wordScan) scan(text []byte) uint8 {
	var found uint8
	for i, c := range text {
		cand := ws.first[c] &^ found
		for cand != 0 {
			j := bits.TrailingZeros8(cand)
			cand &^= 1 << j
			if hasPrefixFold(text[i:], ws.words[j]) {
				found |= 1 << j
			}
		}
	}
	return found
}

// hasPrefixFold reports whether text starts with the lower-case ASCII word
// w, ignoring ASCII case in text.
func hasPrefixFold(text []byte, w string) bool {
	if len(text) < len(w) {
		return false
	}
	for j := 1; j < len(w); j++ { // text[0] matched through wordScan.first
		if c := text[j]; c != w[j] && c|0x20 != w[j] {
			return false
		}
	}
	return true
}

// statementWords start the statements that may change search_path or the
// lexing settings.
var statementWords = []string{"set", "reset", "discard"}

// startsStatement reports whether a statement of text begins with one of
// words (lower case), or whether text cannot be split into statements with
// certainty (an unterminated quote or comment): comments, quoted strings,
// quoted identifiers and dollar-quoted strings are skipped, statements
// split at the semicolons outside them. standard_conforming_strings must be
// on (backslashes escape only in E'…').
func startsStatement(text []byte, words []string) bool {
	atStart := true
	for i := 0; i < len(text); {
		c := text[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v':
			i++
			continue
		case c == '-' && i+1 < len(text) && text[i+1] == '-':
			for i < len(text) && text[i] != '\n' {
				i++
			}
			continue
		case c == '/' && i+1 < len(text) && text[i+1] == '*':
			var ok bool
			if i, ok = skipBlockComment(text, i); !ok {
				return true // unterminated: be careful
			}
			continue
		case c == ';':
			atStart = true
			i++
			continue
		}
		if atStart {
			for _, w := range words {
				if len(text)-i >= len(w) && bytes.EqualFold(text[i:i+len(w)], []byte(w)) &&
					(i+len(w) == len(text) || !isWordByte(text[i+len(w)])) {
					return true
				}
			}
			atStart = false
		}
		var ok bool
		if i, ok = skipToken(text, i); !ok {
			return true
		}
	}
	return false
}

func isWordByte(c byte) bool {
	return c == '_' || c == '$' || c >= 0x80 || ('0' <= c && c <= '9') || ('a' <= c|0x20 && c|0x20 <= 'z')
}

// skipBlockComment returns the index after the comment that starts with
// the "/*" at text[i] (PostgreSQL's block comments nest); ok is false if it
// is not terminated.
func skipBlockComment(text []byte, i int) (end int, ok bool) {
	depth := 0
	for ; i+1 < len(text); i++ {
		if pair := text[i : i+2]; pair[0] == '/' && pair[1] == '*' {
			depth++
		} else if pair[0] == '*' && pair[1] == '/' {
			depth--
		} else {
			continue
		}
		i++ // past the pair's second byte
		if depth == 0 {
			return i + 1, true
		}
	}
	return len(text), false
}

// skipToken returns the index after the token at text[i] (a quoted string
// or identifier, a dollar-quoted string, a word or one other byte); ok is
// false for an unterminated quote.
func skipToken(text []byte, i int) (int, bool) {
	c := text[i]
	switch {
	case c == '\'' || c == '"':
		escapes := c == '\'' && i > 0 && text[i-1]|0x20 == 'e' && (i < 2 || !isWordByte(text[i-2]))
		for j := i + 1; j < len(text); j++ {
			switch {
			case escapes && text[j] == '\\':
				j++
			case text[j] == c && j+1 < len(text) && text[j+1] == c:
				j++
			case text[j] == c:
				return j + 1, true
			}
		}
		return len(text), false
	case c == '$':
		j := i + 1
		for j < len(text) && isWordByte(text[j]) && text[j] != '$' {
			j++
		}
		if j >= len(text) || text[j] != '$' || (j > i+1 && '0' <= text[i+1] && text[i+1] <= '9') {
			return i + 1, true // a parameter ($1) or a lone $
		}
		tag := text[i : j+1]
		end := bytes.Index(text[j+1:], tag)
		if end < 0 {
			return len(text), false
		}
		return j + 1 + end + len(tag), true
	case isWordByte(c):
		j := i
		for j < len(text) && isWordByte(text[j]) {
			if text[j] == '$' { // a$b is a word, but stop before a dollar quote
				break
			}
			j++
		}
		if j == i {
			j++
		}
		return j, true
	}
	return i + 1, true
}
