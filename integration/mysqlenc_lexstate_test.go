package integration

import (
	"context"
	"database/sql"
	"errors"
	"testing"

	driver "github.com/go-sql-driver/mysql"
)

// The tests here send SQL that the server reads differently from a naive
// parser (executable comments by version, sql_mode, client character
// sets) and read the table directly afterwards: no plaintext may reach an
// encrypted column, and statements the proxy reads exactly as the server
// keep working (values encrypted, read back decrypted).

const myPlainDDL = "CREATE TABLE plain (id INT PRIMARY KEY, note VARCHAR(100))"

// lexConn returns one connection through the proxy (session state is per
// connection).
func lexConn(t *testing.T, e *myEncEnv, params ...string) *sql.Conn {
	t.Helper()
	db := openDB(t, e.proxy.config(t, params...))
	conn, err := db.Conn(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

// lexConnSet is lexConn with the statement set (a SET) run first.
func lexConnSet(t *testing.T, e *myEncEnv, set string) *sql.Conn {
	t.Helper()
	conn := lexConn(t, e)
	if _, err := conn.ExecContext(testCtx(t), set); err != nil {
		t.Fatalf("%s: %v", set, err)
	}
	return conn
}

// ssnThroughProxy reads users.ssn of row id through the proxy (NULL: "").
func ssnThroughProxy(t *testing.T, ctx context.Context, conn *sql.Conn, id int) (string, bool) {
	t.Helper()
	var ssn sql.NullString
	err := conn.QueryRowContext(ctx, "SELECT ssn FROM users WHERE id = ?", id).Scan(&ssn)
	if errors.Is(err, sql.ErrNoRows) {
		return "", false
	}
	if err != nil {
		t.Fatalf("read back row %d: %v", id, err)
	}
	return ssn.String, true
}

// directRow reads users.ssn and users.note of row id directly.
func directRow(t *testing.T, ctx context.Context, e *myEncEnv, id int) (ssn []byte, note sql.NullString, found bool) {
	t.Helper()
	err := e.direct.QueryRowContext(ctx, "SELECT ssn, note FROM users WHERE id = ?", id).Scan(&ssn, &note)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, note, false
	}
	if err != nil {
		t.Fatal(err)
	}
	return ssn, note, true
}

// TestMySQLEncExecutableComments: /*!NNNNN … */ and /*M!NNNNNN … */ are
// read as MariaDB 10.11 reads them (code when the version is not newer
// than the server's, except MySQL 5.7+ versions in /*! form; a comment
// otherwise), so a value hidden in a comment the server runs is encrypted,
// and text in a comment the server skips is not run.
func TestMySQLEncExecutableComments(t *testing.T) {
	e := startMyEncProxy(t, []string{myEncDDL, myPlainDDL}, myEncSpecs())
	ctx := testCtx(t)
	conn := lexConn(t, e)
	cases := []struct {
		name string
		sql  string
		id   int
		ssn  string // "": ssn stays NULL
		note string
	}{
		// The red team's statement: the server skips the comment up to the
		// */ inside the quote, and runs ", ssn = 0x… -- ' */".
		{"skipped version, quote inside", "INSERT INTO users SET id = 1, note = 'b' /*!99999 , note = '*/, ssn = 0x706c61696e31 -- ' */", 1, "plain1", "b"},
		{"skipped MySQL 5.7+ version on MariaDB", "INSERT INTO users SET id = 2, note = 'b' /*!50700 , ssn = 'plain2' */", 2, "", "b"},
		{"executed version", "INSERT INTO users SET id = 3, note = 'b' /*!40101 , ssn = 'plain3' */", 3, "plain3", "b"},
		{"no version", "INSERT INTO users SET id = 4, note = 'b' /*! , ssn = 'plain4' */", 4, "plain4", "b"},
		{"MariaDB comment, no version", "INSERT INTO users SET id = 5, note = 'b' /*M! , ssn = 'plain5' */", 5, "plain5", "b"},
		{"MariaDB comment, newer version", "INSERT INTO users SET id = 6, note = 'b' /*M!999999 , ssn = 'plain6' */", 6, "", "b"},
		{"MariaDB comment, older version", "INSERT INTO users SET id = 7, note = 'b' /*M!100000 , ssn = 'plain7' */", 7, "plain7", "b"},
		// A skipped versioned comment may hold one nested comment.
		{"skipped with nested comment", "INSERT INTO users SET id = 8, note = 'b' /*!99999 /* x */ , ssn = 'plain8' */", 8, "", "b"},
		// A plain comment does not nest: it ends at the first */.
		{"plain comment does not nest", "INSERT INTO users SET id = 9, note = 'b' /* /* */ , ssn = 0x706c61696e39 -- */", 9, "plain9", "b"},
		// -- and # inside a running comment run to the end of the line.
		{"line comment inside executed", "INSERT INTO users SET id = 10, note = 'b' /*! -- */ , ssn = 'x'\n, ssn = 0x706c61696e3130 */", 10, "plain10", "b"},
		// The TiDB-only /*T! … */ is a comment to MariaDB.
		{"TiDB comment", "INSERT INTO users SET id = 11, note = 'b' /*T![clustered_index] , ssn = 'plain11' */", 11, "", "b"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if _, err := conn.ExecContext(ctx, c.sql); err != nil {
				t.Fatalf("exec: %v", err)
			}
			got, found := ssnThroughProxy(t, ctx, conn, c.id)
			if !found || got != c.ssn {
				t.Fatalf("ssn through the proxy = %q (found %v), want %q", got, found, c.ssn)
			}
			_, note, _ := directRow(t, ctx, e, c.id)
			if note.String != c.note {
				t.Fatalf("note = %q, want %q", note.String, c.note)
			}
		})
	}
	// An executable comment inside a running one cannot be read exactly:
	// refused on encrypted tables, forwarded on others.
	_, err := conn.ExecContext(ctx, "INSERT INTO users SET id = 20, note = 'b' /*!40101 , note = 'c' /*!99999 , ssn = 0x706c61696e3230 */ */")
	wantRefused(t, err, "cannot read this statement exactly")
	if _, err := conn.ExecContext(ctx, "INSERT INTO plain SET id = 1 /*!99999 , note = '*/, note = 'c' -- ' */"); err != nil {
		t.Fatalf("plaintext table: %v", err)
	}
	var note string
	if err := e.direct.QueryRowContext(ctx, "SELECT note FROM plain WHERE id = 1").Scan(&note); err != nil || note != "c" {
		t.Fatalf("plain note %q %v", note, err)
	}
	if _, _, found := directRow(t, ctx, e, 20); found {
		t.Fatal("refused row was stored")
	}
	e.checkAtRest(t, []string{"plain1", "plain2", "plain3", "plain4", "plain5", "plain6", "plain7", "plain8", "plain9", "plain10", "plain11", "plain20"})
}

