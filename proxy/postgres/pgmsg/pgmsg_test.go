package pgmsg_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"slices"
	"testing"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/dbproxy/dbproxy/proxy/postgres/pgmsg"
)

// encode returns the type byte and body pgproto3 encodes msg to.
func encode(t testing.TB, msg interface{ Encode([]byte) ([]byte, error) }) (byte, []byte) {
	t.Helper()
	b, err := msg.Encode(nil)
	if err != nil {
		t.Fatal(err)
	}
	if int(binary.BigEndian.Uint32(b[1:])) != len(b)-1 {
		t.Fatalf("pgproto3 length %d for %d bytes", binary.BigEndian.Uint32(b[1:]), len(b)-1)
	}
	return b[0], b[5:]
}

// encodeAs is encode for a message that must be of type typ.
func encodeAs(t testing.TB, msg interface{ Encode([]byte) ([]byte, error) }, typ byte) []byte {
	t.Helper()
	got, body := encode(t, msg)
	if got != typ {
		t.Fatalf("type %q", got)
	}
	return body
}

// values collects a value list (nil for NULL).
func values(v pgmsg.Values) [][]byte {
	var out [][]byte
	for v.Next() {
		if v.Null() {
			out = append(out, nil)
		} else {
			out = append(out, v.Bytes())
		}
	}
	return out
}

func sameValues(t *testing.T, got, want [][]byte) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%d values, want %d", len(got), len(want))
	}
	for i := range got {
		if (got[i] == nil) != (want[i] == nil) || !bytes.Equal(got[i], want[i]) {
			t.Fatalf("value %d: %q, want %q", i, got[i], want[i])
		}
	}
}

func TestBind(t *testing.T) {
	for _, m := range []*pgproto3.Bind{
		{},
		{DestinationPortal: "p", PreparedStatement: "s", ParameterFormatCodes: []int16{1},
			Parameters: [][]byte{[]byte("x"), nil, {}}, ResultFormatCodes: []int16{0, 1}},
		{PreparedStatement: "stmt", ParameterFormatCodes: []int16{0, 1}, Parameters: [][]byte{[]byte("12"), {0, 0, 0, 1}}},
	} {
		body := encodeAs(t, m, pgmsg.TypeBind)
		b, err := pgmsg.ParseBind(body)
		if err != nil {
			t.Fatal(err)
		}
		if string(b.Portal) != m.DestinationPortal || string(b.Statement) != m.PreparedStatement {
			t.Fatalf("names %q %q", b.Portal, b.Statement)
		}
		if got := b.ParamFormats.AppendInt16s(nil); !slices.Equal(got, m.ParameterFormatCodes) {
			t.Fatalf("param formats %v", got)
		}
		if got := b.ResultFormats.AppendInt16s(nil); !slices.Equal(got, m.ResultFormatCodes) {
			t.Fatalf("result formats %v", got)
		}
		if b.NumParams() != len(m.Parameters) {
			t.Fatalf("%d params", b.NumParams())
		}
		sameValues(t, values(b.Params()), m.Parameters)
		out := pgmsg.AppendBind(nil, b.Portal, b.Statement, m.ParameterFormatCodes, m.Parameters, m.ResultFormatCodes)
		if want, _ := m.Encode(nil); !bytes.Equal(out, want) {
			t.Fatalf("AppendBind %x, want %x", out, want)
		}
	}
}

func TestFormatsFor(t *testing.T) {
	for _, c := range []struct {
		codes []int16
		i     int
		want  int16
	}{{nil, 3, 0}, {[]int16{1}, 5, 1}, {[]int16{0, 1}, 1, 1}, {[]int16{1, 1}, 2, 0}} {
		if got := pgmsg.FormatsOf(c.codes).For(c.i); got != c.want {
			t.Errorf("%v.For(%d) = %d, want %d", c.codes, c.i, got, c.want)
		}
	}
}

func TestParse(t *testing.T) {
	m := &pgproto3.Parse{Name: "s1", Query: "select $1::int", ParameterOIDs: []uint32{23, 0}}
	_, body := encode(t, m)
	p, err := pgmsg.ParseParse(body)
	if err != nil {
		t.Fatal(err)
	}
	if string(p.Name) != m.Name || string(p.Query) != m.Query || p.ParamTypes.Len() != 2 || p.ParamTypes.At(0) != 23 {
		t.Fatalf("%+v", p)
	}
	want, _ := m.Encode(nil)
	if out := pgmsg.AppendParse(nil, p.Name, p.Query, m.ParameterOIDs); !bytes.Equal(out, want) {
		t.Fatalf("AppendParse %x, want %x", out, want)
	}
}

