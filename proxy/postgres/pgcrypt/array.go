package pgcrypt

import (
	"encoding/binary"
	"errors"

	"github.com/dbproxy/dbproxy/value"
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

func textArrayElems(src []byte, f func([]byte, bool) error) error {
	err := value.PostgresArrayElems(src, func(elem []byte, null bool) error {
		if null {
			return nil
		}
		return f(elem, false)
	})
	if errors.Is(err, value.ErrArray) {
		return errArray
	}
	return err
}
