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
	switch string(s) {
	case "NaN":
		return appendNumericHead(dst, 0, 0, numNaN, 0), nil
	case "Infinity":
		return appendNumericHead(dst, 0, 0, numPInf, 0), nil
	case "-Infinity":
		return appendNumericHead(dst, 0, 0, numNInf, 0), nil
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
	if len(ip) == 0 || len(fp) > 0x3FFF || !allDigits(ip) || !allDigits(fp) {
		return dst, errBinaryNumeric
	}
	groups, weight := numericGroups(ip, fp)
	if len(groups) == 0 {
		return appendNumericHead(dst, 0, 0, numPos, len(fp)), nil
	}
	dst = appendNumericHead(dst, len(groups), weight, sign, len(fp))
	for _, g := range groups {
		dst = binary.BigEndian.AppendUint16(dst, g)
	}
	return dst, nil
}

// appendNumericHead appends the header of a binary numeric: the number of
// base-10000 digits, the weight of the first, the sign and the display
// scale.
func appendNumericHead(dst []byte, n, weight int, sign uint16, dscale int) []byte {
	dst = binary.BigEndian.AppendUint16(dst, uint16(n))
	dst = binary.BigEndian.AppendUint16(dst, uint16(int16(weight)))
	dst = binary.BigEndian.AppendUint16(dst, sign)
	return binary.BigEndian.AppendUint16(dst, uint16(dscale))
}

func allDigits(s []byte) bool {
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// numericGroups splits the integer digits ip and fraction digits fp into
// base-10000 digits aligned on the decimal point, without leading or
// trailing zero groups, and returns them with the weight of the first.
func numericGroups(ip, fp []byte) (groups []uint16, weight int) {
	pad := (4 - len(ip)%4) % 4
	acc, n := 0, pad
	add := func(digits []byte) {
		for _, c := range digits {
			acc = acc*10 + int(c-'0')
			n++
			if n == 4 {
				groups = append(groups, uint16(acc))
				acc, n = 0, 0
			}
		}
	}
	add(ip)
	intGroups := len(groups)
	add(fp)
	if n > 0 {
		for ; n < 4; n++ {
			acc *= 10
		}
		groups = append(groups, uint16(acc))
	}
	weight = intGroups - 1
	for len(groups) > 0 && groups[0] == 0 {
		groups = groups[1:]
		weight--
	}
	for len(groups) > 0 && groups[len(groups)-1] == 0 {
		groups = groups[:len(groups)-1]
	}
	return groups, weight
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
