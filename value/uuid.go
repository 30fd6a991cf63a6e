package value

const hexDigits = "0123456789abcdef"

func unhex(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10, true
	case c >= 'A' && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// appendCanonicalUUID implements PostgreSQL's uuid_in: optional braces, 32
// hex digits of either case, an optional hyphen after any group of four
// digits except the last, and no whitespace.
func appendCanonicalUUID(dst []byte, src []byte) ([]byte, error) {
	const t = TypeUUID
	s := src
	braces := len(s) > 0 && s[0] == '{'
	if braces {
		s = s[1:]
	}
	var u [16]byte
	for i := range u {
		if len(s) < 2 {
			return dst, syntaxError(t, "")
		}
		hi, ok1 := unhex(s[0])
		lo, ok2 := unhex(s[1])
		if !ok1 || !ok2 {
			return dst, syntaxError(t, "")
		}
		u[i] = hi<<4 | lo
		s = s[2:]
		if len(s) > 0 && s[0] == '-' && i%2 == 1 && i < len(u)-1 {
			s = s[1:]
		}
	}
	if braces {
		if len(s) == 0 || s[0] != '}' {
			return dst, syntaxError(t, "")
		}
		s = s[1:]
	}
	if len(s) != 0 {
		return dst, syntaxError(t, "")
	}
	return append(dst, u[:]...), nil
}

func appendUUIDText(dst []byte, canon []byte) ([]byte, error) {
	if len(canon) != 16 {
		return dst, corruptError(TypeUUID, "want 16 bytes")
	}
	for i, b := range canon {
		if i == 4 || i == 6 || i == 8 || i == 10 {
			dst = append(dst, '-')
		}
		dst = append(dst, hexDigits[b>>4], hexDigits[b&0xf])
	}
	return dst, nil
}
