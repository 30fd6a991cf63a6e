package pgmsg

import (
	"encoding/binary"
	"errors"
)

// A value list is a sequence of length-prefixed values: an int32 length
// (-1 for NULL) then that many bytes, for each value. Bind parameters,
// DataRow columns, FunctionCall arguments and binary COPY tuples use it.

// ErrIncomplete is returned by ScanValues when the buffer ends before the
// values do (more data may complete them).
var ErrIncomplete = errors.New("incomplete value list")

var errValueLength = errors.New("negative value length other than -1 (NULL)")

// ScanValues returns the size in bytes of the n values at the start of buf:
// ErrIncomplete if buf ends before them, another error if a length is
// invalid.
func ScanValues(buf []byte, n int) (int, error) {
	pos := 0
	for range n {
		if len(buf)-pos < 4 {
			return 0, ErrIncomplete
		}
		l := int(int32(binary.BigEndian.Uint32(buf[pos:])))
		pos += 4
		switch {
		case l < -1:
			return 0, errValueLength
		case l > len(buf)-pos:
			return 0, ErrIncomplete
		case l > 0:
			pos += l
		}
	}
	return pos, nil
}

// Values walks a value list that was checked by the view it comes from:
//
//	for v := row.Values(); v.Next(); {
//		if v.Null() { … } else { use(v.Bytes()) }
//	}
type Values struct {
	rest  []byte
	left  int
	index int
	cur   []byte
	null  bool
}

// NewValues returns a cursor over the n values at the start of buf, which
// ScanValues accepted; a cursor over anything else stops early.
func NewValues(buf []byte, n int) Values { return Values{rest: buf, left: n, index: -1} }

// Next moves to the next value; false once there is none.
func (v *Values) Next() bool {
	if v.left <= 0 || len(v.rest) < 4 {
		v.left = 0
		return false
	}
	l := int(int32(binary.BigEndian.Uint32(v.rest)))
	v.rest = v.rest[4:]
	if l < 0 {
		v.cur, v.null = nil, true
	} else {
		if l > len(v.rest) {
			v.left = 0
			return false
		}
		v.cur, v.null = v.rest[:l:l], false
		v.rest = v.rest[l:]
	}
	v.left--
	v.index++
	return true
}

// Index is the 0-based position of the current value.
func (v *Values) Index() int { return v.index }

// Null reports whether the current value is NULL.
func (v *Values) Null() bool { return v.null }

// Bytes is the current value (nil for NULL), a slice of the message.
func (v *Values) Bytes() []byte { return v.cur }

var nullValue = []byte{0xff, 0xff, 0xff, 0xff}

// AppendValue appends a value with its length.
func AppendValue(dst, v []byte) []byte {
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(v)))
	return append(dst, v...)
}

// AppendNull appends a NULL value.
func AppendNull(dst []byte) []byte { return append(dst, nullValue...) }

// OpenValue appends a placeholder for the length of a value the caller
// appends next; CloseValue(dst, at) with at = len(dst) before OpenValue
// fills it in.
func OpenValue(dst []byte) []byte { return append(dst, 0, 0, 0, 0) }

// CloseValue sets the length of the value opened at dst[at].
func CloseValue(dst []byte, at int) []byte {
	binary.BigEndian.PutUint32(dst[at:], uint32(len(dst)-at-4))
	return dst
}

// appendValues appends n and the values of vals (nil: NULL).
func appendValues(dst []byte, vals [][]byte) []byte {
	dst = AppendCount(dst, len(vals))
	for _, v := range vals {
		if v == nil {
			dst = AppendNull(dst)
		} else {
			dst = AppendValue(dst, v)
		}
	}
	return dst
}

// readValues reads a counted value list and checks it.
func readValues(r *reader) (n int, values []byte) {
	n = int(r.uint16())
	size, err := ScanValues(r.b, n)
	if err != nil {
		r.fail()
		return 0, nil
	}
	return n, r.bytes(size)
}
