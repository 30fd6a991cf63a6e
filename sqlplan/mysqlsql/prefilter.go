package mysqlsql

import (
	"strings"
	"unicode/utf8"

	"github.com/dbproxy/dbproxy/rules"
)

// This file holds the byte scans that send a string to the planner although
// it names no encrypted table: statements whose effect on encrypted tables
// does not show in their text (dynamic SQL, stored programs, views,
// renames). Like rules.Set.MayTouch they may say yes too often (a false
// positive costs a parse), never too rarely.

// mentionsDynamic reports whether sql contains the word PREPARE or EXECUTE
// anywhere (in any case, inside strings and comments too): a statement
// prepared from a variable, EXECUTE IMMEDIATE, and stored program or
// compound statement bodies (BEGIN NOT ATOMIC …, IF …, SET STATEMENT … FOR)
// that run dynamic SQL all contain one of them.
func mentionsDynamic(sql string) bool {
	for i := 0; i+7 <= len(sql); i++ {
		// Look at the second byte first: r/R and x/X (ASCII letters
		// with bit 5 set or not) are the only ones that matter.
		if c := sql[i+1] | 0x20; c != 'r' && c != 'x' {
			continue
		}
		var word string
		switch sql[i] | 0x20 {
		case 'p':
			word = "prepare"
		case 'e':
			word = "execute"
		default:
			continue
		}
		if (i == 0 || !rules.IdentByte(sql[i-1])) && hasWordFold(sql[i:], word) {
			return true
		}
	}
	return false
}

// hasWordFold reports whether s starts with word (lower case) in any ASCII
// case, not followed by an identifier byte.
func hasWordFold(s, word string) bool {
	return rules.HasPrefixFold(s, word) && (len(s) == len(word) || !rules.IdentByte(s[len(word)]))
}

// ddlStart reports whether some statement of sql may start with CREATE,
// ALTER, DROP or RENAME: views, triggers, stored programs and renames can
// change what an encrypted table's name means without naming it in a way
// the other filters see, and such statements refresh the planner's view of
// the catalog. A statement start is the beginning of the string, any
// position after a semicolon (inside a string too: a false positive only
// costs a parse) and the inside of an executable comment (/*! … */,
// /*!50100 … */, /*M! … */, /*M!100100 … */), after whitespace and
// comments.
func ddlStart(sql string) bool {
	return ddlWordAt(sql, 0) ||
		anyAt(sql, ";", func(i int) bool { return ddlWordAt(sql, i+1) }) ||
		anyAt(sql, "/*", func(i int) bool {
			return i+2 < len(sql) && (sql[i+2] == '!' || (sql[i+2]|0x20) == 'm') && ddlWordAt(sql, i)
		})
}

// anyAt reports whether at holds at some index of sql where sep starts.
// strings.Index skips the bytes between candidates with vector
// instructions.
func anyAt(sql, sep string, at func(i int) bool) bool {
	for i := 0; ; i++ {
		j := strings.Index(sql[i:], sep)
		if j < 0 {
			return false
		}
		i += j
		if at(i) {
			return true
		}
	}
}

var ddlWords = [...]string{"create", "alter", "drop", "rename"}

// ddlWordAt reports whether the first word at or after i (past whitespace,
// comments and executable-comment openers) is one of ddlWords.
func ddlWordAt(sql string, i int) bool {
	i = skipSpaceComments(sql, i)
	if i >= len(sql) {
		return false
	}
	for _, w := range ddlWords {
		if hasWordFold(sql[i:], w) {
			return true
		}
	}
	return false
}

// skipSpaceComments skips whitespace, comments (-- , #, /* */) and the
// openers of executable comments, whose text the server runs.
func skipSpaceComments(sql string, i int) int {
	for i < len(sql) {
		c := sql[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v':
			i++
		case c == '#':
			i = skipLine(sql, i)
		case c == '-' && i+2 < len(sql) && sql[i+1] == '-' && sql[i+2] <= ' ':
			i = skipLine(sql, i)
		case c == '/' && i+1 < len(sql) && sql[i+1] == '*':
			j := i + 2
			if j < len(sql) && (sql[j]|0x20) == 'm' && j+1 < len(sql) && sql[j+1] == '!' {
				j++
			}
			if j < len(sql) && sql[j] == '!' {
				// Executable: its text is SQL. Skip the opener and the
				// version digits.
				j++
				for j < len(sql) && '0' <= sql[j] && sql[j] <= '9' {
					j++
				}
				i = j
				continue
			}
			end := indexFrom(sql, j, "*/")
			if end < 0 {
				return len(sql)
			}
			i = end + 2
		case c == '*' && i+1 < len(sql) && sql[i+1] == '/':
			i += 2 // the end of an executable comment
		default:
			return i
		}
	}
	return i
}

func skipLine(sql string, i int) int {
	for i < len(sql) && sql[i] != '\n' {
		i++
	}
	return i
}

func indexFrom(s string, from int, sub string) int {
	for i := from; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return i
		}
	}
	return -1
}

// leadingWords returns up to n lower-cased words that start the first
// statement of sql, skipping whitespace, comments, executable-comment
// openers and the clauses that may stand between CREATE and the kind of
// object (OR REPLACE, DEFINER = …, ALGORITHM = …, SQL SECURITY …,
// AGGREGATE), for messages: "create trigger", "alter view".
func leadingWords(sql string) (first, kind string) {
	i := skipSpaceComments(sql, 0)
	w, i := word(sql, i)
	first = w
	for n := 0; n < 12 && i < len(sql); n++ {
		i = skipSpaceComments(sql, i)
		var v string
		v, i = word(sql, i)
		switch v {
		case "or", "replace", "aggregate", "sql", "security", "definer", "invoker", "algorithm",
			"undefined", "merge", "temptable", "online", "ignore", "temporary", "current_user":
			continue
		case "":
			// DEFINER = `u`@`h`: skip the value.
			for i < len(sql) && sql[i] != ' ' && sql[i] != '\t' && sql[i] != '\n' && sql[i] != '\r' {
				i++
			}
			continue
		}
		return first, v
	}
	return first, ""
}

// word returns the lower-cased ASCII word at i and the position after it.
func word(sql string, i int) (string, int) {
	j := i
	for j < len(sql) && rules.IdentByte(sql[j]) && sql[j] < utf8.RuneSelf {
		j++
	}
	b := []byte(sql[i:j])
	for k, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[k] = c + 'a' - 'A'
		}
	}
	return string(b), j
}
