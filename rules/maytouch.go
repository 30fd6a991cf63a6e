package rules

import (
	"strings"
	"unicode/utf8"
)

// needleSet is the pre-filter of MayTouch: lower-cased needles indexed by
// their first byte.
type needleSet struct {
	byFirst [256][]string
	// second[c] is the set of (lower-cased) bytes that follow first byte c
	// in some needle: a cheap filter before comparing whole needles. A
	// one-byte needle sets every bit.
	second [256][4]uint64
	// anyNonASCII: some needle has a non-ASCII byte, so any non-ASCII byte
	// in the statement counts as a possible match (case folding beyond
	// ASCII is not attempted).
	anyNonASCII bool
	empty       bool
	// words: a needle counts only as a whole word (see NewWordNeedles).
	words bool
}

// tableNames returns the configured names of tables.
func tableNames(tables []*TableRule) []string {
	names := make([]string, len(tables))
	for i, t := range tables {
		names[i] = t.Table
	}
	return names
}

func newNeedleSet(d Dialect, names []string) needleSet {
	var ns needleSet
	seen := map[string]bool{}
	add := func(n string) {
		n = strings.ToLower(n)
		if n == "" || seen[n] {
			return
		}
		seen[n] = true
		for i := 0; i < len(n); i++ {
			if n[i] >= utf8.RuneSelf {
				ns.anyNonASCII = true
			}
		}
		ns.byFirst[n[0]] = append(ns.byFirst[n[0]], n)
		if len(n) == 1 {
			ns.second[n[0]] = [4]uint64{^uint64(0), ^uint64(0), ^uint64(0), ^uint64(0)}
		} else {
			ns.second[n[0]][n[1]>>6] |= 1 << (n[1] & 63)
			if 'a' <= n[1] && n[1] <= 'z' {
				u := n[1] - ('a' - 'A')
				ns.second[n[0]][u>>6] |= 1 << (u & 63)
			}
		}
	}
	for _, name := range names {
		add(name)
		switch d {
		case DialectPostgres:
			if strings.Contains(name, `"`) {
				add(strings.ReplaceAll(name, `"`, `""`))
			}
		case DialectMySQL:
			if strings.Contains(name, "`") {
				add(strings.ReplaceAll(name, "`", "``"))
			}
		}
	}
	ns.empty = len(seen) == 0
	if !ns.empty && d == DialectPostgres {
		// U&"d\0061ta" spells an identifier with Unicode escapes.
		add(`u&"`)
	}
	return ns
}

// MayTouch reports whether sql may reference an encrypted table. False
// means it certainly does not, so the statement can be forwarded without
// parsing. See "The pre-filter" in the package doc for what counts. It is
// safe for concurrent use and does not allocate.
func (s *Set) MayTouch(sql string) bool {
	if s == nil {
		return false
	}
	return s.filter.mayTouch(sql)
}

// Needles is the pre-filter of [Set.MayTouch] over names that are not
// configured tables (the PostgreSQL layer uses it for relations the
// catalog finds derived from encrypted tables: views, inheritance
// children, partitions). The zero value and nil match nothing. Immutable
// and safe for concurrent use.
type Needles struct{ ns needleSet }

// NewNeedles returns the pre-filter of names, spelled as stored in the
// database catalog (PostgreSQL: exact, as pg_class.relname holds them).
// They are searched like configured table names (see "The pre-filter").
func NewNeedles(d Dialect, names []string) *Needles {
	return &Needles{ns: newNeedleSet(d, names)}
}

// NewWordNeedles is [NewNeedles] that counts a name only as a whole word:
// where no byte that can continue an unquoted identifier ([IdentByte])
// stands right before or after it. That is enough in MySQL: an
// identifier, bare, quoted or qualified, is never continued by such a byte,
// so a view named v is found in `v`, db.v and V, not in vat. (A name that
// holds a non-ASCII byte still makes any non-ASCII byte count.)
func NewWordNeedles(d Dialect, names []string) *Needles {
	ns := newNeedleSet(d, names)
	ns.words = true
	return &Needles{ns: ns}
}

// MayTouch reports whether sql may mention one of the names. False means
// it certainly does not. It does not allocate.
func (n *Needles) MayTouch(sql string) bool {
	if n == nil {
		return false
	}
	return n.ns.mayTouch(sql)
}

func (f *needleSet) mayTouch(sql string) bool {
	if f.empty {
		return false
	}
	for i := 0; i < len(sql); i++ {
		c := sql[i]
		if c >= utf8.RuneSelf {
			if f.anyNonASCII {
				return true
			}
			continue
		}
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if f.byFirst[c] == nil || (f.words && i > 0 && IdentByte(sql[i-1])) {
			continue
		}
		if i+1 < len(sql) {
			if b := sql[i+1]; f.second[c][b>>6]&(1<<(b&63)) == 0 {
				continue
			}
		}
		for _, n := range f.byFirst[c] {
			if HasPrefixFold(sql[i:], n) && (!f.words || i+len(n) == len(sql) || !IdentByte(sql[i+len(n)])) {
				return true
			}
		}
	}
	return false
}

// HasPrefixFold reports whether s starts with needle, which is lower
// case, ignoring ASCII case in s. The SQL pre-filters of both protocols
// use it; it does not allocate.
func HasPrefixFold(s, needle string) bool {
	if len(s) < len(needle) {
		return false
	}
	for i := 0; i < len(needle); i++ {
		c := s[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != needle[i] {
			return false
		}
	}
	return true
}

// IdentByte reports whether c can continue an unquoted identifier or keyword
// in either dialect: ASCII letters, digits, '_' and '$', and every non-ASCII
// byte (both servers accept multi-byte characters in identifiers).
func IdentByte(c byte) bool {
	return c == '_' || c == '$' || '0' <= c && c <= '9' || 'a' <= c|0x20 && c|0x20 <= 'z' || c >= utf8.RuneSelf
}
