package pgcrypt

import (
	"encoding/binary"
	"errors"
)

var errArray = errors.New("malformed array")

// arrayElems calls f with each non-NULL element of a PostgreSQL array value
// in the given format (text elements unquoted and unescaped; binary elements
// as sent), flattening multi-dimensional arrays. NULL elements are skipped:
// `col = ANY(…)` never matches them.
func arrayElems(src []byte, format int16, f func(elem []byte, binary bool) error) error {
	if format == 1 {
		return binaryArrayElems(src, f)
	}
	return textArrayElems(src, f)
}

func binaryArrayElems(src []byte, f func([]byte, bool) error) error {
	if len(src) < 12 {
		return errArray
	}
	ndim := int(int32(binary.BigEndian.Uint32(src)))
	if ndim < 0 || ndim > 6 || len(src) < 12+8*ndim {
		return errArray
	}
	count := 1
	if ndim == 0 {
		count = 0
	}
	for i := 0; i < ndim; i++ {
		d := int(int32(binary.BigEndian.Uint32(src[12+8*i:])))
		if d < 0 || d > 1<<20 {
			return errArray
		}
		count *= d
		if count > 1<<20 {
			return errArray
		}
	}
	pos := 12 + 8*ndim
	for i := 0; i < count; i++ {
		if len(src) < pos+4 {
			return errArray
		}
		l := int(int32(binary.BigEndian.Uint32(src[pos:])))
		pos += 4
		if l < 0 {
			continue
		}
		if len(src) < pos+l {
			return errArray
		}
		if err := f(src[pos:pos+l], true); err != nil {
			return err
		}
		pos += l
	}
	if pos != len(src) {
		return errArray
	}
	return nil
}

func isArraySpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'
}

func textArrayElems(src []byte, f func([]byte, bool) error) error {
	i := 0
	for i < len(src) && isArraySpace(src[i]) {
		i++
	}
	if i >= len(src) || src[i] != '{' { // dimension decorations ([1:2]=…) are not supported
		return errArray
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
				return errArray
			}
			if depth == 0 {
				for i < len(src) && isArraySpace(src[i]) {
					i++
				}
				if i != len(src) {
					return errArray
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
					return errArray
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
				return errArray
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
				continue // NULL
			}
			if err := f(elem, false); err != nil {
				return err
			}
		}
	}
	return errArray
}
