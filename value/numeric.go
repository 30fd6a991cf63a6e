package value

// MaxNumericDigits caps the number of decimal digits (before and after the
// point, counting the leading "0" of a pure fraction) of a canonical numeric,
// so that a short literal such as 1e999999 cannot make us allocate megabytes.
// PostgreSQL allows more; larger values are refused with ErrRange.
const MaxNumericDigits = 1000

// appendCanonicalNumeric normalises a PostgreSQL numeric literal: optional
// whitespace, NaN, [+-]Infinity / [+-]inf, or [+-] digits [. digits]
// [e [+-] digits]. The result has no leading zeros, no trailing fractional
// zeros, no trailing point, no exponent, and no sign on zero.
func appendCanonicalNumeric(dst []byte, src []byte) ([]byte, error) {
	const t = TypeNumeric
	s := trimSpace(src)
	if equalFold(s, "nan") {
		return append(dst, "NaN"...), nil
	}
	neg := false
	if len(s) > 0 && (s[0] == '+' || s[0] == '-') {
		neg = s[0] == '-'
		s = s[1:]
	}
	if equalFold(s, "infinity") || equalFold(s, "inf") {
		if neg {
			return append(dst, "-Infinity"...), nil
		}
		return append(dst, "Infinity"...), nil
	}

	intPart, frac, exp, ok := splitDecimal(s)
	if !ok {
		return dst, syntaxError(t, "")
	}
	return appendPlainDecimal(dst, neg, intPart, frac, exp)
}

// splitDecimal splits an unsigned decimal number, digits[.digits][e[+-]digits],
// into its integer digits, fraction digits and exponent. An exponent beyond
// any acceptable size stops growing (the digit count check refuses it).
func splitDecimal(s []byte) (intPart, frac []byte, exp int64, ok bool) {
	i := 0
	for i < len(s) && isDigit(s[i]) {
		i++
	}
	intPart = s[:i]
	if i < len(s) && s[i] == '.' {
		i++
		start := i
		for i < len(s) && isDigit(s[i]) {
			i++
		}
		frac = s[start:i]
	}
	if len(intPart)+len(frac) == 0 {
		return nil, nil, 0, false
	}
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		i++
		eneg := false
		if i < len(s) && (s[i] == '+' || s[i] == '-') {
			eneg = s[i] == '-'
			i++
		}
		start := i
		for ; i < len(s) && isDigit(s[i]); i++ {
			if exp < 1<<40 {
				exp = exp*10 + int64(s[i]-'0')
			}
		}
		if i == start {
			return nil, nil, 0, false
		}
		if eneg {
			exp = -exp
		}
	}
	return intPart, frac, exp, i == len(s)
}

// appendPlainDecimal appends the number intPart.frac × 10^exp in plain
// notation without leading or trailing zeros ("0" for zero), or fails when
// it needs more than MaxNumericDigits digits.
func appendPlainDecimal(dst []byte, neg bool, intPart, frac []byte, exp int64) ([]byte, error) {
	// The digits form one virtual string D = intPart || frac with the
	// decimal point after len(intPart)+exp digits.
	d := digitString{intPart, frac}
	n := d.len()
	lo := 0
	for lo < n && d.at(lo) == '0' {
		lo++
	}
	if lo == n {
		return append(dst, '0'), nil
	}
	hi := n
	for d.at(hi-1) == '0' {
		hi--
	}
	m := int64(hi - lo)
	p := int64(len(intPart)) + exp - int64(lo) // digits of D[lo:hi] before the point
	var total int64
	switch {
	case p <= 0:
		total = 1 - p + m
	case p >= m:
		total = p
	default:
		total = m
	}
	if total > MaxNumericDigits {
		return dst, rangeError(TypeNumeric, "too many digits")
	}
	if neg {
		dst = append(dst, '-')
	}
	switch {
	case p <= 0:
		dst = append(dst, '0', '.')
		for range -p {
			dst = append(dst, '0')
		}
		dst = d.appendRange(dst, lo, hi)
	case p >= m:
		dst = d.appendRange(dst, lo, hi)
		for range p - m {
			dst = append(dst, '0')
		}
	default:
		mid := lo + int(p)
		dst = d.appendRange(dst, lo, mid)
		dst = append(dst, '.')
		dst = d.appendRange(dst, mid, hi)
	}
	return dst, nil
}

// digitString is the concatenation a||b without copying.
type digitString struct{ a, b []byte }

func (d digitString) len() int { return len(d.a) + len(d.b) }

func (d digitString) at(i int) byte {
	if i < len(d.a) {
		return d.a[i]
	}
	return d.b[i-len(d.a)]
}

func (d digitString) appendRange(dst []byte, from, to int) []byte {
	if from < len(d.a) {
		dst = append(dst, d.a[from:min(to, len(d.a))]...)
	}
	if to > len(d.a) {
		dst = append(dst, d.b[max(from-len(d.a), 0):to-len(d.a)]...)
	}
	return dst
}

// validateNumeric checks the canonical numeric grammar: NaN, Infinity,
// -Infinity, or -?(0|[1-9][0-9]*)(\.[0-9]*[1-9])? except -0, with at most
// MaxNumericDigits digits.
func validateNumeric(canon []byte) error {
	const t = TypeNumeric
	switch string(canon) {
	case "NaN", "Infinity", "-Infinity":
		return nil
	}
	s := canon
	neg := len(s) > 0 && s[0] == '-'
	if neg {
		s = s[1:]
	}
	if len(s) == 0 || len(s) > MaxNumericDigits+1 {
		return corruptError(t, "")
	}
	i := 0
	if s[0] == '0' {
		i = 1
	} else {
		for i < len(s) && isDigit(s[i]) {
			i++
		}
		if i == 0 {
			return corruptError(t, "")
		}
	}
	digits := i
	if i < len(s) {
		if s[i] != '.' || i+1 == len(s) || s[len(s)-1] == '0' {
			return corruptError(t, "")
		}
		for _, c := range s[i+1:] {
			if !isDigit(c) {
				return corruptError(t, "")
			}
		}
		digits += len(s) - i - 1
	} else if neg && s[0] == '0' {
		return corruptError(t, "negative zero")
	}
	if digits > MaxNumericDigits {
		return corruptError(t, "too many digits")
	}
	return nil
}
