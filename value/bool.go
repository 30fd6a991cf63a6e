package value

// parseBool implements PostgreSQL's parse_bool: surrounding whitespace, any
// case, any non-empty prefix of true/false/yes/no, "on", "of"/"off", "1",
// "0".
func parseBool(src []byte) (bool, bool) {
	s := trimSpace(src)
	if len(s) == 0 {
		return false, false
	}
	prefixOf := func(word string) bool {
		return len(s) <= len(word) && equalFold(s, word[:len(s)])
	}
	switch s[0] {
	case 't', 'T':
		return true, prefixOf("true")
	case 'f', 'F':
		return false, prefixOf("false")
	case 'y', 'Y':
		return true, prefixOf("yes")
	case 'n', 'N':
		return false, prefixOf("no")
	case 'o', 'O':
		// "o" alone is ambiguous; at least two characters are compared.
		if equalFold(s, "on") {
			return true, true
		}
		if len(s) >= 2 && prefixOf("off") {
			return false, true
		}
	case '1':
		return true, len(s) == 1
	case '0':
		return false, len(s) == 1
	}
	return false, false
}

func appendCanonicalBool(dst []byte, src []byte) ([]byte, error) {
	b, ok := parseBool(src)
	if !ok {
		return dst, syntaxError(TypeBoolean, "")
	}
	if b {
		return append(dst, 1), nil
	}
	return append(dst, 0), nil
}

func appendBoolText(dst []byte, canon []byte, d dialect) ([]byte, error) {
	if len(canon) != 1 || canon[0] > 1 {
		return dst, corruptError(TypeBoolean, "want one byte 0x00 or 0x01")
	}
	var c byte
	switch {
	case d == dialectMySQL:
		c = '0' + canon[0]
	case canon[0] == 1:
		c = 't'
	default:
		c = 'f'
	}
	return append(dst, c), nil
}
