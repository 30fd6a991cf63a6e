package mycrypt

import (
	"bytes"
	"encoding/binary"
	"math"
	"strconv"
	"testing"

	gomysql "github.com/go-mysql-org/go-mysql/mysql"
)

// binaryRowFixture is a binary protocol row holding a value of every
// column type the proxy splits, each followed by a string column, so that
// a cell read with a wrong length shows as a wrong string after it.
func binaryRowFixture() ([]*gomysql.Field, []byte) {
	type col struct {
		typ  byte
		cell []byte // nil: NULL
	}
	le16 := binary.LittleEndian.AppendUint16
	le32 := binary.LittleEndian.AppendUint32
	le64 := binary.LittleEndian.AppendUint64
	long := bytes.Repeat([]byte("x"), 300) // a 3-byte length prefix
	cols := []col{
		{gomysql.MYSQL_TYPE_TINY, []byte{0xfe}},
		{gomysql.MYSQL_TYPE_SHORT, le16(nil, 0xfffe)},
		{gomysql.MYSQL_TYPE_YEAR, le16(nil, 2024)},
		{gomysql.MYSQL_TYPE_INT24, le32(nil, 70000)},
		{gomysql.MYSQL_TYPE_LONG, le32(nil, 0xfffffff0)},
		{gomysql.MYSQL_TYPE_LONGLONG, le64(nil, 1<<40)},
		{gomysql.MYSQL_TYPE_FLOAT, le32(nil, math.Float32bits(1.5))},
		{gomysql.MYSQL_TYPE_DOUBLE, le64(nil, math.Float64bits(-2.25))},
		{gomysql.MYSQL_TYPE_DATE, append([]byte{4}, le16(nil, 2024)[0], 0x07, 2, 29)},
		{gomysql.MYSQL_TYPE_DATETIME, []byte{0}},
		{gomysql.MYSQL_TYPE_DATETIME, append(append([]byte{11}, le16(nil, 1999)...), 12, 31, 23, 59, 58, 0x40, 0xe2, 0x01, 0)},
		{gomysql.MYSQL_TYPE_TIMESTAMP, append(append([]byte{7}, le16(nil, 2001)...), 1, 2, 3, 4, 5)},
		{gomysql.MYSQL_TYPE_TIME, []byte{8, 1, 2, 0, 0, 0, 3, 4, 5}},
		{gomysql.MYSQL_TYPE_NEWDECIMAL, []byte("\x0512.50")},
		{gomysql.MYSQL_TYPE_BLOB, append([]byte{0xfc, 0x2c, 0x01}, long...)},
		{gomysql.MYSQL_TYPE_VARCHAR, []byte("\x00")},
		{gomysql.MYSQL_TYPE_LONG, nil},
	}
	var fields []*gomysql.Field
	var values []byte
	var nulls []int
	for _, c := range cols {
		for _, cc := range []col{c, {gomysql.MYSQL_TYPE_VAR_STRING, []byte("\x03abc")}} {
			if cc.cell == nil {
				nulls = append(nulls, len(fields))
			}
			fields = append(fields, &gomysql.Field{Type: cc.typ, Flag: gomysql.UNSIGNED_FLAG})
			values = append(values, cc.cell...)
		}
	}
	row := make([]byte, 1+(len(fields)+7+binaryRowNullOffset)/8)
	for _, i := range nulls {
		row[1+(i+binaryRowNullOffset)/8] |= 1 << ((i + binaryRowNullOffset) % 8)
	}
	return fields, append(row, values...)
}

// TestBinaryCellsMatchGoMySQL: the proxy's split of a binary row
// (parseBinaryRow, binaryCell) finds the cells go-mysql's RowData.ParseBinary
// decodes. go-mysql's parser is not used itself: it indexes the packet
// without bounds checks and formats temporal values (allocating per row).
func TestBinaryCellsMatchGoMySQL(t *testing.T) {
	fields, payload := binaryRowFixture()
	want, err := gomysql.RowData(payload).ParseBinary(fields, nil)
	if err != nil {
		t.Fatal(err)
	}
	row, ok := parseBinaryRow(payload, len(fields))
	if !ok {
		t.Fatal("bitmap")
	}
	p := row.values
	for i, f := range fields {
		fv := &want[i]
		if row.null(i) {
			if fv.Type != gomysql.FieldValueTypeNull {
				t.Fatalf("column %d: NULL for the proxy only", i)
			}
			continue
		}
		cell, next, err := binaryCell(f.Type, payload, p)
		if err != nil {
			t.Fatalf("column %d: %v", i, err)
		}
		p = next
		if got := cellString(t, f.Type, cell); !bytes.Equal(got, goMySQLString(fv)) {
			t.Errorf("column %d (type %d): %q, go-mysql %q", i, f.Type, got, goMySQLString(fv))
		}
	}
	if p != len(payload) {
		t.Fatalf("%d bytes left", len(payload)-p)
	}
	for n := row.values; n < len(payload); n++ {
		if _, err := walkBinaryRow(fields, payload[:n]); err == nil {
			t.Fatalf("row truncated to %d bytes accepted", n)
		}
	}
}