// TestMySQLEncSQLMode: the session sql_mode (the server's global one at
// first, read through the catalog connection; then literal SETs) decides
// how strings are read.
func TestMySQLEncSQLMode(t *testing.T) {
	e := startMyEncProxyWith(t, []string{myEncDDL, myPlainDDL}, myEncSpecs(), sideCatalog(t))
	ctx := testCtx(t)

	t.Run("NO_BACKSLASH_ESCAPES with syntax the parser lacks", func(t *testing.T) {
		conn := lexConnSet(t, e, "SET sql_mode = 'NO_BACKSLASH_ESCAPES'")
		_, err := conn.ExecContext(ctx, `INSERT INTO users SET id = 30, note = 'k\', ssn = 0x706c61696e3330 RETURNING id -- '`)
		wantRefused(t, err, "could not be parsed")
		if _, _, found := directRow(t, ctx, e, 30); found {
			t.Fatal("refused row was stored")
		}
	})
	t.Run("NO_BACKSLASH_ESCAPES round trip", func(t *testing.T) {
		conn := lexConnSet(t, e, "SET SESSION sql_mode = 'STRICT_TRANS_TABLES,NO_BACKSLASH_ESCAPES'")
		// The string ends at the second quote: ssn is `c:\dir\`, note `a\b`.
		if _, err := conn.ExecContext(ctx, `INSERT INTO users SET id = 31, note = 'a\b', ssn = 'c:\dir\'`); err != nil {
			t.Fatal(err)
		}
		if got, _ := ssnThroughProxy(t, ctx, conn, 31); got != `c:\dir\` {
			t.Fatalf("ssn = %q", got)
		}
		if _, note, _ := directRow(t, ctx, e, 31); note.String != `a\b` {
			t.Fatalf("note = %q (backslashes doubled in the rewrite?)", note.String)
		}
		// Lookups on the deterministic column under the same mode.
		if _, err := conn.ExecContext(ctx, `UPDATE users SET email = 'x\y@example.com' WHERE id = 31`); err != nil {
			t.Fatal(err)
		}
		var id int
		if err := conn.QueryRowContext(ctx, `SELECT id FROM users WHERE email = 'x\y@example.com'`).Scan(&id); err != nil || id != 31 {
			t.Fatalf("lookup: %d %v", id, err)
		}
		// Back to the default: backslashes escape again.
		execAll(t, ctx, conn,
			"SET sql_mode = DEFAULT",
			`INSERT INTO users SET id = 32, note = 'k\', ssn = 0x706c61696e3332 -- '`,
		)
		ssn, note, _ := directRow(t, ctx, e, 32)
		if ssn != nil || note.String != `k', ssn = 0x706c61696e3332 -- ` {
			t.Fatalf("row 32: ssn %q note %q", ssn, note.String)
		}
	})
	t.Run("sql_mode from the DSN", func(t *testing.T) {
		conn := lexConn(t, e, "sql_mode=%27NO_BACKSLASH_ESCAPES%27")
		if _, err := conn.ExecContext(ctx, `INSERT INTO users SET id = 33, ssn = 'plain33\'`); err != nil {
			t.Fatal(err)
		}
		if got, _ := ssnThroughProxy(t, ctx, conn, 33); got != `plain33\` {
			t.Fatalf("ssn = %q", got)
		}
	})
	t.Run("ANSI_QUOTES", func(t *testing.T) {
		conn := lexConnSet(t, e, "SET @@session.sql_mode = 'ANSI'")
		if _, err := conn.ExecContext(ctx, `INSERT INTO "users" ("id", "ssn", note) VALUES (34, 'plain34', 'n' || 'm')`); err != nil {
			t.Fatal(err)
		}
		var ssn, note string
		if err := conn.QueryRowContext(ctx, `SELECT "ssn", note FROM users WHERE "id" = 34`).Scan(&ssn, &note); err != nil || ssn != "plain34" || note != "nm" {
			t.Fatalf("read back %q %q %v", ssn, note, err)
		}
		// "…" is an identifier: a backslash in it escapes nothing.
		_, err := conn.ExecContext(ctx, `INSERT INTO users SET id = 35, note = "a\", ssn = 0x706c61696e3335 -- "`)
		if err == nil {
			t.Fatal("accepted a column named a\\")
		}
		if _, _, found := directRow(t, ctx, e, 35); found {
			t.Fatal("row 35 stored")
		}
	})
	t.Run("unknown after an expression", func(t *testing.T) {
		conn := lexConnSet(t, e, "SET sql_mode = CONCAT(@@sql_mode, ',NO_BACKSLASH_ESCAPES')")
		_, err := conn.ExecContext(ctx, `INSERT INTO users SET id = 36, note = 'k\', ssn = 0x706c61696e3336 -- '`)
		wantRefused(t, err, "sql_mode is not known")
		execAll(t, ctx, conn,
			"INSERT INTO plain SET id = 36, note = 'plaintext tables still work'",
			"SET sql_mode = 'NO_BACKSLASH_ESCAPES'",
			`INSERT INTO users SET id = 36, note = 'k\', ssn = 'plain36'`,
		)
		if got, _ := ssnThroughProxy(t, ctx, conn, 36); got != "plain36" {
			t.Fatalf("ssn = %q", got)
		}
	})
	t.Run("unsupported mode", func(t *testing.T) {
		conn := lexConnSet(t, e, "SET sql_mode = 'ORACLE'")
		_, err := conn.ExecContext(ctx, "INSERT INTO users SET id = 37, ssn = 'plain37'")
		wantRefused(t, err, "sql_mode 'ORACLE' is not supported")
	})
	t.Run("SET STATEMENT", func(t *testing.T) {
		conn := lexConnSet(t, e, "SET STATEMENT sql_mode = 'NO_BACKSLASH_ESCAPES' FOR SELECT 1")
		// The session mode did not change: backslashes still escape.
		if _, err := conn.ExecContext(ctx, `INSERT INTO users SET id = 38, note = 'k\', ssn = 0x706c61696e3338 -- '`); err != nil {
			t.Fatal(err)
		}
		if ssn, _, _ := directRow(t, ctx, e, 38); ssn != nil {
			t.Fatalf("ssn stored: %q", ssn)
		}
	})
	t.Run("multi-statement strings", func(t *testing.T) {
		conn := lexConn(t, e, "multiStatements=true")
		_, err := conn.ExecContext(ctx, `SET sql_mode = 'NO_BACKSLASH_ESCAPES'; INSERT INTO users SET id = 39, note = 'k\', ssn = 0x706c61696e3339 -- '`)
		wantRefused(t, err, "same query string")
		// The server reads the rest of a string under the mode set at its
		// start: here the final mode is the default.
		execAll(t, ctx, conn,
			`SET sql_mode = 'NO_BACKSLASH_ESCAPES'; SELECT 'a\'; SET sql_mode = ''; -- '`,
			`INSERT INTO users SET id = 40, note = 'k\', ssn = 0x706c61696e3430 -- '`,
		)
		if ssn, note, _ := directRow(t, ctx, e, 40); ssn != nil || note.String != `k', ssn = 0x706c61696e3430 -- ` {
			t.Fatalf("row 40: ssn %q note %q", ssn, note.String)
		}
	})
	e.checkAtRest(t, []string{"plain30", "plain33", "plain34", "plain35", "plain36", "plain37", "plain39",
		"x\\y@example.com", "dir"})
}

