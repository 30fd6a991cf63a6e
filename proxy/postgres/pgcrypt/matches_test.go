package pgcrypt_test

import (
	"bytes"
	"encoding/binary"
	"testing"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/dbproxy/dbproxy/proxy/postgres"
)

// The skip-decrypt short cut: a deterministic cell that is byte for byte a
// ciphertext the same execution sent for a lookup on a column with the
// same key is answered with the plaintext the proxy encrypted; every other
// cell is decrypted and authenticated.

// written returns what w collected.
func written(t *testing.T, w *postgres.Writer) []byte {
	t.Helper()
	return w.Bytes()
}

// messages splits wire messages into type and body.
func messages(t *testing.T, b []byte) []msg {
	t.Helper()
	var out []msg
	for len(b) > 0 {
		if len(b) < 5 {
			t.Fatalf("truncated message %q", b)
		}
		n := int(binary.BigEndian.Uint32(b[1:]))
		if n < 4 || len(b) < 1+n {
			t.Fatalf("bad message length %d", n)
		}
		out = append(out, msg{b[0], b[5 : 1+n]})
		b = b[1+n:]
	}
	return out
}

type counts struct{ email, alt, other int64 }

func (f *fixture) counts() counts {
	return counts{f.keys.email.Load(), f.keys.alt.Load(), f.keys.other.Load()}
}

func (c counts) sub(d counts) counts {
	return counts{c.email - d.email, c.alt - d.alt, c.other - d.other}
}

// exchangeOut runs x and returns the messages forwarded to the client and
// the decryptions made, per key.
func (f *fixture) exchangeOut(t *testing.T, x *exchange) ([]msg, counts) {
	t.Helper()
	before := f.counts()
	var front, back postgres.Writer
	if err := f.run(x, &front, &back); err != nil {
		t.Fatal(err)
	}
	if n := f.sess.Pending(); n != 0 {
		t.Fatalf("%d events pending", n)
	}
	return messages(t, written(t, &back)), f.counts().sub(before)
}

// dataRowCells decodes the only DataRow of out; nil if there is none.
func dataRowCells(t *testing.T, out []msg) [][]byte {
	t.Helper()
	for _, m := range out {
		if m.typ == 'D' {
			return decodeDataRow(t, m.body).Values
		}
	}
	return nil
}

// decodeDataRow decodes the body of a DataRow message.
func decodeDataRow(t *testing.T, body []byte) *pgproto3.DataRow {
	t.Helper()
	var dr pgproto3.DataRow
	if err := dr.Decode(body); err != nil {
		t.Fatal(err)
	}
	return &dr
}

// wantCorruptRefusal checks that out forwards no row (what it is called in
// the failure) and fails with XX001, data corrupted.
func wantCorruptRefusal(t *testing.T, out []msg, what string) {
	t.Helper()
	if cells := dataRowCells(t, out); cells != nil {
		t.Fatalf("%s forwarded: %q", what, cells)
	}
	if code := errorCode(out); code != "XX001" {
		t.Errorf("error %q, want XX001", code)
	}
}

func errorCode(out []msg) string {
	for _, m := range out {
		if m.typ == 'E' {
			var e pgproto3.ErrorResponse
			if err := e.Decode(m.body); err != nil {
				return "undecodable"
			}
			return e.Code
		}
	}
	return ""
}

