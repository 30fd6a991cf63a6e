package value_test

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
	"time"
	_ "time/tzdata" // named zones in tests, whatever the machine has installed

	"github.com/dbproxy/dbproxy/value"
)

func canon(t *testing.T, typ value.Type, s string) []byte {
	t.Helper()
	c, err := value.AppendCanonicalText(nil, typ, []byte(s))
	if err != nil {
		t.Fatalf("AppendCanonicalText(%v, %q): %v", typ, s, err)
	}
	return c
}

func text(t *testing.T, typ value.Type, c []byte) string {
	t.Helper()
	out, err := value.AppendText(nil, typ, c)
	if err != nil {
		t.Fatalf("AppendText(%v, %x): %v", typ, c, err)
	}
	return string(out)
}

func unhex(s string) []byte {
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		panic(err)
	}
	return b
}

// TestEquivalenceClasses: every input of a class has the same canonical
// encoding, and renders as PostgreSQL would show the value.
func TestEquivalenceClasses(t *testing.T) {
	tests := []struct {
		name   string
		typ    value.Type
		inputs []string
		want   string
	}{
		{"bigint 42", value.TypeBigint, []string{"42", " 42 ", "+42", "0042", "\t+00042\n"}, "42"},
		{"bigint -7", value.TypeBigint, []string{"-7", " -007"}, "-7"},
		{"int zero", value.TypeInt, []string{"0", "-0", "+0", "000"}, "0"},
		{"smallint", value.TypeSmallint, []string{"-32768", " -32768 "}, "-32768"},
		{"double 42", value.TypeDouble, []string{"42", "42.0", "4.2e1", " +420e-1 ", "42."}, "42"},
		{"double zero", value.TypeDouble, []string{"0", "-0", "-0.0", "+0e10", "0.000"}, "0"},
		{"double nan", value.TypeDouble, []string{"NaN", "nan", " NAN ", "+nan", "-NaN"}, "NaN"},
		{"double inf", value.TypeDouble, []string{"Infinity", "inf", "+INF", "infinity", " +Infinity"}, "Infinity"},
		{"double -inf", value.TypeDouble, []string{"-Infinity", "-inf", "-INFINITY"}, "-Infinity"},
		{"double tenth", value.TypeDouble, []string{"0.1", ".1", "1e-1", "0.10000000000000000555"}, "0.1"},
		{"double exp", value.TypeDouble, []string{"1e15", "1000000000000000"}, "1e+15"},
		{"double fixed", value.TypeDouble, []string{"1e14"}, "100000000000000"},
		{"double small", value.TypeDouble, []string{"0.00001", "1e-5"}, "1e-05"},
		{"double 1e-4", value.TypeDouble, []string{"0.0001"}, "0.0001"},
		{"double max", value.TypeDouble, []string{"1.7976931348623157e308"}, "1.7976931348623157e+308"},
		{"double denormal", value.TypeDouble, []string{"4e-324", "5e-324"}, "5e-324"},
		{"real zero", value.TypeReal, []string{"0", "-0", "-0.0"}, "0"},
		{"real nan", value.TypeReal, []string{"NaN", "-nan"}, "NaN"},
		{"real 1234567", value.TypeReal, []string{"1234567"}, "1.234567e+06"},
		{"real 123456.7", value.TypeReal, []string{"123456.7"}, "123456.7"},
		{"real third", value.TypeReal, []string{"0.33333334", "0.333333343267"}, "0.33333334"},
		{"real denormal", value.TypeReal, []string{"1e-45", "1.4e-45"}, "1e-45"},
		{"numeric 42", value.TypeNumeric, []string{"42", "42.0", "+042.00", " 42 ", "4.2e1", "4200e-2", "0.42E+2"}, "42"},
		{"numeric zero", value.TypeNumeric, []string{"0", "-0", "-0.0", "0e5", "+.0", "0."}, "0"},
		{"numeric frac", value.TypeNumeric, []string{"-0.5", "-.5", "-5e-1", "-00.50"}, "-0.5"},
		{"numeric exp", value.TypeNumeric, []string{"1.5e3", "1500", "1500.000", "15E2"}, "1500"},
		{"numeric tiny", value.TypeNumeric, []string{"1e-3", "0.001", ".0010"}, "0.001"},
		{"numeric nan", value.TypeNumeric, []string{"NaN", "nan", " NaN "}, "NaN"},
		{"numeric inf", value.TypeNumeric, []string{"Infinity", "inf", "+Infinity", " +inf "}, "Infinity"},
		{"numeric -inf", value.TypeNumeric, []string{"-Infinity", "-inf"}, "-Infinity"},
		{"bool true", value.TypeBoolean, []string{"t", "true", "TRUE", "tr", "yes", "y", "YE", "on", "ON", "1", " t "}, "t"},
		{"bool false", value.TypeBoolean, []string{"f", "false", "FALSE", "fa", "no", "n", "of", "off", "OFF", "0", "\tfalse\n"}, "f"},
		{"date", value.TypeDate, []string{"2024-01-02", " 2024-1-2 ", "20240102", "02024-01-02", "2024-01-02 AD", "2024-01-02 10:00:00", "2024-01-02 23:59:59+05"}, "2024-01-02"},
		{"date epoch", value.TypeDate, []string{"epoch", "1970-01-01", "EPOCH"}, "1970-01-01"},
		{"date bc", value.TypeDate, []string{"0044-03-15 BC", "044-03-15 bc", "00044-03-15 BC", "0044-03-15 10:00 BC"}, "0044-03-15 BC"},
		{"date inf", value.TypeDate, []string{"infinity", "Infinity", " INFINITY "}, "infinity"},
		{"date -inf", value.TypeDate, []string{"-infinity"}, "-infinity"},
		{"timestamp", value.TypeTimestamp, []string{"2024-01-02 03:04:05.123456", "2024-01-02T03:04:05.1234560", "2024-01-02 3:4:5.123456", "2024-01-02t03:04:05.123456"}, "2024-01-02 03:04:05.123456"},
		{"timestamp zone ignored", value.TypeTimestamp, []string{"2024-01-02 03:04:05+02", "2024-01-02 03:04:05 UTC", "2024-01-02 03:04:05"}, "2024-01-02 03:04:05"},
		{"timestamp midnight", value.TypeTimestamp, []string{"2024-01-02", "2024-01-02 00:00", "2024-01-01 24:00:00", "2024-01-01 23:59:60", "2024-01-01 23:59:59.9999999"}, "2024-01-02 00:00:00"},
		{"timestamp rounding", value.TypeTimestamp, []string{"2024-01-01 10:00:00.0000015", "2024-01-01 10:00:00.0000025", "2024-01-01 10:00:00.000002"}, "2024-01-01 10:00:00.000002"},
		{"timestamp round down", value.TypeTimestamp, []string{"2024-01-01 10:00:00.0000005", "2024-01-01 10:00:00.", "2024-01-01 10:00"}, "2024-01-01 10:00:00"},
		{"timestamp trailing zeros", value.TypeTimestamp, []string{"2024-01-01 10:00:00.5", "2024-01-01 10:00:00.500000"}, "2024-01-01 10:00:00.5"},
		{"timestamp bc", value.TypeTimestamp, []string{"0044-03-15 10:00:00 BC", "0044-03-15 BC 10:00:00"}, "0044-03-15 10:00:00 BC"},
		{"timestamp epoch", value.TypeTimestamp, []string{"epoch", "1970-01-01 00:00:00"}, "1970-01-01 00:00:00"},
		{"timestamp inf", value.TypeTimestamp, []string{"infinity", "INFINITY"}, "infinity"},
		{"timestamptz offsets", value.TypeTimestamptz, []string{"2024-01-01 02:00:00+02", "2024-01-01 00:00:00Z", "2024-01-01 00:00:00", "2023-12-31 22:00:00-02:00", "2024-01-01 05:30:00+0530", "2024-01-01 05:30:00 +05:30", "2024-01-01 00:00:00 UTC", "2024-01-01 00:00:00 gmt", "2024-01-01 00:00:00z", "2024-01-01T02:00:00+2", "2023-12-31 15:59:59-08:00:01"}, "2024-01-01 00:00:00+00"},
		{"timestamptz fraction", value.TypeTimestamptz, []string{"2024-01-02 03:04:05.123456+00", "2024-01-02 05:04:05.123456+02:00"}, "2024-01-02 03:04:05.123456+00"},
		{"timestamptz bc", value.TypeTimestamptz, []string{"0044-03-15 10:00:00+00 BC", "0044-03-15 12:00:00+02 BC", "0044-03-15 BC 10:00:00Z"}, "0044-03-15 10:00:00+00 BC"},
		{"timestamptz epoch", value.TypeTimestamptz, []string{"epoch", "1970-01-01 01:00:00+01"}, "1970-01-01 00:00:00+00"},
		{"uuid", value.TypeUUID, []string{"a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", "A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11", "{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11}", "a0eebc999c0b4ef8bb6d6bb9bd380a11", "a0ee-bc99-9c0b-4ef8-bb6d-6bb9-bd38-0a11", "{A0EEBC999C0B4EF8BB6D6BB9BD380A11}"}, "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"},
		{"bytes", value.TypeBytes, []string{`\x01025c`, `\x 01 02 5C `, "\\x01\t02\n5c", `\001\002\\`}, `\x01025c`},
		{"bytes empty", value.TypeBytes, []string{``, `\x`}, `\x`},
		{"bytes escape", value.TypeBytes, []string{`abc`, `\x616263`, `\141bc`}, `\x616263`},
		{"text", value.TypeText, []string{"héllo wörld ✓"}, "héllo wörld ✓"},
		{"json", value.TypeJSON, []string{`{"a": [1, 2.5, "x"], "b": null}`}, `{"a": [1, 2.5, "x"], "b": null}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			first := canon(t, tt.typ, tt.inputs[0])
			for _, in := range tt.inputs[1:] {
				if got := canon(t, tt.typ, in); !bytes.Equal(got, first) {
					t.Errorf("%q -> %x, want %x (as %q)", in, got, first, tt.inputs[0])
				}
			}
			if got := text(t, tt.typ, first); got != tt.want {
				t.Errorf("AppendText = %q, want %q", got, tt.want)
			}
			if err := value.Validate(tt.typ, first); err != nil {
				t.Errorf("Validate: %v", err)
			}
		})
	}
}

// TestEncodings pins the exact canonical bytes: they are the on-disk format.
func TestEncodings(t *testing.T) {
	tests := []struct {
		typ  value.Type
		in   string
		want string // hex
	}{
		{value.TypeSmallint, "-1", "ffff"},
		{value.TypeSmallint, "258", "0102"},
		{value.TypeInt, "-2147483648", "80000000"},
		{value.TypeBigint, "42", "000000000000002a"},
		{value.TypeBigint, "-9223372036854775808", "8000000000000000"},
		{value.TypeBigint, "9223372036854775807", "7fffffffffffffff"},
		{value.TypeReal, "1.5", "3fc00000"},
		{value.TypeReal, "-0", "00000000"},
		{value.TypeReal, "NaN", "7fc00000"},
		{value.TypeReal, "-Infinity", "ff800000"},
		{value.TypeDouble, "1.5", "3ff8000000000000"},
		{value.TypeDouble, "-0", "0000000000000000"},
		{value.TypeDouble, "-nan", "7ff8000000000000"},
		{value.TypeDouble, "inf", "7ff0000000000000"},
		{value.TypeNumeric, "+042.00", hex.EncodeToString([]byte("42"))},
		{value.TypeNumeric, "-1.50e-3", hex.EncodeToString([]byte("-0.0015"))},
		{value.TypeNumeric, "nan", hex.EncodeToString([]byte("NaN"))},
		{value.TypeBoolean, "yes", "01"},
		{value.TypeBoolean, "off", "00"},
		{value.TypeDate, "1970-01-02", "00000001"},
		{value.TypeDate, "1969-12-31", "ffffffff"},
		{value.TypeDate, "2024-01-02", "00004d0c"}, // 19724 days
		{value.TypeDate, "infinity", "7fffffff"},
		{value.TypeDate, "-infinity", "80000000"},
		{value.TypeDate, "4714-11-24 BC", "ffdac274"}, // -2440588, Julian day 0
		{value.TypeTimestamp, "1970-01-01 00:00:01.000002", "00000000000f4242"},
		{value.TypeTimestamp, "1969-12-31 23:59:59.999999", "ffffffffffffffff"},
		{value.TypeTimestamp, "infinity", "7fffffffffffffff"},
		{value.TypeTimestamp, "-infinity", "8000000000000000"},
		{value.TypeTimestamptz, "1970-01-01 01:00:00+01", "0000000000000000"},
		{value.TypeTimestamptz, "2000-01-01 00:00:00Z", "00035d013b37e000"}, // PostgresEpochMicros
		{value.TypeUUID, "{A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11}", "a0eebc999c0b4ef8bb6d6bb9bd380a11"},
		{value.TypeBytes, `\x00ff`, "00ff"},
		{value.TypeText, "ab", "6162"},
		{value.TypeJSON, ` [1] `, "205b315d20"},
	}
	for _, tt := range tests {
		t.Run(tt.typ.String()+"/"+tt.in, func(t *testing.T) {
			if got := canon(t, tt.typ, tt.in); !bytes.Equal(got, unhex(tt.want)) {
				t.Errorf("got %x, want %s", got, tt.want)
			}
		})
	}
	if value.PostgresEpochMicros != 0x00035d013b37e000 || value.PostgresEpochDays*86400*1_000_000 != value.PostgresEpochMicros {
		t.Errorf("PostgresEpochMicros = %d", value.PostgresEpochMicros)
	}
}

// TestExtremes covers range limits of every fixed-size type.
func TestExtremes(t *testing.T) {
	ok := []struct {
		typ      value.Type
		in, want string
	}{
		{value.TypeSmallint, "32767", "32767"},
		{value.TypeSmallint, "-32768", "-32768"},
		{value.TypeInt, "2147483647", "2147483647"},
		{value.TypeBigint, "-9223372036854775808", "-9223372036854775808"},
		{value.TypeBigint, "9223372036854775807", "9223372036854775807"},
		{value.TypeBigint, "000000000000000000000000000000000000000042", "42"},
		{value.TypeReal, "3.4028235e38", "3.4028235e+38"},
		{value.TypeDouble, "2.2250738585072014e-308", "2.2250738585072014e-308"},
		{value.TypeDate, "1900-02-28", "1900-02-28"},
		{value.TypeDate, "2000-02-29", "2000-02-29"},
		{value.TypeDate, "1582-10-10", "1582-10-10"}, // proleptic Gregorian: no Julian gap
		{value.TypeDate, "0001-01-01", "0001-01-01"},
		{value.TypeDate, "0001-12-31 BC", "0001-12-31 BC"},
		{value.TypeDate, "0005-02-29 BC", "0005-02-29 BC"}, // 5 BC is astronomical -4, a leap year
		{value.TypeDate, "4714-11-24 BC", "4714-11-24 BC"},
		{value.TypeDate, "2038-01-20", "2038-01-20"},
		{value.TypeDate, "9999-12-31", "9999-12-31"},
		{value.TypeDate, "10000-01-01", "10000-01-01"},
		{value.TypeDate, "5874897-12-31", "5874897-12-31"},
		{value.TypeTimestamp, "1901-12-13 20:45:51.999999", "1901-12-13 20:45:51.999999"},
		{value.TypeTimestamp, "2038-01-19 03:14:08", "2038-01-19 03:14:08"},
		{value.TypeTimestamp, "4714-11-24 00:00:00 BC", "4714-11-24 00:00:00 BC"},
		{value.TypeTimestamp, "294247-01-10 04:00:54.775806", "294247-01-10 04:00:54.775806"},
		{value.TypeTimestamptz, "4714-11-23 23:00:00-01 BC", "4714-11-24 00:00:00+00 BC"},
		{value.TypeTimestamptz, "294247-01-10 06:00:54.775806+02", "294247-01-10 04:00:54.775806+00"},
	}
	for _, tt := range ok {
		t.Run("ok/"+tt.typ.String()+"/"+tt.in, func(t *testing.T) {
			c := canon(t, tt.typ, tt.in)
			if got := text(t, tt.typ, c); got != tt.want {
				t.Errorf("AppendText = %q, want %q", got, tt.want)
			}
		})
	}
	outOfRange := []struct {
		typ value.Type
		in  string
	}{
		{value.TypeSmallint, "32768"},
		{value.TypeSmallint, "-32769"},
		{value.TypeInt, "2147483648"},
		{value.TypeBigint, "9223372036854775808"},
		{value.TypeBigint, "-9223372036854775809"},
		{value.TypeBigint, "99999999999999999999999999999"},
		{value.TypeReal, "1e39"},
		{value.TypeReal, "1e-46"},
		{value.TypeDouble, "1e309"},
		{value.TypeDouble, "-1e309"},
		{value.TypeDouble, "1e-400"},
		{value.TypeNumeric, "1e1000"},
		{value.TypeNumeric, "1e-1000"},
		{value.TypeNumeric, "1e999999999999999999999"},
		{value.TypeNumeric, strings.Repeat("9", 1001)},
		{value.TypeDate, "0000-01-01"},
		{value.TypeDate, "2023-02-29"},
		{value.TypeDate, "1900-02-29"},
		{value.TypeDate, "2024-13-01"},
		{value.TypeDate, "2024-00-10"},
		{value.TypeDate, "2024-04-31"},
		{value.TypeDate, "4714-11-23 BC"},
		{value.TypeDate, "5874898-01-01"},
		{value.TypeDate, "2024-01-01 25:00"},
		{value.TypeTimestamp, "4714-11-23 23:59:59 BC"},
		{value.TypeTimestamp, "294247-01-10 04:00:54.775807"},
		{value.TypeTimestamp, "294276-12-31 23:59:59"},
		{value.TypeTimestamp, "2024-01-01 24:00:00.1"},
		{value.TypeTimestamp, "2024-01-01 23:59:60.5"},
		{value.TypeTimestamp, "2024-01-01 10:60:00"},
		{value.TypeTimestamp, "2024-01-01 10:00:61"},
		{value.TypeTimestamptz, "4714-11-24 00:00:00+01 BC"},
		{value.TypeTimestamptz, "2024-01-01 00:00:00+16"},
		{value.TypeTimestamptz, "2024-01-01 00:00:00+02:60"},
		{value.TypeTimestamptz, "294247-01-10 04:00:54.775806-01"},
	}
	for _, tt := range outOfRange {
		t.Run("range/"+tt.typ.String()+"/"+tt.in, func(t *testing.T) {
			_, err := value.AppendCanonicalText(nil, tt.typ, []byte(tt.in))
			if !errors.Is(err, value.ErrRange) {
				t.Fatalf("err = %v, want ErrRange", err)
			}
			if strings.Contains(err.Error(), strings.TrimSpace(tt.in)) {
				t.Errorf("error %q leaks the input", err)
			}
		})
	}
}

// TestInvalidInput: malformed literals fail with ErrSyntax, and the error
// text never contains the input.
func TestInvalidInput(t *testing.T) {
	tests := []struct {
		typ value.Type
		in  []string
	}{
		{value.TypeText, []string{"secret\x00value", "secret\xffvalue", "\xc3\x28secret"}},
		{value.TypeSmallint, []string{"", " ", "+", "-", "4.2", "1e5", "0x10", "1_000", "- 1", "12abc", "++1", "secret"}},
		{value.TypeInt, []string{"42.0", "forty-two", "4 2"}},
		{value.TypeBigint, []string{"", "9223372036854775807x", "1,000", "１２"}},
		{value.TypeReal, []string{"", ".", "e5", "1e", "1e+", "0x10", "1_0", "infinit", "nan(1)", "1.2.3", "--1", "1 2"}},
		{value.TypeDouble, []string{"secret", "Inf inity", "+-1", "0x1p3"}},
		{value.TypeNumeric, []string{"", ".", "e5", "1e", "+NaN", "-NaN", "1_000", "1.2.3", "0x10", "1 2", "secretvalue", "Infinityy"}},
		{value.TypeBoolean, []string{"", "o", "tru e", "truex", "onn", "offf", "2", "10", "yess", "secret"}},
		{value.TypeDate, []string{"", "2024", "2024-01", "2024/01/02", "24-01-02", "2024-01-02 BCE", "2024-01-02x", "today", "now", "+infinity", "2024-001-02", "Jan 2 2024", "2024-01-02 10", "2024-01-02 BC BC"}},
		{value.TypeTimestamp, []string{"2024-01-02 10", "2024-01-02 10:00.5", "2024-01-02 10:00:", "2024-01-02T", "2024-01-02 10:00:00 America/New_York", "2024-01-02 10:00:00 EST", "2024-01-02 10:00:00+123", "2024-01-02 10:00:00+053000", "2024-01-02 10:00:00BC", "2024-01-02  10:00:00 junk", strings.Repeat("1", 200)}},
		{value.TypeTimestamptz, []string{"2024-01-02 10:00:00+", "2024-01-02 10:00:00+05:3", "2024-01-02 10:00:00 +05 :30", "2024-01-02 10:00:00 PST", "secret-01-01"}},
		{value.TypeUUID, []string{"", "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a1", "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a111", " a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11 ", "{a0eebc999c0b4ef8bb6d6bb9bd380a11", "a0eebc9-99c0b-4ef8-bb6d-6bb9bd380a11", "a0eebc99--9c0b4ef8bb6d6bb9bd380a11", "g0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a1-"}},
		{value.TypeBytes, []string{`\x0`, `\x012`, `\xzz`, `\x0 1`, `\X01`, `a\`, `\01`, `\400`, `\x01\x02`, `secret\q`}},
		{value.TypeJSON, []string{"", "{", `{"a":1`, "{a:1}", "[1,]", "secret", "{\"a\":\"\xff\"}"}},
	}
	for _, tt := range tests {
		for _, in := range tt.in {
			t.Run(tt.typ.String()+"/"+in, func(t *testing.T) {
				dst := []byte("prefix")
				got, err := value.AppendCanonicalText(dst, tt.typ, []byte(in))
				if !errors.Is(err, value.ErrSyntax) && !errors.Is(err, value.ErrRange) {
					t.Fatalf("err = %v, want ErrSyntax or ErrRange", err)
				}
				if string(got) != "prefix" {
					t.Errorf("dst on error = %q, want %q", got, "prefix")
				}
				var ve *value.Error
				if !errors.As(err, &ve) || ve.Type != tt.typ {
					t.Errorf("err = %#v, want *value.Error for %v", err, tt.typ)
				}
				msg := err.Error()
				if !strings.Contains(msg, tt.typ.String()) {
					t.Errorf("error %q does not name the type", msg)
				}
				if s := strings.TrimSpace(in); len(s) >= 4 && strings.Contains(msg, s) {
					t.Errorf("error %q leaks the input", msg)
				}
				if strings.Contains(msg, "secret") {
					t.Errorf("error %q leaks the input", msg)
				}
			})
		}
	}
}

func TestErrorMessages(t *testing.T) {
	_, err := value.AppendCanonicalText(nil, value.TypeBigint, []byte("abc"))
	if got, want := err.Error(), "invalid input for type bigint"; got != want {
		t.Errorf("syntax: %q, want %q", got, want)
	}
	_, err = value.AppendCanonicalText(nil, value.TypeSmallint, []byte("40000"))
	if got, want := err.Error(), "value out of range for type smallint"; got != want {
		t.Errorf("range: %q, want %q", got, want)
	}
	err = value.Validate(value.TypeUUID, []byte{1})
	if !errors.Is(err, value.ErrCorrupt) || !strings.HasPrefix(err.Error(), "invalid canonical encoding for type uuid") {
		t.Errorf("corrupt: %v", err)
	}
	_, err = value.AppendCanonicalText(nil, value.TypeUnknown, []byte("1"))
	if !errors.Is(err, value.ErrUnsupported) {
		t.Errorf("unknown type: %v", err)
	}
	_, err = value.AppendText(nil, value.Type(200), []byte("1"))
	if !errors.Is(err, value.ErrUnsupported) {
		t.Errorf("unknown type: %v", err)
	}
}

func TestDialectsAndZones(t *testing.T) {
	kolkata := time.FixedZone("IST", 5*3600+1800)
	stJohns := time.FixedZone("NST", -(3*3600 + 1800))
	lmt := time.FixedZone("LMT", 5*3600+53*60+28)
	ts := func(s string) []byte { return canon(t, value.TypeTimestamptz, s) }
	// mysqlText is AppendMySQLText in the shape of the ...InZone functions.
	mysqlText := func(dst []byte, t value.Type, c []byte, _ *time.Location) ([]byte, error) {
		return value.AppendMySQLText(dst, t, c)
	}
	tests := []struct {
		name   string
		render func(dst []byte, t value.Type, canon []byte, loc *time.Location) ([]byte, error)
		typ    value.Type
		canon  []byte
		loc    *time.Location
		want   string
	}{
		{"mysql bool true", mysqlText, value.TypeBoolean, []byte{1}, nil, "1"},
		{"mysql bool false", mysqlText, value.TypeBoolean, []byte{0}, nil, "0"},
		{"mysql bytes raw", mysqlText, value.TypeBytes, []byte{0, 'a', 0xff}, nil, "\x00a\xff"},
		{"mysql datetime", mysqlText, value.TypeTimestamp, canon(t, value.TypeTimestamp, "2024-01-02 03:04:05.120"), nil, "2024-01-02 03:04:05.12"},
		{"mysql timestamptz utc", mysqlText, value.TypeTimestamptz, ts("2024-01-02 03:04:05+01"), nil, "2024-01-02 02:04:05"},
		{"mysql timestamptz zone", value.AppendMySQLTextInZone, value.TypeTimestamptz, ts("2024-01-02 03:04:05Z"), kolkata, "2024-01-02 08:34:05"},
		{"mysql date", mysqlText, value.TypeDate, canon(t, value.TypeDate, "2024-1-2"), nil, "2024-01-02"},
		{"mysql uuid", mysqlText, value.TypeUUID, canon(t, value.TypeUUID, "A0EEBC999C0B4EF8BB6D6BB9BD380A11"), nil, "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"},
		{"pg zone +05:30", value.AppendTextInZone, value.TypeTimestamptz, ts("2024-01-01 00:00:00Z"), kolkata, "2024-01-01 05:30:00+05:30"},
		{"pg zone -03:30", value.AppendTextInZone, value.TypeTimestamptz, ts("2024-01-01 00:00:00.25Z"), stJohns, "2023-12-31 20:30:00.25-03:30"},
		{"pg zone seconds", value.AppendTextInZone, value.TypeTimestamptz, ts("1800-01-01 00:00:00Z"), lmt, "1800-01-01 05:53:28+05:53:28"},
		{"pg zone bc", value.AppendTextInZone, value.TypeTimestamptz, ts("0044-03-15 10:00:00+00 BC"), lmt, "0044-03-15 15:53:28+05:53:28 BC"},
		{"pg zone nil is utc", value.AppendTextInZone, value.TypeTimestamptz, ts("2024-01-01 02:00:00+02"), nil, "2024-01-01 00:00:00+00"},
		{"pg zone whole hours", value.AppendTextInZone, value.TypeTimestamptz, ts("2024-01-01 00:00:00Z"), time.FixedZone("", -8*3600), "2023-12-31 16:00:00-08"},
		{"pg zone infinity", value.AppendTextInZone, value.TypeTimestamptz, ts("infinity"), kolkata, "infinity"},
		{"zone ignored for other types", value.AppendTextInZone, value.TypeTimestamp, canon(t, value.TypeTimestamp, "2024-01-01 00:00"), kolkata, "2024-01-01 00:00:00"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.render(nil, tt.typ, tt.canon, tt.loc)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}

	parse := []struct {
		name  string
		mysql bool // AppendCanonicalMySQLText, else AppendCanonicalTextInZone
		typ   value.Type
		in    string
		loc   *time.Location
		want  string // canonical timestamptz as UTC text, or "error"
	}{
		{"session zone applies without offset", false, value.TypeTimestamptz, "2024-01-01 05:30:00", kolkata, "2024-01-01 00:00:00+00"},
		{"explicit offset wins over session zone", false, value.TypeTimestamptz, "2024-01-01 05:30:00Z", kolkata, "2024-01-01 05:30:00+00"},
		{"epoch ignores session zone", false, value.TypeTimestamptz, "epoch", kolkata, "1970-01-01 00:00:00+00"},
		{"fraction kept in session zone", false, value.TypeTimestamptz, "1969-12-31 20:29:59.999999", stJohns, "1969-12-31 23:59:59.999999+00"},
		{"mysql session zone", true, value.TypeTimestamptz, "2024-01-01 05:30:00", kolkata, "2024-01-01 00:00:00+00"},
		{"mysql datetime with offset refused", true, value.TypeTimestamp, "2024-01-01 05:30:00+05:30", nil, "error"},
	}
	for _, tt := range parse {
		t.Run(tt.name, func(t *testing.T) {
			appendCanonical := value.AppendCanonicalTextInZone
			if tt.mysql {
				appendCanonical = value.AppendCanonicalMySQLText
			}
			c, err := appendCanonical(nil, tt.typ, []byte(tt.in), tt.loc)
			if tt.want == "error" {
				if !errors.Is(err, value.ErrSyntax) {
					t.Fatalf("err = %v, want ErrSyntax", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := text(t, value.TypeTimestamptz, c); got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}

	t.Run("mysql bytes raw input", func(t *testing.T) {
		in := []byte(`\x01` + "\x00\xff")
		c, err := value.AppendCanonicalMySQLText(nil, value.TypeBytes, in, nil)
		if err != nil || !bytes.Equal(c, in) {
			t.Errorf("got %x, %v; want %x", c, err, in)
		}
	})
	t.Run("mysql other types as postgres", func(t *testing.T) {
		c, err := value.AppendCanonicalMySQLText(nil, value.TypeBigint, []byte(" 42"), nil)
		if err != nil || !bytes.Equal(c, canon(t, value.TypeBigint, "42")) {
			t.Errorf("got %x, %v", c, err)
		}
	})
}

// TestNamedZone checks zone transitions against what PostgreSQL 15 answers
// with SET TimeZone = 'America/New_York'.
func TestNamedZone(t *testing.T) {
	ny, err := time.LoadLocation("America/New_York")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct{ in, wantUTC, wantLocal string }{
		{"2024-03-10 02:30:00", "2024-03-10 07:30:00+00", "2024-03-10 03:30:00-04"}, // skipped: offset from before
		{"2024-11-03 01:30:00", "2024-11-03 06:30:00+00", "2024-11-03 01:30:00-05"}, // repeated: offset from after
		{"2024-03-10 01:59:59", "2024-03-10 06:59:59+00", "2024-03-10 01:59:59-05"},
		{"2024-03-10 03:00:00", "2024-03-10 07:00:00+00", "2024-03-10 03:00:00-04"},
		{"2024-11-03 00:59:59", "2024-11-03 04:59:59+00", "2024-11-03 00:59:59-04"},
		{"2024-11-03 02:00:00", "2024-11-03 07:00:00+00", "2024-11-03 02:00:00-05"},
		{"2024-07-01 12:00:00", "2024-07-01 16:00:00+00", "2024-07-01 12:00:00-04"},
		{"2024-01-01 12:00:00", "2024-01-01 17:00:00+00", "2024-01-01 12:00:00-05"},
		{"1883-11-18 12:00:00", "1883-11-18 17:00:00+00", "1883-11-18 12:00:00-05"},
		{"1800-01-01 00:00:00", "1800-01-01 04:56:02+00", "1800-01-01 00:00:00-04:56:02"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			c, err := value.AppendCanonicalTextInZone(nil, value.TypeTimestamptz, []byte(tt.in), ny)
			if err != nil {
				t.Fatal(err)
			}
			if got := text(t, value.TypeTimestamptz, c); got != tt.wantUTC {
				t.Errorf("UTC %q, want %q", got, tt.wantUTC)
			}
			local, err := value.AppendTextInZone(nil, value.TypeTimestamptz, c, ny)
			if err != nil || string(local) != tt.wantLocal {
				t.Errorf("local %q (%v), want %q", local, err, tt.wantLocal)
			}
		})
	}
}

func TestValidate(t *testing.T) {
	bad := []struct {
		name string
		typ  value.Type
		c    []byte
	}{
		{"text nul", value.TypeText, []byte("a\x00b")},
		{"text utf8", value.TypeText, []byte{0xc3}},
		{"smallint len", value.TypeSmallint, []byte{1}},
		{"int len", value.TypeInt, []byte{1, 2, 3, 4, 5}},
		{"bigint len", value.TypeBigint, nil},
		{"real -0", value.TypeReal, unhex("80000000")},
		{"real nan payload", value.TypeReal, unhex("7fc00001")},
		{"real negative nan", value.TypeReal, unhex("ffc00000")},
		{"double -0", value.TypeDouble, unhex("8000000000000000")},
		{"double nan payload", value.TypeDouble, unhex("7ff0000000000001")},
		{"double len", value.TypeDouble, unhex("00")},
		{"numeric empty", value.TypeNumeric, nil},
		{"numeric leading zero", value.TypeNumeric, []byte("042")},
		{"numeric trailing zero", value.TypeNumeric, []byte("4.20")},
		{"numeric trailing point", value.TypeNumeric, []byte("4.")},
		{"numeric no int part", value.TypeNumeric, []byte(".5")},
		{"numeric plus", value.TypeNumeric, []byte("+4")},
		{"numeric -0", value.TypeNumeric, []byte("-0")},
		{"numeric exponent", value.TypeNumeric, []byte("1e5")},
		{"numeric nan case", value.TypeNumeric, []byte("nan")},
		{"numeric too long", value.TypeNumeric, []byte(strings.Repeat("9", 1001))},
		{"bool 2", value.TypeBoolean, []byte{2}},
		{"bool len", value.TypeBoolean, []byte{0, 0}},
		{"date len", value.TypeDate, []byte{0}},
		{"date before julian 0", value.TypeDate, binary.BigEndian.AppendUint32(nil, uint32(0xffdac273))},
		{"date after max", value.TypeDate, binary.BigEndian.AppendUint32(nil, 2145042906)},
		{"timestamp before min", value.TypeTimestamp, unhex("8000000000000001")},
		{"timestamptz len", value.TypeTimestamptz, []byte{0, 0, 0, 0}},
		{"uuid len", value.TypeUUID, make([]byte, 15)},
		{"json", value.TypeJSON, []byte("{")},
		{"json utf8", value.TypeJSON, []byte("\"\xff\"")},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			err := value.Validate(tt.typ, tt.c)
			if !errors.Is(err, value.ErrCorrupt) {
				t.Fatalf("Validate = %v, want ErrCorrupt", err)
			}
			if tt.typ != value.TypeText && tt.typ != value.TypeJSON && tt.typ != value.TypeNumeric {
				// Renderers of fixed-size types check too, so garbage never renders.
				if _, err := value.AppendText(nil, tt.typ, tt.c); !errors.Is(err, value.ErrCorrupt) {
					t.Errorf("AppendText = %v, want ErrCorrupt", err)
				}
			}
		})
	}
	good := []struct {
		typ value.Type
		c   []byte
	}{
		{value.TypeBytes, nil},
		{value.TypeText, nil},
		{value.TypeNumeric, []byte("0")},
		{value.TypeNumeric, []byte("-0.5")},
		{value.TypeNumeric, []byte("10")},
		{value.TypeNumeric, []byte("-Infinity")},
		{value.TypeDate, unhex("80000000")},
		{value.TypeTimestamp, unhex("8000000000000000")},
		{value.TypeTimestamptz, unhex("7fffffffffffffff")},
		{value.TypeReal, unhex("7fc00000")},
	}
	for _, tt := range good {
		t.Run("good/"+tt.typ.String()+"/"+hex.EncodeToString(tt.c), func(t *testing.T) {
			if err := value.Validate(tt.typ, tt.c); err != nil {
				t.Errorf("Validate: %v", err)
			}
		})
	}
	if err := value.Validate(value.TypeUnknown, nil); !errors.Is(err, value.ErrUnsupported) {
		t.Errorf("Validate(unknown) = %v", err)
	}
}

func TestAppendCanonicalBinary(t *testing.T) {
	tests := []struct {
		name string
		typ  value.Type
		in   string // hex
		want string // hex, or "" for an error
	}{
		{"double -0", value.TypeDouble, "8000000000000000", "0000000000000000"},
		{"double nan payload", value.TypeDouble, "fff8000000000123", "7ff8000000000000"},
		{"double value", value.TypeDouble, "3ff8000000000000", "3ff8000000000000"},
		{"real -0", value.TypeReal, "80000000", "00000000"},
		{"real nan", value.TypeReal, "ff800001", "7fc00000"},
		{"bool nonzero", value.TypeBoolean, "02", "01"},
		{"bool zero", value.TypeBoolean, "00", "00"},
		{"int8", value.TypeBigint, "000000000000002a", "000000000000002a"},
		{"int8 short", value.TypeBigint, "2a", ""},
		{"uuid", value.TypeUUID, "a0eebc999c0b4ef8bb6d6bb9bd380a11", "a0eebc999c0b4ef8bb6d6bb9bd380a11"},
		{"bytes", value.TypeBytes, "00ff", "00ff"},
		{"numeric non-canonical", value.TypeNumeric, hex.EncodeToString([]byte("4.0")), ""},
		{"real short", value.TypeReal, "000000", ""},
		{"bool long", value.TypeBoolean, "0101", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := value.AppendCanonicalBinary([]byte("p"), tt.typ, unhex(tt.in))
			if tt.want == "" {
				if !errors.Is(err, value.ErrCorrupt) || string(got) != "p" {
					t.Fatalf("got %x, %v; want ErrCorrupt and dst unchanged", got, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if want := append([]byte("p"), unhex(tt.want)...); !bytes.Equal(got, want) {
				t.Errorf("got %x, want %x", got, want)
			}
		})
	}
}

func TestCanonicalGoValues(t *testing.T) {
	var u [16]byte
	copy(u[:], unhex("a0eebc999c0b4ef8bb6d6bb9bd380a11"))
	tm := time.Date(2024, 1, 2, 3, 4, 5, 123456789, time.FixedZone("", 2*3600))
	tests := []struct {
		name string
		typ  value.Type
		v    any
		text string // the equivalent text literal
	}{
		{"string", value.TypeBigint, " 42", "42"},
		{"int", value.TypeBigint, 42, "42"},
		{"int16", value.TypeSmallint, int16(-5), "-5"},
		{"int32", value.TypeInt, int32(7), "7"},
		{"int64 min", value.TypeBigint, int64(math.MinInt64), "-9223372036854775808"},
		{"uint8", value.TypeSmallint, uint8(255), "255"},
		{"float64", value.TypeDouble, 0.1, "0.1"},
		{"float64 -0", value.TypeDouble, math.Copysign(0, -1), "0"},
		{"float64 nan", value.TypeDouble, math.NaN(), "NaN"},
		{"float32", value.TypeReal, float32(1.5), "1.5"},
		{"float64 as real", value.TypeReal, 0.5, "0.5"},
		{"float32 as double", value.TypeDouble, float32(0.1), "0.10000000149011612"},
		{"int as double", value.TypeDouble, 3, "3"},
		{"numeric int", value.TypeNumeric, 1500, "1.5e3"},
		{"numeric uint64", value.TypeNumeric, uint64(math.MaxUint64), "18446744073709551615"},
		{"numeric float", value.TypeNumeric, 0.1, "0.1"},
		{"numeric nan", value.TypeNumeric, math.NaN(), "NaN"},
		{"numeric -inf", value.TypeNumeric, math.Inf(-1), "-Infinity"},
		{"bool", value.TypeBoolean, true, "t"},
		{"date", value.TypeDate, tm, "2024-01-02"},
		{"date bc", value.TypeDate, time.Date(-43, 3, 15, 0, 0, 0, 0, time.UTC), "0044-03-15 BC"},
		{"timestamp wall clock", value.TypeTimestamp, tm, "2024-01-02 03:04:05.123457"},
		{"timestamptz instant", value.TypeTimestamptz, tm, "2024-01-02 01:04:05.123457Z"},
		{"timestamptz half even down", value.TypeTimestamptz, time.Unix(0, 2500).UTC(), "1970-01-01 00:00:00.000002Z"},
		{"timestamptz half even up", value.TypeTimestamptz, time.Unix(0, 3500).UTC(), "1970-01-01 00:00:00.000004Z"},
		{"uuid array", value.TypeUUID, u, "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"},
		{"uuid slice", value.TypeUUID, u[:], "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"},
		{"bytes raw", value.TypeBytes, []byte{1, 2}, `\x0102`},
		{"bytes string is text form", value.TypeBytes, `\x0102`, `\x0102`},
		{"text bytes", value.TypeText, []byte("hé"), "hé"},
		{"json raw", value.TypeJSON, json.RawMessage(`{"a":1}`), `{"a":1}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := value.Canonical(tt.typ, tt.v)
			if err != nil {
				t.Fatal(err)
			}
			if want := canon(t, tt.typ, tt.text); !bytes.Equal(got, want) {
				t.Errorf("got %x, want %x", got, want)
			}
		})
	}
	bad := []struct {
		name string
		typ  value.Type
		v    any
		kind error
	}{
		{"nil", value.TypeText, nil, value.ErrUnsupported},
		{"smallint overflow", value.TypeSmallint, 40000, value.ErrRange},
		{"int overflow", value.TypeInt, int64(math.MaxInt32) + 1, value.ErrRange},
		{"uint64 overflow", value.TypeBigint, uint64(math.MaxUint64), value.ErrRange},
		{"real inexact", value.TypeReal, 0.1, value.ErrRange},
		{"double inexact int", value.TypeDouble, int64(1<<53 + 1), value.ErrRange},
		{"bool as int", value.TypeBigint, true, value.ErrUnsupported},
		{"bytes for bigint", value.TypeBigint, []byte{0, 1}, value.ErrUnsupported},
		{"uuid short", value.TypeUUID, []byte{1}, value.ErrRange},
		{"invalid json", value.TypeJSON, []byte("{"), value.ErrSyntax},
		{"unknown type", value.TypeUnknown, "x", value.ErrUnsupported},
		{"date out of range", value.TypeDate, time.Date(-5000, 1, 1, 0, 0, 0, 0, time.UTC), value.ErrRange},
	}
	for _, tt := range bad {
		t.Run("bad/"+tt.name, func(t *testing.T) {
			if _, err := value.Canonical(tt.typ, tt.v); !errors.Is(err, tt.kind) {
				t.Errorf("err = %v, want %v", err, tt.kind)
			}
		})
	}
}

