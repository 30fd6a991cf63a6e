package pgmsg

import (
	"bytes"
	"encoding/binary"
	"errors"
)

// ErrMalformed is wrapped by every error a view returns for a body that
// does not hold a well-formed message of its type.
var ErrMalformed = errors.New("malformed message")

// MalformedError says which message did not parse.
type MalformedError struct{ Message string }

func (e *MalformedError) Error() string { return "invalid " + e.Message + " message" }

// Is makes errors.Is(err, ErrMalformed) true.
func (e *MalformedError) Is(target error) bool { return target == ErrMalformed }

// reader reads the fields of a body in order; after a read past the end
// (or a missing terminator) ok is false and every read returns zero values.
type reader struct {
	b  []byte
	ok bool
}

func newReader(b []byte) reader { return reader{b: b, ok: true} }

func (r *reader) fail() { r.ok, r.b = false, nil }

func (r *reader) cstring() []byte {
	i := bytes.IndexByte(r.b, 0)
	if i < 0 {
		r.fail()
		return nil
	}
	s := r.b[:i:i]
	r.b = r.b[i+1:]
	return s
}

func (r *reader) bytes(n int) []byte {
	if n < 0 || len(r.b) < n {
		r.fail()
		return nil
	}
	s := r.b[:n:n]
	r.b = r.b[n:]
	return s
}

func (r *reader) uint16() uint16 {
	if b := r.bytes(2); b != nil {
		return binary.BigEndian.Uint16(b)
	}
	return 0
}

func (r *reader) uint32() uint32 {
	if b := r.bytes(4); b != nil {
		return binary.BigEndian.Uint32(b)
	}
	return 0
}

func (r *reader) byte() byte {
	if b := r.bytes(1); b != nil {
		return b[0]
	}
	return 0
}

// done reports whether every read succeeded and the body is consumed.
func (r *reader) done() bool { return r.ok && len(r.b) == 0 }

// decode reads a whole body with read: bad unless every read succeeded
// and nothing is left.
func decode[T any](body []byte, bad error, read func(*reader) T) (T, error) {
	r := newReader(body)
	v := read(&r)
	if !r.done() {
		var zero T
		return zero, bad
	}
	return v, nil
}

// Begin appends the type byte of a message and a placeholder for its
// length; End fills the length in once the body is appended.
func Begin(dst []byte, typ byte) []byte { return append(dst, typ, 0, 0, 0, 0) }

// End sets the length of the message that starts at dst[start] (where
// Begin appended its type byte) to the end of dst.
func End(dst []byte, start int) []byte {
	binary.BigEndian.PutUint32(dst[start+1:], uint32(len(dst)-start-1))
	return dst
}

// AppendCString appends s and its NUL terminator.
func AppendCString(dst, s []byte) []byte { return append(append(dst, s...), 0) }

// AppendInt16 appends a big-endian int16 (a count or a format code).
func AppendInt16(dst []byte, v int16) []byte { return binary.BigEndian.AppendUint16(dst, uint16(v)) }

// AppendCount appends a list length as the protocol's int16.
func AppendCount(dst []byte, n int) []byte { return binary.BigEndian.AppendUint16(dst, uint16(n)) }

// AppendUint32 appends a big-endian uint32 (an OID).
func AppendUint32(dst []byte, v uint32) []byte { return binary.BigEndian.AppendUint32(dst, v) }
