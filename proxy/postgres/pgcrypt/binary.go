package pgcrypt

import (
	"encoding/binary"
	"errors"
	"math"

	"github.com/dbproxy/dbproxy/value"
)

var (
	errBinaryRange   = errors.New("value out of the range of the binary format")
	errBinaryNumeric = errors.New("malformed numeric")
)

// appendCanonicalFromBinary appends the canonical form of a PostgreSQL
// binary-format value of type t.
func appendCanonicalFromBinary(dst []byte, t value.Type, src []byte) ([]byte, error) {
	switch t {
	case value.TypeDate:
		if len(src) != 4 {
			return dst, errors.New("date: want 4 bytes")
		}
		v := int64(int32(binary.BigEndian.Uint32(src)))
		if v != math.MinInt32 && v != math.MaxInt32 {
			v += value.PostgresEpochDays
			if v > math.MaxInt32-1 {
				return dst, errBinaryRange
			}
		}
		return value.AppendCanonicalBinary(dst, t, binary.BigEndian.AppendUint32(nil, uint32(int32(v))))
	case value.TypeTimestamp, value.TypeTimestamptz:
		if len(src) != 8 {
			return dst, errors.New("timestamp: want 8 bytes")
		}
		v := int64(binary.BigEndian.Uint64(src))
		if v != math.MinInt64 && v != math.MaxInt64 {
			if v > math.MaxInt64-1-value.PostgresEpochMicros {
				return dst, errBinaryRange
			}
			v += value.PostgresEpochMicros
		}
		return value.AppendCanonicalBinary(dst, t, binary.BigEndian.AppendUint64(nil, uint64(v)))
	case value.TypeNumeric:
		txt, err := numericBinaryToText(nil, src)
		if err != nil {
			return dst, err
		}
		return value.AppendCanonicalText(dst, t, txt)
	}
	return value.AppendCanonicalBinary(dst, t, src)
}

// appendBinary appends the PostgreSQL binary format of a canonical value.
func appendBinary(dst []byte, t value.Type, canon []byte) ([]byte, error) {
	switch t {
	case value.TypeDate:
		v := int64(int32(binary.BigEndian.Uint32(canon)))
		if v != math.MinInt32 && v != math.MaxInt32 {
			v -= value.PostgresEpochDays
		}
		return binary.BigEndian.AppendUint32(dst, uint32(int32(v))), nil
	case value.TypeTimestamp, value.TypeTimestamptz:
		v := int64(binary.BigEndian.Uint64(canon))
		if v != math.MinInt64 && v != math.MaxInt64 {
			if v < math.MinInt64+1+value.PostgresEpochMicros {
				return dst, errBinaryRange
			}
			v -= value.PostgresEpochMicros
		}
		return binary.BigEndian.AppendUint64(dst, uint64(v)), nil
	case value.TypeNumeric:
		return numericTextToBinary(dst, canon)
	}
	return append(dst, canon...), nil
}

const (
	numPos  = 0x0000
	numNeg  = 0x4000
	numNaN  = 0xC000
	numPInf = 0xD000
	numNInf = 0xF000
)