// walkBinaryRow splits a binary row as binaryRow does; it returns the
// number of non-NULL cells.
func walkBinaryRow(fields []*gomysql.Field, payload []byte) (int, error) {
	row, ok := parseBinaryRow(payload, len(fields))
	if !ok {
		return 0, errTruncatedRow
	}
	p, n := row.values, 0
	for i, f := range fields {
		if row.null(i) {
			continue
		}
		_, next, err := binaryCell(f.Type, payload, p)
		if err != nil {
			return n, err
		}
		p, n = next, n+1
	}
	if p != len(payload) {
		return n, errTruncatedRow
	}
	return n, nil
}

// cellString renders a binary cell as go-mysql's FieldValue does.
func cellString(t *testing.T, typ byte, cell []byte) []byte {
	t.Helper()
	var s []byte
	var err error
	switch typ {
	case gomysql.MYSQL_TYPE_TINY, gomysql.MYSQL_TYPE_SHORT, gomysql.MYSQL_TYPE_YEAR, gomysql.MYSQL_TYPE_INT24,
		gomysql.MYSQL_TYPE_LONG, gomysql.MYSQL_TYPE_LONGLONG:
		v := make([]byte, 8)
		copy(v, cell)
		return []byte(formatUint(binary.LittleEndian.Uint64(v)))
	case gomysql.MYSQL_TYPE_FLOAT:
		return []byte(formatFloat(float64(math.Float32frombits(binary.LittleEndian.Uint32(cell)))))
	case gomysql.MYSQL_TYPE_DOUBLE:
		return []byte(formatFloat(math.Float64frombits(binary.LittleEndian.Uint64(cell))))
	case gomysql.MYSQL_TYPE_DATE:
		s, err = gomysql.FormatBinaryDate(int(cell[0]), cell[1:])
	case gomysql.MYSQL_TYPE_DATETIME, gomysql.MYSQL_TYPE_TIMESTAMP:
		s, err = gomysql.FormatBinaryDateTime(int(cell[0]), cell[1:])
	case gomysql.MYSQL_TYPE_TIME:
		s, err = gomysql.FormatBinaryTime(int(cell[0]), cell[1:])
	default:
		s, _, _, err = readLenenc(cell, 0)
	}
	if err != nil {
		t.Fatalf("type %d cell %x: %v", typ, cell, err)
	}
	return s
}

func goMySQLString(fv *gomysql.FieldValue) []byte {
	switch fv.Type {
	case gomysql.FieldValueTypeUnsigned:
		return []byte(formatUint(fv.AsUint64()))
	case gomysql.FieldValueTypeFloat:
		return []byte(formatFloat(fv.AsFloat64()))
	}
	return fv.AsString()
}

func formatUint(v uint64) string   { return strconv.FormatUint(v, 10) }
func formatFloat(v float64) string { return strconv.FormatFloat(v, 'g', -1, 64) }

// BenchmarkBinaryRowSplit compares splitting a binary row into cells with
// the proxy's view and with go-mysql's RowData.ParseBinary (values reused).
func BenchmarkBinaryRowSplit(b *testing.B) {
	fields, payload := binaryRowFixture()
	b.Run("view", func(b *testing.B) {
		b.ReportAllocs()
		for range b.N {
			if _, err := walkBinaryRow(fields, payload); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("gomysql", func(b *testing.B) {
		b.ReportAllocs()
		var dst []gomysql.FieldValue
		for range b.N {
			var err error
			if dst, err = gomysql.RowData(payload).ParseBinary(fields, dst); err != nil {
				b.Fatal(err)
			}
		}
	})
}
