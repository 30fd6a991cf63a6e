package pgcrypt

import (
	"strings"
	"testing"
)

func TestWordScan(t *testing.T) {
	cases := map[string]bool{
		"SET search_path TO x":                true,
		"set SEARCH_PATH = x":                 true,
		"SELECT 1":                            false,
		"UPDATE users SET Role = 'admin'":     true, // conservative: any mention
		"RESET ALL":                           true,
		"DISCARD ALL":                         true,
		"SET SESSION AUTHORIZATION bob":       true,
		"INSERT INTO t VALUES ('searc_path')": false,
		"select * from accounts where id = 1": false,
		"x search_pat":                        false,
		"":                                    false,
	}
	for text, want := range cases {
		if got := sessionWords.scan([]byte(text))&mayChangeWords != 0; got != want {
			t.Errorf("scan(%q) mentions a word that may change search_path = %v, want %v", text, got, want)
		}
	}
	// Every word, in any case, at the start, middle and end; overlapping
	// words (set, set_config) are both found.
	for i, w := range sessionWords.words {
		for _, text := range []string{w, "x " + strings.ToUpper(w) + " y", "abc" + w} {
			if got := sessionWords.scan([]byte(text)); got&(1<<i) == 0 {
				t.Errorf("scan(%q) = %08b, misses %q", text, got, w)
			}
		}
	}
	if got := sessionWords.scan([]byte("SELECT set_config('a', 'b', false), 1 FROM rollback")); got != wordSetConfig|wordSet|wordRollback {
		t.Errorf("scan = %08b, want set_config, set and rollback", got)
	}
	if got := sessionWords.scan([]byte("sea sear search_pat se_ discar resed rollbac")); got != 0 {
		t.Errorf("scan of prefixes = %08b, want none", got)
	}
}

func TestStartsStatement(t *testing.T) {
	cases := map[string]bool{
		"SET ROLE admin": true,
		"  /* c */ set session authorization bob":             true,
		"-- comment\nRESET ALL":                               true,
		"DISCARD ALL":                                         true,
		"SELECT 1; SET role TO x":                             true,
		"UPDATE users SET role = 'admin' WHERE id = 1":        false,
		"SELECT 'x; SET ROLE y' FROM t":                       false,
		`SELECT "a;set" FROM t`:                               false,
		"SELECT $$; SET ROLE x$$":                             false,
		"SELECT $tag$ ; reset $tag$, $1":                      false,
		"SELECT E'\\'; set role x'":                           false,
		"SELECT 'it''s'; SET x = 1":                           true,
		"SELECT settings FROM t":                              false,
		"SELECT 1 /* unterminated":                            true,
		"SELECT 'unterminated":                                true,
		"INSERT INTO t (reset_token) VALUES ('a')":            false,
		"/* nested /* c */ still */ SET search_path TO x":     true,
		"SELECT a$b, x FROM t; discard plans":                 true,
		"WITH s AS (SELECT 1) UPDATE t SET role = s.x FROM s": false,
	}
	for text, want := range cases {
		if got := startsStatement([]byte(text), statementWords); got != want {
			t.Errorf("startsStatement(%q) = %v, want %v", text, got, want)
		}
	}
}

// FuzzStartsStatement: any text is scanned without panicking, and a text
// that begins with SET is always reported.
func FuzzStartsStatement(f *testing.F) {
	f.Add("SELECT 'a'; SET ROLE x")
	f.Add("/* /* */ */ $a$ $a$ E'\\'' \"q\"\"\"")
	f.Fuzz(func(t *testing.T, text string) {
		startsStatement([]byte(text), statementWords)
		if !startsStatement([]byte("SET x = 1; "+text), statementWords) {
			t.Fatal("a leading SET was missed")
		}
	})
}
