package value

import (
	"encoding/binary"
	"math"
	"strconv"
)

// The one NaN of each width the canonical encoding allows (quiet, positive,
// zero payload), since PostgreSQL treats all NaNs as equal.
const (
	canonNaN32 uint32 = 0x7fc00000
	canonNaN64 uint64 = 0x7ff8000000000000
)

// scanDecimal checks s against [+-] (digits [. digits*] | . digits)
// [(e|E) [+-] digits] and reports whether it matched and whether any
// mantissa digit is nonzero.
func scanDecimal(s []byte) (ok, nonzero bool) {
	i := 0
	if i < len(s) && (s[i] == '+' || s[i] == '-') {
		i++
	}
	digits := 0
	for ; i < len(s) && isDigit(s[i]); i++ {
		digits++
		nonzero = nonzero || s[i] != '0'
	}
	if i < len(s) && s[i] == '.' {
		i++
		for ; i < len(s) && isDigit(s[i]); i++ {
			digits++
			nonzero = nonzero || s[i] != '0'
		}
	}
	if digits == 0 {
		return false, false
	}
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		i++
		if i < len(s) && (s[i] == '+' || s[i] == '-') {
			i++
		}
		start := i
		for i < len(s) && isDigit(s[i]) {
			i++
		}
		if i == start {
			return false, false
		}
	}
	return i == len(s), nonzero
}

func equalFold(s []byte, lower string) bool {
	if len(s) != len(lower) {
		return false
	}
	for i := range len(s) {
		c := s[i]
		if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != lower[i] {
			return false
		}
	}
	return true
}

// floatSpecial recognises PostgreSQL's special float spellings, case
// insensitively: [+-]nan, [+-]inf, [+-]infinity.
func floatSpecial(s []byte) (float64, bool) {
	neg := false
	if len(s) > 0 && (s[0] == '+' || s[0] == '-') {
		neg = s[0] == '-'
		s = s[1:]
	}
	switch {
	case equalFold(s, "nan"):
		return math.NaN(), true
	case equalFold(s, "inf"), equalFold(s, "infinity"):
		if neg {
			return math.Inf(-1), true
		}
		return math.Inf(1), true
	}
	return 0, false
}

// parseFloat parses PostgreSQL float4/float8 input. Like float8in it refuses
// values that overflow to infinity or underflow to zero; unlike glibc's
// strtod it refuses hexadecimal floats.
func parseFloat(t Type, src []byte, bits int) (float64, error) {
	s := trimSpace(src)
	ok, nonzero := scanDecimal(s)
	if !ok {
		if f, ok := floatSpecial(s); ok {
			return f, nil
		}
		return 0, syntaxError(t, "")
	}
	f, err := strconv.ParseFloat(string(s), bits)
	if err != nil || math.IsInf(f, 0) || (f == 0 && nonzero) {
		return 0, rangeError(t, "")
	}
	return f, nil
}

// appendFloatCanon appends f as the canonical bytes of a real (bits 32,
// f being a float32 value) or a double (bits 64): big-endian IEEE 754,
// with every NaN as one quiet NaN and -0 as 0.
func appendFloatCanon(dst []byte, f float64, bits int) []byte {
	if f == 0 {
		f = 0 // -0 too
	}
	if bits == 32 {
		u := math.Float32bits(float32(f))
		if f != f {
			u = canonNaN32
		}
		return binary.BigEndian.AppendUint32(dst, u)
	}
	u := math.Float64bits(f)
	if f != f {
		u = canonNaN64
	}
	return binary.BigEndian.AppendUint64(dst, u)
}

func float32frombits(b []byte) float32 { return math.Float32frombits(binary.BigEndian.Uint32(b)) }
func float64frombits(b []byte) float64 { return math.Float64frombits(binary.BigEndian.Uint64(b)) }

// decodeFloat checks a canonical real/double and returns it as float64.
func decodeFloat(t Type, canon []byte) (float64, int, error) {
	if t == TypeReal {
		if len(canon) != 4 {
			return 0, 0, corruptError(t, "want 4 bytes")
		}
		u := binary.BigEndian.Uint32(canon)
		f := math.Float32frombits(u)
		if (f != f && u != canonNaN32) || u == 0x80000000 {
			return 0, 0, corruptError(t, "non-canonical NaN or -0")
		}
		return float64(f), 32, nil
	}
	if len(canon) != 8 {
		return 0, 0, corruptError(t, "want 8 bytes")
	}
	u := binary.BigEndian.Uint64(canon)
	f := math.Float64frombits(u)
	if (f != f && u != canonNaN64) || u == 1<<63 {
		return 0, 0, corruptError(t, "non-canonical NaN or -0")
	}
	return f, 64, nil
}

func validateFloat(t Type, canon []byte) error {
	_, _, err := decodeFloat(t, canon)
	return err
}

// appendFloatText renders like PostgreSQL 12+ float4out/float8out with
// extra_float_digits = 1: the shortest decimal that reads back to the same
// value, in fixed notation when the decimal exponent is in [-4, 15) for
// double or [-4, 6) for real, otherwise as d.ddde±XX.
func appendFloatText(dst []byte, t Type, canon []byte) ([]byte, error) {
	f, bits, err := decodeFloat(t, canon)
	if err != nil {
		return dst, err
	}
	switch {
	case f != f:
		return append(dst, "NaN"...), nil
	case math.IsInf(f, 1):
		return append(dst, "Infinity"...), nil
	case math.IsInf(f, -1):
		return append(dst, "-Infinity"...), nil
	}
	var buf [32]byte
	e := strconv.AppendFloat(buf[:0], f, 'e', -1, bits)
	exp := 0
	for i := len(e) - 1; i >= 0; i-- {
		if e[i] == 'e' {
			n := 0
			for _, c := range e[i+2:] {
				n = n*10 + int(c-'0')
			}
			if e[i+1] == '-' {
				n = -n
			}
			exp = n
			break
		}
	}
	limit := 15
	if bits == 32 {
		limit = 6
	}
	if exp >= -4 && exp < limit {
		return strconv.AppendFloat(dst, f, 'f', -1, bits), nil
	}
	return append(dst, e...), nil
}
