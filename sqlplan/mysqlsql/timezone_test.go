package mysqlsql_test

import (
	"testing"

	"github.com/dbproxy/dbproxy/sqlplan/mysqlsql"
)

func TestAnalyzeTimeZone(t *testing.T) {
	const (
		unchanged = mysqlsql.SettingUnchanged
		value     = mysqlsql.SettingValue
		def       = mysqlsql.SettingDefault
		unknown   = mysqlsql.SettingUnknown
	)
	cases := []struct {
		sql    string
		lex    mysqlsql.Lex
		set    mysqlsql.Setting
		zone   string
		global bool
		mixed  bool
	}{
		{"SELECT 1", mariaLex, unchanged, "", false, false},
		{"SELECT @@session.time_zone, @@time_zone", mariaLex, unchanged, "", false, false},
		{"show variables like 'time_zone'", mariaLex, unchanged, "", false, false},
		{"UPDATE zones SET time_zone = 'x' WHERE id = 1", mariaLex, unchanged, "", false, false},
		{"SELECT 'SET time_zone = ''+01:00'''", mariaLex, unchanged, "", false, false},
		{"SELECT 1 -- SET time_zone = '+01:00'", mariaLex, unchanged, "", false, false},
		{"SELECT 1 /* SET time_zone = '+01:00' */", mariaLex, unchanged, "", false, false},
		{"SET time_zone = '+02:00'", mariaLex, value, "+02:00", false, false},
		{"set SESSION time_zone='-05:30';", mariaLex, value, "-05:30", false, false},
		{"SET LOCAL time_zone = 'UTC'", mariaLex, value, "UTC", false, false},
		{"SET @@session.time_zone = \"+00:00\"", mariaLex, value, "+00:00", false, false},
		{"SET @@local.time_zone = '+03:00'", mariaLex, value, "+03:00", false, false},
		{"SET @@time_zone := 'UTC'", mariaLex, value, "UTC", false, false},
		{"SET `time_zone` = _utf8mb4'+04:00'", mariaLex, value, "+04:00", false, false},
		{"SET time_zone = '+0' '1:00'", mariaLex, value, "+01:00", false, false},
		{"SET time_zone = DEFAULT", mariaLex, def, "", false, false},
		{"SET time_zone = @tz", mariaLex, unknown, "", false, false},
		{"SET time_zone = CONCAT('+0', '1:00')", mariaLex, unknown, "", false, false},
		{"SET time_zone = (SELECT tz FROM conf)", mariaLex, unknown, "", false, false},
		{"SET NAMES utf8mb4, time_zone = '+01:00'", mariaLex, value, "+01:00", false, false},
		{"SET NAMES sjis, time_zone = '+01:00'", mariaLex, unknown, "", true, false},
		{"SET @tz = @@time_zone, time_zone = '+01:00'", mariaLex, value, "+01:00", false, false},
		{"SET time_zone = '+01:00', time_zone = @x", mariaLex, unknown, "", false, false},
		{"SET time_zone = @x, time_zone = '+01:00'", mariaLex, value, "+01:00", false, false},
		{"SET GLOBAL time_zone = '+01:00'", mariaLex, unchanged, "", true, false},
		{"SET @@global.time_zone = '+01:00'", mariaLex, unchanged, "", true, false},
		{"SET @@persist.time_zone = '+01:00'", mysqlLex, unknown, "", true, false},
		{"SET PERSIST time_zone = '+01:00'", mysqlLex, unknown, "", true, false},
		{"SET time_zoné = '+01:00'", mariaLex, unknown, "", false, false},
		// Several statements: the last change wins; a statement after a
		// change runs under it.
		{"SET time_zone = '+02:00'; INSERT INTO t VALUES (1)", mariaLex, value, "+02:00", false, true},
		{"SELECT 1; SET time_zone = '+02:00'", mariaLex, value, "+02:00", false, false},
		{"SET time_zone = '+02:00'; SET time_zone = '+03:00'", mariaLex, value, "+03:00", false, true},
		{"SET time_zone = '+02:00'; SET time_zone = @x", mariaLex, unknown, "", false, true},
		{"SELECT ';'; SET time_zone = '+02:00'", mariaLex, value, "+02:00", false, false},
		{`SELECT 'a\'; SET time_zone = '+02:00'; -- '`, mariaLex, unchanged, "", false, false},
		{"SET sql_mode = 'ANSI_QUOTES'; SET time_zone = \"+02:00\"", mariaLex, unknown, "", false, false},
		// sql_mode ANSI_QUOTES: "…" is an identifier.
		{`SET time_zone = "+02:00"`, ansiLex, unknown, "", false, false},
		{`SELECT "; SET time_zone = '+02:00'; "`, ansiLex, unchanged, "", false, false},
		{`SELECT "a\"; SET time_zone = '+02:00'; -- "`, mariaLex, unchanged, "", false, false},
		{`SELECT "a\"; SET time_zone = '+02:00'; -- "`, ansiLex, value, "+02:00", false, false},
		// mysqldump's header and trailer; executable comments for a newer
		// version are comments.
		{"/*!40103 SET @OLD_TIME_ZONE=@@TIME_ZONE */", mariaLex, unchanged, "", false, false},
		{"/*!40103 SET TIME_ZONE='+00:00' */", mariaLex, value, "+00:00", false, false},
		{"/*M!100100 SET TIME_ZONE='+02:00' */", mariaLex, value, "+02:00", false, false},
		{"/*!40103 SET TIME_ZONE=@OLD_TIME_ZONE */", mariaLex, unknown, "", false, false},
		{"/*!99999 SET TIME_ZONE='+02:00' */", mariaLex, unchanged, "", false, false},
		{"/*M!999999 SET TIME_ZONE='+02:00' */", mariaLex, unchanged, "", false, false},
		{"/*M!100100 SET TIME_ZONE='+02:00' */", mysqlLex, unchanged, "", false, false},
		{"SET @tz := @@session.time_zone", mariaLex, unchanged, "", false, false},
		// Text the proxy cannot follow.
		{"CALL set_zone()", mariaLex, unknown, "", false, false},
		{"EXECUTE IMMEDIATE 'SET time_zone = ''+01:00'''", mariaLex, unknown, "", false, false},
		{"BEGIN NOT ATOMIC SET time_zone = '+01:00'; END", mariaLex, unknown, "", false, true},
		{"CREATE PROCEDURE p() BEGIN SET time_zone = '+01:00'; END", mariaLex, unknown, "", false, true},
		{"l: LOOP SET time_zone = '+01:00'; END LOOP", mariaLex, unknown, "", false, true},
		{"SET time_zone = UTC", mariaLex, unknown, "", false, false},
		{"SET STATEMENT time_zone = '+01:00' FOR SELECT 1", mariaLex, unchanged, "", false, true},
		{"SET STATEMENT max_statement_time = 1 FOR SET time_zone = '+01:00'", mariaLex, value, "+01:00", false, false},
		{"SET time_zone = '+01:00", mariaLex, unknown, "", false, false},
	}
	for _, c := range cases {
		z := mysqlsql.AnalyzeTimeZone(c.sql, c.lex)
		if z.Set != c.set || z.Zone != c.zone || z.Global != c.global || z.Mixed != c.mixed {
			t.Errorf("%q: got %+v, want set %v zone %q global %v mixed %v", c.sql, z, c.set, c.zone, c.global, c.mixed)
		}
	}
}

func TestAnalyzeTimeZonePrepare(t *testing.T) {
	cases := []struct {
		sql             string
		risky, executes bool
	}{
		{"PREPARE s FROM 'SELECT 1'", false, false},
		{"PREPARE s FROM 'SET time_zone = ''+01:00'''", true, false},
		{"PREPARE s FROM 'CALL p()'", true, false},
		{"PREPARE s FROM @q", true, false},
		{"EXECUTE s", false, true},
		{"EXECUTE s USING @a", false, true},
		{"PREPARE s FROM 'SET time_zone = ?'; EXECUTE s USING @z", true, true},
	}
	for _, c := range cases {
		z := mysqlsql.AnalyzeTimeZone(c.sql, mariaLex)
		if z.RiskyPrepare != c.risky || z.Executes != c.executes {
			t.Errorf("%q: got %+v, want risky %v executes %v", c.sql, z, c.risky, c.executes)
		}
	}
}
