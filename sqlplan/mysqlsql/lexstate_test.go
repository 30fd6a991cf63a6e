package mysqlsql_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/pingcap/tidb/pkg/parser/mysql"

	"github.com/dbproxy/dbproxy/sqlplan"
	"github.com/dbproxy/dbproxy/sqlplan/mysqlsql"
)

var (
	mariaLex = mysqlsql.Lex{Flavour: mysqlsql.FlavourMariaDB, Version: 101106}
	mysqlLex = mysqlsql.Lex{Flavour: mysqlsql.FlavourMySQL, Version: 80036}
	// mariaLex under ANSI_QUOTES and under NO_BACKSLASH_ESCAPES.
	ansiLex = mysqlsql.Lex{Flavour: mysqlsql.FlavourMariaDB, Version: 101106, Mode: mysql.ModeANSIQuotes}
	nbeLex  = mysqlsql.Lex{Flavour: mysqlsql.FlavourMariaDB, Version: 101106, Mode: mysql.ModeNoBackslashEscapes}
	// mariaLex with a single-byte client character set (latin1).
	latin1Lex = mysqlsql.Lex{Flavour: mysqlsql.FlavourMariaDB, Version: 101106, SingleByte: true}
)

func TestParseServerVersion(t *testing.T) {
	for _, c := range []struct {
		in      string
		flavour mysqlsql.Flavour
		version uint32
	}{
		{"5.5.5-10.11.6-MariaDB-0+deb12u1", mysqlsql.FlavourMariaDB, 101106},
		{"11.4.2-MariaDB-log", mysqlsql.FlavourMariaDB, 110402},
		{"8.0.36", mysqlsql.FlavourMySQL, 80036},
		{"8.4.0-commercial", mysqlsql.FlavourMySQL, 80400},
		{"5.7.44-log", mysqlsql.FlavourMySQL, 50744},
		{"8.0.mysql_aurora.3.05.2", mysqlsql.FlavourMySQL, 80000},
		{"garbage", mysqlsql.FlavourMySQL, 0},
	} {
		fl, v := mysqlsql.ParseServerVersion(c.in)
		if fl != c.flavour || v != c.version {
			t.Errorf("%q: %v %d, want %v %d", c.in, fl, v, c.flavour, c.version)
		}
	}
}