// numericTextToBinary encodes a canonical numeric (-?digits[.digits], NaN,
// Infinity, -Infinity) in PostgreSQL's binary numeric format.
func numericTextToBinary(dst []byte, s []byte) ([]byte, error) {
	head := func(n, weight int, sign uint16, dscale int) {
		dst = binary.BigEndian.AppendUint16(dst, uint16(n))
		dst = binary.BigEndian.AppendUint16(dst, uint16(int16(weight)))
		dst = binary.BigEndian.AppendUint16(dst, sign)
		dst = binary.BigEndian.AppendUint16(dst, uint16(dscale))
	}
	switch string(s) {
	case "NaN":
		head(0, 0, numNaN, 0)
		return dst, nil
	case "Infinity":
		head(0, 0, numPInf, 0)
		return dst, nil
	case "-Infinity":
		head(0, 0, numNInf, 0)
		return dst, nil
	}
	sign := uint16(numPos)
	if len(s) > 0 && s[0] == '-' {
		sign, s = numNeg, s[1:]
	}
	ip, fp := s, []byte(nil)
	for i, c := range s {
		if c == '.' {
			ip, fp = s[:i], s[i+1:]
			break
		}
	}
	for _, c := range ip {
		if c < '0' || c > '9' {
			return dst, errBinaryNumeric
		}
	}
	for _, c := range fp {
		if c < '0' || c > '9' {
			return dst, errBinaryNumeric
		}
	}
	if len(ip) == 0 || len(fp) > 0x3FFF {
		return dst, errBinaryNumeric
	}
	// Base-10000 groups aligned on the decimal point.
	pad := (4 - len(ip)%4) % 4
	var groups []uint16
	acc, n := 0, pad
	for _, c := range ip {
		acc = acc*10 + int(c-'0')
		n++
		if n == 4 {
			groups = append(groups, uint16(acc))
			acc, n = 0, 0
		}
	}
	intGroups := len(groups)
	for _, c := range fp {
		acc = acc*10 + int(c-'0')
		n++
		if n == 4 {
			groups = append(groups, uint16(acc))
			acc, n = 0, 0
		}
	}
	if n > 0 {
		for ; n < 4; n++ {
			acc *= 10
		}
		groups = append(groups, uint16(acc))
	}
	weight := intGroups - 1
	for len(groups) > 0 && groups[0] == 0 {
		groups = groups[1:]
		weight--
	}
	for len(groups) > 0 && groups[len(groups)-1] == 0 {
		groups = groups[:len(groups)-1]
	}
	if len(groups) == 0 {
		head(0, 0, numPos, len(fp))
		return dst, nil
	}
	head(len(groups), weight, sign, len(fp))
	for _, g := range groups {
		dst = binary.BigEndian.AppendUint16(dst, g)
	}
	return dst, nil
}

// numericBinaryToText decodes PostgreSQL's binary numeric to decimal text.
func numericBinaryToText(dst []byte, src []byte) ([]byte, error) {
	if len(src) < 8 {
		return dst, errBinaryNumeric
	}
	n := int(binary.BigEndian.Uint16(src))
	weight := int(int16(binary.BigEndian.Uint16(src[2:])))
	sign := binary.BigEndian.Uint16(src[4:])
	dscale := int(binary.BigEndian.Uint16(src[6:]))
	if len(src) != 8+2*n || dscale > 0x3FFF {
		return dst, errBinaryNumeric
	}
	switch sign {
	case numNaN:
		return append(dst, "NaN"...), nil
	case numPInf:
		return append(dst, "Infinity"...), nil
	case numNInf:
		return append(dst, "-Infinity"...), nil
	case numNeg:
		dst = append(dst, '-')
	case numPos:
	default:
		return dst, errBinaryNumeric
	}
	digit := func(i int) int { // group i, where group 0 has weight `weight`
		if i < 0 || i >= n {
			return 0
		}
		d := int(binary.BigEndian.Uint16(src[8+2*i:]))
		return d
	}
	for i := 0; i < n; i++ {
		if digit(i) > 9999 {
			return dst, errBinaryNumeric
		}
	}
	if weight > 0x7FFF/4 || weight < -0x3FFF {
		return dst, errBinaryNumeric
	}
	// Integer part: groups 0..weight.
	if weight < 0 {
		dst = append(dst, '0')
	} else {
		for i := 0; i <= weight; i++ {
			d := digit(i)
			if i == 0 {
				dst = appendInt(dst, d)
			} else {
				dst = append(dst, byte('0'+d/1000), byte('0'+d/100%10), byte('0'+d/10%10), byte('0'+d%10))
			}
		}
	}
	if dscale > 0 {
		dst = append(dst, '.')
		written := 0
		for g := weight + 1; written < dscale; g++ {
			d := digit(g)
			for _, c := range [4]byte{byte('0' + d/1000), byte('0' + d/100%10), byte('0' + d/10%10), byte('0' + d%10)} {
				if written == dscale {
					break
				}
				dst = append(dst, c)
				written++
			}
		}
	}
	return dst, nil
}

func appendInt(dst []byte, v int) []byte {
	if v >= 10 {
		dst = appendInt(dst, v/10)
	}
	return append(dst, byte('0'+v%10))
}
