package integration

// Differential fuzzing of the proxy's reading of SQL against the server's.
//
// Each input is a statement (hand-written seeds mutated by the fuzzer, plus
// a tail assembled from fragments — literals in every quoting form,
// comments, executable comments, escapes, multibyte lead bytes, encrypted
// column names — chosen by the gen bytes) sent through an encrypting proxy
// in a session whose lexing state (client_encoding and
// standard_conforming_strings; sql_mode and character set) the setup byte
// picks, with or without the database-side guard (schema guard) on the
// encrypted columns. Whatever the proxy forwards is run by the real server. Afterwards
// the encrypted columns are read directly, bypassing the proxy: every
// non-NULL value must decrypt under its column's key. A value that does
// not is one that reached the server without the proxy encrypting it, i.e.
// the proxy read the statement differently from the server.
//
// `go test ./integration -run XXX -fuzz FuzzPGDifferential -fuzztime 10m
// -parallel 1` (likewise FuzzMySQLDifferential) runs the fuzzer; the
// committed corpus under testdata/fuzz runs in every `go test`.

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"strings"
	"testing"
	"time"

	driver "github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/dbproxy/dbproxy/rules"
	"github.com/dbproxy/dbproxy/schemaguard"
	"github.com/dbproxy/dbproxy/value"
)

// guardStatements is the DDL that installs and removes the database-side
// guard of cols (dbproxy schema guard).
type guardStatements struct{ add, drop []string }

func guardDDL(d rules.Dialect, database string, cols []*rules.ColumnRule) guardStatements {
	var g guardStatements
	for _, c := range cols {
		tg := schemaguard.Target{Database: database, Schema: c.Schema, Table: c.Table, Column: c.Column, Mode: c.Mode, Type: c.Type}
		g.add = append(g.add, schemaguard.AddStatements(d, tg)...)
		name := schemaguard.QuoteIdent(d, schemaguard.ConstraintName(d, c.Table, c.Column))
		g.drop = append(g.drop, "ALTER TABLE "+schemaguard.QuoteIdent(d, c.Table)+" DROP CONSTRAINT IF EXISTS "+name)
	}
	return g
}

// fuzzServer is what a differential fuzzer does on the server directly,
// bypassing the proxy, around each input.
type fuzzServer struct {
	guard       guardStatements
	exec        func(ctx context.Context, q string) error
	fingerprint func(t testing.TB) string // what a statement could change besides rows
	baseline    string                    // the fingerprint of the fresh schema
	reset       func(t *testing.T)        // rebuilds the schema
	empty       string                    // the statement that removes every row of users
	check       func(t *testing.T)        // fails on a value at rest the proxy did not encrypt
}

// addGuard installs the database-side guard (schema guard) when setup
// asks for it (bit 0x20).
func (s *fuzzServer) addGuard(t *testing.T, ctx context.Context, setup uint8) {
	t.Helper()
	if setup&0x20 == 0 {
		return
	}
	for _, q := range s.guard.add {
		if err := s.exec(ctx, q); err != nil {
			t.Fatalf("guard: %v", err)
		}
	}
}

// finish checks what the input left at rest, then (also after a failed
// check) cleans up.
func (s *fuzzServer) finish(t *testing.T, setup uint8) {
	t.Helper()
	defer s.cleanUp(t, setup)
	s.check(t)
}

// cleanUp makes the next input start clean: it removes the guard, then
// rebuilds the schema if the input changed it, or empties users.
func (s *fuzzServer) cleanUp(t *testing.T, setup uint8) {
	t.Helper()
	if setup&0x20 != 0 {
		for _, q := range s.guard.drop {
			_ = s.exec(context.Background(), q) // the table may be gone
		}
	}
	if got := s.fingerprint(t); got != s.baseline {
		s.reset(t)
	} else if err := s.exec(context.Background(), s.empty); err != nil {
		t.Fatalf("%s: %v", s.empty, err)
	}
}

// genPiece assembles a statement tail from fragments, one per gen byte.
func genPiece(gen []byte, frags []string) string {
	var b strings.Builder
	for _, g := range gen {
		b.WriteString(frags[int(g)%len(frags)])
	}
	return b.String()
}

