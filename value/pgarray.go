package value

import "errors"

// ErrArray: a malformed array in PostgreSQL's text format.
var ErrArray = errors.New("malformed array")

func isArraySpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'
}

// PostgresArrayElems calls f with each element of src, an array in
// PostgreSQL's text format ({a,"b c",NULL}, nested braces for more
// dimensions, backslash escapes), in order; null reports an unquoted NULL.
// elem aliases a buffer reused between calls. Dimension decorations
// ([1:2]={…}) are not supported: ErrArray, as for any malformed input.
func PostgresArrayElems(src []byte, f func(elem []byte, null bool) error) error {
	i := 0
	for i < len(src) && isArraySpace(src[i]) {
		i++
	}
	if i >= len(src) || src[i] != '{' { // dimension decorations ([1:2]=…) are not supported
		return ErrArray
	}
	depth := 0
	var elem []byte
	for i < len(src) {
		c := src[i]
		switch {
		case isArraySpace(c):
			i++
		case c == '{':
			depth++
			i++
		case c == '}':
			depth--
			i++
			if depth < 0 {
				return ErrArray
			}
			if depth == 0 {
				for i < len(src) && isArraySpace(src[i]) {
					i++
				}
				if i != len(src) {
					return ErrArray
				}
				return nil
			}
		case c == ',':
			i++
		case c == '"':
			elem = elem[:0]
			i++
			for {
				if i >= len(src) {
					return ErrArray
				}
				if src[i] == '\\' && i+1 < len(src) {
					elem = append(elem, src[i+1])
					i += 2
					continue
				}
				if src[i] == '"' {
					i++
					break
				}
				elem = append(elem, src[i])
				i++
			}
			if err := f(elem, false); err != nil {
				return err
			}
		default:
			if depth == 0 {
				return ErrArray
			}
			elem = elem[:0]
			for i < len(src) && src[i] != ',' && src[i] != '}' && src[i] != '{' && src[i] != '"' {
				if src[i] == '\\' && i+1 < len(src) {
					elem = append(elem, src[i+1])
					i += 2
					continue
				}
				elem = append(elem, src[i])
				i++
			}
			for len(elem) > 0 && isArraySpace(elem[len(elem)-1]) {
				elem = elem[:len(elem)-1]
			}
			if len(elem) == 4 && (elem[0]|0x20) == 'n' && (elem[1]|0x20) == 'u' && (elem[2]|0x20) == 'l' && (elem[3]|0x20) == 'l' {
				if err := f(nil, true); err != nil {
					return err
				}
				continue
			}
			if err := f(elem, false); err != nil {
				return err
			}
		}
	}
	return ErrArray
}
