package value

import (
	"encoding/binary"
	"math"
	"strconv"
	"time"
)

// Decoding the canonical (binary) form of date, timestamp and timestamptz
// values and printing them as text.

func decodeDate(canon []byte) (int32, error) {
	if len(canon) != 4 {
		return 0, corruptError(TypeDate, "want 4 bytes")
	}
	v := int32(binary.BigEndian.Uint32(canon))
	if v != math.MinInt32 && v != math.MaxInt32 && (v < minDateDays || v >= endDateDays) {
		return 0, corruptError(TypeDate, "out of range")
	}
	return v, nil
}

func decodeTimestamp(t Type, canon []byte) (int64, error) {
	if len(canon) != 8 {
		return 0, corruptError(t, "want 8 bytes")
	}
	v := int64(binary.BigEndian.Uint64(canon))
	if v != math.MinInt64 && v < minTimestamp {
		return 0, corruptError(t, "out of range")
	}
	return v, nil
}

// appendYMD appends YYYY-MM-DD (year zero-padded to four digits) and
// reports whether the year is BC.
func appendYMD(dst []byte, y int64, m, d int) ([]byte, bool) {
	bc := y <= 0
	if bc {
		y = 1 - y
	}
	for p := int64(1000); p > 1 && y < p; p /= 10 {
		dst = append(dst, '0')
	}
	dst = strconv.AppendInt(dst, y, 10)
	dst = append(dst, '-', byte('0'+m/10), byte('0'+m%10), '-', byte('0'+d/10), byte('0'+d%10))
	return dst, bc
}

func append2(dst []byte, v int64) []byte {
	return append(dst, byte('0'+v/10), byte('0'+v%10))
}

// appendWall appends "YYYY-MM-DD HH:MM:SS[.ffffff]" for a wall time given
// as seconds since 1970-01-01 00:00:00 and a µs fraction, trailing zeros of
// the fraction trimmed.
func appendWall(dst []byte, sec, frac int64) ([]byte, bool) {
	days := floorDiv(sec, 86400)
	sod := sec - days*86400
	y, m, d := civilFromDays(days)
	dst, bc := appendYMD(dst, y, m, d)
	dst = append(dst, ' ')
	dst = append2(dst, sod/3600)
	dst = append(dst, ':')
	dst = append2(dst, sod/60%60)
	dst = append(dst, ':')
	dst = append2(dst, sod%60)
	if frac != 0 {
		var buf [6]byte
		n := 6
		for i := 5; i >= 0; i-- {
			buf[i] = byte('0' + frac%10)
			frac /= 10
			if buf[i] == '0' && n == i+1 {
				n = i
			}
		}
		dst = append(dst, '.')
		dst = append(dst, buf[:n]...)
	}
	return dst, bc
}

func splitMicros(us int64) (sec, frac int64) {
	sec = floorDiv(us, usPerSec)
	return sec, us - sec*usPerSec
}

func appendDateText(dst []byte, canon []byte) ([]byte, error) {
	v, err := decodeDate(canon)
	if err != nil {
		return dst, err
	}
	if out, ok := appendInfinity(dst, v, math.MaxInt32, math.MinInt32); ok {
		return out, nil
	}
	y, m, d := civilFromDays(int64(v))
	dst, bc := appendYMD(dst, y, m, d)
	return appendBC(dst, bc), nil
}

// appendTimestampText appends a timestamp or, t being TypeTimestamptz, a
// timestamptz as the database prints it: a timestamptz in loc (UTC when
// nil), followed by its offset in the PostgreSQL dialect.
func appendTimestampText(dst []byte, t Type, canon []byte, loc *time.Location, d dialect) ([]byte, error) {
	us, err := decodeTimestamp(t, canon)
	if err != nil {
		return dst, err
	}
	if out, ok := appendInfinity(dst, us, math.MaxInt64, math.MinInt64); ok {
		return out, nil
	}
	sec, frac := splitMicros(us)
	var off int64
	if t == TypeTimestamptz && loc != nil && loc != time.UTC {
		_, o := time.Unix(sec, 0).In(loc).Zone()
		off = int64(o)
	}
	dst, bc := appendWall(dst, sec+off, frac)
	if t == TypeTimestamptz && d == dialectPostgres {
		dst = appendOffset(dst, off)
	}
	return appendBC(dst, bc), nil
}

// appendInfinity appends the text of an infinite date or timestamp v (the
// largest value of its type is infinity, the smallest -infinity); ok is
// false, and nothing appended, for a finite v.
func appendInfinity[T int32 | int64](dst []byte, v, largest, smallest T) (out []byte, ok bool) {
	switch v {
	case largest:
		return append(dst, "infinity"...), true
	case smallest:
		return append(dst, "-infinity"...), true
	}
	return dst, false
}

// appendBC appends the era of a date before year 1.
func appendBC(dst []byte, bc bool) []byte {
	if bc {
		dst = append(dst, " BC"...)
	}
	return dst
}

// appendOffset appends a UTC offset as PostgreSQL prints it: +HH, then :MM
// if minutes or seconds are nonzero, then :SS if seconds are.
func appendOffset(dst []byte, off int64) []byte {
	if off < 0 {
		dst = append(dst, '-')
		off = -off
	} else {
		dst = append(dst, '+')
	}
	if off < 36000 {
		dst = append(dst, '0')
	}
	dst = strconv.AppendInt(dst, off/3600, 10)
	if off%3600 != 0 {
		dst = append(dst, ':')
		dst = append2(dst, off/60%60)
		if off%60 != 0 {
			dst = append(dst, ':')
			dst = append2(dst, off%60)
		}
	}
	return dst
}
