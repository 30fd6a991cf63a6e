package integration

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/dbproxy/dbproxy/internal/testenv"
)

// The statement of the client_encoding attack: in SJIS, BIG5 or GBK the
// character lead+0x5C ends the E'…' string for the server (the 0x5C is its
// second byte, not a backslash), so $$secret$$ is the value of name and the
// rest is a comment; a reader of the raw bytes sees a backslash-escaped
// quote, a note running to the second quote, and 'x' as the name.
func encodingAttack(char []byte) string {
	return "INSERT INTO users (note, name) VALUES (E'" + string(char) + `', $$secret$$) /*', 'x') -- */`
}

// Byte sequences that are valid UTF-8 ending in a backslash, and in the
// named encoding characters the last of which has 0x5C as its second byte.
var (
	sjisChar = []byte{0xc3, 0x83, 0x5c}       // UTF-8 "Ã\"; SJIS half-width katakana, ソ
	big5Char = []byte{0xe4, 0xb8, 0xa5, 0x5c} // UTF-8 "严\"; BIG5 two characters, the second 功
	gbkChar  = []byte{0xe4, 0xb8, 0x81, 0x5c} // UTF-8 "丁\"; GBK two characters
)

// pgRawConnect connects through the proxy (or to dsn) with pgconn, with the
// given startup parameters.
func pgRawConnect(t *testing.T, dsn string, params map[string]string) *pgconn.PgConn {
	t.Helper()
	cfg, err := pgconn.ParseConfig(dsn)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range params {
		cfg.RuntimeParams[k] = v
	}
	c, err := pgconn.ConnectConfig(testCtx(t), cfg)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(func() { _ = c.Close(context.Background()) })
	return c
}

// wantEncodingRefusal asserts err is the proxy's client_encoding refusal.
func wantEncodingRefusal(t *testing.T, err error, enc string) {
	t.Helper()
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "0A000" || !strings.Contains(pgErr.Message, "client_encoding "+enc) ||
		!strings.Contains(pgErr.Message, "UTF8") {
		t.Fatalf("got %v, want the 0A000 refusal naming client_encoding %s and UTF8", err, enc)
	}
}

// execSimple runs sql through the simple protocol and returns the error.
func execSimple(ctx context.Context, c *pgconn.PgConn, sql string) error {
	_, err := c.Exec(ctx, sql).ReadAll()
	return err
}

// noSecret asserts that users holds no row and no plaintext "secret".
func (e *encEnv) noSecret(t *testing.T) {
	t.Helper()
	if dump := e.tableDump(t, "users"); dump != "" {
		t.Fatalf("users changed by a refused statement: %q", dump)
	}
	e.checkAtRest(t, []string{"secret"})
}

// TestPGEncodingServerReading checks the premise against the server itself,
// without the proxy: the server reads a simple Query string in the
// client_encoding in force when the string arrives (a SET inside the
// string does not change how the rest of it is read), and the next string
// in the new encoding, where 0x83 0x5C is one character.
func TestPGEncodingServerReading(t *testing.T) {
	pg := testenv.StartPostgres(t)
	ctx := testCtx(t)
	c := pgRawConnect(t, pg.DSN(), nil)
	probe := "SELECT 1 AS a, E'\xc3\x83\\' IS NULL AS b, $$x$$ /*' IS NULL AS c, 2 AS d -- */"
	columns := func(sql string) string {
		t.Helper()
		results, err := c.Exec(ctx, sql).ReadAll()
		if err != nil {
			t.Fatalf("%q: %v", sql, err)
		}
		r := results[len(results)-1]
		var names []string
		for _, f := range r.FieldDescriptions {
			names = append(names, f.Name)
		}
		return strings.Join(names, ",")
	}
	if got := columns("SET client_encoding TO 'SJIS'; " + probe); got != "a,c,d" {
		t.Errorf("SET and the probe in one string read as columns %s, want a,c,d (the string read as UTF8)", got)
	}
	if got := columns(probe); got != "a,b,?column?" {
		t.Errorf("the probe after SET read as columns %s, want a,b,?column? (read as SJIS)", got)
	}
	// The characters used by the tests exist in their encodings, and are
	// valid UTF-8 for the proxy's parser.
	for enc, char := range map[string][]byte{"SJIS": sjisChar, "BIG5": big5Char, "GBK": gbkChar} {
		if !utf8.Valid(char) {
			t.Errorf("%s sequence % x is not valid UTF-8", enc, char)
		}
		var out bytes.Buffer
		out.WriteString("SELECT convert_from('\\x")
		for _, b := range char {
			out.WriteString(strings.ToLower(string("0123456789ABCDEF"[b>>4]) + string("0123456789ABCDEF"[b&15])))
		}
		out.WriteString("'::bytea, '" + enc + "')")
		if err := execSimple(ctx, c, "SET client_encoding TO 'UTF8'; "+out.String()); err != nil {
			t.Errorf("%s character: %v", enc, err)
		}
	}
}

