package value

import (
	"encoding/binary"
	"math"
	"strconv"
	"time"
)

// The calendar arithmetic of date, timestamp and timestamptz values, and
// parsing their text into the canonical (binary) form; decoding and
// printing are in datetime_format.go.

const (
	usPerSec = 1_000_000
	usPerDay = 86400 * usPerSec

	// minDateDays is 4714-11-24 BC (Julian day 0), PostgreSQL's first date
	// and the day its first timestamp starts.
	minDateDays = -2440588
	// endDateDays is 5874898-01-01, the first day past PostgreSQL's dates.
	endDateDays = 2145042906
	// minTimestamp is 4714-11-24 00:00:00 BC in µs since the Unix epoch.
	minTimestamp = minDateDays * usPerDay
	// Finite timestamps end at MaxInt64-1 µs (294247-01-10 04:00:54.775806),
	// MaxInt64 itself being +infinity; PostgreSQL's own range reaches
	// 294276 AD, and those last 29 years are refused with ErrRange.

	// PostgreSQL's MAXDATELEN: longer date/time literals are refused.
	maxDateTimeLen = 128
)

// daysFromCivil returns the days since 1970-01-01 of a proleptic Gregorian
// date with astronomical year numbering (1 BC is year 0), after Howard
// Hinnant's days_from_civil.
func daysFromCivil(y int64, m, d int) int64 {
	if m <= 2 {
		y--
	}
	era := y
	if era < 0 {
		era -= 399
	}
	era /= 400
	yoe := y - era*400
	mp := int64(m + 9)
	if m > 2 {
		mp = int64(m - 3)
	}
	doy := (153*mp+2)/5 + int64(d) - 1
	doe := yoe*365 + yoe/4 - yoe/100 + doy
	return era*146097 + doe - 719468
}

// civilFromDays is the inverse of daysFromCivil.
func civilFromDays(z int64) (y int64, m, d int) {
	z += 719468
	era := z
	if era < 0 {
		era -= 146096
	}
	era /= 146097
	doe := z - era*146097
	yoe := (doe - doe/1460 + doe/36524 - doe/146096) / 365
	y = yoe + era*400
	doy := doe - (365*yoe + yoe/4 - yoe/100)
	mp := (5*doy + 2) / 153
	d = int(doy - (153*mp+2)/5 + 1)
	if mp < 10 {
		m = int(mp + 3)
	} else {
		m = int(mp - 9)
	}
	if m <= 2 {
		y++
	}
	return y, m, d
}

func isLeap(y int64) bool { return y%4 == 0 && (y%100 != 0 || y%400 == 0) }

func daysInMonth(y int64, m int) int {
	switch m {
	case 2:
		if isLeap(y) {
			return 29
		}
		return 28
	case 4, 6, 9, 11:
		return 30
	}
	return 31
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && (a < 0) != (b < 0) {
		q--
	}
	return q
}

const (
	specialNone int8 = iota
	specialPosInf
	specialNegInf
	specialEpoch
)

// dateTime holds a parsed date/time literal.
type dateTime struct {
	special int8
	year    int64 // astronomical: 1 BC is 0
	month   int
	day     int
	hasTime bool
	tod     int64 // µs since midnight, 0..usPerDay inclusive (24:00:00)
	hasZone bool
	zone    int64 // seconds east of UTC
}

func digitsRun(s []byte, i int) int {
	n := 0
	for i+n < len(s) && isDigit(s[i+n]) {
		n++
	}
	return n
}

func atoi(s []byte) int64 {
	var v int64
	for _, c := range s {
		v = v*10 + int64(c-'0')
	}
	return v
}

func skipSpace(s []byte, i int) int {
	for i < len(s) && isSpace(s[i]) {
		i++
	}
	return i
}

func isLetter(c byte) bool { return c|0x20 >= 'a' && c|0x20 <= 'z' }

// eraAt recognises whitespace followed by the word BC or AD at s[i:].
func eraAt(s []byte, i int) (next int, bc, ok bool) {
	j := skipSpace(s, i)
	if j == i || j+2 > len(s) || (j+2 < len(s) && isLetter(s[j+2])) {
		return i, false, false
	}
	switch {
	case equalFold(s[j:j+2], "bc"):
		return j + 2, true, true
	case equalFold(s[j:j+2], "ad"):
		return j + 2, false, true
	}
	return i, false, false
}