// TestMySQLEncSQLModeNoCatalog: without a catalog connection the server's
// global sql_mode is not read; a string on an encrypted table must read the
// same with NO_BACKSLASH_ESCAPES and ANSI_QUOTES, as if the server had
// them (here it has: SET GLOBAL).
func TestMySQLEncSQLModeNoCatalog(t *testing.T) {
	e := startMyEncProxy(t, []string{myEncDDL}, myEncSpecs())
	if e.db.External {
		t.Skip("changes the server's global sql_mode: only on a server the tests started")
	}
	ctx := testCtx(t)
	admin := adminDB(t, e.db)
	var orig string
	if err := admin.QueryRowContext(ctx, "SELECT @@GLOBAL.sql_mode").Scan(&orig); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.ExecContext(ctx, "SET GLOBAL sql_mode = 'NO_BACKSLASH_ESCAPES,ANSI_QUOTES'"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if _, err := admin.ExecContext(context.Background(), "SET GLOBAL sql_mode = '"+orig+"'"); err != nil {
			t.Errorf("restore the global sql_mode: %v", err)
		}
	})
	conn := lexConn(t, e)
	for i, q := range []string{
		`INSERT INTO users SET id = 50, note = 'k\', ssn = 0x706c61696e3530 RETURNING id -- '`,
		`INSERT INTO users SET id = 51, note = 'k\', ssn = 0x706c61696e3531 -- '`,
		`INSERT INTO users SET id = 52, note = "k\", ssn = 0x706c61696e3532 -- "`,
	} {
		_, err := conn.ExecContext(ctx, q)
		var me *driver.MySQLError
		if !errors.As(err, &me) || me.Number != 1235 {
			t.Errorf("statement %d: %v, want a refusal", i, err)
		}
	}
	if _, err := conn.ExecContext(ctx, "INSERT INTO users SET id = 53, note = 'no backslash', ssn = 'plain53'"); err != nil {
		t.Fatal(err)
	}
	e.checkAtRest(t, []string{"plain50", "plain51", "plain52", "plain53"})
}

