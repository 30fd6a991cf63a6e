package value

import "time"

// dialect selects the text conventions of one wire protocol.
type dialect uint8

const (
	dialectPostgres dialect = iota
	dialectMySQL
)

// AppendCanonicalText parses src, a PostgreSQL text literal of type t, and
// appends its canonical encoding to dst. A timestamptz literal without a zone
// is read as UTC (see AppendCanonicalTextInZone).
//
// On error the returned slice has dst's length (bytes past it may have been
// written) and the error, an *Error, never contains src.
func AppendCanonicalText(dst []byte, t Type, src []byte) ([]byte, error) {
	return appendCanonicalText(dst, t, src, nil, dialectPostgres)
}

// AppendCanonicalTextInZone is AppendCanonicalText with the session time
// zone: a timestamptz literal without an explicit zone is local time in loc
// (nil means UTC), as PostgreSQL reads it under SET TimeZone. Wall times that
// fall into a daylight-saving gap or overlap are resolved as time.Date does.
func AppendCanonicalTextInZone(dst []byte, t Type, src []byte, loc *time.Location) ([]byte, error) {
	return appendCanonicalText(dst, t, src, loc, dialectPostgres)
}

// AppendCanonicalMySQLText parses src, the value of a MySQL string or
// number literal, into the canonical encoding of t. It differs from
// AppendCanonicalText in two places: bytes take the literal's raw bytes
// (MySQL has no bytea escaping), and a timestamp (DATETIME) literal with a
// zone offset is refused (MySQL would convert it to the session zone; we
// cannot know that conversion was meant). loc is the session time_zone used
// for timestamptz literals without a zone (nil means UTC).
func AppendCanonicalMySQLText(dst []byte, t Type, src []byte, loc *time.Location) ([]byte, error) {
	return appendCanonicalText(dst, t, src, loc, dialectMySQL)
}

func appendCanonicalText(dst []byte, t Type, src []byte, loc *time.Location, d dialect) ([]byte, error) {
	switch t {
	case TypeText:
		return appendCanonicalString(dst, src)
	case TypeSmallint:
		return appendParsed(dst, t, src, 16, parseInt, appendIntCanon)
	case TypeInt:
		return appendParsed(dst, t, src, 32, parseInt, appendIntCanon)
	case TypeBigint:
		return appendParsed(dst, t, src, 64, parseInt, appendIntCanon)
	case TypeReal:
		return appendParsed(dst, t, src, 32, parseFloat, appendFloatCanon)
	case TypeDouble:
		return appendParsed(dst, t, src, 64, parseFloat, appendFloatCanon)
	case TypeNumeric:
		return appendCanonicalNumeric(dst, src)
	case TypeBoolean:
		return appendCanonicalBool(dst, src)
	case TypeDate:
		return appendCanonicalDate(dst, src)
	case TypeTimestamp:
		return appendCanonicalTimestamp(dst, src, d)
	case TypeTimestamptz:
		return appendCanonicalTimestamptz(dst, src, loc)
	case TypeUUID:
		return appendCanonicalUUID(dst, src)
	case TypeBytes:
		if d == dialectMySQL {
			return append(dst, src...), nil
		}
		return appendCanonicalBytea(dst, src)
	case TypeJSON:
		return appendCanonicalJSON(dst, src)
	}
	return dst, unsupportedError(t, "unknown plaintext type")
}

// AppendText appends the PostgreSQL text output of canon, a canonical
// encoding of type t, to dst: what psql shows with DateStyle ISO and
// TimeZone UTC. timestamptz renders in UTC (see AppendTextInZone).
//
// Fixed-size and numeric encodings are checked while rendering; text, json
// and bytes are copied without re-validation, so call Validate on anything
// that did not come from this package (a decrypted plaintext) first.
func AppendText(dst []byte, t Type, canon []byte) ([]byte, error) {
	return appendText(dst, t, canon, nil, dialectPostgres)
}

// AppendTextInZone is AppendText rendering timestamptz in loc (nil means
// UTC), with PostgreSQL's offset style: +05:30, -08, +00:53:28.
func AppendTextInZone(dst []byte, t Type, canon []byte, loc *time.Location) ([]byte, error) {
	return appendText(dst, t, canon, loc, dialectPostgres)
}

// AppendMySQLText appends the MySQL text-protocol rendering of canon. It
// differs from AppendText where MySQL's own output differs: boolean is 0/1,
// bytes are raw, timestamptz is a wall time in UTC without a zone suffix.
// Values MySQL cannot represent (BC dates, infinity, NaN) are rendered as
// PostgreSQL would, rather than silently altered.
func AppendMySQLText(dst []byte, t Type, canon []byte) ([]byte, error) {
	return appendText(dst, t, canon, nil, dialectMySQL)
}

