package integration

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
)

// TestPGEncCopyLineEndings: COPY … FROM STDIN whose lines end in a carriage
// return alone (or \r\n), with a header line, in text and csv: the proxy
// splits the lines where the server does, so the rows are stored
// encrypted; mixed line endings fail the COPY as they would on the server,
// and nothing is stored.
func TestPGEncCopyLineEndings(t *testing.T) {
	e, ctx, c := startUsersSession(t, pgx.QueryExecModeSimpleProtocol)
	empty := func(t *testing.T) {
		t.Helper()
		if _, err := e.direct.Exec(ctx, `DELETE FROM users`); err != nil {
			t.Fatal(err)
		}
	}
	ok := []struct{ name, sql, data string }{
		{"csv header CR", `COPY users (name, note) FROM STDIN WITH (FORMAT csv, HEADER true)`, "name,note\rsecretvalue,n1\rsecondsecret,n2\r"},
		{"csv header match CR", `COPY users (name, note) FROM STDIN WITH (FORMAT csv, HEADER match)`, "name,note\rsecretvalue,n1\rsecondsecret,n2\r"},
		{"csv header CRLF", `COPY users (name, note) FROM STDIN WITH (FORMAT csv, HEADER true)`, "name,note\r\nsecretvalue,n1\r\nsecondsecret,n2\r\n"},
		{"csv quoted CR", `COPY users (name, note) FROM STDIN WITH (FORMAT csv, HEADER true)`, "name,note\r\"secret\rvalue\",n1\rsecondsecret,n2"},
		{"text header CR", `COPY users (name, note) FROM STDIN WITH (HEADER true)`, "name\tnote\rsecretvalue\tn1\rsecondsecret\tn2\r"},
		{"text header match CR", `COPY users (name, note) FROM STDIN WITH (HEADER match)`, "name\tnote\rsecretvalue\tn1\rsecondsecret\tn2\r"},
		{"text CR", `COPY users (name, note) FROM STDIN`, "secretvalue\tn1\rsecondsecret\tn2\r"},
		{"text CR end marker", `COPY users (name, note) FROM STDIN`, "secretvalue\tn1\rsecondsecret\tn2\r\\.\rignoredsecret\tn3\r"},
		{"csv end marker", `COPY users (name, note) FROM STDIN WITH (FORMAT csv)`, "secretvalue,n1\nsecondsecret,n2\n\\.\n"},
	}
	for _, tt := range ok {
		for _, chunk := range []int{1, 5, 4096} {
			t.Run(tt.name, func(t *testing.T) {
				empty(t)
				tag, err := c.PgConn().CopyFrom(ctx, &trickleReader{data: []byte(tt.data), n: chunk}, tt.sql)
				if err != nil {
					t.Fatalf("copy (chunk %d): %v", chunk, err)
				}
				if tag.RowsAffected() != 2 {
					t.Fatalf("copied %d rows, want 2", tag.RowsAffected())
				}
				e.checkAtRest(t, []string{"secretvalue", "secondsecret", "ignoredsecret"})
				var names []string
				rows, err := c.Query(ctx, `SELECT name FROM users ORDER BY note`)
				if err != nil {
					t.Fatal(err)
				}
				if names, err = pgx.CollectRows(rows, pgx.RowTo[string]); err != nil {
					t.Fatal(err)
				}
				want := "secretvalue|secondsecret"
				if strings.Contains(tt.name, "quoted CR") {
					want = "secret\rvalue|secondsecret"
				}
				if strings.Join(names, "|") != want {
					t.Fatalf("names %q, want %q", names, want)
				}
			})
		}
	}
	refused := []struct{ name, sql, data, msg string }{
		{"csv LF then CR", `COPY users (name, note) FROM STDIN WITH (FORMAT csv, HEADER true)`, "name,note\nsecretvalue,n1\rsecondsecret,n2\r", "carriage return"},
		{"text CR then LF", `COPY users (name, note) FROM STDIN WITH (HEADER true)`, "name\tnote\rsecretvalue\tn1\nsecondsecret\tn2\n", "newline"},
		{"text CRLF then CR", `COPY users (name, note) FROM STDIN`, "secretvalue\tn1\r\nsecondsecret\tn2\r", "carriage return"},
		{"csv data after the end marker", `COPY users (name, note) FROM STDIN WITH (FORMAT csv)`, "secretvalue,n1\n\\.\nsecondsecret,n2\n", "after the csv end-of-data marker"},
	}
	// A csv QUOTE the splitter cannot follow is refused up front.
	_, err := c.PgConn().CopyFrom(ctx, strings.NewReader("secretvalue,n\n"), `COPY users (name, note) FROM STDIN WITH (FORMAT csv, QUOTE '\')`)
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "0A000" || !strings.Contains(pgErr.Message, "QUOTE") {
		t.Fatalf("csv QUOTE '\\': got %v, want a refusal", err)
	}
	for _, tt := range refused {
		for _, chunk := range []int{1, 4096} {
			t.Run(tt.name, func(t *testing.T) {
				empty(t)
				_, err := c.PgConn().CopyFrom(ctx, &trickleReader{data: []byte(tt.data), n: chunk}, tt.sql)
				var pgErr *pgconn.PgError
				if !errors.As(err, &pgErr) || !strings.Contains(pgErr.Message, "dbproxy: COPY refused") || !strings.Contains(pgErr.Message, tt.msg) {
					t.Fatalf("got %v, want the proxy's CopyFail about %q", err, tt.msg)
				}
				if dump := e.tableDump(t, "users"); dump != "" {
					t.Fatalf("rows stored by a failed COPY: %q", dump)
				}
			})
		}
	}
}

