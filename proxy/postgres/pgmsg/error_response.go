package pgmsg

var errErrorResponse = &MalformedError{Message: "ErrorResponse"}

// Field codes of ErrorResponse and NoticeResponse (the protocol's "Error
// and Notice Message Fields").
const (
	FieldSeverity            byte = 'S'
	FieldSeverityUnlocalized byte = 'V'
	FieldCode                byte = 'C'
	FieldMessage             byte = 'M'
	FieldDetail              byte = 'D'
	FieldHint                byte = 'H'
	FieldPosition            byte = 'P'
	FieldInternalPosition    byte = 'p'
	FieldInternalQuery       byte = 'q'
	FieldWhere               byte = 'W'
	FieldSchema              byte = 's'
	FieldTable               byte = 't'
	FieldColumn              byte = 'c'
	FieldDataType            byte = 'd'
	FieldConstraint          byte = 'n'
	FieldFile                byte = 'F'
	FieldLine                byte = 'L'
	FieldRoutine             byte = 'R'
)

// ErrorResponse is a view of an ErrorResponse (or NoticeResponse) body: a
// list of fields, each a code byte and a string.
type ErrorResponse struct{ fields []byte }

// ParseErrorResponse decodes an ErrorResponse or NoticeResponse body.
func ParseErrorResponse(body []byte) (ErrorResponse, error) {
	r := newReader(body)
	for r.ok && len(r.b) > 0 && r.b[0] != 0 {
		r.byte()
		r.cstring()
	}
	if r.byte() != 0 || !r.done() {
		return ErrorResponse{}, errErrorResponse
	}
	return ErrorResponse{fields: body}, nil
}

// Field returns the value of the field with code (the first one if the
// server repeated it), and whether there is one.
func (e ErrorResponse) Field(code byte) ([]byte, bool) {
	r := newReader(e.fields)
	for len(r.b) > 0 && r.b[0] != 0 {
		c := r.byte()
		v := r.cstring()
		if c == code {
			return v, true
		}
	}
	return nil, false
}

// Code is the SQLSTATE of the error.
func (e ErrorResponse) Code() []byte { v, _ := e.Field(FieldCode); return v }

// Message is the primary message of the error.
func (e ErrorResponse) Message() []byte { v, _ := e.Field(FieldMessage); return v }

// Each calls fn with every field in order.
func (e ErrorResponse) Each(fn func(code byte, value []byte)) {
	r := newReader(e.fields)
	for len(r.b) > 0 && r.b[0] != 0 {
		c := r.byte()
		fn(c, r.cstring())
	}
}

// AppendErrorResponse appends a whole ErrorResponse message with the given
// fields (codes and values in pairs, in order).
func AppendErrorResponse(dst []byte, fields ...ErrorField) []byte {
	start := len(dst)
	dst = Begin(dst, TypeErrorResponse)
	for _, f := range fields {
		dst = AppendCString(append(dst, f.Code), f.Value)
	}
	return End(append(dst, 0), start)
}

// ErrorField is one field of an ErrorResponse to encode.
type ErrorField struct {
	Code  byte
	Value []byte
}