func TestDescribeClose(t *testing.T) {
	for _, m := range []interface{ Encode([]byte) ([]byte, error) }{
		&pgproto3.Describe{ObjectType: 'S', Name: "s"}, &pgproto3.Describe{ObjectType: 'P'},
		&pgproto3.Close{ObjectType: 'P', Name: "portal"},
	} {
		typ, body := encode(t, m)
		parse, appendFn := pgmsg.ParseDescribe, pgmsg.AppendDescribe
		if typ == pgmsg.TypeClose {
			parse, appendFn = pgmsg.ParseClose, pgmsg.AppendClose
		}
		tg, err := parse(body)
		if err != nil {
			t.Fatal(err)
		}
		want, _ := m.Encode(nil)
		if out := appendFn(nil, tg.Object, tg.Name); !bytes.Equal(out, want) {
			t.Fatalf("append %x, want %x", out, want)
		}
	}
	if _, err := pgmsg.ParseDescribe([]byte("Xname\x00")); !errors.Is(err, pgmsg.ErrMalformed) {
		t.Fatalf("object X: %v", err)
	}
}

func TestExecuteFunctionCall(t *testing.T) {
	_, body := encode(t, &pgproto3.Execute{Portal: "p", MaxRows: 7})
	e, err := pgmsg.ParseExecute(body)
	if err != nil || string(e.Portal) != "p" || e.MaxRows != 7 {
		t.Fatalf("%+v %v", e, err)
	}
	fc := &pgproto3.FunctionCall{Function: 954, ArgFormatCodes: []uint16{1},
		Arguments: [][]byte{{0, 0, 0, 1}, nil}, ResultFormatCode: 1}
	_, body = encode(t, fc)
	f, err := pgmsg.ParseFunctionCall(body)
	if err != nil || f.Function != 954 || f.NumArgs() != 2 || f.ResultFormat != 1 || f.ArgFormats.For(1) != 1 {
		t.Fatalf("%+v %v", f, err)
	}
	sameValues(t, values(f.Args()), fc.Arguments)
}

func TestDataRow(t *testing.T) {
	m := &pgproto3.DataRow{Values: [][]byte{[]byte("a"), nil, {}, []byte("\\x00ff")}}
	body := encodeAs(t, m, pgmsg.TypeDataRow)
	d, err := pgmsg.ParseDataRow(body)
	if err != nil || d.Len() != 4 {
		t.Fatal(d.Len(), err)
	}
	got := values(d.Values())
	sameValues(t, got, m.Values)
	want, _ := m.Encode(nil)
	if out := pgmsg.AppendDataRow(nil, got); !bytes.Equal(out, want) {
		t.Fatalf("AppendDataRow %x, want %x", out, want)
	}
	out := pgmsg.AppendDataRowStart(nil, 1)
	at := len(out)
	out = pgmsg.CloseValue(append(pgmsg.OpenValue(out), "xyz"...), at)
	if want, _ := (&pgproto3.DataRow{Values: [][]byte{[]byte("xyz")}}).Encode(nil); !bytes.Equal(pgmsg.End(out, 0), want) {
		t.Fatalf("OpenValue/CloseValue %x, want %x", out, want)
	}
}

func TestRowDescription(t *testing.T) {
	m := &pgproto3.RowDescription{Fields: []pgproto3.FieldDescription{
		{Name: []byte("id"), TableOID: 16384, TableAttributeNumber: 1, DataTypeOID: 23, DataTypeSize: 4, TypeModifier: -1},
		{Name: []byte("secret"), TableOID: 16384, TableAttributeNumber: 2, DataTypeOID: 17, DataTypeSize: -1, TypeModifier: -1, Format: 1},
		{Name: []byte{}, DataTypeOID: 25, DataTypeSize: -1, TypeModifier: 12},
	}}
	_, body := encode(t, m)
	d, err := pgmsg.ParseRowDescription(body)
	if err != nil || d.Len() != 3 {
		t.Fatal(d.Len(), err)
	}
	var fields []pgmsg.Field
	var f pgmsg.Field
	for it := d.Fields(); it.Next(&f); {
		fields = append(fields, f)
	}
	for i, w := range m.Fields {
		g := fields[i]
		if !bytes.Equal(g.Name, w.Name) || g.TableOID != w.TableOID || g.TableAttributeNumber != w.TableAttributeNumber ||
			g.DataTypeOID != w.DataTypeOID || g.DataTypeSize != w.DataTypeSize || g.TypeModifier != w.TypeModifier || g.Format != w.Format {
			t.Fatalf("field %d: %+v, want %+v", i, g, w)
		}
	}
	want, _ := m.Encode(nil)
	if out := pgmsg.AppendRowDescription(nil, fields); !bytes.Equal(out, want) {
		t.Fatalf("AppendRowDescription %x, want %x", out, want)
	}
}