// TestDayArithmetic checks the package's own calendar against the time
// package over the whole range both can represent.
func TestDayArithmetic(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	const minDays, endDays = -2440588, 2145042906
	days := []int64{minDays, minDays + 1, -719528, -719529, -1, 0, 1, 10957, 24855, 2932896, endDays - 1}
	for range 20000 {
		days = append(days, minDays+r.Int64N(endDays-minDays))
	}
	for _, d := range days {
		c := binary.BigEndian.AppendUint32(nil, uint32(int32(d)))
		got := text(t, value.TypeDate, c)
		y, m, day := time.Unix(d*86400, 0).UTC().Date()
		want := ""
		if y <= 0 {
			want = strconv.Itoa(10000 + 1 - y)[1:]
			if 1-y >= 10000 {
				want = strconv.Itoa(1 - y)
			}
			want += "-" + strconv.Itoa(100 + int(m))[1:] + "-" + strconv.Itoa(100 + day)[1:] + " BC"
		} else {
			want = strconv.Itoa(10000 + y)[1:]
			if y >= 10000 {
				want = strconv.Itoa(y)
			}
			want += "-" + strconv.Itoa(100 + int(m))[1:] + "-" + strconv.Itoa(100 + day)[1:]
		}
		if got != want {
			t.Fatalf("day %d: got %q, want %q", d, got, want)
		}
		if back := canon(t, value.TypeDate, got); !bytes.Equal(back, c) {
			t.Fatalf("day %d: %q parses to %x", d, got, back)
		}
	}
}

