package mysqlsql

import (
	"strings"
	"testing"
)

func TestScanLiterals(t *testing.T) {
	tests := []struct {
		sql  string
		want string // the constants, as "class:text" joined by space; "!" when the scan gives up
	}{
		{"SELECT a FROM t WHERE e = 'x' AND n = 42", "s:'x' i:42"},
		{"INSERT INTO t (a, b) VALUES ('', 0), ('b c', 123456789012345678)", "s:'' i:0 s:'b c' i:123456789012345678"},
		{"SELECT t1.c2 FROM `t 1` AS x1 WHERE `a'b` = 5 LIMIT 10", "i:5 i:10"},
		{"SELECT 1.5, 1e3, 0x1F, 007, 5abc, .5, 1234567890123456789, t.1", ""},
		{"SELECT @a, @@session.sql_mode, @x1 FROM t WHERE c = ?", ""},
		{"SELECT 'a' AS 'b'", "s:'a' s:'b'"},
		// gives up
		{"SELECT 'a\\'b'", "!"},
		{"SELECT \"a\"", "!"},
		{"SELECT 'it''s'", "!"},
		{"SELECT 'a' 'b'", "!"},
		{"SELECT 'a'\n'b'", "!"},
		{"SELECT 'a'b", "!"},
		{"SELECT N'a'", "!"},
		{"SELECT _utf8mb4'a'", "!"},
		{"SELECT X'61'", "!"},
		{"SELECT 1 -- c", "!"},
		{"SELECT 1 --c", "!"},
		{"SELECT 1 # c", "!"},
		{"SELECT /*!50000 1 */", "!"},
		{"SELECT 'caf\xc3\xa9'", "!"},
		{"SELECT 'a\x00'", "!"},
		{"SELECT 'a\tb'", "!"},
		{"SELECT 'a\nb'", "!"},
		{"SELECT 'a", "!"},
		{"SELECT `a", "!"},
		{"SELECT `a``b`", "!"},
		{"SELECT @'a'", "!"},
		{"SELECT @`a`", "!"},
		{"SELECT `caf\xc3\xa9`", "!"},
		{"SELECT `a\\b`", "!"},
	}
	for _, tt := range tests {
		lits, ok := scanLiterals(tt.sql, nil)
		var got []string
		for _, l := range lits {
			got = append(got, string(l.class)+":"+tt.sql[l.start:l.end])
		}
		g := strings.Join(got, " ")
		if !ok {
			g = "!"
		}
		if g != tt.want {
			t.Errorf("%q: got %q, want %q", tt.sql, g, tt.want)
		}
	}
}

func TestNormalizedKey(t *testing.T) {
	sql := "SELECT a FROM t WHERE e = 'x' AND n = 42"
	lits, _ := scanLiterals(sql, nil)
	if got, want := normalizedKey(sql, lits), "SELECT a FROM t WHERE e = \x00s AND n = \x00i"; got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
	other := "SELECT a FROM t WHERE e = 'yy' AND n = 7"
	lits2, _ := scanLiterals(other, nil)
	if normalizedKey(other, lits2) != normalizedKey(sql, lits) {
		t.Fatal("statements differing only in constants have different keys")
	}
}

func TestMayUse(t *testing.T) {
	for sql, want := range map[string]bool{
		"USE app": true, "use`app`": true, "/*!50000USE app*/": true, "/*M!100000use app*/": true,
		"SELECT 1;use app": true, "USE": true, "\tUse\n": true, "x\xc3use": true,
		"SELECT * FROM users": false, "SELECT user_id FROM t": false, "reuse": false,
		"houses": false, "_use": false, "$use": false, "used": false,
	} {
		if got := mayUse(sql); got != want {
			t.Errorf("mayUse(%q) = %v, want %v", sql, got, want)
		}
	}
}
