package integration

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
)

// trickleReader returns its data a few bytes at a time, so that CopyData
// messages split rows (and fields, and CSV quotes) arbitrarily.
type trickleReader struct {
	data []byte
	n    int
}

func (r *trickleReader) Read(p []byte) (int, error) {
	if len(r.data) == 0 {
		return 0, io.EOF
	}
	k := min(r.n, len(p), len(r.data))
	copy(p, r.data[:k])
	r.data = r.data[k:]
	return k, nil
}

func TestPGEncCopy(t *testing.T) {
	e, ctx, c := startUsersSession(t, pgx.QueryExecModeSimpleProtocol)
	tests := []struct {
		name, sql, data string
		rows            int64
	}{
		{"text", `COPY users (email, name, salary, note) FROM STDIN`,
			"copy1@example.com\tCopy Tab\\tName\t100\tplain note\n" +
				"copy2@example.com\t\\N\t\\N\tnull name\n" +
				"copy3@example.com\tZoë Ünïcode\t-9223372036854775808\t\\N\n", 3},
		{"csv", `COPY users (note, email, name, salary) FROM STDIN WITH (FORMAT csv, HEADER true)`,
			"note,email,name,salary\n" +
				"n1,csv1@example.com,\"Csv, Comma \"\"Quoted\"\"\nNewline\",7\n" +
				"n2,csv2@example.com,\"\",\n" +
				"n3,csv3@example.com,,8", 3},
	}
	for _, tt := range tests {
		for _, chunk := range []int{1, 3, 7, 4096} {
			t.Run(tt.name, func(t *testing.T) {
				if _, err := c.Exec(ctx, `DELETE FROM users`); err != nil {
					t.Fatal(err)
				}
				tag, err := c.PgConn().CopyFrom(ctx, &trickleReader{data: []byte(tt.data), n: chunk}, tt.sql)
				if err != nil {
					t.Fatalf("copy from (chunk %d): %v", chunk, err)
				}
				if tag.RowsAffected() != tt.rows {
					t.Fatalf("copied %d rows, want %d", tag.RowsAffected(), tt.rows)
				}
			})
		}
		// Read back through the proxy in the same format.
		var out bytes.Buffer
		toSQL := strings.Replace(strings.Replace(tt.sql, "FROM STDIN", "TO STDOUT", 1), "users (", "(SELECT ", 1)
		toSQL = strings.Replace(toSQL, ") TO STDOUT", " FROM users ORDER BY id) TO STDOUT", 1)
		if _, err := c.PgConn().CopyTo(ctx, &out, toSQL); err != nil {
			t.Fatalf("copy to %q: %v", toSQL, err)
		}
		want := strings.ReplaceAll(tt.data, "\r\n", "\n")
		if !strings.HasSuffix(want, "\n") {
			want += "\n"
		}
		if tt.name == "csv" { // the server writes the NULL salary and the empty string its own way
			want = strings.Replace(want, "n2,csv2@example.com,\"\",\n", "n2,csv2@example.com,\"\",\n", 1)
		}
		if out.String() != want {
			t.Errorf("copy to:\n%q\nwant\n%q", out.String(), want)
		}
		var name *string
		if err := c.QueryRow(ctx, `SELECT name FROM users WHERE email = $1`, map[string]string{"text": "copy1@example.com", "csv": "csv1@example.com"}[tt.name]).Scan(&name); err != nil || name == nil {
			t.Fatalf("lookup after copy: %v", err)
		}
		if tt.name == "text" && *name != "Copy Tab\tName" || tt.name == "csv" && *name != "Csv, Comma \"Quoted\"\nNewline" {
			t.Errorf("name %q", *name)
		}
		e.checkAtRest(t, []string{"copy1@example.com", "Copy Tab", "Zoë Ünïcode", "csv1@example.com", "Comma", "Newline"})
	}
	// Also a whole-table COPY TO (column list pinned by the proxy).
	var out bytes.Buffer
	if _, err := c.PgConn().CopyTo(ctx, &out, `COPY users TO STDOUT`); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "csv1@example.com") || strings.Contains(out.String(), `\\x01`) {
		t.Errorf("copy users to stdout: %q", out.String())
	}

	// Refused: a bad value, COPY in a multi-statement string (binary COPY:
	// TestPGEncCopyBinary).
	before := e.tableDump(t, "users")
	_, err := c.PgConn().CopyFrom(ctx, strings.NewReader("bad@example.com\tx\tnot-a-number\tn\n"), `COPY users (email, name, salary, note) FROM STDIN`)
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || !strings.Contains(pgErr.Message, "users.salary") || strings.Contains(pgErr.Message, "not-a-number") {
		t.Errorf("bad value: %v", err)
	}
	if _, err := c.Exec(ctx, `SELECT 1; COPY users TO STDOUT`); err == nil {
		t.Error("COPY in a multi-statement string accepted")
	}
	if got := e.tableDump(t, "users"); got != before {
		t.Error("table changed by refused COPYs")
	}
	var one int
	if err := c.QueryRow(ctx, `SELECT 1`).Scan(&one); err != nil {
		t.Fatalf("session after refused COPY: %v", err)
	}
}