// TestRoundTripProperty: canonical -> text -> canonical is the identity for
// random values of every fixed-size type, in both dialects.
func TestRoundTripProperty(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	const minTimestamp = -2440588 * 86400 * 1_000_000
	gen := map[value.Type]func() []byte{
		value.TypeSmallint: func() []byte { return binary.BigEndian.AppendUint16(nil, uint16(r.Uint32())) },
		value.TypeInt:      func() []byte { return binary.BigEndian.AppendUint32(nil, r.Uint32()) },
		value.TypeBigint:   func() []byte { return binary.BigEndian.AppendUint64(nil, r.Uint64()) },
		value.TypeReal: func() []byte {
			c, _ := value.AppendCanonicalBinary(nil, value.TypeReal, binary.BigEndian.AppendUint32(nil, r.Uint32()))
			return c
		},
		value.TypeDouble: func() []byte {
			var u uint64
			switch r.IntN(3) {
			case 0:
				u = r.Uint64()
			case 1:
				u = math.Float64bits(r.NormFloat64() * math.Pow(10, float64(r.IntN(40)-20)))
			default:
				u = math.Float64bits(float64(r.Int64N(1 << 54)))
			}
			c, _ := value.AppendCanonicalBinary(nil, value.TypeDouble, binary.BigEndian.AppendUint64(nil, u))
			return c
		},
		value.TypeBoolean: func() []byte { return []byte{byte(r.IntN(2))} },
		value.TypeDate: func() []byte {
			return binary.BigEndian.AppendUint32(nil, uint32(int32(-2440588+r.Int64N(2145042906+2440588))))
		},
		value.TypeTimestamp: func() []byte {
			for {
				if us := int64(r.Uint64()); us >= minTimestamp && us != math.MaxInt64 {
					return binary.BigEndian.AppendUint64(nil, uint64(us))
				}
			}
		},
		value.TypeTimestamptz: func() []byte {
			us := r.Int64N(4_000_000_000_000_000) - 2_000_000_000_000_000 // ±63000 years
			return binary.BigEndian.AppendUint64(nil, uint64(us))
		},
		value.TypeUUID: func() []byte {
			return binary.BigEndian.AppendUint64(binary.BigEndian.AppendUint64(nil, r.Uint64()), r.Uint64())
		},
		value.TypeNumeric: func() []byte {
			s := strconv.FormatInt(r.Int64(), 10) + "." + strconv.FormatUint(r.Uint64(), 10) + "e" + strconv.Itoa(r.IntN(60)-30)
			return canon(t, value.TypeNumeric, s)
		},
		value.TypeBytes: func() []byte {
			b := make([]byte, r.IntN(20))
			for i := range b {
				b[i] = byte(r.Uint32())
			}
			return b
		},
	}
	zone := time.FixedZone("", -(9*3600 + 30*60))
	for typ, g := range gen {
		t.Run(typ.String(), func(t *testing.T) {
			for range 5000 {
				c := g()
				if err := value.Validate(typ, c); err != nil {
					t.Fatalf("Validate(%x): %v", c, err)
				}
				s := text(t, typ, c)
				if back := canon(t, typ, s); !bytes.Equal(back, c) {
					t.Fatalf("%x -> %q -> %x", c, s, back)
				}
				my, err := value.AppendMySQLTextInZone(nil, typ, c, zone)
				if err != nil {
					t.Fatal(err)
				}
				back, err := value.AppendCanonicalMySQLText(nil, typ, my, zone)
				if err != nil || !bytes.Equal(back, c) {
					t.Fatalf("mysql: %x -> %q -> %x (%v)", c, my, back, err)
				}
				if typ == value.TypeTimestamptz {
					local, err := value.AppendTextInZone(nil, typ, c, zone)
					if err != nil {
						t.Fatal(err)
					}
					if back := canon(t, typ, string(local)); !bytes.Equal(back, c) {
						t.Fatalf("zone: %x -> %q -> %x", c, local, back)
					}
				}
			}
		})
	}
}