// pgFragments are the building blocks of generated PostgreSQL text.
var pgFragments = []string{
	"'", "''", `\`, `\'`, "E'", "e'", "U&'", `U&"`, "$$", "$a$", "$A$", "$", `"`, `""`,
	"--", "-- ", "\n", "\r", "/*", "*/", "/* /* */", " ", ",", "(", ")", ";",
	"\x81\x5c", "\xa4\x5c", "\xc3\x83", "\xe0\x5c", "\x95\x5c", "\x82\x27", "\xff",
	"secret", "'secret'", "E'secret'", "$$secret$$", "'x'",
	"ssn", "email", "note", "users", "public.users", `"users"`, `"ssn"`,
	"INSERT INTO users(note, ssn) VALUES (", "INSERT INTO users(ssn, note) VALUES (",
	"UPDATE users SET ssn = ", " WHERE email = ", "SELECT id FROM users WHERE email = ",
	"VALUES", "SET ", "::bytea", "::text", "convert_to(", "decode('7365637265', 'hex')", "'\\x736563726574'",
	"SET standard_conforming_strings = off;", "SET standard_conforming_strings = on;",
	"SET client_encoding = 'SJIS';", "SET client_encoding = 'UTF8';", "SET NAMES 'BIG5';",
	"DO $$ BEGIN EXECUTE 'insert into us'||'ers(ssn) values (''secret'')'; END $$",
	"COPY users(ssn, note) FROM STDIN", " WITH (FORMAT csv)", "RETURNING ssn",
}

var pgEncodings = []string{"UTF8", "LATIN1", "SJIS", "BIG5", "GBK", "EUC_JP", "WIN1252", "GB18030"}

// pgSeeds are known attacks and their near misses.
var pgSeeds = []string{
	"INSERT INTO users(note, ssn) VALUES ('n', 'secret')",
	"INSERT INTO users(note, ssn) VALUES (E'\xc3\x83\\', $$secret$$) /*', 'x') -- */",
	"INSERT INTO users(note, ssn) VALUES (E'\x81\\', $$secret$$) /*', 'x') -- */",
	"INSERT INTO users(note, ssn) VALUES ('a\\', 'secret') --', 'x')",
	"INSERT INTO users(note, ssn) VALUES ($q$a$q$, $$secret$$)",
	"INSERT INTO users(note, ssn) VALUES (U&'\\0061', 'secret')",
	"INSERT INTO users(ssn) SELECT 'secret'",
	"INSERT INTO users VALUES (DEFAULT, 'n', NULL, 'secret')",
	"UPDATE users SET ssn = 'secret' /* */",
	"UPDATE users SET ssn = convert_to('secret', 'UTF8')",
	"WITH x AS (INSERT INTO users(ssn) VALUES ('secret') RETURNING 1) SELECT 1",
	"DO $$ BEGIN EXECUTE 'insert into us'||'ers(ssn) values (''secret'')'; END $$",
	"ALTER TABLE users RENAME COLUMN ssn TO x; INSERT INTO users(x) VALUES ('secret'); ALTER TABLE users RENAME COLUMN x TO ssn",
	"CREATE TEMP TABLE users(id int, note text, email bytea, ssn bytea); INSERT INTO users(ssn) VALUES ('secret')",
	"PREPARE p(text) AS INSERT INTO users(ssn) VALUES ($1); EXECUTE p('secret')",
	"SELECT id FROM users WHERE email = 'secret'",
	"/* users */ INSERT INTO \"users\"(\"ssn\") VALUES ('secret')",
	"INSERT INTO public.users(ssn) VALUES (E'secret\\'')",
	"SET standard_conforming_strings = off; INSERT INTO users(note, ssn) VALUES ('a\\', 'secret') --')",
}