// TestPGEncCopyBufferLimit: COPY data with no line ending is kept up to the
// limit (16 MiB by default); a 32 MiB CopyData fails the COPY at once with
// a message naming the limit, and nothing is stored.
func TestPGEncCopyBufferLimit(t *testing.T) {
	e := startEncProxy(t, usersDDL, usersSpecs())
	ctx := testCtx(t)
	pc := pgRawConnect(t, e.proxy.DSN("disable"), nil)
	fe := pc.Frontend()
	fe.Send(&pgproto3.Query{String: `COPY users (name, note) FROM STDIN`})
	if err := fe.Flush(); err != nil {
		t.Fatal(err)
	}
	receiveUntil[*pgproto3.CopyInResponse](t, fe)
	start := time.Now()
	fe.Send(&pgproto3.CopyData{Data: bytes.Repeat([]byte("secretvalue"), 32<<20/11)})
	fe.Send(&pgproto3.CopyDone{})
	if err := fe.Flush(); err != nil {
		t.Fatal(err)
	}
	var gotErr *pgproto3.ErrorResponse
	for {
		msg, err := fe.Receive()
		if err != nil {
			t.Fatal(err)
		}
		if m, ok := msg.(*pgproto3.ErrorResponse); ok {
			cp := *m
			gotErr = &cp
		}
		if _, ok := msg.(*pgproto3.ReadyForQuery); ok {
			break
		}
	}
	if elapsed := time.Since(start); elapsed > 10*time.Second {
		t.Errorf("the refusal took %v", elapsed)
	}
	if gotErr == nil || !strings.Contains(gotErr.Message, "16777216 bytes") || !strings.Contains(gotErr.Message, "copy_buffer") {
		t.Fatalf("error %+v, want the COPY buffer limit", gotErr)
	}
	if dump := e.tableDump(t, "users"); dump != "" {
		t.Fatalf("rows stored: %d bytes", len(dump))
	}
	// The session goes on.
	if err := execSimple(ctx, pc, `SELECT 1`); err != nil {
		t.Fatal(err)
	}
}

// TestPGEncCopyPsql: psql's inline COPY data (COPY … FROM STDIN in a
// script, ended by \., and \copy … from stdin) in csv and text through the
// proxy is stored encrypted.
func TestPGEncCopyPsql(t *testing.T) {
	e := startEncProxy(t, usersDDL, usersSpecs())
	dir := t.TempDir()
	script := "COPY users (email, name, note) FROM STDIN WITH (FORMAT csv, HEADER true);\n" +
		"email,name,note\n" +
		"psql1@example.com,\"Psql, One\",n1\n" +
		"psql2@example.com,Psql Two,\"multi\nline\"\n" +
		"\\.\n" +
		"\\copy users (email, name, note) from stdin\n" +
		"psql3@example.com\tPsql Three\tn3\n" +
		"\\.\n" +
		"\\copy users (email, name, note) from stdin with (format csv)\n" +
		"psql4@example.com,Psql Four,n4\n" +
		"\\.\n" +
		"SELECT email, name FROM users ORDER BY id;\n"
	if err := os.WriteFile(filepath.Join(dir, "copy.sql"), []byte(script), 0o600); err != nil {
		t.Fatal(err)
	}
	out, errOut, code := runTool(t, e.proxy.psqlEnv("disable"), dir, "psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-f", "copy.sql")
	if code != 0 {
		t.Fatalf("psql: exit %d: %s", code, errOut)
	}
	want := "psql1@example.com|Psql, One\npsql2@example.com|Psql Two\npsql3@example.com|Psql Three\npsql4@example.com|Psql Four\n"
	if out != want {
		t.Errorf("output %q, want %q", out, want)
	}
	e.checkAtRest(t, []string{"psql1@example.com", "Psql, One", "Psql Three", "Psql Four"})
	var n int
	if err := e.direct.QueryRow(context.Background(), `SELECT count(*) FROM users`).Scan(&n); err != nil || n != 4 {
		t.Fatalf("rows %d (%v), want 4", n, err)
	}
}
