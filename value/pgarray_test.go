package value_test

import (
	"errors"
	"fmt"
	"testing"

	"github.com/dbproxy/dbproxy/value"
)

func TestPostgresArrayElems(t *testing.T) {
	cases := map[string]string{
		`{}`:                       `[]`,
		`{a,b}`:                    `["a" "b"]`,
		` { "a b" , NULL , null }`: `["a b" "<NULL>" "<NULL>"]`,
		`{"NULL",\N}`:              `["NULL" "N"]`,
		`{"q\"uote","back\\"}`:     `["q\"uote" "back\\"]`,
		`{{a},{b,c}}`:              `["a" "b" "c"]`,
		`{ x y }`:                  `["x y"]`,
	}
	for in, want := range cases {
		var got []string
		err := value.PostgresArrayElems([]byte(in), func(e []byte, null bool) error {
			if null {
				got = append(got, "<NULL>")
			} else {
				got = append(got, string(e))
			}
			return nil
		})
		if err != nil || fmt.Sprintf("%q", got) != want {
			t.Errorf("%q: %q %v, want %s", in, got, err, want)
		}
	}
	for _, bad := range []string{``, `a`, `{a`, `{"a}`, `{a}}`, `{a} x`, `[1:2]={a,b}`} {
		if err := value.PostgresArrayElems([]byte(bad), func([]byte, bool) error { return nil }); !errors.Is(err, value.ErrArray) {
			t.Errorf("%q: %v, want ErrArray", bad, err)
		}
	}
}