// TestMySQLEncCharset: a client character set whose multi-byte characters
// can end in a backslash (gbk, big5, sjis, cp932, gb18030) cannot be read
// by the parser: statements on encrypted tables are refused until SET NAMES
// utf8mb4; plaintext tables keep working.
func TestMySQLEncCharset(t *testing.T) {
	e := startMyEncProxyWith(t, []string{myEncDDL, myPlainDDL}, myEncSpecs(), sideCatalog(t))
	ctx := testCtx(t)
	// In gbk, 0xbf 0x5c is one character: the quote after it closes the
	// string, and ", ssn = 0x…" is code.
	attack := "INSERT INTO users SET id = 60, note = '\xbf\\', ssn = 0x706c61696e3630 -- '"

	t.Run("SET NAMES", func(t *testing.T) {
		conn := lexConn(t, e)
		for _, q := range []string{"SET NAMES gbk", "SET NAMES 'sjis'", "SET CHARACTER SET big5", "SET character_set_client = cp932"} {
			if _, err := conn.ExecContext(ctx, q); err != nil {
				t.Fatalf("%s: %v", q, err)
			}
			_, err := conn.ExecContext(ctx, attack)
			wantRefused(t, err, "character_set_client")
			wantRefused(t, err, "utf8mb4")
			if _, err := conn.ExecContext(ctx, "INSERT INTO plain SET id = 60, note = 'x' ON DUPLICATE KEY UPDATE note = 'y'"); err != nil {
				t.Fatalf("plaintext table under %s: %v", q, err)
			}
		}
		execAll(t, ctx, conn,
			"SET NAMES utf8mb4",
			"INSERT INTO users SET id = 61, ssn = 'plain61'",
		)
		if got, _ := ssnThroughProxy(t, ctx, conn, 61); got != "plain61" {
			t.Fatalf("ssn = %q", got)
		}
		execAll(t, ctx, conn,
			"SET NAMES latin1",
			"INSERT INTO users SET id = 62, ssn = 'plain62'",
		)
	})
	t.Run("DSN charset", func(t *testing.T) {
		conn := lexConn(t, e, "charset=gbk")
		_, err := conn.ExecContext(ctx, attack)
		wantRefused(t, err, "character_set_client gbk")
	})
	t.Run("handshake collation", func(t *testing.T) {
		conn := lexConn(t, e, "collation=gbk_chinese_ci")
		_, err := conn.ExecContext(ctx, attack)
		wantRefused(t, err, "character_set_client")
	})
	t.Run("from a variable", func(t *testing.T) {
		conn := lexConnSet(t, e, "SET @cs = 'gbk'")
		if _, err := conn.ExecContext(ctx, "SET character_set_client = @cs"); err != nil {
			t.Fatal(err)
		}
		_, err := conn.ExecContext(ctx, attack)
		wantRefused(t, err, "character_set_client is not known")
	})
	t.Run("prepared SET NAMES", func(t *testing.T) {
		conn := lexConn(t, e)
		st, err := conn.PrepareContext(ctx, "SET NAMES gbk")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := st.ExecContext(ctx); err != nil {
			t.Fatal(err)
		}
		_ = st.Close()
		_, err = conn.ExecContext(ctx, attack)
		wantRefused(t, err, "character_set_client")
	})
	t.Run("SQL PREPARE and EXECUTE", func(t *testing.T) {
		// Dynamic SQL is refused on a listener with rules (without
		// allow_dynamic_sql): the charset it would set never changes. (With
		// the opt-in, an EXECUTE after such a PREPARE makes the charset
		// unknown: mycrypt's unit tests.)
		conn := lexConnSet(t, e, "SET @q = 'SET NAMES gbk'")
		_, err := conn.ExecContext(ctx, "PREPARE s FROM @q")
		wantRefused(t, err, "allow_dynamic_sql")
	})
	if _, _, found := directRow(t, ctx, e, 60); found {
		t.Fatal("attack row stored")
	}
	e.checkAtRest(t, []string{"plain60", "plain61", "plain62"})
}
