package pgsql

import (
	"strings"
	"testing"
)

func TestScanLiterals(t *testing.T) {
	for _, tc := range []struct {
		sql  string
		want string // constants as class:text, space separated; "!" = gave up
	}{
		{"SELECT 1, 'a', E'b', $$c$$, $t$d$t$, 1.5, .5, 1e3, 2147483648, B'1', X'F', U&'x'", "i:1 s:'a' s:E'b' s:$$c$$ s:$t$d$t$ n:1.5 n:.5 n:1e3 n:2147483648 b:B'1' b:X'F' o:U&'x'"},
		{"SELECT 'it''s', E'it\\'s', 'a\\b'", `s:'it''s' o:E'it\'s' o:'a\b'`},
		{`SELECT "a'b", x1, $1, a$b, t.c -- 'no'` + "\n/* 'no' /* 'nested' */ */ 2", "i:2"},
		{"SELECT e'x', b'1', xe'y', n'z', date'2020-01-01'", "s:e'x' b:b'1' s:'y' s:'z' s:'2020-01-01'"},
		{"SELECT $a$ $b$ ' $a$", "s:$a$ $b$ ' $a$"},
		{"SELECT 5-3, -2, a-1", "i:5 i:3 i:2 i:1"},
		{"SELECT 'a'\n'b'", "!"},
		{"SELECT 'a' -- c\n 'b'", "!"},
		{"SELECT 'a", "!"},
		{"SELECT \"a", "!"},
		{"SELECT /* a", "!"},
		{"SELECT $a$ x", "!"},
		{"SELECT $", "!"},
		{"SELECT $1a", "!"},
		{"SELECT 0x1F", "!"},
		{"SELECT 1_000", "!"},
		{"SELECT 1..2", "!"},
		{"SELECT 1e", "!"},
		{"SELECT 5abc", "!"},
		{"SELECT 1.2.3", "!"},
		{"SELECT 'a\x00'", "!"},
		{"SELECT B'1''0'", "!"},
	} {
		lits, ok := scanLiterals(tc.sql, nil)
		var got []string
		for _, l := range lits {
			got = append(got, string(l.class)+":"+tc.sql[l.start:l.end])
		}
		g := strings.Join(got, " ")
		if !ok {
			g = "!"
		}
		if g != tc.want {
			t.Errorf("scanLiterals(%q) = %s, want %s", tc.sql, g, tc.want)
		}
	}
}

func TestLiteralValue(t *testing.T) {
	for _, tc := range []struct {
		sql  string
		neg  bool
		want string
	}{
		{"'it''s'", false, "it's"},
		{"E'x'", false, "x"},
		{"$q$a'b$q$", false, "a'b"},
		{"007", false, "7"},
		{"007", true, "-7"},
		{"0", true, "0"},
		{"42", false, "42"},
		{"1.50", true, "-1.50"},
		{"2147483648", true, "-2147483648"},
	} {
		lits, ok := scanLiterals(tc.sql, nil)
		if !ok || len(lits) != 1 {
			t.Fatalf("scan %q: %v %v", tc.sql, lits, ok)
		}
		if got := lits[0].value(tc.sql, tc.neg); got != tc.want {
			t.Errorf("value(%q, %v) = %q, want %q", tc.sql, tc.neg, got, tc.want)
		}
	}
}

// TestTemplateFixesUntiedConstants: a constant inside an edit that does
// not carry its value (or cut by an edit boundary) must not vary, even if
// it was used as a plain value.
func TestTemplateFixesUntiedConstants(t *testing.T) {
	sql := "SELECT 'abc' + 1, 'de', 7"
	lits, ok := scanLiterals(sql, nil)
	if !ok || len(lits) != 4 {
		t.Fatal(lits, ok)
	}
	a := &analyzer{}
	for _, l := range lits {
		a.plainLits = append(a.plainLits, l.start+1)
	}
	pl := &Plan{Statements: []Statement{{Start: 0, End: len(sql), Kind: KindQuery, Edits: []Edit{
		{Start: 7, End: 16, Kind: EditText, Text: "x"},  // covers 'abc' and 1
		{Start: 20, End: 20, Kind: EditText, Text: "y"}, // cuts 'de'
	}}}}
	tm := buildTemplate(noTouch, sql, lits, pl, a)
	if tm == nil {
		t.Fatal("no template")
	}
	if got := tm.vary; got[0] || got[1] || got[2] || !got[3] {
		t.Fatalf("vary = %v, want only the last constant", got)
	}
	other := "SELECT 'abc' + 2, 'de', 7"
	ol, _ := scanLiterals(other, nil)
	if _, ok := tm.instantiate(noTouch, other, ol, nil); ok {
		t.Fatal("a constant inside an edit varied")
	}
	nsql := "SELECT 'abc' + 1, 'de', 12345"
	nl, _ := scanLiterals(nsql, nil)
	got, ok := tm.instantiate(noTouch, nsql, nl, nil)
	if !ok || got.Statements[0].End != len(nsql) || got.Statements[0].Edits[1].Start != 20 {
		t.Fatalf("instantiate = %+v, %v", got, ok)
	}
}

// noTouch is a pre-filter that matches nothing.
func noTouch(string) bool { return false }
