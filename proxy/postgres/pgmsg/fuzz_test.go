package pgmsg_test

import (
	"bytes"
	"testing"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/dbproxy/dbproxy/proxy/postgres/pgmsg"
)

// Each fuzz target checks that a view never panics and that a body it
// accepts re-encodes byte for byte and decodes the same under pgproto3.

func seed(f *testing.F, msgs ...interface{ Encode([]byte) ([]byte, error) }) {
	for _, m := range msgs {
		_, body := encode(f, m)
		f.Add(body)
	}
	f.Add([]byte{})
	f.Add([]byte{0, 1, 0xff, 0xff, 0xff, 0xfe})
}

// sameBody fails t unless out, a message appended again from the view of
// body, carries body byte for byte.
func sameBody(t *testing.T, out, body []byte) {
	t.Helper()
	if !bytes.Equal(out[5:], body) {
		t.Fatalf("round trip %x, want %x", out[5:], body)
	}
}

// pgproto3Decodes decodes body into m, failing t if pgproto3 rejects it.
func pgproto3Decodes(t *testing.T, m interface{ Decode([]byte) error }, body []byte) {
	t.Helper()
	if err := m.Decode(body); err != nil {
		t.Fatalf("pgproto3 rejects what the view accepts: %v", err)
	}
}

func FuzzBind(f *testing.F) {
	seed(f, &pgproto3.Bind{DestinationPortal: "p", PreparedStatement: "s", ParameterFormatCodes: []int16{1},
		Parameters: [][]byte{[]byte("x"), nil}, ResultFormatCodes: []int16{1}})
	f.Fuzz(func(t *testing.T, body []byte) {
		b, err := pgmsg.ParseBind(body)
		if err != nil {
			return
		}
		params := values(b.Params())
		pf, rf := b.ParamFormats.AppendInt16s(nil), b.ResultFormats.AppendInt16s(nil)
		out := pgmsg.AppendBind(nil, b.Portal, b.Statement, pf, params, rf)
		sameBody(t, out, body)
		var m pgproto3.Bind
		pgproto3Decodes(t, &m, body)
		sameValues(t, params, m.Parameters)
	})
}

func FuzzDataRow(f *testing.F) {
	seed(f, &pgproto3.DataRow{Values: [][]byte{[]byte("a"), nil, {}}})
	f.Fuzz(func(t *testing.T, body []byte) {
		d, err := pgmsg.ParseDataRow(body)
		if err != nil {
			return
		}
		vals := values(d.Values())
		if len(vals) != d.Len() {
			t.Fatalf("%d values of %d", len(vals), d.Len())
		}
		sameBody(t, pgmsg.AppendDataRow(nil, vals), body)
		var m pgproto3.DataRow
		pgproto3Decodes(t, &m, body)
		sameValues(t, vals, m.Values)
	})
}

func FuzzRowDescription(f *testing.F) {
	seed(f, &pgproto3.RowDescription{Fields: []pgproto3.FieldDescription{
		{Name: []byte("a"), TableOID: 1, TableAttributeNumber: 2, DataTypeOID: 17, DataTypeSize: -1, TypeModifier: -1}}})
	f.Fuzz(func(t *testing.T, body []byte) {
		d, err := pgmsg.ParseRowDescription(body)
		if err != nil {
			return
		}
		var fields []pgmsg.Field
		var fd pgmsg.Field
		for it := d.Fields(); it.Next(&fd); {
			fields = append(fields, fd)
		}
		if len(fields) != d.Len() {
			t.Fatalf("%d fields of %d", len(fields), d.Len())
		}
		sameBody(t, pgmsg.AppendRowDescription(nil, fields), body)
		var m pgproto3.RowDescription
		pgproto3Decodes(t, &m, body)
		for i := range m.Fields {
			if m.Fields[i].DataTypeOID != fields[i].DataTypeOID || !bytes.Equal(m.Fields[i].Name, fields[i].Name) {
				t.Fatalf("field %d differs", i)
			}
		}
	})
}

func FuzzParse(f *testing.F) {
	seed(f, &pgproto3.Parse{Name: "s", Query: "select 1", ParameterOIDs: []uint32{23}})
	f.Fuzz(func(t *testing.T, body []byte) {
		p, err := pgmsg.ParseParse(body)
		if err != nil {
			return
		}
		oids := make([]uint32, p.ParamTypes.Len())
		for i := range oids {
			oids[i] = p.ParamTypes.At(i)
		}
		sameBody(t, pgmsg.AppendParse(nil, p.Name, p.Query, oids), body)
	})
}

func FuzzParameterDescription(f *testing.F) {
	seed(f, &pgproto3.ParameterDescription{ParameterOIDs: []uint32{23, 17}})
	f.Fuzz(func(t *testing.T, body []byte) {
		o, err := pgmsg.ParseParameterDescription(body)
		if err != nil {
			return
		}
		oids := make([]uint32, o.Len())
		for i := range oids {
			oids[i] = o.At(i)
		}
		sameBody(t, pgmsg.AppendParameterDescription(nil, oids), body)
	})
}

func FuzzErrorResponse(f *testing.F) {
	seed(f, &pgproto3.ErrorResponse{Severity: "ERROR", Code: "XX000", Message: "m"})
	f.Fuzz(func(t *testing.T, body []byte) {
		e, err := pgmsg.ParseErrorResponse(body)
		if err != nil {
			return
		}
		var fields []pgmsg.ErrorField
		e.Each(func(c byte, v []byte) { fields = append(fields, pgmsg.ErrorField{Code: c, Value: v}) })
		sameBody(t, pgmsg.AppendErrorResponse(nil, fields...), body)
		_, _ = e.Field(pgmsg.FieldCode)
	})
}

// FuzzSmallViews checks that the other views and the binary COPY helpers
// never panic.
func FuzzSmallViews(f *testing.F) {
	seed(f, &pgproto3.Describe{ObjectType: 'S', Name: "s"}, &pgproto3.Execute{Portal: "p"},
		&pgproto3.FunctionCall{Function: 1, Arguments: [][]byte{nil}})
	f.Add([]byte("PGCOPY\n\xff\r\n\x00\x00\x00\x00\x00\x00\x00\x00\x00"))
	f.Fuzz(func(t *testing.T, body []byte) {
		_, _ = pgmsg.ParseDescribe(body)
		_, _ = pgmsg.ParseClose(body)
		_, _ = pgmsg.ParseExecute(body)
		if fc, err := pgmsg.ParseFunctionCall(body); err == nil {
			if got := len(values(fc.Args())); got != fc.NumArgs() {
				t.Fatalf("%d args of %d", got, fc.NumArgs())
			}
		}
		_, _ = pgmsg.ParseCommandComplete(body)
		_, _ = pgmsg.ParseParameterStatus(body)
		_, _ = pgmsg.ParseReadyForQuery(body)
		_, _, _ = pgmsg.ParseCopyHeader(body)
		if n, ok := pgmsg.CopyTupleLen(body); ok {
			_, _ = pgmsg.ScanValues(body[2:], n)
			values(pgmsg.NewValues(body[2:], n)) // unchecked input stops early
		}
	})
}
