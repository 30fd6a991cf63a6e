package value

import (
	"encoding/binary"
	"strconv"
)

// isSpace is PostgreSQL's (C locale) isspace.
func isSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'
}

func trimSpace(s []byte) []byte {
	for len(s) > 0 && isSpace(s[0]) {
		s = s[1:]
	}
	for len(s) > 0 && isSpace(s[len(s)-1]) {
		s = s[:len(s)-1]
	}
	return s
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// parseInt parses PostgreSQL integer input: optional surrounding whitespace,
// an optional sign, one or more decimal digits. No underscores, no radix
// prefixes, no fractions (PostgreSQL 15).
func parseInt(t Type, src []byte, bits uint) (int64, error) {
	s := trimSpace(src)
	neg := false
	if len(s) > 0 && (s[0] == '+' || s[0] == '-') {
		neg = s[0] == '-'
		s = s[1:]
	}
	if len(s) == 0 {
		return 0, syntaxError(t, "")
	}
	limit := uint64(1)<<(bits-1) - 1
	if neg {
		limit++
	}
	var u uint64
	for _, c := range s {
		if !isDigit(c) {
			return 0, syntaxError(t, "")
		}
		u = u*10 + uint64(c-'0')
		if u > limit {
			return 0, rangeError(t, "") // as PostgreSQL: overflow is reported before trailing junk
		}
	}
	if neg {
		return -int64(u), nil // u == 1<<63 wraps to MinInt64, as intended
	}
	return int64(u), nil
}

func intBits(t Type) uint {
	switch t {
	case TypeSmallint:
		return 16
	case TypeInt:
		return 32
	}
	return 64
}

// appendParsed appends the canonical encoding of src, a number of type t
// and size bits in text form: parse reads it, canon encodes it (parseInt
// and appendIntCanon, parseFloat and appendFloatCanon).
func appendParsed[N, B any](dst []byte, t Type, src []byte, bits B, parse func(Type, []byte, B) (N, error), canon func([]byte, N, B) []byte) ([]byte, error) {
	v, err := parse(t, src, bits)
	if err != nil {
		return dst, err
	}
	return canon(dst, v, bits), nil
}

func appendIntCanon(dst []byte, v int64, bits uint) []byte {
	switch bits {
	case 16:
		return binary.BigEndian.AppendUint16(dst, uint16(v))
	case 32:
		return binary.BigEndian.AppendUint32(dst, uint32(v))
	}
	return binary.BigEndian.AppendUint64(dst, uint64(v))
}

func decodeInt(t Type, canon []byte) (int64, error) {
	switch t {
	case TypeSmallint:
		if len(canon) == 2 {
			return int64(int16(binary.BigEndian.Uint16(canon))), nil
		}
		return 0, corruptError(t, "want 2 bytes")
	case TypeInt:
		if len(canon) == 4 {
			return int64(int32(binary.BigEndian.Uint32(canon))), nil
		}
		return 0, corruptError(t, "want 4 bytes")
	}
	if len(canon) == 8 {
		return int64(binary.BigEndian.Uint64(canon)), nil
	}
	return 0, corruptError(t, "want 8 bytes")
}

func appendInt(dst []byte, v int64) []byte { return strconv.AppendInt(dst, v, 10) }