func TestParameterDescription(t *testing.T) {
	m := &pgproto3.ParameterDescription{ParameterOIDs: []uint32{23, 17, 1009}}
	_, body := encode(t, m)
	o, err := pgmsg.ParseParameterDescription(body)
	if err != nil || o.Len() != 3 || o.At(2) != 1009 {
		t.Fatal(o, err)
	}
	want, _ := m.Encode(nil)
	if out := pgmsg.AppendParameterDescription(nil, m.ParameterOIDs); !bytes.Equal(out, want) {
		t.Fatalf("AppendParameterDescription %x, want %x", out, want)
	}
}

func TestErrorResponse(t *testing.T) {
	m := &pgproto3.ErrorResponse{Severity: "ERROR", SeverityUnlocalized: "ERROR", Code: "42P01",
		Message: `relation "x" does not exist`, Position: 15, Routine: "parserOpenTable"}
	body := encodeAs(t, m, pgmsg.TypeErrorResponse)
	e, err := pgmsg.ParseErrorResponse(body)
	if err != nil {
		t.Fatal(err)
	}
	if string(e.Code()) != m.Code || string(e.Message()) != m.Message {
		t.Fatalf("%q %q", e.Code(), e.Message())
	}
	if v, ok := e.Field(pgmsg.FieldPosition); !ok || string(v) != "15" {
		t.Fatalf("position %q", v)
	}
	if _, ok := e.Field(pgmsg.FieldHint); ok {
		t.Fatal("hint")
	}
	var fields []pgmsg.ErrorField
	e.Each(func(code byte, v []byte) { fields = append(fields, pgmsg.ErrorField{Code: code, Value: v}) })
	want, _ := m.Encode(nil)
	if out := pgmsg.AppendErrorResponse(nil, fields...); !bytes.Equal(out, want) {
		t.Fatalf("AppendErrorResponse %x, want %x", out, want)
	}
	for _, bad := range []string{"", "SERROR\x00", "S\x00\x00x"} {
		if _, err := pgmsg.ParseErrorResponse([]byte(bad)); !errors.Is(err, pgmsg.ErrMalformed) {
			t.Errorf("%q: %v", bad, err)
		}
	}
}

func TestStatusMessages(t *testing.T) {
	_, body := encode(t, &pgproto3.CommandComplete{CommandTag: []byte("INSERT 0 1")})
	if tag, err := pgmsg.ParseCommandComplete(body); err != nil || string(tag) != "INSERT 0 1" {
		t.Fatal(tag, err)
	}
	_, body = encode(t, &pgproto3.ParameterStatus{Name: "TimeZone", Value: "UTC"})
	if p, err := pgmsg.ParseParameterStatus(body); err != nil || string(p.Name) != "TimeZone" || string(p.Value) != "UTC" {
		t.Fatal(p, err)
	}
	_, body = encode(t, &pgproto3.ReadyForQuery{TxStatus: 'T'})
	if s, err := pgmsg.ParseReadyForQuery(body); err != nil || s != pgmsg.TxBlock {
		t.Fatal(s, err)
	}
	want, _ := (&pgproto3.CopyFail{Message: "no"}).Encode(nil)
	out := pgmsg.AppendCopyFail(nil, "no")
	if !bytes.Equal(out, want) {
		t.Fatalf("AppendCopyFail %x, want %x", out, want)
	}
	if msg, err := pgmsg.ParseCopyFail(out[5:]); err != nil || string(msg) != "no" {
		t.Fatal(msg, err)
	}
}

