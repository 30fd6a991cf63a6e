package integration

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

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