// FuzzPGDifferential: see the file comment.
func FuzzPGDifferential(f *testing.F) {
	const ddl = `CREATE TABLE users (id serial PRIMARY KEY, note text, email bytea, ssn bytea)`
	specs := []rules.Spec{
		encSpec("users", "email", rules.ModeDeterministic, value.TypeText, "public.users.email"),
		encSpec("users", "ssn", rules.ModeRandomized, value.TypeText, "public.users.ssn"),
	}
	e := startEncProxy(f, ddl, specs)
	set, err := rules.New(rules.DialectPostgres, specs)
	if err != nil {
		f.Fatal(err)
	}
	enc := rules.NewEncryptor(e.mgr)
	tr := set.Table("", "public", "users")
	cols := []*rules.ColumnRule{tr.Column("email"), tr.Column("ssn")}
	srv := &fuzzServer{
		guard: guardDDL(rules.DialectPostgres, "", cols),
		exec: func(ctx context.Context, q string) error {
			_, err := e.direct.Exec(ctx, q)
			return err
		},
		fingerprint: func(t testing.TB) string { return pgFingerprint(t, e.direct) },
		reset:       func(t *testing.T) { pgResetSchema(t, e.direct, ddl) },
		empty:       "TRUNCATE users",
		check:       func(t *testing.T) { pgCheckCiphertexts(t, e.direct, enc, cols) },
	}
	srv.baseline = srv.fingerprint(f)

	for i, s := range pgSeeds {
		f.Add(uint8(i), s, []byte(nil), []byte(nil))
		f.Add(uint8(i)|0x20, s, []byte(nil), []byte(nil)) // with the guard
	}
	for _, setup := range []uint8{2, 3, 4, 7, 0x82, 0x83, 0x84} { // SJIS, BIG5, GBK, GB18030; by SET and at startup
		f.Add(setup, pgSeeds[1], []byte(nil), []byte(nil))
		f.Add(setup, pgSeeds[2], []byte(nil), []byte(nil))
	}
	f.Add(uint8(0x40), pgSeeds[3], []byte(nil), []byte(nil)) // standard_conforming_strings off
	f.Add(uint8(2), "", []byte{30, 44, 2, 27, 0, 39, 0}, []byte(nil))
	f.Add(uint8(0), "COPY users(ssn, note) FROM STDIN WITH (FORMAT csv, HEADER true)", []byte(nil), []byte("ssn,note\rsecret,n\r"))
	f.Add(uint8(0), "COPY users(ssn, note) FROM STDIN", []byte(nil), []byte("secret\tn\r"))

	f.Fuzz(func(t *testing.T, setup uint8, stmt string, gen, copyData []byte) {
		if len(stmt)+len(gen) > 4096 || len(copyData) > 1<<16 {
			t.Skip("input too large")
		}
		stmt += genPiece(gen, pgFragments)
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()

		srv.addGuard(t, ctx, setup)
		cfg, err := pgconn.ParseConfig(e.proxy.DSN("disable"))
		if err != nil {
			t.Fatal(err)
		}
		encoding := pgEncodings[int(setup)%len(pgEncodings)]
		if setup&0x80 != 0 {
			cfg.RuntimeParams["client_encoding"] = encoding
		}
		conn, err := pgconn.ConnectConfig(ctx, cfg)
		if err != nil {
			t.Fatalf("connect through the proxy: %v", err)
		}
		defer conn.Close(context.Background())
		if setup&0x80 == 0 {
			_, _ = conn.Exec(ctx, "SET client_encoding = '"+encoding+"'").ReadAll()
		}
		if setup&0x40 != 0 {
			_, _ = conn.Exec(ctx, "SET standard_conforming_strings = off").ReadAll()
		}
		if strings.HasPrefix(strings.ToUpper(strings.TrimSpace(stmt)), "COPY") {
			_, _ = conn.CopyFrom(ctx, bytes.NewReader(copyData), stmt)
		} else {
			_, _ = conn.Exec(ctx, stmt).ReadAll()
		}
		conn.Close(ctx)

		srv.finish(t, setup)
	})
}

// pgCheckCiphertexts fails the test for any value of cols, read directly,
// that does not decrypt under its column's key.
func pgCheckCiphertexts(t *testing.T, direct *pgx.Conn, enc *rules.Encryptor, cols []*rules.ColumnRule) {
	t.Helper()
	ctx := context.Background()
	for _, c := range cols {
		rows, err := direct.Query(ctx, fmt.Sprintf("SELECT %s FROM users", pgx.Identifier{c.Column}.Sanitize()))
		if err != nil {
			t.Fatalf("read %s directly: %v", c, err)
		}
		vals, err := pgx.CollectRows(rows, pgx.RowTo[[]byte])
		if err != nil {
			t.Fatalf("read %s directly: %v", c, err)
		}
		for _, v := range vals {
			if v == nil {
				continue
			}
			if _, err := enc.Decrypt(ctx, c, v); err != nil {
				t.Fatalf("%s holds a value the proxy did not encrypt (%q): %v", c, clipBytes(v), err)
			}
		}
	}
}

