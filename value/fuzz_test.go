package value_test

import (
	"bytes"
	"testing"
	"time"

	"github.com/dbproxy/dbproxy/value"
)

// FuzzCanonicalText parses arbitrary input as every type. Whenever parsing
// succeeds, the canonical encoding must validate, be a fixed point of
// AppendCanonicalBinary, and survive canonical -> text -> canonical
// unchanged in the PostgreSQL and MySQL text forms and in a non-UTC zone.
// Nothing may panic.
func FuzzCanonicalText(f *testing.F) {
	for _, s := range []string{
		"42", " -9223372036854775808 ", "1.5e3", "NaN", "-Infinity", "0.1", "-0",
		"t", "off", "2024-01-02", "0044-03-15 BC", "2024-01-02 03:04:05.123456+05:30",
		"2024-01-01 23:59:59.9999999", "infinity", "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
		`\x0102`, `a\001\\`, `{"a":[1,2]}`, "héllo",
	} {
		f.Add([]byte(s))
	}
	zone := time.FixedZone("", 5*3600+30*60)
	types := value.TypeNames()
	f.Fuzz(func(t *testing.T, in []byte) {
		for _, name := range types {
			typ, err := value.ParseType(name)
			if err != nil {
				t.Fatal(err)
			}
			check := func(form string, c []byte, render func([]byte) ([]byte, error), parse func([]byte) ([]byte, error)) {
				out, err := render(c)
				if err != nil {
					t.Fatalf("%v %s: render %x: %v", typ, form, c, err)
				}
				back, err := parse(out)
				if err != nil {
					t.Fatalf("%v %s: %x -> %q does not parse: %v", typ, form, c, out, err)
				}
				if !bytes.Equal(back, c) {
					t.Fatalf("%v %s: %x -> %q -> %x", typ, form, c, out, back)
				}
			}
			parsers := []func([]byte) ([]byte, error){
				func(b []byte) ([]byte, error) { return value.AppendCanonicalText(nil, typ, b) },
				func(b []byte) ([]byte, error) { return value.AppendCanonicalTextInZone(nil, typ, b, zone) },
				func(b []byte) ([]byte, error) { return value.AppendCanonicalMySQLText(nil, typ, b, zone) },
			}
			for _, parse := range parsers {
				c, err := parse(in)
				if err != nil {
					if bytes.Contains([]byte(err.Error()), in) && len(bytes.TrimSpace(in)) >= 4 {
						t.Fatalf("%v: error %q contains the input", typ, err)
					}
					continue
				}
				if err := value.Validate(typ, c); err != nil {
					t.Fatalf("%v: canonical %x does not validate: %v", typ, c, err)
				}
				if again, err := value.AppendCanonicalBinary(nil, typ, c); err != nil || !bytes.Equal(again, c) {
					t.Fatalf("%v: AppendCanonicalBinary(%x) = %x, %v", typ, c, again, err)
				}
				check("pg", c,
					func(c []byte) ([]byte, error) { return value.AppendText(nil, typ, c) },
					func(b []byte) ([]byte, error) { return value.AppendCanonicalText(nil, typ, b) })
				check("pg zone", c,
					func(c []byte) ([]byte, error) { return value.AppendTextInZone(nil, typ, c, zone) },
					func(b []byte) ([]byte, error) { return value.AppendCanonicalTextInZone(nil, typ, b, zone) })
				check("mysql", c,
					func(c []byte) ([]byte, error) { return value.AppendMySQLTextInZone(nil, typ, c, zone) },
					func(b []byte) ([]byte, error) { return value.AppendCanonicalMySQLText(nil, typ, b, zone) })
			}
		}
	})
}
