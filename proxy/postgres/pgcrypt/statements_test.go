package pgcrypt

import (
	"strings"
	"testing"
)

// checkPredicate checks pred, called name in failures, on each text of
// cases against the answer it maps to.
func checkPredicate(t *testing.T, name string, pred func([]byte) bool, cases map[string]bool) {
	t.Helper()
	for text, want := range cases {
		if got := pred([]byte(text)); got != want {
			t.Errorf("%s(%q) = %v, want %v", name, text, got, want)
		}
	}
}

func TestFirstWordIn(t *testing.T) {
	isTxEnd := func(text []byte) bool { return firstWordIn(text, txEndWords) }
	checkPredicate(t, "firstWordIn", isTxEnd, map[string]bool{
		"commit":                        true,
		"  -- c\n /* x */ ROLLBACK":     true,
		"(commit)":                      true,
		"committed":                     false,
		"SELECT 1":                      false,
		"":                              false,
		"/* commit */ select 1":         false,
		strings.Repeat(" ", 40) + "end": true,
	})
}

func TestIsFetch(t *testing.T) {
	checkPredicate(t, "isFetch", isFetch, map[string]bool{
		"FETCH ALL IN c":                      true,
		"fetch":                               true,
		"  \n\tFetch next from c":             true,
		"-- comment\nfetch 2 from c":          true,
		"/* a /* nested */ comment */fetch c": true,
		"fetch\tc":                            true,
		"fetch(":                              true,
		"fetches":                             false,
		"fetch_x":                             false,
		"fetch$1":                             false,
		"select 1":                            false,
		"/* fetch */ select 1":                false,
		"-- fetch\nselect 1":                  false,
		"/* unterminated fetch":               false,
		"":                                    false,
		"fetc":                                false,
	})
}
