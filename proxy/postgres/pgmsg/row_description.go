package pgmsg

import "encoding/binary"

var errRowDescription = &MalformedError{Message: "RowDescription"}

// fieldTail is the size of a field description after its name: table OID
// (4), attribute number (2), type OID (4), type size (2), type modifier
// (4), format (2).
const fieldTail = 18

// RowDescription is a view of a RowDescription message body: the columns
// of the rows that follow.
type RowDescription struct {
	fields []byte
	n      int
}

// Field is one column of a RowDescription.
type Field struct {
	Name []byte
	// TableOID and TableAttributeNumber name the table column the field
	// comes from (0 when it is not a plain column reference).
	TableOID             uint32
	TableAttributeNumber uint16
	DataTypeOID          uint32
	DataTypeSize         int16 // negative: variable size
	TypeModifier         int32
	Format               int16
}

// ParseRowDescription decodes a RowDescription body.
func ParseRowDescription(body []byte) (RowDescription, error) {
	r := newReader(body)
	var d RowDescription
	d.n = int(r.uint16())
	start := r.b
	size := 0
	for i := 0; i < d.n && r.ok; i++ {
		name := r.cstring()
		r.bytes(fieldTail)
		size += len(name) + 1 + fieldTail
	}
	if !r.done() {
		return RowDescription{}, errRowDescription
	}
	d.fields = start[:size]
	return d, nil
}

// Len is the number of fields.
func (d RowDescription) Len() int { return d.n }

// Fields walks the fields.
func (d RowDescription) Fields() Fields { return Fields{rest: d.fields, left: d.n} }

// Fields walks the fields of a RowDescription:
//
//	var f pgmsg.Field
//	for it := rd.Fields(); it.Next(&f); { … }
type Fields struct {
	rest []byte
	left int
}

// Next decodes the next field into f; false once there is none.
func (it *Fields) Next(f *Field) bool {
	if it.left <= 0 {
		return false
	}
	r := newReader(it.rest)
	f.Name = r.cstring()
	tail := r.bytes(fieldTail)
	if !r.ok {
		it.left = 0
		return false
	}
	f.TableOID = binary.BigEndian.Uint32(tail)
	f.TableAttributeNumber = binary.BigEndian.Uint16(tail[4:])
	f.DataTypeOID = binary.BigEndian.Uint32(tail[6:])
	f.DataTypeSize = int16(binary.BigEndian.Uint16(tail[10:]))
	f.TypeModifier = int32(binary.BigEndian.Uint32(tail[12:]))
	f.Format = int16(binary.BigEndian.Uint16(tail[16:]))
	it.rest = r.b
	it.left--
	return true
}

// AppendRowDescriptionStart appends the start of a RowDescription message
// of n fields (type byte, length placeholder, count); the caller appends
// the fields (AppendField), then End.
func AppendRowDescriptionStart(dst []byte, n int) []byte {
	return AppendCount(Begin(dst, TypeRowDescription), n)
}

// AppendField appends one field of a RowDescription.
func AppendField(dst []byte, f *Field) []byte {
	dst = AppendCString(dst, f.Name)
	dst = AppendUint32(dst, f.TableOID)
	dst = binary.BigEndian.AppendUint16(dst, f.TableAttributeNumber)
	dst = AppendUint32(dst, f.DataTypeOID)
	dst = AppendInt16(dst, f.DataTypeSize)
	dst = AppendUint32(dst, uint32(f.TypeModifier))
	return AppendInt16(dst, f.Format)
}

// AppendRowDescription appends a whole RowDescription message.
func AppendRowDescription(dst []byte, fields []Field) []byte {
	start := len(dst)
	dst = AppendRowDescriptionStart(dst, len(fields))
	for i := range fields {
		dst = AppendField(dst, &fields[i])
	}
	return End(dst, start)
}
