package pgmsg

var errBind = &MalformedError{Message: "Bind"}

// Bind is a view of a Bind message body: a portal bound from a prepared
// statement with parameter values.
type Bind struct {
	Portal        []byte
	Statement     []byte
	ParamFormats  Formats
	params        []byte // the values, without their count
	numParams     int
	ResultFormats Formats
}

// ParseBind decodes a Bind body.
func ParseBind(body []byte) (Bind, error) {
	return decode(body, errBind, func(r *reader) (b Bind) {
		b.Portal, b.Statement = r.cstring(), r.cstring()
		b.ParamFormats = readFormats(r)
		b.numParams, b.params = readValues(r)
		b.ResultFormats = readFormats(r)
		return b
	})
}

// NumParams is the number of parameter values.
func (b *Bind) NumParams() int { return b.numParams }

// Params walks the parameter values.
func (b *Bind) Params() Values { return NewValues(b.params, b.numParams) }

// AppendBindStart appends the start of a Bind message (type byte, length
// placeholder, portal and statement names); the caller appends the
// parameter formats, the values and the result formats, then End.
func AppendBindStart(dst, portal, statement []byte) []byte {
	dst = Begin(dst, TypeBind)
	dst = AppendCString(dst, portal)
	return AppendCString(dst, statement)
}

// AppendBind appends a whole Bind message; a nil param is NULL.
func AppendBind(dst, portal, statement []byte, paramFormats []int16, params [][]byte, resultFormats []int16) []byte {
	start := len(dst)
	dst = AppendBindStart(dst, portal, statement)
	dst = AppendFormatCodes(dst, paramFormats)
	dst = appendValues(dst, params)
	dst = AppendFormatCodes(dst, resultFormats)
	return End(dst, start)
}
