package pgcrypt

import (
	"bytes"
	"encoding/binary"
	"testing"

	"github.com/dbproxy/dbproxy/proxy/postgres/pgmsg"
	"github.com/dbproxy/dbproxy/rules"
	"github.com/dbproxy/dbproxy/sqlplan/pgsql"
)

var binarySignature = []byte(pgmsg.CopySignature)

// marker converts an encrypted field to "<" v ">", so that a test sees
// which fields went through the conversion.
func marker(out []byte, _ *pgsql.CopyField, v []byte) ([]byte, error) {
	out = binary.BigEndian.AppendUint32(out, uint32(len(v)+2))
	out = append(out, '<')
	out = append(out, v...)
	return append(out, '>'), nil
}

func testBinCopyFields() []pgsql.CopyField {
	return []pgsql.CopyField{{Name: "a"}, {Name: "b", Column: &rules.ColumnRule{}}}
}

func stream(tuples ...[][]byte) []byte {
	b := append(append([]byte(nil), binarySignature...), 0, 0, 0, 0, 0, 0, 0, 2, 'x', 'y')
	for _, tup := range tuples {
		b = pgmsg.AppendCopyTuple(b, tup)
	}
	return pgmsg.AppendInt16(b, pgmsg.CopyTrailer)
}

// convertInPieces feeds data to a fresh binCopy in pieces of n bytes.
func convertInPieces(data []byte, n int) ([]byte, error) {
	b := &binCopy{fields: testBinCopyFields()}
	var out []byte
	for len(data) > 0 {
		k := min(n, len(data))
		var err error
		if out, err = b.convert(data[:k], out, marker); err != nil {
			return out, err
		}
		data = data[k:]
	}
	return out, b.finish()
}

func TestBinCopyConvert(t *testing.T) {
	in := stream([][]byte{[]byte("p1"), []byte("s1")}, [][]byte{nil, nil}, [][]byte{[]byte(""), []byte("s3")})
	want := stream([][]byte{[]byte("p1"), []byte("<s1>")}, [][]byte{nil, nil}, [][]byte{[]byte(""), []byte("<s3>")})
	for _, n := range []int{1, 2, 3, 7, 19, 1 << 20} {
		got, err := convertInPieces(in, n)
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("pieces of %d: %v\n got %q\nwant %q", n, err, got, want)
		}
	}
	bad := map[string][]byte{
		"signature":   append([]byte("PGCOPX"), in[6:]...),
		"oids flag":   append(append(append([]byte(nil), binarySignature...), 0, 1, 0, 0), in[len(binarySignature)+4:]...),
		"field count": stream([][]byte{[]byte("only one")}),
		"negative":    append(stream()[:len(stream())-2], 0, 2, 0xff, 0xff, 0xff, 0xfe),
	}
	for name, data := range bad {
		if _, err := convertInPieces(data, 5); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if _, err := convertInPieces(in[:len(in)-3], 4); err == nil {
		t.Error("stream cut inside a tuple: no error at the end")
	}
}

// FuzzBinCopy: any input is converted without panicking, and the result
// does not depend on how the input is split.
func FuzzBinCopy(f *testing.F) {
	f.Add(stream([][]byte{[]byte("p1"), []byte("s1")}), uint8(3))
	f.Add(stream([][]byte{nil, []byte("s")}, [][]byte{[]byte("x"), nil}), uint8(1))
	f.Fuzz(func(t *testing.T, data []byte, n uint8) {
		whole, errWhole := convertInPieces(data, len(data)+1)
		split, errSplit := convertInPieces(data, int(n)+1)
		if (errWhole == nil) != (errSplit == nil) {
			t.Fatalf("whole: %v, in pieces of %d: %v", errWhole, int(n)+1, errSplit)
		}
		if errWhole == nil && !bytes.Equal(whole, split) {
			t.Fatalf("output depends on the split")
		}
	})
}