func TestAppendKeepsPrefix(t *testing.T) {
	dst := make([]byte, 3, 64)
	copy(dst, "abc")
	c, err := value.AppendCanonicalText(dst, value.TypeNumeric, []byte("-1.50"))
	if err != nil || string(c) != "abc-1.5" {
		t.Fatalf("got %q, %v", c, err)
	}
	out, err := value.AppendText(c[:4], value.TypeBigint, canon(t, value.TypeBigint, "7"))
	if err != nil || string(out) != "abc-7" {
		t.Fatalf("got %q, %v", out, err)
	}
}

func TestNumericDigitCap(t *testing.T) {
	max := "1" + strings.Repeat("0", value.MaxNumericDigits-1)
	if got := text(t, value.TypeNumeric, canon(t, value.TypeNumeric, "1e"+strconv.Itoa(value.MaxNumericDigits-1))); got != max {
		t.Errorf("largest numeric renders as %d chars", len(got))
	}
	frac := "0." + strings.Repeat("0", value.MaxNumericDigits-2) + "1" // exactly MaxNumericDigits digits
	if got := text(t, value.TypeNumeric, canon(t, value.TypeNumeric, frac)); got != frac {
		t.Errorf("smallest fraction renders as %q", got)
	}
	// Leading and trailing zeros do not count, however many.
	in := strings.Repeat("0", 100000) + "1.5" + strings.Repeat("0", 100000)
	if got := text(t, value.TypeNumeric, canon(t, value.TypeNumeric, in)); got != "1.5" {
		t.Errorf("got %q", got)
	}
}

