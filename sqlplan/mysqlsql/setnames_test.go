package mysqlsql_test

import (
	"testing"

	"github.com/pingcap/tidb/pkg/parser/mysql"

	"github.com/dbproxy/dbproxy/sqlplan/mysqlsql"
)

// TestAnalyzeSessionNames: SET NAMES and SET CHARACTER SET are read by the
// parser; a character set or collation it does not implement is read from
// an exact SET NAMES statement only.
func TestAnalyzeSessionNames(t *testing.T) {
	const (
		value   = mysqlsql.SettingValue
		unknown = mysqlsql.SettingUnknown
	)
	ansi := mariaLex
	ansi.Mode = mysql.ModeANSIQuotes
	for _, c := range []struct {
		sql     string
		lex     mysqlsql.Lex
		charset mysqlsql.Setting
		cs      string
		mode    mysqlsql.Setting
	}{
		{"SET NAMES utf8mb4", mariaLex, value, "utf8mb4", 0},
		{"set names 'UTF8MB4' collate 'utf8mb4_bin'", mariaLex, value, "utf8mb4", 0},
		{"SET NAMES utf8mb4 COLLATE utf8mb4_uca1400_ai_ci", mariaLex, value, "utf8mb4", 0},
		{"SET NAMES utf8mb3", mariaLex, value, "utf8", 0}, // the parser's name for it
		{"SET NAMES \"latin1\"", mariaLex, value, "latin1", 0},
		{"SET NAMES \"latin1\"", ansi, value, "latin1", 0},
		{"SET NAMES ucs2", mariaLex, value, "ucs2", 0},
		{"SET CHARACTER SET 'cp932'", mariaLex, value, "cp932", 0},
		{"SET CHARSET sjis", mariaLex, value, "sjis", 0},
		{"/*!40101 SET NAMES sjis */", mariaLex, value, "sjis", 0},
		{"SET /* x */ NAMES -- y\n sjis", mariaLex, value, "sjis", 0},
		{"SET NAMES binary", mariaLex, value, "binary", 0},
		{"SET NAMES DEFAULT", mariaLex, unknown, "", 0},
		{"SET NAMES 'default'", mariaLex, unknown, "", 0},
		{"SET NAMES @cs", mariaLex, unknown, "", 0},
		{"SET NAMES 'sjis", mariaLex, unknown, "", unknown},
		{"SET NAMES sjis, sql_mode = 'ANSI_QUOTES'", mariaLex, unknown, "", unknown},
		{"SET NAMES utf8mb4, @x = 'sjis'", mariaLex, value, "utf8mb4", 0},
		{"SET @x = 'SET NAMES sjis'", mariaLex, 0, "", 0},
		{"SET NAMES latin1, NAMES sjis", mariaLex, unknown, "", 0},
		{"SET NAMES sj$is", mariaLex, unknown, "", 0},
		{"SET NAMES sjis COLLATE", mariaLex, unknown, "", 0},
		{"SET character_set_client = sjis", mariaLex, value, "sjis", 0},
		{"SET @@session.character_set_client = 'utf8mb4'", mariaLex, value, "utf8mb4", 0},
	} {
		got := mysqlsql.AnalyzeSession(c.sql, c.lex)
		if got.CharsetSet != c.charset || got.Charset != c.cs || got.ModeSet != c.mode {
			t.Errorf("%q: got charset %v %q mode %v, want %v %q %v", c.sql, got.CharsetSet, got.Charset, got.ModeSet, c.charset, c.cs, c.mode)
		}
	}
}
