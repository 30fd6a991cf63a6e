package value_test

import (
	"testing"
	"time"

	"github.com/dbproxy/dbproxy/value"
)

var benchCases = []struct {
	name string
	typ  value.Type
	in   string
}{
	{"bigint", value.TypeBigint, "-9223372036854775808"},
	{"double", value.TypeDouble, "3.141592653589793"},
	{"numeric", value.TypeNumeric, "12345678901234567890.1234500"},
	{"numeric_exp", value.TypeNumeric, "1.5e30"},
	{"date", value.TypeDate, "2024-01-02"},
	{"timestamptz", value.TypeTimestamptz, "2024-01-02 03:04:05.123456+05:30"},
	{"timestamptz_rounded", value.TypeTimestamptz, "2024-01-02 03:04:05.1234567Z"},
	{"uuid", value.TypeUUID, "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"},
	{"bytes", value.TypeBytes, `\x000102030405060708090a0b0c0d0e0f`},
	{"text", value.TypeText, "someone@example.com"},
}

func BenchmarkAppendCanonicalText(b *testing.B) {
	for _, bc := range benchCases {
		b.Run(bc.name, func(b *testing.B) {
			in := []byte(bc.in)
			dst := make([]byte, 0, 64)
			b.ReportAllocs()
			b.SetBytes(int64(len(in)))
			for b.Loop() {
				if _, err := value.AppendCanonicalText(dst[:0], bc.typ, in); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkAppendCanonicalTextInZone(b *testing.B) {
	loc, err := time.LoadLocation("America/New_York")
	if err != nil {
		b.Fatal(err)
	}
	in := []byte("2024-07-02 03:04:05.123456")
	dst := make([]byte, 0, 64)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := value.AppendCanonicalTextInZone(dst[:0], value.TypeTimestamptz, in, loc); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkAppendText(b *testing.B) {
	for _, bc := range benchCases {
		b.Run(bc.name, func(b *testing.B) {
			c, err := value.AppendCanonicalText(nil, bc.typ, []byte(bc.in))
			if err != nil {
				b.Fatal(err)
			}
			dst := make([]byte, 0, 128)
			b.ReportAllocs()
			for b.Loop() {
				if _, err := value.AppendText(dst[:0], bc.typ, c); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
