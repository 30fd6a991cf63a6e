package value_test

import (
	"bytes"
	"fmt"

	"github.com/dbproxy/dbproxy/value"
)

func Example() {
	// Three spellings of one bigint give one canonical plaintext.
	a, _ := value.AppendCanonicalText(nil, value.TypeBigint, []byte(" +42 "))
	b, _ := value.AppendCanonicalText(nil, value.TypeBigint, []byte("42"))
	c, _ := value.Canonical(value.TypeBigint, int64(42))
	fmt.Println(bytes.Equal(a, b), bytes.Equal(a, c))
	fmt.Printf("%x\n", a)

	// Rendering back, as psql would show it.
	ts, _ := value.AppendCanonicalText(nil, value.TypeTimestamptz, []byte("2024-01-01 02:00:00.50+02"))
	out, _ := value.AppendText(nil, value.TypeTimestamptz, ts)
	fmt.Println(string(out))

	// Errors name the type, never the value.
	_, err := value.AppendCanonicalText(nil, value.TypeSmallint, []byte("123456"))
	fmt.Println(err)
	// Output:
	// true true
	// 000000000000002a
	// 2024-01-01 00:00:00.5+00
	// value out of range for type smallint
}
