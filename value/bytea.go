package value

// appendCanonicalBytea implements PostgreSQL's byteain. The hex format is
// `\x` followed by pairs of hex digits (either case), with whitespace
// allowed between pairs. Anything else is the escape format: `\\` is a
// backslash, `\ooo` (three octal digits, first 0-3) is one byte, every other
// byte stands for itself, and any other backslash is an error.
func appendCanonicalBytea(dst []byte, src []byte) ([]byte, error) {
	const t = TypeBytes
	n0 := len(dst)
	if len(src) >= 2 && src[0] == '\\' && src[1] == 'x' {
		s := src[2:]
		for len(s) > 0 {
			if s[0] == ' ' || s[0] == '\t' || s[0] == '\n' || s[0] == '\r' {
				s = s[1:]
				continue
			}
			hi, ok := unhex(s[0])
			if !ok {
				return dst[:n0], syntaxError(t, "invalid hexadecimal digit")
			}
			if len(s) < 2 {
				return dst[:n0], syntaxError(t, "odd number of hexadecimal digits")
			}
			lo, ok := unhex(s[1])
			if !ok {
				return dst[:n0], syntaxError(t, "invalid hexadecimal digit")
			}
			dst = append(dst, hi<<4|lo)
			s = s[2:]
		}
		return dst, nil
	}
	s := src
	for len(s) > 0 {
		c := s[0]
		if c != '\\' {
			dst = append(dst, c)
			s = s[1:]
			continue
		}
		switch {
		case len(s) >= 2 && s[1] == '\\':
			dst = append(dst, '\\')
			s = s[2:]
		case len(s) >= 4 && s[1] >= '0' && s[1] <= '3' &&
			s[2] >= '0' && s[2] <= '7' && s[3] >= '0' && s[3] <= '7':
			dst = append(dst, (s[1]-'0')<<6|(s[2]-'0')<<3|(s[3]-'0'))
			s = s[4:]
		default:
			return dst[:n0], syntaxError(t, "")
		}
	}
	return dst, nil
}

// appendByteaText renders PostgreSQL's hex output: \x and lowercase hex.
func appendByteaText(dst []byte, canon []byte) []byte {
	dst = append(dst, '\\', 'x')
	for _, b := range canon {
		dst = append(dst, hexDigits[b>>4], hexDigits[b&0xf])
	}
	return dst
}