// parseDateTime parses the ISO forms PostgreSQL (DateStyle ISO) and MySQL
// exchange, after trimming whitespace:
//
//	infinity | -infinity | epoch                       (any case)
//	date [era] [(T | space+) time] [space* zone] [era]
//	date = Y{3,7}-M{1,2}-D{1,2} | YYYYMMDD
//	time = H{1,2}:M{1,2}[:S{1,2}[.fraction]]
//	zone = Z | UTC | GMT | UT | (+|-)H{1,2}[:MM[:SS]] | (+|-)HHMM
//	era  = space+ (BC | AD)
//
// Fractions beyond microseconds are rounded as PostgreSQL does (the
// fraction read as a double, times 1e6, rounded half to even). Field ranges
// are checked here; the date's own range is left to the caller.
func parseDateTime(t Type, src []byte) (dateTime, error) {
	var dt dateTime
	s := trimSpace(src)
	if len(s) > maxDateTimeLen {
		return dt, syntaxError(t, "too long")
	}
	switch {
	case equalFold(s, "infinity"):
		dt.special = specialPosInf
		return dt, nil
	case equalFold(s, "-infinity"):
		dt.special = specialNegInf
		return dt, nil
	case equalFold(s, "epoch"):
		dt.special = specialEpoch
		return dt, nil
	}

	year, month, day, i, err := parseDate(t, s)
	if err != nil {
		return dt, err
	}
	i, bc, seenEra := eraAt(s, i)

	// Time.
	timeAt := -1
	if i+1 < len(s) && (s[i] == 'T' || s[i] == 't') && isDigit(s[i+1]) {
		timeAt = i + 1
	} else if j := skipSpace(s, i); j > i && j < len(s) && isDigit(s[j]) {
		timeAt = j
	}
	if timeAt >= 0 {
		i, dt.tod, err = parseTime(t, s, timeAt)
		if err != nil {
			return dt, err
		}
		dt.hasTime = true
	}

	// Zone.
	if i, err = parseZone(t, s, i, &dt, seenEra); err != nil {
		return dt, err
	}
	if !seenEra {
		i, bc, _ = eraAt(s, i)
	}
	if i != len(s) {
		return dt, syntaxError(t, "")
	}

	if year == 0 {
		return dt, rangeError(t, "year zero")
	}
	if bc {
		year = 1 - year
	}
	if month < 1 || month > 12 || day < 1 || day > daysInMonth(year, month) {
		return dt, rangeError(t, "date field out of range")
	}
	dt.year, dt.month, dt.day = year, month, day
	return dt, nil
}

// parseDate parses the date at the start of s: Y{3,7}-M{1,2}-D{1,2} or
// YYYYMMDD, and returns the index after it.
func parseDate(t Type, s []byte) (year int64, month, day, i int, err error) {
	n := digitsRun(s, 0)
	switch {
	case n >= 3 && n <= 7 && n < len(s) && s[n] == '-':
		year = atoi(s[:n])
		i = n + 1
		n = digitsRun(s, i)
		if n < 1 || n > 2 || i+n >= len(s) || s[i+n] != '-' {
			return 0, 0, 0, 0, syntaxError(t, "")
		}
		month = int(atoi(s[i : i+n]))
		i += n + 1
		n = digitsRun(s, i)
		if n < 1 || n > 2 {
			return 0, 0, 0, 0, syntaxError(t, "")
		}
		day = int(atoi(s[i : i+n]))
		i += n
	case n == 8:
		year = atoi(s[0:4])
		month = int(atoi(s[4:6]))
		day = int(atoi(s[6:8]))
		i = 8
	default:
		return 0, 0, 0, 0, syntaxError(t, "")
	}
	return year, month, day, i, nil
}

