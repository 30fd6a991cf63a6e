package pgmsg

import (
	"encoding/binary"
	"errors"
)

// The binary COPY format (the COPY reference, "Binary Format") is a stream
// carried by CopyData messages, which cut it anywhere:
//
//	header:  "PGCOPY\n\377\r\n\0" || int32 flags || int32 extension length || extension
//	tuple:   int16 field count || a value list
//	trailer: int16 -1

// CopySignature starts every binary COPY stream.
const CopySignature = "PGCOPY\n\xff\r\n\x00"

// CopyFlagOIDs is the header flag of a stream with a row OID in every
// tuple (COPY … WITH OIDS, gone since PostgreSQL 12).
const CopyFlagOIDs = 1 << 16

var (
	errCopySignature = errors.New("not a binary COPY stream (bad signature)")
	errCopyExtension = errors.New("invalid binary COPY header extension length")
)

// maxCopyExtension bounds the header extension a stream may declare.
const maxCopyExtension = 1 << 20

// ParseCopyHeader returns the size of the binary COPY header at the start
// of buf (extension included) and its flags: ErrIncomplete if buf ends
// before it, another error if it is not one.
func ParseCopyHeader(buf []byte) (size int, flags uint32, err error) {
	fixed := len(CopySignature) + 8
	if sig := buf[:min(len(buf), len(CopySignature))]; string(sig) != CopySignature[:len(sig)] {
		return 0, 0, errCopySignature
	}
	if len(buf) < fixed {
		return 0, 0, ErrIncomplete
	}
	flags = binary.BigEndian.Uint32(buf[len(CopySignature):])
	ext := int(int32(binary.BigEndian.Uint32(buf[len(CopySignature)+4:])))
	if ext < 0 || ext > maxCopyExtension {
		return 0, flags, errCopyExtension
	}
	if len(buf) < fixed+ext {
		return 0, flags, ErrIncomplete
	}
	return fixed + ext, flags, nil
}

// CopyTrailer is the field count of the trailer that ends a binary COPY
// stream.
const CopyTrailer = -1

// CopyTupleLen returns the field count at the start of a binary COPY tuple
// (CopyTrailer for the trailer); ok is false if buf is shorter than it. The
// tuple's values follow: ScanValues(buf[2:], n), NewValues.
func CopyTupleLen(buf []byte) (n int, ok bool) {
	if len(buf) < 2 {
		return 0, false
	}
	return int(int16(binary.BigEndian.Uint16(buf))), true
}

// AppendCopyTupleLen appends the field count of a binary COPY tuple.
func AppendCopyTupleLen(dst []byte, n int) []byte { return AppendCount(dst, n) }

// AppendCopyTuple appends a binary COPY tuple of vals (nil: NULL).
func AppendCopyTuple(dst []byte, vals [][]byte) []byte { return appendValues(dst, vals) }