// TestPGEncCopyBinary: binary COPY (pgx CopyFrom, and COPY … (FORMAT
// binary) both ways) on a table with encrypted columns: values arrive in
// their plaintext types' binary formats and are stored as ciphertext;
// COPY TO hands them back decrypted in the same formats; a stream split
// anywhere works; a malformed value is refused with the table unchanged.
func TestPGEncCopyBinary(t *testing.T) {
	e, ctx, c := startUsersSession(t, pgx.QueryExecModeCacheStatement)
	rows := [][]any{
		{"bin1@example.com", "Binary One", int64(-9223372036854775808), "n1"},
		{"bin2@example.com", "Zoë Ünïcode", int64(42), nil},
		{"bin3@example.com", nil, nil, "n3"},
	}
	n, err := c.CopyFrom(ctx, pgx.Identifier{"users"}, []string{"email", "name", "salary", "note"}, pgx.CopyFromRows(rows))
	if err != nil || n != 3 {
		t.Fatalf("pgx CopyFrom: %d %v", n, err)
	}
	e.checkAtRest(t, []string{"bin1@example.com", "bin2@example.com", "bin3@example.com", "Binary One", "Zoë Ünïcode"})
	var name string
	var salary int64
	if err := c.QueryRow(ctx, `SELECT name, salary FROM users WHERE email = $1`, "bin1@example.com").Scan(&name, &salary); err != nil ||
		name != "Binary One" || salary != -9223372036854775808 {
		t.Fatalf("read back: %q %d %v", name, salary, err)
	}

	// COPY TO in binary: the decrypted values in their binary formats.
	const toSQL = `COPY (SELECT email, name, salary, note FROM users ORDER BY id) TO STDOUT (FORMAT binary)`
	var out bytes.Buffer
	if _, err := c.PgConn().CopyTo(ctx, &out, toSQL); err != nil {
		t.Fatalf("binary COPY TO: %v", err)
	}
	got, err := parseBinaryCopy(out.Bytes())
	if err != nil {
		t.Fatalf("parse binary COPY TO output: %v", err)
	}
	want := [][]string{
		{"bin1@example.com", "Binary One", "8000000000000000", "n1"},
		{"bin2@example.com", "Zoë Ünïcode", "000000000000002a", "NULL"},
		{"bin3@example.com", "NULL", "NULL", "n3"},
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("binary COPY TO rows:\n got %q\nwant %q", got, want)
	}

	// The same stream back in, split into pieces of 1, 3 and 7 bytes.
	for _, chunk := range []int{1, 3, 7} {
		tag, err := c.PgConn().CopyFrom(ctx, &trickleReader{data: out.Bytes(), n: chunk},
			`COPY users (email, name, salary, note) FROM STDIN (FORMAT binary)`)
		if err != nil || tag.RowsAffected() != 3 {
			t.Fatalf("binary COPY FROM in %d-byte pieces: %v %v", chunk, tag, err)
		}
	}
	var count int
	if err := c.QueryRow(ctx, `SELECT count(*) FROM users WHERE email = $1`, "bin2@example.com").Scan(&count); err != nil || count != 4 {
		t.Fatalf("rows of bin2 after re-import: %d %v", count, err)
	}
	e.checkAtRest(t, []string{"bin1@example.com", "bin2@example.com", "Binary One", "Zoë Ünïcode"})

	// A bigint that is not 8 bytes: refused, naming the column, nothing written.
	before := e.tableDump(t, "users")
	bad := binaryCopyStream([][][]byte{{[]byte("bad@example.com"), []byte("Bad"), {1, 2, 3}, nil}})
	_, err = c.PgConn().CopyFrom(ctx, bytes.NewReader(bad), `COPY users (email, name, salary, note) FROM STDIN (FORMAT binary)`)
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || !strings.Contains(pgErr.Message, "users.salary") {
		t.Errorf("bad binary value: %v", err)
	}
	// A tuple with the wrong number of fields.
	short := binaryCopyStream([][][]byte{{[]byte("short@example.com")}})
	if _, err := c.PgConn().CopyFrom(ctx, bytes.NewReader(short), `COPY users (email, name) FROM STDIN (FORMAT binary)`); err == nil {
		t.Error("binary tuple with too few fields accepted")
	}
	if got := e.tableDump(t, "users"); got != before {
		t.Error("table changed by refused binary COPYs")
	}
	if err := c.QueryRow(ctx, `SELECT count(*) FROM users`).Scan(&count); err != nil || count != 12 {
		t.Fatalf("session after refused COPY: %d %v", count, err)
	}
}