// TestTypeCodes pins the header type codes (docs/ciphertext.md): never renumber.
func TestTypeCodes(t *testing.T) {
	want := []string{"text", "smallint", "int", "bigint", "real", "double", "numeric", "boolean",
		"date", "timestamp", "timestamptz", "uuid", "bytes", "json"}
	if got := value.TypeNames(); strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("TypeNames = %v", got)
	}
	for i, name := range want {
		t.Run(name, func(t *testing.T) {
			typ, err := value.ParseType(name)
			if err != nil || typ.Code() != byte(i+1) || typ.String() != name || !typ.Valid() {
				t.Fatalf("ParseType(%q) = %v (code %d), %v", name, typ, typ.Code(), err)
			}
			if back, err := value.TypeFromCode(byte(i + 1)); err != nil || back != typ {
				t.Errorf("TypeFromCode(%d) = %v, %v", i+1, back, err)
			}
		})
	}
	for _, code := range []byte{0, 15, 255} {
		if _, err := value.TypeFromCode(code); err == nil {
			t.Errorf("TypeFromCode(%d) succeeded", code)
		}
	}
	if _, err := value.ParseType("varchar"); err == nil {
		t.Error("ParseType(varchar) succeeded")
	}
	if value.TypeUnknown.Valid() || value.Type(15).Valid() || value.Type(15).String() != "Type(15)" {
		t.Error("invalid types misreported")
	}
}