func TestCopyBinary(t *testing.T) {
	hdr := []byte("PGCOPY\n\xff\r\n\x00\x00\x00\x00\x00\x00\x00\x00\x02ab")
	for i := range len(hdr) - 2 {
		if _, _, err := pgmsg.ParseCopyHeader(hdr[:i]); err != pgmsg.ErrIncomplete {
			t.Fatalf("%d bytes: %v", i, err)
		}
	}
	if size, flags, err := pgmsg.ParseCopyHeader(hdr); err != nil || size != len(hdr) || flags != 0 {
		t.Fatal(size, flags, err)
	}
	if _, _, err := pgmsg.ParseCopyHeader([]byte("PGCOPX")); err == nil || err == pgmsg.ErrIncomplete {
		t.Fatal(err)
	}
	tuple := pgmsg.AppendCopyTupleLen(nil, 2)
	tuple = pgmsg.AppendNull(pgmsg.AppendValue(tuple, []byte("v")))
	n, ok := pgmsg.CopyTupleLen(tuple)
	if !ok || n != 2 {
		t.Fatal(n, ok)
	}
	if _, err := pgmsg.ScanValues(tuple[2:len(tuple)-1], n); err != pgmsg.ErrIncomplete {
		t.Fatal(err)
	}
	size, err := pgmsg.ScanValues(tuple[2:], n)
	if err != nil || size != len(tuple)-2 {
		t.Fatal(size, err)
	}
	sameValues(t, values(pgmsg.NewValues(tuple[2:], n)), [][]byte{[]byte("v"), nil})
	if whole := pgmsg.AppendCopyTuple(nil, [][]byte{[]byte("v"), nil}); !bytes.Equal(whole, tuple) {
		t.Fatalf("AppendCopyTuple %x, want %x", whole, tuple)
	}
	if n, ok := pgmsg.CopyTupleLen([]byte{0xff, 0xff}); !ok || n != pgmsg.CopyTrailer {
		t.Fatal(n, ok)
	}
}

func TestMalformed(t *testing.T) {
	for name, parse := range map[string]func([]byte) error{
		"Bind":                 func(b []byte) error { _, err := pgmsg.ParseBind(b); return err },
		"Parse":                func(b []byte) error { _, err := pgmsg.ParseParse(b); return err },
		"DataRow":              func(b []byte) error { _, err := pgmsg.ParseDataRow(b); return err },
		"RowDescription":       func(b []byte) error { _, err := pgmsg.ParseRowDescription(b); return err },
		"ParameterDescription": func(b []byte) error { _, err := pgmsg.ParseParameterDescription(b); return err },
		"Execute":              func(b []byte) error { _, err := pgmsg.ParseExecute(b); return err },
		"FunctionCall":         func(b []byte) error { _, err := pgmsg.ParseFunctionCall(b); return err },
	} {
		for _, body := range [][]byte{nil, {0}, {0, 1}, {0, 1, 0, 0, 0, 5, 'x'}, {0xff, 0xff, 0xff}} {
			if err := parse(body); !errors.Is(err, pgmsg.ErrMalformed) {
				t.Errorf("%s %x: %v", name, body, err)
			}
		}
	}
	// A trailing byte after a well-formed body.
	_, body := encode(t, &pgproto3.DataRow{Values: [][]byte{[]byte("a")}})
	if _, err := pgmsg.ParseDataRow(append(body, 0)); err == nil {
		t.Fatal("trailing byte accepted")
	}
}

// TestViewsDoNotAllocate: decoding and walking the views of a row and a
// Bind allocates nothing.
func TestViewsDoNotAllocate(t *testing.T) {
	_, row := encode(t, &pgproto3.DataRow{Values: [][]byte{[]byte("a"), nil, []byte("bc")}})
	_, bind := encode(t, &pgproto3.Bind{PreparedStatement: "s", ParameterFormatCodes: []int16{1},
		Parameters: [][]byte{[]byte("x"), nil}, ResultFormatCodes: []int16{1}})
	_, desc := encode(t, &pgproto3.RowDescription{Fields: []pgproto3.FieldDescription{{Name: []byte("a"), DataTypeOID: 17}}})
	var buf []byte
	n := testing.AllocsPerRun(100, func() {
		d, err := pgmsg.ParseDataRow(row)
		if err != nil {
			t.Fatal(err)
		}
		buf = pgmsg.AppendDataRowStart(buf[:0], d.Len())
		for v := d.Values(); v.Next(); {
			buf = pgmsg.AppendValue(buf, v.Bytes())
		}
		b, err := pgmsg.ParseBind(bind)
		if err != nil {
			t.Fatal(err)
		}
		for v := b.Params(); v.Next(); {
			_ = b.ParamFormats.For(v.Index())
		}
		rd, err := pgmsg.ParseRowDescription(desc)
		if err != nil {
			t.Fatal(err)
		}
		var f pgmsg.Field
		for it := rd.Fields(); it.Next(&f); {
			buf = pgmsg.AppendField(buf, &f)
		}
	})
	if n != 0 {
		t.Fatalf("%v allocations per run", n)
	}
}