// AppendMySQLTextInZone is AppendMySQLText rendering timestamptz as a wall
// time in loc (the session time_zone; nil means UTC). As in MySQL itself, a
// wall time in a repeated daylight-saving hour reads back as the later of
// its two instants.
func AppendMySQLTextInZone(dst []byte, t Type, canon []byte, loc *time.Location) ([]byte, error) {
	return appendText(dst, t, canon, loc, dialectMySQL)
}

func appendText(dst []byte, t Type, canon []byte, loc *time.Location, d dialect) ([]byte, error) {
	switch t {
	case TypeText, TypeJSON:
		return append(dst, canon...), nil
	case TypeSmallint, TypeInt, TypeBigint:
		v, err := decodeInt(t, canon)
		if err != nil {
			return dst, err
		}
		return appendInt(dst, v), nil
	case TypeReal, TypeDouble:
		return appendFloatText(dst, t, canon)
	case TypeNumeric:
		if err := validateNumeric(canon); err != nil {
			return dst, err
		}
		return append(dst, canon...), nil
	case TypeBoolean:
		return appendBoolText(dst, canon, d)
	case TypeDate:
		return appendDateText(dst, canon)
	case TypeTimestamp, TypeTimestamptz:
		return appendTimestampText(dst, t, canon, loc, d)
	case TypeUUID:
		return appendUUIDText(dst, canon)
	case TypeBytes:
		if d == dialectMySQL {
			return append(dst, canon...), nil
		}
		return appendByteaText(dst, canon), nil
	}
	return dst, unsupportedError(t, "unknown plaintext type")
}

// Validate checks that canon is a well-formed canonical encoding of type t:
// right length, in range, and in canonical form (no -0, a single NaN, a 0x00
// or 0x01 boolean, a normalised numeric, valid UTF-8 text, valid JSON). Use
// it on every decrypted plaintext before rendering it for a client. The
// error is an *Error of kind ErrCorrupt and never contains canon.
func Validate(t Type, canon []byte) error {
	switch t {
	case TypeText:
		if d := checkString(canon); d != "" {
			return corruptError(t, d)
		}
		return nil
	case TypeJSON:
		if d := checkJSON(canon); d != "" {
			return corruptError(t, d)
		}
		return nil
	case TypeSmallint, TypeInt, TypeBigint:
		_, err := decodeInt(t, canon)
		return err
	case TypeReal, TypeDouble:
		return validateFloat(t, canon)
	case TypeNumeric:
		return validateNumeric(canon)
	case TypeBoolean:
		if len(canon) != 1 || canon[0] > 1 {
			return corruptError(t, "want one byte 0x00 or 0x01")
		}
		return nil
	case TypeDate:
		_, err := decodeDate(canon)
		return err
	case TypeTimestamp, TypeTimestamptz:
		_, err := decodeTimestamp(t, canon)
		return err
	case TypeUUID:
		if len(canon) != 16 {
			return corruptError(t, "want 16 bytes")
		}
		return nil
	case TypeBytes:
		return nil
	}
	return unsupportedError(t, "unknown plaintext type")
}

// AppendCanonicalBinary appends the canonical form of src, which must
// already have the canonical layout of t, folding the few alternative
// spellings that layout admits: -0 and every NaN of real/double, and a
// nonzero boolean byte other than 0x01 (PostgreSQL's boolrecv reads any
// nonzero byte as true). For every other type it validates and copies.
//
// PostgreSQL's binary formats of int2/int4/int8, float4/float8, bool, uuid
// and bytea have exactly the canonical layout, so a proxy can feed them here
// directly; date, timestamp, timestamptz and numeric need converting first
// (PostgresEpochDays, PostgresEpochMicros).
func AppendCanonicalBinary(dst []byte, t Type, src []byte) ([]byte, error) {
	switch t {
	case TypeReal:
		if len(src) != 4 {
			return dst, corruptError(t, "want 4 bytes")
		}
		return appendFloatCanon(dst, float64(float32frombits(src)), 32), nil
	case TypeDouble:
		if len(src) != 8 {
			return dst, corruptError(t, "want 8 bytes")
		}
		return appendFloatCanon(dst, float64frombits(src), 64), nil
	case TypeBoolean:
		if len(src) != 1 {
			return dst, corruptError(t, "want one byte")
		}
		if src[0] != 0 {
			return append(dst, 1), nil
		}
		return append(dst, 0), nil
	}
	if err := Validate(t, src); err != nil {
		return dst, err
	}
	return append(dst, src...), nil
}

// Offsets between the Unix epoch used by the canonical encodings and the
// PostgreSQL epoch (2000-01-01) used by PostgreSQL's binary date, timestamp
// and timestamptz formats: canonical = pgBinary + offset, except for
// PostgreSQL's infinities, which are the same MinInt/MaxInt sentinels and
// map to themselves. The addition must be overflow-checked: PostgreSQL
// timestamps after 294247 AD have no canonical encoding (see doc.go).
const (
	PostgresEpochDays   = 10957
	PostgresEpochMicros = PostgresEpochDays * 86400 * 1_000_000
)
