package integration

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
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
