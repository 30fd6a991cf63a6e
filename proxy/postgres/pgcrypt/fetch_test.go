package pgcrypt_test

import (
	"testing"

	"github.com/dbproxy/dbproxy/proxy/postgres/pgcrypt"
)

func TestIsFetch(t *testing.T) {
	for sql, want := range map[string]bool{
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
	} {
		if got := pgcrypt.IsFetch([]byte(sql)); got != want {
			t.Errorf("isFetch(%q) = %v, want %v", sql, got, want)
		}
	}
}