// pgFingerprint summarises what a statement could have changed besides
// rows: relations, columns, triggers, rules, functions in the database.
func pgFingerprint(t testing.TB, direct *pgx.Conn) string {
	t.Helper()
	var fp string
	err := direct.QueryRow(context.Background(), `SELECT format('%s/%s/%s/%s/%s',
		(SELECT count(*) FROM pg_class WHERE relnamespace = 'public'::regnamespace),
		(SELECT string_agg(attname, ',' ORDER BY attnum) FROM pg_attribute WHERE attrelid = 'public.users'::regclass AND attnum > 0 AND NOT attisdropped),
		(SELECT count(*) FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid WHERE c.relnamespace = 'public'::regnamespace),
		(SELECT count(*) FROM pg_rewrite r JOIN pg_class c ON c.oid = r.ev_class WHERE c.relnamespace = 'public'::regnamespace),
		(SELECT count(*) FROM pg_proc WHERE pronamespace = 'public'::regnamespace))`).Scan(&fp)
	if err != nil {
		return "error: " + err.Error() // users is gone or renamed: reset
	}
	return fp
}

func pgResetSchema(t *testing.T, direct *pgx.Conn, ddl string) {
	t.Helper()
	ctx := context.Background()
	for _, q := range []string{"DROP SCHEMA public CASCADE", "CREATE SCHEMA public", ddl} {
		if _, err := direct.Exec(ctx, q); err != nil {
			t.Fatalf("reset schema: %s: %v", q, err)
		}
	}
}

func clipBytes(b []byte) []byte {
	if len(b) > 64 {
		return b[:64]
	}
	return b
}

// myFragments are the building blocks of generated MySQL text.
var myFragments = []string{
	"'", "''", `\`, `\'`, `"`, `""`, "`", "``", "#", "-- ", "--", "\n", "\r", "/*", "*/",
	"/*!", "/*!50000 ", "/*!99999 ", "/*M!", "/*M!100000 ", "/*M!999999 ", "/*! ", " ", ",", "(", ")", ";",
	"\x81\x5c", "\xa4\x5c", "\x95\x5c", "\xc3\x83", "\x82\x27", "\xff",
	"secret", "'secret'", "0x736563726574", "X'736563726574'", "_binary'secret'", "N'secret'", "_utf8mb4'secret'",
	"ssn", "email", "note", "users", "`users`", "`ssn`", "\"ssn\"",
	"INSERT INTO users SET note = ", ", ssn = ", "INSERT INTO users(note, ssn) VALUES (",
	"UPDATE users SET ssn = ", " WHERE email = ", "SELECT id FROM users WHERE email = ", " RETURNING id",
	"SET sql_mode = 'NO_BACKSLASH_ESCAPES';", "SET sql_mode = 'ANSI_QUOTES';", "SET sql_mode = '';",
	"SET NAMES gbk;", "SET NAMES big5;", "SET NAMES sjis;", "SET NAMES utf8mb4;",
	"SET STATEMENT sql_mode = 'NO_BACKSLASH_ESCAPES' FOR ", "SET @q = CONCAT('INSERT INTO us', 'ers(ssn) VALUES (0x736563726574)');",
	"PREPARE s FROM @q;", "EXECUTE s;", "CONCAT(", "UNHEX('736563726574')", "REPLACE INTO users(ssn) VALUES (",
}

var mySessions = []string{
	"", "SET sql_mode = 'NO_BACKSLASH_ESCAPES'", "SET sql_mode = 'ANSI_QUOTES'", "SET sql_mode = 'ANSI'",
	"SET NAMES gbk", "SET NAMES big5", "SET NAMES sjis", "SET NAMES latin1", "SET NAMES cp932",
	"SET sql_mode = CONCAT(@@sql_mode, ',NO_BACKSLASH_ESCAPES')", "SET character_set_client = gbk",
}