// parseZone parses an optional time zone after the date or time ending at
// s[i]: a numeric offset, or Z / UTC / GMT / UT (other names are refused).
// A BC/AD marker there is left for the era check. It returns the index
// after what it read.
func parseZone(t Type, s []byte, i int, dt *dateTime, seenEra bool) (int, error) {
	j := skipSpace(s, i)
	if j >= len(s) || !(dt.hasTime || j > i) {
		return i, nil
	}
	switch c := s[j]; {
	case c == '+' || c == '-':
		var err error
		i, dt.zone, err = parseOffset(t, s, j)
		if err != nil {
			return i, err
		}
		dt.hasZone = true
	case isLetter(c):
		k := j
		for k < len(s) && isLetter(s[k]) {
			k++
		}
		w := s[j:k]
		switch {
		case equalFold(w, "z"), equalFold(w, "utc"), equalFold(w, "gmt"), equalFold(w, "ut"):
			dt.hasZone = true
			i = k
		case !seenEra && j > i && (equalFold(w, "bc") || equalFold(w, "ad")):
			// handled by the era check
		default:
			return i, syntaxError(t, "unsupported time zone")
		}
	}
	return i, nil
}

// parseTime parses H{1,2}:M{1,2}[:S{1,2}[.fraction]] at s[i:].
func parseTime(t Type, s []byte, i int) (next int, tod int64, err error) {
	var f [3]int64
	k := 0
	for ; k < 3; k++ {
		n := digitsRun(s, i)
		if n < 1 || n > 2 {
			return 0, 0, syntaxError(t, "")
		}
		f[k] = atoi(s[i : i+n])
		i += n
		if k == 2 || i >= len(s) || s[i] != ':' {
			break
		}
		i++
	}
	if k == 0 {
		return 0, 0, syntaxError(t, "") // an hour alone is not a time
	}
	var usec int64
	if k == 2 && i < len(s) && s[i] == '.' {
		start := i
		i++
		n := digitsRun(s, i)
		if n <= 6 {
			usec = atoi(s[i : i+n])
			for range 6 - n {
				usec *= 10
			}
		} else {
			// PostgreSQL: rint(strtod(".fffffff...") * 1e6).
			frac, perr := strconv.ParseFloat(string(s[start:i+n]), 64)
			if perr != nil {
				return 0, 0, syntaxError(t, "")
			}
			usec = int64(math.RoundToEven(frac * usPerSec))
		}
		i += n
	}
	if f[0] > 24 || f[1] > 59 || f[2] > 60 {
		return 0, 0, rangeError(t, "time field out of range")
	}
	tod = (f[0]*3600+f[1]*60+f[2])*usPerSec + usec
	if tod > usPerDay {
		return 0, 0, rangeError(t, "time field out of range")
	}
	return i, tod, nil
}

// parseOffset parses (+|-)H{1,2}[:MM[:SS]] or (+|-)HHMM at s[i:].
func parseOffset(t Type, s []byte, i int) (next int, zone int64, err error) {
	neg := s[i] == '-'
	i++
	var hh, mm, ss int64
	switch n := digitsRun(s, i); n {
	case 1, 2:
		hh = atoi(s[i : i+n])
		i += n
		if i < len(s) && s[i] == ':' {
			if digitsRun(s, i+1) != 2 {
				return 0, 0, syntaxError(t, "")
			}
			mm = atoi(s[i+1 : i+3])
			i += 3
			if i < len(s) && s[i] == ':' {
				if digitsRun(s, i+1) != 2 {
					return 0, 0, syntaxError(t, "")
				}
				ss = atoi(s[i+1 : i+3])
				i += 3
			}
		}
	case 4:
		hh = atoi(s[i : i+2])
		mm = atoi(s[i+2 : i+4])
		i += 4
	default:
		return 0, 0, syntaxError(t, "")
	}
	if hh > 15 || mm > 59 || ss > 59 {
		return 0, 0, rangeError(t, "time zone displacement out of range")
	}
	zone = hh*3600 + mm*60 + ss
	if neg {
		zone = -zone
	}
	return i, zone, nil
}

func appendCanonicalDate(dst []byte, src []byte) ([]byte, error) {
	const t = TypeDate
	dt, err := parseDateTime(t, src)
	if err != nil {
		return dst, err
	}
	var days int64
	switch dt.special {
	case specialPosInf:
		days = math.MaxInt32
	case specialNegInf:
		days = math.MinInt32
	case specialEpoch:
		days = 0
	default:
		// A time and zone, as in PostgreSQL, are checked and ignored.
		days = daysFromCivil(dt.year, dt.month, dt.day)
		if days < minDateDays || days >= endDateDays {
			return dst, rangeError(t, "")
		}
	}
	return binary.BigEndian.AppendUint32(dst, uint32(int32(days))), nil
}