// binaryCopyStream builds a binary COPY stream; a nil field is NULL.
func binaryCopyStream(tuples [][][]byte) []byte {
	b := append([]byte("PGCOPY\n\xff\r\n\x00"), 0, 0, 0, 0, 0, 0, 0, 0)
	for _, tup := range tuples {
		b = binary.BigEndian.AppendUint16(b, uint16(len(tup)))
		for _, f := range tup {
			if f == nil {
				b = binary.BigEndian.AppendUint32(b, 0xffffffff)
				continue
			}
			b = binary.BigEndian.AppendUint32(b, uint32(len(f)))
			b = append(b, f...)
		}
	}
	return binary.BigEndian.AppendUint16(b, 0xffff)
}

// parseBinaryCopy returns the fields of a binary COPY stream: text as is,
// 8-byte values in hex, NULL as "NULL".
func parseBinaryCopy(b []byte) ([][]string, error) {
	sig := []byte("PGCOPY\n\xff\r\n\x00")
	if !bytes.HasPrefix(b, sig) || len(b) < len(sig)+8 {
		return nil, errors.New("bad header")
	}
	b = b[len(sig)+4:]
	ext := int(binary.BigEndian.Uint32(b))
	b = b[4+ext:]
	var out [][]string
	for {
		if len(b) < 2 {
			return nil, errors.New("truncated")
		}
		n := int(int16(binary.BigEndian.Uint16(b)))
		b = b[2:]
		if n == -1 {
			if len(b) != 0 {
				return nil, errors.New("data after the trailer")
			}
			return out, nil
		}
		var row []string
		for range n {
			if len(b) < 4 {
				return nil, errors.New("truncated field")
			}
			l := int(int32(binary.BigEndian.Uint32(b)))
			b = b[4:]
			switch {
			case l < 0:
				row = append(row, "NULL")
			case l > len(b):
				return nil, errors.New("truncated value")
			case l == 8 && !strings.Contains(string(b[:l]), "@"):
				row = append(row, fmt.Sprintf("%x", b[:l]))
			default:
				row = append(row, string(b[:l]))
			}
			if l > 0 {
				b = b[l:]
			}
		}
		out = append(out, row)
	}
}

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

// TestPGEncDumpRestore: pg_dump through the proxy writes a logical backup
// with the decrypted values, and restoring it through the proxy (psql -f)
// encrypts them again: after a TRUNCATE the same rows come back, stored as
// ciphertext. COPY's text escaping survives the round trip (tab,
// backslash, newline, NULL, non-ASCII).
func TestPGEncDumpRestore(t *testing.T) {
	e, ctx, c := startUsersSession(t, pgx.QueryExecModeCacheStatement)
	type row struct {
		email, name string
		salary      *int64
	}
	salary := int64(-42)
	want := []row{
		{"dump@example.com", "Dümp Person", &salary},
		{"tab\tand\\back@example.com", "line one\nline two", nil},
	}
	for _, r := range want {
		if _, err := c.Exec(ctx, `INSERT INTO users (email, name, salary, note) VALUES ($1, $2, $3, 'n')`, r.email, r.name, r.salary); err != nil {
			t.Fatal(err)
		}
	}
	env := e.proxy.psqlEnv("disable")
	dir := t.TempDir()
	if out, errOut, code := runTool(t, env, dir, "pg_dump", "--data-only", "--table=users", "-f", "dump.sql"); code != 0 {
		t.Fatalf("pg_dump through the proxy: exit %d: %s %s", code, out, errOut)
	}
	dump, err := os.ReadFile(filepath.Join(dir, "dump.sql"))
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"dump@example.com", "Dümp Person", "-42", `tab\tand\\back@example.com`, `line one\nline two`} {
		if !strings.Contains(string(dump), s) {
			t.Errorf("dump lacks the decrypted %q", s)
		}
	}
	if strings.Contains(string(dump), `\x0102`) {
		t.Error("dump holds raw ciphertext")
	}

	if _, err := e.direct.Exec(ctx, `TRUNCATE users`); err != nil {
		t.Fatal(err)
	}
	if out, errOut, code := runTool(t, env, dir, "psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-f", "dump.sql"); code != 0 {
		t.Fatalf("restore through the proxy: exit %d: %s %s", code, out, errOut)
	}
	rows, err := c.Query(ctx, `SELECT email, name, salary FROM users ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	got, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (row, error) {
		var x row
		err := r.Scan(&x.email, &x.name, &x.salary)
		return x, err
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Fatalf("restored %d rows, want %d", len(got), len(want))
	}
	for i := range want {
		w, g := want[i], got[i]
		if g.email != w.email || g.name != w.name || (g.salary == nil) != (w.salary == nil) || (g.salary != nil && *g.salary != *w.salary) {
			t.Errorf("row %d restored as %q %q %v, want %q %q %v", i, g.email, g.name, g.salary, w.email, w.name, w.salary)
		}
	}
	e.checkAtRest(t, []string{"dump@example.com", "Dümp Person", "tab\tand\\back@example.com", "line one\nline two"})
}
