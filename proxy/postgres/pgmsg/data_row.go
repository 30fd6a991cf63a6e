package pgmsg

var errDataRow = &MalformedError{Message: "DataRow"}

// DataRow is a view of a DataRow message body: one row of a result.
type DataRow struct {
	values []byte
	n      int
}

// ParseDataRow decodes a DataRow body.
func ParseDataRow(body []byte) (DataRow, error) {
	return decode(body, errDataRow, func(r *reader) (d DataRow) {
		d.n, d.values = readValues(r)
		return d
	})
}

// Len is the number of columns.
func (d DataRow) Len() int { return d.n }

// Values walks the columns.
func (d DataRow) Values() Values { return NewValues(d.values, d.n) }

// AppendDataRowStart appends the start of a DataRow message of n columns
// (type byte, length placeholder, count); the caller appends the values
// (AppendValue, AppendNull, OpenValue…CloseValue), then End.
func AppendDataRowStart(dst []byte, n int) []byte {
	return AppendCount(Begin(dst, TypeDataRow), n)
}

// AppendDataRow appends a whole DataRow message; a nil value is NULL.
func AppendDataRow(dst []byte, values [][]byte) []byte {
	start := len(dst)
	dst = appendValues(Begin(dst, TypeDataRow), values)
	return End(dst, start)
}
