package pgcrypt

import "testing"

func TestMentionsAny(t *testing.T) {
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
		if got := mentionsAny([]byte(text), mayChangeWords); got != want {
			t.Errorf("mentionsAny(%q) = %v, want %v", text, got, want)
		}
	}
}