// localSeconds is the wall time of dt as seconds since 1970-01-01
// 00:00:00 plus a µs fraction. It cannot overflow: years have at most 7
// digits.
func localSeconds(dt dateTime) (sec, frac int64) {
	return daysFromCivil(dt.year, dt.month, dt.day)*86400 + dt.tod/usPerSec, dt.tod % usPerSec
}

// micros joins seconds and a µs fraction in [0, 1e6) into µs, reporting
// false when the result would not be a finite timestamp.
func micros(sec, frac int64) (int64, bool) {
	if sec < minTimestamp/usPerSec || sec > (math.MaxInt64-frac)/usPerSec {
		return 0, false
	}
	us := sec*usPerSec + frac
	return us, finiteTimestamp(us)
}

func timestampSpecial(dt dateTime) (int64, bool) {
	switch dt.special {
	case specialPosInf:
		return math.MaxInt64, true
	case specialNegInf:
		return math.MinInt64, true
	case specialEpoch:
		return 0, true
	}
	return 0, false
}

func finiteTimestamp(us int64) bool { return us >= minTimestamp && us < math.MaxInt64 }

func appendCanonicalTimestamp(dst []byte, src []byte, d dialect) ([]byte, error) {
	const t = TypeTimestamp
	return appendTimestampLiteral(dst, t, src, func(dt dateTime) (int64, error) {
		// PostgreSQL silently ignores a zone in a timestamp literal; MySQL
		// would convert it, so there we refuse rather than guess.
		if dt.hasZone && d == dialectMySQL {
			return 0, syntaxError(t, "time zone not allowed")
		}
		sec, frac := localSeconds(dt)
		return timestampMicros(t, sec, frac)
	})
}

func appendCanonicalTimestamptz(dst []byte, src []byte, loc *time.Location) ([]byte, error) {
	const t = TypeTimestamptz
	return appendTimestampLiteral(dst, t, src, func(dt dateTime) (int64, error) {
		sec, frac := localSeconds(dt)
		switch {
		case dt.hasZone:
			sec -= dt.zone
		case loc != nil && loc != time.UTC:
			sec = wallToUnix(sec, loc)
		}
		return timestampMicros(t, sec, frac)
	})
}

// appendTimestampLiteral appends the canonical bytes of src, a literal of the
// timestamp type t: a special value, or what toMicros makes of the date
// and time.
func appendTimestampLiteral(dst []byte, t Type, src []byte, toMicros func(dateTime) (int64, error)) ([]byte, error) {
	dt, err := parseDateTime(t, src)
	if err != nil {
		return dst, err
	}
	us, ok := timestampSpecial(dt)
	if !ok {
		if us, err = toMicros(dt); err != nil {
			return dst, err
		}
	}
	return binary.BigEndian.AppendUint64(dst, uint64(us)), nil
}

// timestampMicros is sec seconds and frac microseconds as microseconds, or
// a range error of t when that is out of range.
func timestampMicros(t Type, sec, frac int64) (int64, error) {
	us, ok := micros(sec, frac)
	if !ok {
		return 0, rangeError(t, "")
	}
	return us, nil
}

// wallToUnix converts a wall time in loc (seconds since 1970-01-01 00:00:00
// on loc's clock) to Unix seconds the way PostgreSQL's
// DetermineTimeZoneOffset does: take the first zone transition after one
// day before the wall time; a wall time that is valid on only one side of
// it uses that side; one skipped by a spring-forward transition uses the
// offset from before it; one repeated by a fall-back transition uses the
// offset from after it.
func wallToUnix(wall int64, loc *time.Location) int64 {
	prev := time.Unix(wall-86400, 0).In(loc)
	_, beforeOff := prev.Zone()
	_, end := prev.ZoneBounds()
	before := wall - int64(beforeOff)
	if end.IsZero() {
		return before
	}
	boundary := end.Unix()
	_, afterOff := end.In(loc).Zone()
	after := wall - int64(afterOff)
	switch {
	case before < boundary && after < boundary:
		return before
	case before >= boundary && after >= boundary:
		return after
	case before > after: // spring forward: the wall time does not exist
		return before
	}
	return after // fall back: the wall time exists twice
}