func TestParseSQLMode(t *testing.T) {
	for in, want := range map[string]mysql.SQLMode{
		"": 0,
		"STRICT_TRANS_TABLES,ERROR_FOR_DIVISION_BY_ZERO,NO_AUTO_CREATE_USER,NO_ENGINE_SUBSTITUTION": 0,
		"no_backslash_escapes":             mysql.ModeNoBackslashEscapes,
		" ANSI_QUOTES , STRICT_ALL_TABLES": mysql.ModeANSIQuotes,
		"ANSI":                             mysql.ModeANSIQuotes | mysql.ModePipesAsConcat | mysql.ModeIgnoreSpace,
		"REAL_AS_FLOAT,PIPES_AS_CONCAT,ANSI_QUOTES,IGNORE_SPACE,ANSI": mysql.ModeANSIQuotes | mysql.ModePipesAsConcat | mysql.ModeIgnoreSpace,
		"HIGH_NOT_PRECEDENCE": mysql.ModeHighNotPrecedence,
	} {
		if got, err := mysqlsql.ParseSQLMode(in); err != nil || got != want {
			t.Errorf("%q: %v %v, want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"ORACLE", "MSSQL", "NO_SUCH_MODE"} {
		if got, err := mysqlsql.ParseSQLMode(in); err == nil || got != 0 {
			t.Errorf("%q: %v %v, want an error", in, got, err)
		}
	}
}

// TestNormalize: the text the parser gets is the text the server runs.
func TestNormalize(t *testing.T) {
	for _, c := range []struct {
		name string
		lex  mysqlsql.Lex
		in   string
		want string // "" with err: cannot be read
		err  bool
	}{
		{"no comments", mariaLex, "SELECT 1", "SELECT 1", false},
		{"plain comment", mariaLex, "SELECT /* x */ 1", "SELECT         1", false},
		{"plain comment does not nest", mariaLex, "a /* /* */ b */", "a          b */", false},
		{"hash and dashes", mariaLex, "a # x\nb -- y\nc --1", "a    \nb     \nc --1", false},
		{"dashes at the end", mariaLex, "a --", "a   ", false},
		{"executed version", mariaLex, "a /*!40101 b */ c", "a          b    c", false},
		{"executed no version", mariaLex, "a /*! b */", "a     b   ", false},
		{"short version is code", mariaLex, "a /*!123 b */", "a    123 b   ", false},
		{"skipped version", mariaLex, "a /*!99999 b */ c", "a               c", false},
		{"MySQL 5.7 range skipped on MariaDB", mariaLex, "a /*!50700 b */", "a              ", false},
		{"MySQL 5.7 range runs on MySQL", mysqlLex, "a /*!50700 b */", "a          b   ", false},
		{"six digits on MariaDB", mariaLex, "a /*!100000 b */", "a           b   ", false},
		{"six digits skipped", mariaLex, "a /*M!999999 b */", "a                ", false},
		{"six digits on MySQL", mysqlLex, "a /*!100000 b */", "", true},
		{"seven digits", mariaLex, "a /*!1000000 b */", "", true},
		{"M! is a comment on MySQL", mysqlLex, "a /*M! b */", "a          ", false},
		{"M! unknown server", mysqlsql.Lex{}, "a /*M! b */", "", true},
		{"version unknown", mysqlsql.Lex{Flavour: mysqlsql.FlavourMariaDB}, "a /*!40101 b */", "", true},
		{"quote inside skipped", mariaLex, "x = 'b' /*!99999 , y = '*/, z = 1 -- ' */", "x = 'b'                   , z = 1        ", false},
		{"one nested comment in skipped", mariaLex, "a /*!99999 /* x */ b */ c", "a                       c", false},
		{"nested executable", mariaLex, "a /*!40101 b /*!99999 c */ */", "", true},
		{"plain comment inside executed", mariaLex, "a /*! b /* c */ d */", "a     b         d   ", false},
		{"line comment inside executed", mariaLex, "a /*! b -- */\nc */", "a     b      \nc   ", false},
		{"string inside executed", mariaLex, "a /*! '*/' */", "a     '*/'   ", false},
		{"semicolon inside executed", mariaLex, "/*!40101 SET a=1; SET b=2 */", "", true},
		{"TiDB comment", mariaLex, "a /*T![x] b */", "a             ", false},
		{"hint with a quote", mysqlLex, "SELECT /*+ QB_NAME(`a*/b`) */ 1", "", true},
		{"hint", mysqlLex, "SELECT /*+ BKA(t) */ 1", "SELECT               1", false},
		{"comment markers in strings", mariaLex, `SELECT '/*', "*/", '\'/*'`, `SELECT '/*', "*/", '\'/*'`, false},
		{"backslash quote, default", mariaLex, `'a\' /*! b */'`, `'a\' /*! b */'`, false},
		{"backslash quote, NO_BACKSLASH_ESCAPES", nbeLex,
			`'a\' /*! b */'`, "", true}, // unterminated string
		{"ANSI_QUOTES identifier", ansiLex,
			`"a\" /* x */`, `"a\"        `, false},
		{"dashes before non-ASCII", mariaLex, "a --\xc2\xa0b", "", true},
		{"NUL", mariaLex, "a \x00 b", "", true},
		{"latin1 high byte in code", latin1Lex, "a\xa0b", "", true},
		{"latin1 high byte in a string", latin1Lex, "'a\xa0b'", "'a\xa0b'", false},
		{"unterminated comment", mariaLex, "a /* b", "", true},
		{"unterminated executable", mariaLex, "a /*! b", "", true},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := mysqlsql.Normalize(c.in, c.lex)
			if c.err {
				if err == nil {
					t.Fatalf("read %q as %q, want an error", c.in, got)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != c.want {
				t.Fatalf("got  %q\nwant %q", got, c.want)
			}
			if len(got) != len(c.in) {
				t.Fatalf("length changed")
			}
		})
	}
}

// TestPlanExecutableComments: values in executable comments the server
// runs are encrypted; text in comments it skips is not run.
func TestPlanExecutableComments(t *testing.T) {
	p := newPlanner(t, nil)
	ctx := context.Background()
	for _, c := range []struct {
		sql     string
		lex     mysqlsql.Lex
		encrypt bool // email is encrypted (rewritten)
		refuse  bool
	}{
		{"UPDATE users SET note = 'b' /*!99999 , note = '*/, email = 0x73 -- ' */", mariaLex, true, false},
		{"UPDATE users SET note = 'b' /*!99999 , email = 's' */", mariaLex, false, false},
		{"UPDATE users SET note = 'b' /*!50700 , email = 's' */", mariaLex, false, false},
		{"UPDATE users SET note = 'b' /*!50700 , email = 's' */", mysqlLex, true, false},
		{"UPDATE users SET note = 'b' /*M!100000 , email = 's' */", mariaLex, true, false},
		{"UPDATE users SET note = 'b' /*M!100000 , email = 's' */", mysqlLex, false, false},
		{"UPDATE users SET note = 'b' /*!40101 , note = 'c' /*!99999 , email = 's' */ */", mariaLex, false, true},
		{"/*!40000 ALTER TABLE users DISABLE KEYS */", mariaLex, false, false},
	} {
		plan, _, err := p.PlanLex(ctx, "app", c.sql, c.lex)
		if c.refuse {
			var r *sqlplan.Refusal
			if !errors.As(err, &r) {
				t.Errorf("%s: %v, want a refusal", c.sql, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", c.sql, err)
			continue
		}
		if plan.Passthrough == c.encrypt {
			t.Errorf("%s (%v): passthrough %v", c.sql, c.lex.Flavour, plan.Passthrough)
		}
	}
}

// TestPlanSQLModes: the parser follows the session's lexing modes, the
// rewrite keeps backslashes under NO_BACKSLASH_ESCAPES, and plans are
// cached per lexing state.
func TestPlanSQLModes(t *testing.T) {
	p := newPlanner(t, nil)
	ctx := context.Background()
	sql := `UPDATE users SET note = 'k\', email = 0x736563726574 -- ' WHERE id = 1`
	// Default mode: one string, no encrypted column.
	plan, _, err := p.PlanLex(ctx, "app", sql, mariaLex)
	if err != nil || !plan.Passthrough {
		t.Fatalf("default mode: %v %v", plan, err)
	}
	// NO_BACKSLASH_ESCAPES: email is assigned.
	plan, _, err = p.PlanLex(ctx, "app", sql, nbeLex)
	if err != nil || plan.Passthrough {
		t.Fatalf("NO_BACKSLASH_ESCAPES: %+v %v", plan, err)
	}
	out, err := plan.Rewrite(ctx, fakeEnc{}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(out), "0x736563726574") || !strings.Contains(string(out), `'k\'`) {
		t.Fatalf("rewrite under NO_BACKSLASH_ESCAPES: %s", out)
	}
	// Unknown state: refused with the reason.
	unknown := mariaLex
	unknown.Unreadable = "the session sql_mode is not known"
	if _, _, err := p.PlanLex(ctx, "app", sql, unknown); err == nil || !strings.Contains(err.Error(), "sql_mode is not known") {
		t.Fatalf("unknown mode: %v", err)
	}
	// ... but statements on other tables pass.
	if plan, _, err := p.PlanLex(ctx, "app", "INSERT INTO other VALUES ('k\\')", unknown); err != nil || !plan.Passthrough {
		t.Fatalf("plaintext table: %v %v", plan, err)
	}
	// ANSI_QUOTES: "…" is an identifier.
	if _, _, err := p.PlanLex(ctx, "app", `SELECT id FROM users WHERE "email" = 'a'`, ansiLex); err != nil {
		t.Fatalf("ANSI_QUOTES lookup: %v", err)
	}
	plan, _, err = p.PlanLex(ctx, "app", `SELECT id FROM users WHERE "email" = 'a'`, mariaLex)
	if err == nil && !plan.Passthrough {
		t.Fatalf("default mode read \"email\" as a column")
	}
}

func TestAnalyzeSession(t *testing.T) {
	for _, c := range []struct {
		sql      string
		lex      mysqlsql.Lex
		mode     mysqlsql.Setting
		bits     mysql.SQLMode
		charset  mysqlsql.Setting
		cs       string
		trailing bool
	}{
		{"SELECT @@sql_mode", mariaLex, 0, 0, 0, "", false},
		{"SET sql_mode = 'NO_BACKSLASH_ESCAPES'", mariaLex, mysqlsql.SettingValue, mysql.ModeNoBackslashEscapes, 0, "", false},
		{"SET @@SESSION.sql_mode = ANSI_QUOTES", mariaLex, mysqlsql.SettingValue, mysql.ModeANSIQuotes, 0, "", false},
		{"SET sql_mode = DEFAULT", mariaLex, mysqlsql.SettingDefault, 0, 0, "", false},
		{"SET sql_mode = CONCAT(@@sql_mode, ',ANSI_QUOTES')", mariaLex, mysqlsql.SettingUnknown, 0, 0, "", false},
		{"SET sql_mode = @old", mariaLex, mysqlsql.SettingUnknown, 0, 0, "", false},
		{"SET sql_modé = 'ANSI'", mariaLex, mysqlsql.SettingUnknown, 0, mysqlsql.SettingUnknown, "", false},
		{"/*!40101 SET @OLD_SQL_MODE=@@SQL_MODE, SQL_MODE='NO_AUTO_VALUE_ON_ZERO' */", mariaLex, mysqlsql.SettingValue, 0, 0, "", false},
		{"/*!99999 SET sql_mode = 'ANSI' */", mariaLex, 0, 0, 0, "", false},
		{"SET GLOBAL sql_mode = 'ANSI'", mariaLex, 0, 0, 0, "", false},
		{"SET STATEMENT sql_mode = 'ANSI' FOR SELECT 1", mariaLex, 0, 0, 0, "", false},
		{"SET STATEMENT max_statement_time = 1 FOR SET NAMES gbk", mariaLex, 0, 0, mysqlsql.SettingValue, "gbk", false},
		{"SET NAMES utf8mb4 COLLATE utf8mb4_bin", mariaLex, 0, 0, mysqlsql.SettingValue, "utf8mb4", false},
		{"SET NAMES 'sjis'", mariaLex, 0, 0, mysqlsql.SettingValue, "sjis", false},
		{"SET CHARACTER SET big5", mariaLex, 0, 0, mysqlsql.SettingValue, "big5", false},
		{"SET CHARSET DEFAULT", mariaLex, 0, 0, mysqlsql.SettingUnknown, "", false},
		{"SET character_set_client = @saved_cs_client", mariaLex, 0, 0, mysqlsql.SettingUnknown, "", false},
		{"SET character_set_results = gbk", mariaLex, 0, 0, 0, "", false},
		{"EXECUTE IMMEDIATE 'SET NAMES gbk'", mariaLex, mysqlsql.SettingUnknown, 0, mysqlsql.SettingUnknown, "", false},
		{"BEGIN NOT ATOMIC SET NAMES gbk; END", mariaLex, mysqlsql.SettingUnknown, 0, mysqlsql.SettingUnknown, "", true},
		{"CREATE PROCEDURE p() BEGIN SELECT 1; SET NAMES utf8mb4; END", mariaLex, mysqlsql.SettingUnknown, 0, mysqlsql.SettingUnknown, "", true},
		{"SET NAMES gbk; SELECT 1", mariaLex, mysqlsql.SettingUnknown, 0, mysqlsql.SettingUnknown, "", true},
		{"SET NAMES latin1; SELECT 1", mariaLex, 0, 0, mysqlsql.SettingValue, "latin1", true},
		{"SELECT 1; SET NAMES gbk", mariaLex, 0, 0, mysqlsql.SettingValue, "gbk", false},
		// The rest of a string is lexed under the mode set before it.
		{`SET sql_mode = 'NO_BACKSLASH_ESCAPES'; SELECT 'a\'; SET sql_mode = ''; -- '`, mariaLex, mysqlsql.SettingValue, 0, 0, "", true},
		{`SET sql_mode = ''; SELECT 'a\'; SET sql_mode = 'NO_BACKSLASH_ESCAPES'; -- '`, nbeLex, mysqlsql.SettingValue, 0, 0, "", true},
		{`SELECT 'a\'; SET NAMES gbk; -- '`, mariaLex, 0, 0, 0, "", false},
		{`SELECT 'a\'; SET NAMES gbk; -- '`, nbeLex, 0, 0, mysqlsql.SettingValue, "gbk", false},
	} {
		got := mysqlsql.AnalyzeSession(c.sql, c.lex)
		if got.ModeSet != c.mode || (c.mode == mysqlsql.SettingValue && got.Mode != c.bits) ||
			got.CharsetSet != c.charset || got.Charset != c.cs || got.Trailing != c.trailing {
			t.Errorf("%q: %+v", c.sql, got)
		}
	}
	if c := mysqlsql.AnalyzeSession("PREPARE s FROM @q", mariaLex); !c.RiskyPrepare {
		t.Errorf("PREPARE FROM a variable: %+v", c)
	}
	if c := mysqlsql.AnalyzeSession("PREPARE s FROM 'SELECT ?'", mariaLex); c.RiskyPrepare {
		t.Errorf("PREPARE of a SELECT: %+v", c)
	}
	if c := mysqlsql.AnalyzeSession("PREPARE s FROM 'SET N\\AMES gbk'", mariaLex); !c.RiskyPrepare {
		t.Errorf("PREPARE with an escape: %+v", c)
	}
	if c := mysqlsql.AnalyzeSession("EXECUTE s; SELECT 1", mariaLex); !c.Executes || !c.Trailing {
		t.Errorf("EXECUTE: %+v", c)
	}
	if c := mysqlsql.AnalyzeSession("SET GLOBAL sql_mode = 'ANSI'", mariaLex); !c.Global {
		t.Errorf("SET GLOBAL: %+v", c)
	}
}

// TestAnalyzeSessionNames: SET NAMES and SET CHARACTER SET are read by the
// parser; a character set or collation it does not implement is read from
// an exact SET NAMES statement only.
func TestAnalyzeSessionNames(t *testing.T) {
	const (
		value   = mysqlsql.SettingValue
		unknown = mysqlsql.SettingUnknown
	)
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
		{"SET NAMES \"latin1\"", ansiLex, value, "latin1", 0},
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

// TestPlanSessionChanges: a change of the lexing state followed by a
// statement on an encrypted table in one string is refused; the plan
// carries the change.
func TestPlanSessionChanges(t *testing.T) {
	p := newPlanner(t, nil)
	ctx := context.Background()
	_, _, err := p.PlanLex(ctx, "app", `SET sql_mode = 'NO_BACKSLASH_ESCAPES'; UPDATE users SET note = 'k\', email = 's' -- '`, mariaLex)
	var r *sqlplan.Refusal
	if !errors.As(err, &r) || !strings.Contains(r.Reason, "same query string") {
		t.Fatalf("got %v", err)
	}
	plan, _, err := p.PlanLex(ctx, "app", "SET NAMES gbk", mariaLex)
	if err != nil || !plan.Passthrough || plan.Session == nil || plan.Session.Charset != "gbk" {
		t.Fatalf("SET NAMES: %+v %v", plan, err)
	}
	plan, _, err = p.PlanLex(ctx, "app", "UPDATE users SET email = 'a' WHERE id = 1; SET NAMES utf8mb4", mariaLex)
	if err != nil || plan.Passthrough || plan.Session == nil || plan.Session.Charset != "utf8mb4" {
		t.Fatalf("change after the statement: %+v %v", plan, err)
	}
}

// FuzzNormalize: the normaliser never panics, keeps the length, and leaves
// no comment opener outside quotes; the session analysis never panics.
//
// The seed corpus is in testdata/fuzz/FuzzNormalize.
func FuzzNormalize(f *testing.F) {
	f.Fuzz(func(t *testing.T, sql string, flags uint8) {
		lex := mysqlsql.Lex{Flavour: mysqlsql.Flavour(flags % 3), Version: 101106, SingleByte: flags&4 != 0}
		if flags&8 != 0 {
			lex.Mode |= mysql.ModeNoBackslashEscapes
		}
		if flags&16 != 0 {
			lex.Mode |= mysql.ModeANSIQuotes
		}
		out, err := mysqlsql.Normalize(sql, lex)
		if err == nil && len(out) != len(sql) {
			t.Fatalf("length %d -> %d", len(sql), len(out))
		}
		_ = mysqlsql.AnalyzeSession(sql, lex)
	})
}
