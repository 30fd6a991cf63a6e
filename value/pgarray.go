package value

import "errors"

// ErrArray: a malformed array in PostgreSQL's text format.
var ErrArray = errors.New("malformed array")

// quotedArrayElem appends to elem the element whose opening quote is
// just before src[i], unescaped, and returns it with the index after its
// closing quote; ok is false when the quote is not closed.
func quotedArrayElem(src []byte, i int, elem []byte) (_ []byte, next int, ok bool) {
	for i < len(src) {
		switch {
		case src[i] == '\\' && i+1 < len(src):
			elem = append(elem, src[i+1])
			i += 2
		case src[i] == '"':
			return elem, i + 1, true
		default:
			elem = append(elem, src[i])
			i++
		}
	}
	return elem, i, false
}

// bareArrayElem appends to elem the unquoted element starting at src[i],
// unescaped and without trailing white space, and returns it with the
// index of the delimiter that ends it.
func bareArrayElem(src []byte, i int, elem []byte) (_ []byte, next int) {
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
	return elem, i
}

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
			var ok bool
			if elem, i, ok = quotedArrayElem(src, i+1, elem[:0]); !ok {
				return ErrArray
			}
			if err := f(elem, false); err != nil {
				return err
			}
		default:
			if depth == 0 {
				return ErrArray
			}
			elem, i = bareArrayElem(src, i, elem[:0])
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