func TestSkipDecryptSimple(t *testing.T) {
	f := newFixture(t)
	xs := f.simpleExchanges(t, "users_enc", encOID, encTypes, true, 2) // user100, user101
	row := func(x *exchange) []byte { return x.back[1].body }

	t.Run("match", func(t *testing.T) {
		out, n := f.exchangeOut(t, &xs[0])
		cells := dataRowCells(t, out)
		if len(cells) != 5 || string(cells[2]) != emailOf(100) || string(cells[3]) != "123-45-6789" || string(cells[4]) != "100000" {
			t.Fatalf("row %q", cells)
		}
		if n.email != 0 || n.other != 2 {
			t.Errorf("decryptions %+v, want email 0 (the bound ciphertext), ssn and salary 1 each", n)
		}
	})
	t.Run("other value", func(t *testing.T) {
		x := exchange{front: xs[0].front, back: xs[0].back}
		x.back = append([]msg(nil), x.back...)
		x.back[1] = msg{'D', row(&xs[1])} // user101's row for user100's lookup
		out, n := f.exchangeOut(t, &x)
		cells := dataRowCells(t, out)
		if len(cells) != 5 || string(cells[2]) != emailOf(101) {
			t.Fatalf("row %q, want user101's", cells)
		}
		if n.email != 1 {
			t.Errorf("email decrypted %d times, want 1", n.email)
		}
	})
	t.Run("tampered", func(t *testing.T) {
		dr := decodeDataRow(t, row(&xs[0]))
		cell := bytes.Clone(dr.Values[2])
		last := len(cell) - 1
		if cell[last] == '0' {
			cell[last] = '1'
		} else {
			cell[last] = '0'
		}
		dr.Values[2] = cell
		x := exchange{front: xs[0].front, back: append([]msg(nil), xs[0].back...)}
		x.back[1] = msg{'D', encodeBody(t, dr)}
		out, n := f.exchangeOut(t, &x)
		wantCorruptRefusal(t, out, "tampered row")
		if n.email != 1 {
			t.Errorf("email decrypted %d times, want 1", n.email)
		}
	})
	t.Run("another key", func(t *testing.T) {
		// users_enc.alt is deterministic text like email, under key alt. A
		// cell of alt holding the very ciphertext the lookup on email sent
		// must be decrypted under alt (and fail), not answered as email's
		// plaintext.
		dr := decodeDataRow(t, row(&xs[0]))
		rd := &pgproto3.RowDescription{}
		for _, a := range []uint16{3, 6} {
			rd.Fields = append(rd.Fields, pgproto3.FieldDescription{Name: []byte("c"), TableOID: encOID,
				TableAttributeNumber: a, DataTypeOID: 17, DataTypeSize: -1, TypeModifier: -1})
		}
		x := exchange{front: xs[0].front, back: []msg{
			{'T', encodeBody(t, rd)},
			{'D', encodeBody(t, &pgproto3.DataRow{Values: [][]byte{dr.Values[2], dr.Values[2]}})},
			{'C', []byte("SELECT 1\x00")}, {'Z', []byte{'I'}},
		}}
		out, n := f.exchangeOut(t, &x)
		wantCorruptRefusal(t, out, "row")
		if n.email != 0 || n.alt != 1 {
			t.Errorf("decryptions %+v, want email 0, alt 1", n)
		}
	})
	t.Run("next query", func(t *testing.T) {
		// The lookups of one query do not carry over to the next.
		x := exchange{front: xs[1].front, back: append([]msg(nil), xs[0].back...)}
		out, n := f.exchangeOut(t, &x)
		if cells := dataRowCells(t, out); len(cells) != 5 || string(cells[2]) != emailOf(100) {
			t.Fatalf("row %q", cells)
		}
		if n.email != 1 {
			t.Errorf("email decrypted %d times, want 1", n.email)
		}
	})
}

func TestSkipDecryptPrepared(t *testing.T) {
	f := newFixture(t)
	x := f.prepare(t, "users_enc", encOID, encTypes, f.encRow, f.plainOut)
	out, n := f.exchangeOut(t, &x)
	if cells := dataRowCells(t, out); len(cells) != 5 || string(cells[2]) != "user42@example.com" {
		t.Fatalf("row %q", cells)
	}
	if n.email != 0 || n.other != 2 {
		t.Errorf("decryptions %+v, want email 0, ssn and salary 1 each", n)
	}

	// The same row for a Bind of another value: decrypted.
	other := x
	other.front = append([]msg(nil), x.front...)
	other.front[0] = msg{'B', encodeBody(t, &pgproto3.Bind{PreparedStatement: "P_users_enc", ParameterFormatCodes: []int16{0},
		Parameters: [][]byte{[]byte("someone@example.com")}, ResultFormatCodes: []int16{0}})}
	out, n = f.exchangeOut(t, &other)
	if cells := dataRowCells(t, out); len(cells) != 5 || string(cells[2]) != "user42@example.com" {
		t.Fatalf("row %q", cells)
	}
	if n.email != 1 {
		t.Errorf("email decrypted %d times, want 1", n.email)
	}

	// A tampered copy of the bound ciphertext: refused.
	dr := decodeDataRow(t, f.encRow)
	cell := bytes.Clone(dr.Values[2])
	cell[len(cell)-2] ^= 1 // a hex digit stays a hex digit
	dr.Values[2] = cell
	bad := x
	bad.back = append([]msg(nil), x.back...)
	bad.back[2] = msg{'D', encodeBody(t, dr)}
	out, _ = f.exchangeOut(t, &bad)
	wantCorruptRefusal(t, out, "tampered row")
}
