package value

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"reflect"
	"strconv"
	"time"
)

// Canonical returns the canonical encoding of v, a natural Go value, for
// type t. It is a convenience for Go callers and tests, not for hot paths.
//
//   - string: always the type's text form, as AppendCanonicalText reads it
//     (so for bytes, `\x0102`).
//   - []byte / json.RawMessage: the raw value for text, bytes, json and uuid
//     (16 bytes); refused for other types.
//   - int, int8..int64, uint, uint8..uint64: smallint, int, bigint (range
//     checked), numeric, and real/double when exactly representable.
//   - float32, float64: real, double (a float64 must be exactly
//     representable as a real), numeric (shortest decimal that reads back).
//   - bool: boolean.
//   - time.Time: date (its calendar date in its own location), timestamp
//     (its wall clock in its own location), timestamptz (the instant);
//     nanoseconds are rounded to microseconds half to even.
//   - [16]byte: uuid.
//
// nil is refused: NULL is never encoded.
func Canonical(t Type, v any) ([]byte, error) {
	if !t.Valid() {
		return nil, unsupportedError(t, "unknown plaintext type")
	}
	switch x := v.(type) {
	case nil:
		return nil, unsupportedError(t, "nil (NULL is not encoded)")
	case string:
		return AppendCanonicalText(nil, t, []byte(x))
	case json.RawMessage:
		v = []byte(x)
	}
	switch t {
	case TypeText:
		if b, ok := v.([]byte); ok {
			return appendCanonicalString(nil, b)
		}
	case TypeJSON:
		if b, ok := v.([]byte); ok {
			return appendCanonicalJSON(nil, b)
		}
	case TypeBytes:
		if b, ok := v.([]byte); ok {
			return append([]byte{}, b...), nil
		}
	case TypeUUID:
		return canonicalUUID(t, v)
	case TypeSmallint, TypeInt, TypeBigint:
		return canonicalInt(t, v)
	case TypeReal, TypeDouble:
		return canonicalFloat(t, v)
	case TypeNumeric:
		return canonicalNumeric(t, v)
	case TypeBoolean:
		if b, ok := v.(bool); ok {
			if b {
				return []byte{1}, nil
			}
			return []byte{0}, nil
		}
	case TypeDate:
		if tm, ok := v.(time.Time); ok {
			return canonicalDate(t, tm)
		}
	case TypeTimestamp, TypeTimestamptz:
		if tm, ok := v.(time.Time); ok {
			return canonicalTimestamp(t, tm)
		}
	}
	return nil, goTypeError(t, v)
}

// goTypeError says that t's values cannot be made from v's Go type.
func goTypeError(t Type, v any) error {
	return unsupportedError(t, fmt.Sprintf("Go type %T", v))
}

func canonicalUUID(t Type, v any) ([]byte, error) {
	switch x := v.(type) {
	case [16]byte:
		return append([]byte(nil), x[:]...), nil
	case []byte:
		if len(x) != 16 {
			return nil, rangeError(t, "want 16 bytes")
		}
		return append([]byte(nil), x...), nil
	}
	return nil, goTypeError(t, v)
}

func canonicalInt(t Type, v any) ([]byte, error) {
	i, ok, err := intOf(t, v)
	if !ok {
		return nil, goTypeError(t, v)
	}
	if err != nil {
		return nil, err
	}
	bits := intBits(t)
	if lim := int64(1) << (bits - 1); i < -lim || i > lim-1 {
		return nil, rangeError(t, "")
	}
	return appendIntCanon(nil, i, bits), nil
}

func canonicalNumeric(t Type, v any) ([]byte, error) {
	switch x := v.(type) {
	case uint:
		return appendCanonicalNumeric(nil, strconv.AppendUint(nil, uint64(x), 10))
	case uint64:
		return appendCanonicalNumeric(nil, strconv.AppendUint(nil, x, 10))
	case float64:
		return appendCanonicalNumeric(nil, strconv.AppendFloat(nil, x, 'e', -1, 64))
	case float32:
		return appendCanonicalNumeric(nil, strconv.AppendFloat(nil, float64(x), 'e', -1, 32))
	}
	if i, ok, _ := intOf(t, v); ok {
		return appendCanonicalNumeric(nil, strconv.AppendInt(nil, i, 10))
	}
	return nil, goTypeError(t, v)
}

// canonicalDate is tm's calendar date (in tm's location) as a date.
func canonicalDate(t Type, tm time.Time) ([]byte, error) {
	y, m, d := tm.Date()
	days := daysFromCivil(int64(y), int(m), d)
	if days < minDateDays || days >= endDateDays {
		return nil, rangeError(t, "")
	}
	return binary.BigEndian.AppendUint32(nil, uint32(int32(days))), nil
}

// canonicalTimestamp is tm as a timestamptz, or as a timestamp of tm's
// wall clock, rounded half to even to microseconds.
func canonicalTimestamp(t Type, tm time.Time) ([]byte, error) {
	sec := tm.Unix()
	if t == TypeTimestamp {
		_, off := tm.Zone()
		sec += int64(off)
	}
	if sec < minTimestamp/usPerSec-1 || sec > math.MaxInt64/usPerSec-1 {
		return nil, rangeError(t, "")
	}
	q, r := int64(tm.Nanosecond()/1000), tm.Nanosecond()%1000
	if r > 500 || (r == 500 && q%2 == 1) {
		q++
	}
	us := sec*usPerSec + q
	if !finiteTimestamp(us) {
		return nil, rangeError(t, "")
	}
	return binary.BigEndian.AppendUint64(nil, uint64(us)), nil
}

// intOf extracts an integer of any Go integer type. ok reports whether v is
// one; err is set for a uint64 (or uint) above MaxInt64.
func intOf(t Type, v any) (int64, bool, error) {
	switch v.(type) {
	case int, int8, int16, int32, int64:
		return reflect.ValueOf(v).Int(), true, nil
	case uint, uint8, uint16, uint32, uint64:
		u := reflect.ValueOf(v).Uint()
		if u > math.MaxInt64 {
			return 0, true, rangeError(t, "")
		}
		return int64(u), true, nil
	}
	return 0, false, nil
}

func canonicalFloat(t Type, v any) ([]byte, error) {
	var f float64
	switch x := v.(type) {
	case float64:
		f = x
	case float32:
		f = float64(x)
	default:
		i, ok, err := intOf(t, v)
		if !ok {
			return nil, goTypeError(t, v)
		}
		f = float64(i)
		if err != nil || f >= math.MaxInt64 || int64(f) != i {
			return nil, rangeError(t, "not exactly representable")
		}
	}
	if t == TypeDouble {
		return appendFloatCanon(nil, f, 64), nil
	}
	f32 := float32(f)
	if f == f && float64(f32) != f {
		return nil, rangeError(t, "not exactly representable")
	}
	return appendFloatCanon(nil, float64(f32), 32), nil
}