var mySeeds = []string{
	"INSERT INTO users(note, ssn) VALUES ('n', 'secret')",
	"INSERT INTO users SET note = 'b' /*!99999 , note = '*/, ssn = 0x736563726574 -- ' */",
	"INSERT INTO users SET note = 'b' /*M!999999 , note = '*/, ssn = 0x736563726574 -- ' */",
	"INSERT INTO users SET note = 'k\\', ssn = 0x736563726574 RETURNING id -- '",
	"INSERT INTO users SET note = 'k\xbf\\', ssn = 0x736563726574 RETURNING id -- '",
	"INSERT INTO users SET note = \"k\", ssn = 0x736563726574",
	"INSERT INTO users SET note = 'a' # ', ssn = 0x736563726574\n, ssn = 'x'",
	"INSERT INTO users(ssn) SELECT 'secret'",
	"INSERT INTO users VALUES (NULL, 'n', NULL, 'secret')",
	"UPDATE users SET ssn = UNHEX('736563726574')",
	"SET @q = CONCAT('INSERT INTO us', 'ers(ssn) VALUES (0x736563726574)'); PREPARE s FROM @q; EXECUTE s",
	"CREATE VIEW v AS SELECT * FROM users; INSERT INTO v(ssn) VALUES ('secret')",
	"CREATE TRIGGER tg BEFORE INSERT ON users FOR EACH ROW SET NEW.ssn = NEW.note; INSERT INTO users(note) VALUES ('secret')",
	"SET STATEMENT sql_mode = 'NO_BACKSLASH_ESCAPES' FOR INSERT INTO users SET note = 'k\\', ssn = 0x736563726574 RETURNING id -- '",
	"SELECT id FROM users WHERE email = 'secret'",
	"REPLACE INTO users SET ssn = _binary'secret'",
	"INSERT INTO users(note, ssn) VALUES ('a', 'x') ON DUPLICATE KEY UPDATE ssn = 'secret'",
}

// FuzzMySQLDifferential: see the file comment.
func FuzzMySQLDifferential(f *testing.F) {
	ddl := []string{"CREATE TABLE users (id bigint AUTO_INCREMENT PRIMARY KEY, note text, email varbinary(600), ssn varbinary(600))"}
	specs := []rules.Spec{
		{Table: "users", Column: "email", Mode: rules.ModeDeterministic, Type: value.TypeText, Key: "users.email"},
		{Table: "users", Column: "ssn", Mode: rules.ModeRandomized, Type: value.TypeText, Key: "users.ssn"},
	}
	e := startMyEncProxy(f, ddl, specs)
	set, err := rules.New(rules.DialectMySQL, e.specs)
	if err != nil {
		f.Fatal(err)
	}
	enc := rules.NewEncryptor(e.mgr)
	tr := set.Table(e.db.Database, "", "users")
	cols := []*rules.ColumnRule{tr.Column("email"), tr.Column("ssn")}
	srv := &fuzzServer{
		guard: guardDDL(rules.DialectMySQL, e.db.Database, cols),
		exec: func(ctx context.Context, q string) error {
			_, err := e.direct.ExecContext(ctx, q)
			return err
		},
		fingerprint: func(t testing.TB) string { return myFingerprint(t, e.direct, e.db.Database) },
		reset:       func(t *testing.T) { myResetSchema(t, e.direct, e.db.Database, ddl) },
		empty:       "DELETE FROM users",
		check:       func(t *testing.T) { myCheckCiphertexts(t, e.direct, enc, cols) },
	}
	srv.baseline = srv.fingerprint(f)

	for i, s := range mySeeds {
		f.Add(uint8(i), s, []byte(nil))
		f.Add(uint8(i)|0x20, s, []byte(nil)) // with the guard
	}
	for _, setup := range []uint8{1, 4, 5, 6, 8, 9, 10, 0x80, 0x81, 0x82, 0x85} { // sql_modes and character sets
		f.Add(setup, mySeeds[3], []byte(nil))
		f.Add(setup, mySeeds[4], []byte(nil))
		f.Add(setup, mySeeds[6], []byte(nil))
	}
	f.Add(uint8(2), mySeeds[5], []byte(nil))    // ANSI_QUOTES
	f.Add(uint8(0x40), mySeeds[1], []byte(nil)) // prepared
	f.Add(uint8(1), "INSERT INTO users SET note = ", []byte{1, 2, 53, 55, 34, 37})

	f.Fuzz(func(t *testing.T, setup uint8, stmt string, gen []byte) {
		if len(stmt)+len(gen) > 4096 {
			t.Skip("input too large")
		}
		stmt += genPiece(gen, myFragments)
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()

		srv.addGuard(t, ctx, setup)
		params := []string{"multiStatements=true"}
		if setup&0x80 != 0 { // the handshake's character set
			params = append(params, "charset="+[]string{"gbk", "big5", "sjis", "utf8mb4", "latin1", "cp932"}[int(setup)%6])
		}
		cfg := e.proxy.config(t, params...)
		cfg.InterpolateParams = false
		conn, err := driver.NewConnector(cfg)
		if err != nil {
			t.Fatal(err)
		}
		db := sql.OpenDB(conn)
		defer db.Close()
		c, err := db.Conn(ctx)
		if err != nil {
			t.Fatalf("connect through the proxy: %v", err)
		}
		if s := mySessions[int(setup)%len(mySessions)]; s != "" {
			_, _ = c.ExecContext(ctx, s)
		}
		if setup&0x40 != 0 {
			if st, err := c.PrepareContext(ctx, stmt); err == nil {
				_, _ = st.ExecContext(ctx)
				_ = st.Close()
			}
		} else {
			_, _ = c.ExecContext(ctx, stmt)
		}
		_ = c.Close()
		_ = db.Close()

		srv.finish(t, setup)
	})
}

