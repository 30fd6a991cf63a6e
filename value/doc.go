// Package value owns the plaintext types of docs/config.md and their one
// canonical binary encoding each, plus the text forms PostgreSQL and MySQL
// exchange for them (and the element syntax of PostgreSQL's text array
// form, PostgresArrayElems, shared by the planner and the wire layer).
//
// # Why a canonical encoding
//
// Deterministic encryption (AES-SIV) must give the same ciphertext for the
// same value whatever form it arrived in: PostgreSQL text '42', a binary
// int8 42, MySQL text 42. So every value is first turned into one canonical
// byte string for its type; that string is the plaintext that gets
// encrypted, and results are rendered back from it. The encodings below are
// part of the on-disk format (docs/ciphertext.md): never change them.
//
// # Encodings
//
//	type         canonical bytes                                    text output (AppendText)
//	----------   -------------------------------------------------- ------------------------------
//	text         UTF-8 as given; no NUL, no invalid UTF-8           as is
//	smallint     2-byte big-endian two's complement                 -32768
//	int          4-byte big-endian two's complement                 2147483647
//	bigint       8-byte big-endian two's complement                 -9223372036854775808
//	real         IEEE-754 binary32 big-endian; -0 -> +0, every      shortest round-trip: 1.5,
//	             NaN -> 7fc00000                                    1e+06, NaN, Infinity, -Infinity
//	double       IEEE-754 binary64 big-endian; -0 -> +0, every      shortest round-trip: 0.1, 1e+15
//	             NaN -> 7ff8000000000000
//	numeric      ASCII decimal -?(0|[1-9]\d*)(\.\d*[1-9])?, no      as is: 42, -0.5, 1500
//	             exponent, no -0; or NaN, Infinity, -Infinity
//	boolean      1 byte: 00 false, 01 true                          t / f   (MySQL: 1 / 0)
//	date         int32 BE days since 1970-01-01, proleptic          2024-01-02, 0044-03-15 BC
//	             Gregorian; infinity MaxInt32, -infinity MinInt32
//	timestamp    int64 BE µs since 1970-01-01 00:00:00 (no zone);   2024-01-02 03:04:05.123456
//	             infinity MaxInt64, -infinity MinInt64
//	timestamptz  int64 BE µs since 1970-01-01 00:00:00 UTC;         2024-01-02 03:04:05.5+00
//	             infinity MaxInt64, -infinity MinInt64
//	uuid         16 raw bytes                                       a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11
//	bytes        raw bytes                                          \x0102ff   (MySQL: raw bytes)
//	json         the document as given, once it parses as JSON      as is
//
// PostgreSQL's binary formats of int2, int4, int8, float4, float8, bool,
// uuid and bytea have exactly these layouts (pass them through
// AppendCanonicalBinary to fold -0, NaNs and boolean bytes other than 0x01).
// Its binary date/timestamp/timestamptz count from 2000-01-01 instead:
// add PostgresEpochDays or PostgresEpochMicros.
//
// # Equality and its caveats
//
// Two literals are equal after encryption exactly when their canonical
// encodings are byte-equal. That matches PostgreSQL's equality for every
// type except these, which callers and the README must state:
//
//   - numeric: 42, 42.0 and +042.00 are equal (as in PostgreSQL), but the
//     display scale is not kept: 42.0 comes back as 42. At most
//     MaxNumericDigits digits.
//   - real/double: -0 comes back as 0 (PostgreSQL would show -0); all NaNs
//     are one value. Hexadecimal input (0x10, which glibc's strtod accepts)
//     is refused. Output is Go's shortest round-trip form; for a rare few
//     values PostgreSQL's Ryu prints a longer equivalent (it shows the
//     double nearest 8e23 as 7.999999999999999e+23, we as 8e+23).
//   - json: like PostgreSQL's json (not jsonb) the text is kept, so
//     {"a":1} and { "a": 1 } are different values.
//   - text: byte equality, so case- and accent-insensitive MySQL collations
//     do not apply.
//   - timestamp/timestamptz: finite values end at 294247-01-10
//     04:00:54.775806 (int64 µs from 1970; MaxInt64 is +infinity), about 29
//     years short of PostgreSQL's 294276 AD.
//
// # Text input
//
// AppendCanonicalText reads what PostgreSQL accepts for the type, within
// the ISO forms a client library sends: surrounding whitespace and a sign
// for numbers; PostgreSQL's boolean spellings (t, true, yes, on, 1 and
// unique prefixes, any case); dates as Y{3,7}-M-D or YYYYMMDD with an
// optional BC/AD, plus infinity, -infinity and epoch; times as H:M[:S[.f]]
// after a space or T, fractions rounded to microseconds as PostgreSQL does;
// zones Z, UTC, GMT, ±HH, ±HHMM, ±HH:MM[:SS]. Named IANA zones, zone
// abbreviations (EST), two-digit years, DateStyle-dependent orders and
// words like today/now are refused rather than guessed. A timestamp literal
// with a zone ignores the zone, as PostgreSQL does; a timestamptz literal
// without one is read in UTC, or in the session zone given to
// AppendCanonicalTextInZone. AppendCanonicalMySQLText takes MySQL's raw
// bytes for bytes and refuses zones in DATETIME literals.
//
// # Errors
//
// Every error is an *Error wrapping ErrSyntax, ErrRange, ErrCorrupt or
// ErrUnsupported. Errors name the type and never contain the value: it may
// be a secret, and error strings reach logs and clients.
//
// # What this package does not do
//
// It is a leaf: standard library only, no I/O, no logging, no global
// mutable state, safe for concurrent use. It knows nothing of ciphertexts,
// keys, configuration or wire protocols (binary wire formats other than
// the 1:1 ones above are the proxies' job), and must not import any other
// dbproxy package.
package value