// TestPGEncEncoding: under a client_encoding whose characters can end in an
// ASCII byte, every statement on an encrypted table is refused (simple and
// extended protocol) and nothing reaches the table; plaintext tables keep
// working; going back to UTF8 makes encryption work again.
func TestPGEncEncoding(t *testing.T) {
	e := startEncProxy(t, usersDDL+`; CREATE TABLE plain (t text)`, usersSpecs())
	ctx := testCtx(t)
	reset := func(t *testing.T) {
		t.Helper()
		if _, err := e.direct.Exec(ctx, `DELETE FROM users; DELETE FROM plain`); err != nil {
			t.Fatal(err)
		}
	}
	// encryptsAgain inserts through c and checks the row is stored
	// encrypted and reads back.
	encryptsAgain := func(t *testing.T, c *pgconn.PgConn) {
		t.Helper()
		if err := execSimple(ctx, c, `INSERT INTO users (email, name, note) VALUES ('again@example.com', 'Again Name', 'n')`); err != nil {
			t.Fatalf("insert after going back to UTF8: %v", err)
		}
		res := c.ExecParams(ctx, `SELECT name FROM users WHERE email = $1`, [][]byte{[]byte("again@example.com")}, nil, nil, nil).Read()
		if res.Err != nil || len(res.Rows) != 1 || string(res.Rows[0][0]) != "Again Name" {
			t.Fatalf("read back: %v %q", res.Err, res.Rows)
		}
		e.checkAtRest(t, []string{"again@example.com", "Again Name", "secret"})
	}
	cases := []struct {
		name   string
		enc    string
		params map[string]string
		set    string // run first in the session
		char   []byte
	}{
		{"startup SJIS", "SJIS", map[string]string{"client_encoding": "SJIS"}, "", sjisChar},
		{"SET client_encoding", "SJIS", nil, `SET client_encoding TO 'SJIS'`, sjisChar},
		{"SET NAMES", "SJIS", nil, `SET NAMES 'SJIS'`, sjisChar},
		{"set_config", "SJIS", nil, `SELECT set_config('client_encoding', 'SJIS', false)`, sjisChar},
		{"startup BIG5", "BIG5", map[string]string{"client_encoding": "BIG5"}, "", big5Char},
		{"SET GBK", "GBK", nil, `SET client_encoding = gbk`, gbkChar},
		{"SHIFT_JIS_2004", "SHIFT_JIS_2004", nil, `SET client_encoding TO 'SHIFT_JIS_2004'`, sjisChar},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			reset(t)
			c := pgRawConnect(t, e.proxy.DSN("disable"), tc.params)
			if tc.set != "" {
				if err := execSimple(ctx, c, tc.set); err != nil {
					t.Fatalf("%s: %v", tc.set, err)
				}
			}
			attack := encodingAttack(tc.char)
			wantEncodingRefusal(t, execSimple(ctx, c, attack), tc.enc)
			_, err := c.Prepare(ctx, "", attack, nil)
			wantEncodingRefusal(t, err, tc.enc)
			// Also a plain INSERT, a lookup and a COPY: refused.
			wantEncodingRefusal(t, execSimple(ctx, c, `INSERT INTO users (email) VALUES ('a@example.com')`), tc.enc)
			wantEncodingRefusal(t, execSimple(ctx, c, `SELECT * FROM users WHERE email = 'a@example.com'`), tc.enc)
			_, err = c.CopyFrom(ctx, strings.NewReader("secret\n"), `COPY users (name) FROM STDIN`)
			wantEncodingRefusal(t, err, tc.enc)
			e.noSecret(t)
			// Plaintext tables work, byte for byte in the session's encoding.
			value := string(tc.char)
			if err := execSimple(ctx, c, "INSERT INTO plain VALUES ('"+value+"')"); err != nil {
				t.Fatalf("plaintext insert: %v", err)
			}
			res := c.ExecParams(ctx, `SELECT t FROM plain`, nil, nil, nil, nil).Read()
			if res.Err != nil || len(res.Rows) != 1 || string(res.Rows[0][0]) != value {
				t.Fatalf("plaintext read back: %v %q", res.Err, res.Rows)
			}
			// Pure ASCII statements that are planned but touch no
			// encrypted column pass (read alike in every encoding).
			for _, sql := range []string{`DEALLOCATE ALL`, `SELECT count(*) FROM plain WHERE t <> 'users'`} {
				if err := execSimple(ctx, c, sql); err != nil {
					t.Fatalf("%s: %v", sql, err)
				}
			}
			if err := execSimple(ctx, c, `SET client_encoding TO 'UTF8'`); err != nil {
				t.Fatal(err)
			}
			encryptsAgain(t, c)
		})
	}
	// A statement prepared under UTF8 and bound under SJIS: its text values
	// would be SJIS bytes, its results are not converted.
	t.Run("prepared then SJIS", func(t *testing.T) {
		reset(t)
		c := pgRawConnect(t, e.proxy.DSN("disable"), nil)
		if _, err := c.Prepare(ctx, "ins", `INSERT INTO users (email, name) VALUES ($1, $2)`, nil); err != nil {
			t.Fatal(err)
		}
		if err := execSimple(ctx, c, `SET client_encoding TO 'SJIS'`); err != nil {
			t.Fatal(err)
		}
		res := c.ExecPrepared(ctx, "ins", [][]byte{[]byte("prep@example.com"), []byte("secret")}, nil, nil).Read()
		wantEncodingRefusal(t, res.Err, "SJIS")
		e.noSecret(t)
		if err := execSimple(ctx, c, `RESET client_encoding`); err != nil {
			t.Fatal(err)
		}
		if res := c.ExecPrepared(ctx, "ins", [][]byte{[]byte("prep@example.com"), []byte("Prep Name")}, nil, nil).Read(); res.Err != nil {
			t.Fatalf("after RESET: %v", res.Err)
		}
		e.checkAtRest(t, []string{"prep@example.com", "Prep Name"})
	})
	// psql with PGCLIENTENCODING=SJIS: the same refusal.
	t.Run("psql PGCLIENTENCODING", func(t *testing.T) {
		reset(t)
		env := append(e.proxy.psqlEnv("disable"), "PGCLIENTENCODING=SJIS")
		_, errOut, code := runTool(t, env, t.TempDir(), "psql", "-X", "-v", "ON_ERROR_STOP=1", "-c", encodingAttack(sjisChar))
		if code == 0 || !strings.Contains(errOut, "client_encoding SJIS") || !strings.Contains(errOut, "UTF8") {
			t.Fatalf("psql exit %d, stderr %q: want the client_encoding refusal", code, errOut)
		}
		e.noSecret(t)
	})
	// Safe encodings keep working.
	for _, enc := range []string{"UTF8", "LATIN1", "EUC_JP", "WIN1252"} {
		t.Run("safe "+enc, func(t *testing.T) {
			reset(t)
			c := pgRawConnect(t, e.proxy.DSN("disable"), map[string]string{"client_encoding": enc})
			if err := execSimple(ctx, c, `INSERT INTO users (email, name, salary, note) VALUES ('safe@example.com', 'Safe Name', 42, 'n')`); err != nil {
				t.Fatalf("insert: %v", err)
			}
			res := c.ExecParams(ctx, `SELECT name, salary FROM users WHERE email = $1`, [][]byte{[]byte("safe@example.com")}, nil, nil, nil).Read()
			if res.Err != nil || len(res.Rows) != 1 || string(res.Rows[0][0]) != "Safe Name" || string(res.Rows[0][1]) != "42" {
				t.Fatalf("read back: %v %q", res.Err, res.Rows)
			}
			e.checkAtRest(t, []string{"safe@example.com", "Safe Name"})
		})
	}
}