func myCheckCiphertexts(t *testing.T, direct *sql.DB, enc *rules.Encryptor, cols []*rules.ColumnRule) {
	t.Helper()
	ctx := context.Background()
	for _, c := range cols {
		for _, v := range myByteColumn(t, direct, fmt.Sprintf("SELECT `%s` FROM users", c.Column)) {
			if v == nil {
				continue
			}
			if _, err := enc.Decrypt(ctx, c, v); err != nil {
				t.Fatalf("%s holds a value the proxy did not encrypt (%q): %v", c, clipBytes(v), err)
			}
		}
	}
}

func myFingerprint(t testing.TB, direct *sql.DB, database string) string {
	t.Helper()
	var fp string
	err := direct.QueryRowContext(context.Background(), `SELECT CONCAT_WS('/',
		(SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = ?),
		(SELECT GROUP_CONCAT(COLUMN_NAME ORDER BY ORDINAL_POSITION) FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = ? AND TABLE_NAME = 'users'),
		(SELECT COUNT(*) FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = ?),
		(SELECT COUNT(*) FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = ?))`,
		database, database, database, database).Scan(&fp)
	if err != nil {
		return "error: " + err.Error()
	}
	return fp
}

func myResetSchema(t *testing.T, direct *sql.DB, database string, ddl []string) {
	t.Helper()
	ctx := context.Background()
	c, err := direct.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var drops []string
	for _, list := range []string{ // the DROP statements of the tables and views, then of the routines
		`SELECT CONCAT('DROP ', IF(TABLE_TYPE = 'VIEW', 'VIEW', 'TABLE'), ' IF EXISTS ` + "`" + `', TABLE_NAME, '` + "`" + `')
		FROM information_schema.TABLES WHERE TABLE_SCHEMA = ?`,
		"SELECT CONCAT('DROP ', ROUTINE_TYPE, ' IF EXISTS `', ROUTINE_NAME, '`') FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = ?",
	} {
		rows, err := c.QueryContext(ctx, list, database)
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			var q string
			if err := rows.Scan(&q); err != nil {
				t.Fatal(err)
			}
			drops = append(drops, q)
		}
		_ = rows.Close()
	}
	for _, q := range append(append([]string{"SET FOREIGN_KEY_CHECKS = 0"}, drops...), ddl...) {
		if _, err := c.ExecContext(ctx, q); err != nil {
			t.Fatalf("reset schema: %s: %v", q, err)
		}
	}
}
