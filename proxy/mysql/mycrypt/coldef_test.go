package mycrypt

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"strings"
	"testing"

	gomysql "github.com/go-mysql-org/go-mysql/mysql"

	"github.com/dbproxy/dbproxy/rules"
	"github.com/dbproxy/dbproxy/value"
)

// capturedDef is a column definition MariaDB sent.
type capturedDef struct {
	payload []byte
	extMeta bool
}

// capturedDefs reads testdata/mariadb-column-definitions.txt.
func capturedDefs(t testing.TB) []capturedDef {
	t.Helper()
	f, err := os.Open("testdata/mariadb-column-definitions.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var defs []capturedDef
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		kind, h, ok := strings.Cut(line, " ")
		p, err := hex.DecodeString(h)
		if !ok || err != nil || (kind != "ext" && kind != "std") {
			t.Fatalf("bad line %q", line)
		}
		defs = append(defs, capturedDef{p, kind == "ext"})
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if len(defs) < 50 {
		t.Fatalf("%d captured definitions", len(defs))
	}
	return defs
}

// extContent returns the content of d's extended metadata field.
func extContent(t testing.TB, d columnDef) []byte {
	t.Helper()
	if d.extStart == d.extEnd {
		return nil
	}
	v, next, _, err := readLenenc(d.payload, d.extStart)
	if err != nil || next != d.extEnd {
		t.Fatalf("extended metadata at %d..%d: %v", d.extStart, d.extEnd, err)
	}
	return v
}

// TestColumnDefRoundTrip: the view reads MariaDB's column definitions as
// go-mysql's mysql.Field does where that one can read them (no extended
// metadata), and writing a definition back with its own attributes and
// extended metadata reproduces it byte for byte. go-mysql's Parse/Dump
// reproduces the standard ones but not those with extended metadata.
func TestColumnDefRoundTrip(t *testing.T) {
	gomysqlMisread := 0
	for _, c := range capturedDefs(t) {
		d, err := parseColumnDef(c.payload, c.extMeta)
		if err != nil {
			t.Fatalf("%x: %v", c.payload, err)
		}
		if c.payload[d.fixed-1] != fixedFieldsLen {
			t.Fatalf("%x: fixed fields at %d", c.payload, d.fixed)
		}
		ext := extContent(t, d)
		if !c.extMeta && len(ext) != 0 {
			t.Fatalf("%x: extended metadata without the capability", c.payload)
		}
		if got := d.appendWith(nil, string(ext), d.attrs()); !bytes.Equal(got, c.payload) {
			t.Errorf("round trip\n%x\nwant\n%x", got, c.payload)
		}
		if got := d.appendWith([]byte("prefix"), string(ext), d.attrs()); !bytes.Equal(got[6:], c.payload) {
			t.Errorf("round trip after a prefix\n%x\nwant\n%x", got[6:], c.payload)
		}

		var f gomysql.Field
		err = f.Parse(bytes.Clone(c.payload))
		if c.extMeta {
			f.Data = nil
			if err != nil || !bytes.Equal(f.Dump(), c.payload) {
				gomysqlMisread++
			}
			continue
		}
		if err != nil {
			t.Fatalf("go-mysql: %x: %v", c.payload, err)
		}
		a := d.attrs()
		if a != (colAttrs{f.Charset, f.ColumnLength, f.Type, f.Flag, f.Decimal}) || a.typ != d.typ() ||
			!bytes.Equal(d.schema, f.Schema) || !bytes.Equal(d.orgTable, f.OrgTable) || !bytes.Equal(d.orgName, f.OrgName) {
			t.Errorf("%x: view %+v %q.%q.%q, go-mysql %+v", c.payload, a, d.schema, d.orgTable, d.orgName, f)
		}
		f.Data = nil
		if got := f.Dump(); !bytes.Equal(got, c.payload) {
			t.Errorf("go-mysql round trip\n%x\nwant\n%x", got, c.payload)
		}
	}
	if gomysqlMisread == 0 {
		t.Error("go-mysql's mysql.Field reproduces definitions with extended metadata: it could replace columnDef")
	}
}

// TestColumnDefTruncated: every proper prefix of a definition is refused.
func TestColumnDefTruncated(t *testing.T) {
	for _, c := range capturedDefs(t)[:8] {
		for n := range len(c.payload) {
			if _, err := parseColumnDef(c.payload[:n], c.extMeta); err == nil {
				t.Fatalf("%x (%d of %d bytes) accepted", c.payload[:n], n, len(c.payload))
			}
		}
	}
}

// allTypes are the plaintext types.
var allTypes = []value.Type{value.TypeText, value.TypeSmallint, value.TypeInt, value.TypeBigint,
	value.TypeReal, value.TypeDouble, value.TypeNumeric, value.TypeBoolean, value.TypeDate,
	value.TypeTimestamp, value.TypeTimestamptz, value.TypeUUID, value.TypeBytes, value.TypeJSON}

// rewriteCaptured rewrites every captured definition as if every column
// of table cap were encrypted with plaintext type typ.
func rewriteCaptured(t *testing.T, defs []capturedDef, typ value.Type, each func(c capturedDef, col column, out []byte)) {
	t.Helper()
	var specs []rules.Spec
	for _, name := range strings.Fields("id doc ip u vb b t vc ch si bi f d dec1 dt ts da tm y e s bt g l ti") {
		specs = append(specs, rules.Spec{Table: "cap", Column: name, Key: "k", Mode: rules.ModeRandomized, Type: typ})
	}
	set, err := rules.New(rules.DialectMySQL, specs)
	if err != nil {
		t.Fatal(err)
	}
	ic := &Interceptor{rules: set}
	for _, c := range defs {
		s := &session{ic: ic, extMeta: c.extMeta}
		col, out, err := s.rewriteColumnDef(c.payload)
		if err != nil {
			t.Fatalf("%x: %v", c.payload, err)
		}
		each(c, col, out)
	}
}

// TestRewriteColumnDefCaptured: rewritten definitions announce the
// plaintext type, keep everything else, and are byte for byte what the
// index-based rewrite they replaced produced (the digest).
func TestRewriteColumnDefCaptured(t *testing.T) {
	defs := capturedDefs(t)
	h := sha256.New()
	rewritten := 0
	for _, typ := range allTypes {
		rewriteCaptured(t, defs, typ, func(c capturedDef, col column, out []byte) {
			d, err := parseColumnDef(c.payload, c.extMeta)
			if err != nil {
				t.Fatal(err)
			}
			if col.typ != d.typ() {
				t.Fatalf("%x: column type %d", c.payload, col.typ)
			}
			h.Write(out)
			h.Write([]byte{0xff})
			if col.rule == nil {
				if out != nil {
					t.Fatalf("%x: rewritten without a rule", c.payload)
				}
				return
			}
			rewritten++
			o, err := parseColumnDef(out, c.extMeta)
			if err != nil {
				t.Fatalf("%s: %x: %v", typ, out, err)
			}
			p, a, oa := defFor(typ), d.attrs(), o.attrs()
			if oa.typ != p.typ || oa.charset != p.charset || oa.length != p.length || oa.decimals != p.decimals {
				t.Errorf("%s: %x: attributes %+v", typ, out, oa)
			}
			const rewrittenFlags = gomysql.BINARY_FLAG | gomysql.BLOB_FLAG | gomysql.UNSIGNED_FLAG | gomysql.ZEROFILL_FLAG | gomysql.NUM_FLAG
			if oa.flags&^rewrittenFlags != a.flags&^rewrittenFlags {
				t.Errorf("%s: %x: flags %#x from %#x", typ, out, oa.flags, a.flags)
			}
			if want := extendedMetadata(typ); c.extMeta && string(extContent(t, o)) != want {
				t.Errorf("%s: %x: extended metadata %x, want %x", typ, out, extContent(t, o), want)
			}
			if !bytes.Equal(out[:o.extStart], c.payload[:d.extStart]) || !bytes.Equal(out[o.fixed+fixedFieldsLen-2:], c.payload[d.fixed+fixedFieldsLen-2:]) {
				t.Errorf("%s: names or filler changed: %x from %x", typ, out, c.payload)
			}
		})
	}
	if rewritten == 0 {
		t.Fatal("no definition rewritten")
	}
	const want = "9d03ae8ff689a84bfda37b0366e7225c0bd04961484b7df6f8f0b2c3958ce1d0"
	if got := hex.EncodeToString(h.Sum(nil)); got != want {
		t.Errorf("rewritten definitions digest %s, want %s", got, want)
	}
}

// TestBinaryRowNulls: column i's NULL bit is bit i+2 of the bitmap, which
// takes (columns+9)/8 bytes.
func TestBinaryRowNulls(t *testing.T) {
	// 7 columns: 9 bits, 2 bytes; columns 0, 5 and 6 NULL (bits 2, 7, 8).
	payload := []byte{0x00, 0b1000_0100, 0b0000_0001, 0xaa}
	r, ok := parseBinaryRow(payload, 7)
	if !ok || r.values != 3 {
		t.Fatalf("parse: %v, values at %d", ok, r.values)
	}
	for i := range 7 {
		if want := i == 0 || i == 5 || i == 6; r.null(i) != want {
			t.Errorf("column %d: null %v", i, r.null(i))
		}
	}
	if _, ok := parseBinaryRow(payload[:2], 7); ok {
		t.Error("truncated bitmap accepted")
	}
	if r, ok := parseBinaryRow(payload[:2], 6); !ok || r.values != 2 {
		t.Error("6 columns: 1-byte bitmap")
	}
}

// BenchmarkRewriteColumnDef rewrites one captured definition (a text
// column read as encrypted text), as every text query's result does; the
// go-mysql case does the same with mysql.Field's Parse and Dump, which
// cannot read the extended metadata variant.
func BenchmarkRewriteColumnDef(b *testing.B) {
	set, err := rules.New(rules.DialectMySQL, []rules.Spec{{Table: "cap", Column: "t", Key: "k", Mode: rules.ModeRandomized, Type: value.TypeText}})
	if err != nil {
		b.Fatal(err)
	}
	var std, ext []byte
	for _, c := range capturedDefs(b) {
		if d, _ := parseColumnDef(c.payload, c.extMeta); string(d.orgName) == "t" {
			if c.extMeta {
				ext = c.payload
			} else {
				std = c.payload
			}
		}
	}
	for _, tc := range []struct {
		name    string
		payload []byte
		extMeta bool
	}{{"std", std, false}, {"ext", ext, true}} {
		b.Run(tc.name, func(b *testing.B) {
			s := &session{ic: &Interceptor{rules: set}, extMeta: tc.extMeta}
			b.ReportAllocs()
			for range b.N {
				if c, out, err := s.rewriteColumnDef(tc.payload); err != nil || c.rule == nil || out == nil {
					b.Fatal(err)
				}
			}
		})
	}
	b.Run("gomysql-std", func(b *testing.B) {
		b.ReportAllocs()
		for range b.N {
			var f gomysql.Field
			if err := f.Parse(std); err != nil {
				b.Fatal(err)
			}
			if set.Column(string(f.Schema), "", string(f.OrgTable), string(f.OrgName)) == nil {
				b.Fatal("no rule")
			}
			p := defFor(value.TypeText)
			f.Charset, f.ColumnLength, f.Type, f.Decimal, f.Data = p.charset, p.length, p.typ, p.decimals, nil
			_ = f.Dump()
		}
	})
}