// TestPGEncEncodingPipeline: statements queued behind a change of
// client_encoding, before the server has reported it, are refused — in an
// extended batch, and as simple Query messages sent back to back after a
// COMMIT that undoes a SET LOCAL.
func TestPGEncEncodingPipeline(t *testing.T) {
	e := startEncProxy(t, usersDDL, usersSpecs())
	ctx := testCtx(t)

	t.Run("batch", func(t *testing.T) {
		c := pgRawConnect(t, e.proxy.DSN("disable"), nil)
		b := &pgconn.Batch{}
		b.ExecParams(`SELECT set_config('client_encoding', 'SJIS', false)`, nil, nil, nil, nil)
		b.ExecParams(encodingAttack(sjisChar), nil, nil, nil, nil)
		_, err := c.ExecBatch(ctx, b).ReadAll()
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) || pgErr.Code != "0A000" {
			t.Fatalf("batch: %v, want a 0A000 refusal", err)
		}
		e.noSecret(t)
	})

	t.Run("batch after SET LOCAL", func(t *testing.T) {
		// Statements in a transaction after a SET that cannot end it are
		// not held back: a batch of inserts after SET LOCAL goes through.
		c := e.connectMode(t, pgx.QueryExecModeCacheStatement)
		tx, err := c.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tx.Exec(ctx, `SET LOCAL application_name = 'tenant42'`); err != nil {
			t.Fatal(err)
		}
		b := &pgx.Batch{}
		b.Queue(`INSERT INTO users (email, name) VALUES ($1, $2)`, "batch1@example.com", "Batch One")
		b.Queue(`INSERT INTO users (email, name) VALUES ($1, $2)`, "batch2@example.com", "Batch Two")
		if err := tx.SendBatch(ctx, b).Close(); err != nil {
			t.Fatalf("batch: %v", err)
		}
		if err := tx.Commit(ctx); err != nil {
			t.Fatal(err)
		}
		e.checkAtRest(t, []string{"batch1@example.com", "Batch One", "Batch Two"})
		if _, err := e.direct.Exec(ctx, `DELETE FROM users`); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("commit undoes SET LOCAL", func(t *testing.T) {
		c := pgRawConnect(t, e.proxy.DSN("disable"), map[string]string{"client_encoding": "SJIS"})
		for _, sql := range []string{`BEGIN`, `SET LOCAL client_encoding TO 'UTF8'`} {
			if err := execSimple(ctx, c, sql); err != nil {
				t.Fatal(err)
			}
		}
		// COMMIT brings SJIS back; the INSERT behind it is read in SJIS by
		// the server.
		fe := c.Frontend()
		fe.Send(&pgproto3.Query{String: `COMMIT`})
		fe.Send(&pgproto3.Query{String: encodingAttack(sjisChar)})
		if err := fe.Flush(); err != nil {
			t.Fatal(err)
		}
		var errs []*pgproto3.ErrorResponse
		for ready := 0; ready < 2; {
			msg, err := fe.Receive()
			if err != nil {
				t.Fatal(err)
			}
			switch m := msg.(type) {
			case *pgproto3.ReadyForQuery:
				ready++
			case *pgproto3.ErrorResponse:
				cp := *m
				errs = append(errs, &cp)
			}
		}
		if len(errs) != 1 || errs[0].Code != "0A000" {
			t.Fatalf("errors %+v, want one 0A000 refusal", errs)
		}
		e.noSecret(t)
	})
}

// TestPGEncStandardConformingStrings: with standard_conforming_strings off
// (startup parameter or SET) statements on encrypted tables are refused,
// the server's reading of '…\'…' would differ; back on, they work.
func TestPGEncStandardConformingStrings(t *testing.T) {
	e := startEncProxy(t, usersDDL, usersSpecs())
	ctx := testCtx(t)
	// Read with standard_conforming_strings on, 'secret' is in a comment;
	// the server, with it off, stores it as the name.
	attack := `INSERT INTO users (note, name) VALUES ('a\', $$n$$) /*', 'secret') -- */`
	for _, tc := range []struct {
		name   string
		params map[string]string
		set    string
	}{
		{"startup", map[string]string{"standard_conforming_strings": "off"}, ""},
		{"SET", nil, `SET standard_conforming_strings = off`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := pgRawConnect(t, e.proxy.DSN("disable"), tc.params)
			if tc.set != "" {
				if err := execSimple(ctx, c, tc.set); err != nil {
					t.Fatal(err)
				}
			}
			err := execSimple(ctx, c, attack)
			var pgErr *pgconn.PgError
			if !errors.As(err, &pgErr) || pgErr.Code != "0A000" || !strings.Contains(pgErr.Message, "standard_conforming_strings") {
				t.Fatalf("got %v, want the standard_conforming_strings refusal", err)
			}
			_, err = c.Prepare(ctx, "", attack, nil)
			if !errors.As(err, &pgErr) || pgErr.Code != "0A000" {
				t.Fatalf("Parse: got %v, want a refusal", err)
			}
			e.noSecret(t)
			if err := execSimple(ctx, c, `SET standard_conforming_strings = on`); err != nil {
				t.Fatal(err)
			}
			if err := execSimple(ctx, c, `INSERT INTO users (email, name) VALUES ('scs@example.com', 'S\C')`); err != nil {
				t.Fatal(err)
			}
			res := c.ExecParams(ctx, `SELECT name FROM users WHERE email = $1`, [][]byte{[]byte("scs@example.com")}, nil, nil, nil).Read()
			if res.Err != nil || len(res.Rows) != 1 || string(res.Rows[0][0]) != `S\C` {
				t.Fatalf("read back: %v %q", res.Err, res.Rows)
			}
			e.checkAtRest(t, []string{"scs@example.com", "secret"})
			if _, err := e.direct.Exec(ctx, `DELETE FROM users`); err != nil {
				t.Fatal(err)
			}
		})
	}
}
