package pgcrypt_test

import (
	"encoding/hex"
	"reflect"
	"testing"

	"github.com/dbproxy/dbproxy/proxy/postgres/pgcrypt"
)

func TestArrayElems(t *testing.T) {
	tests := []struct {
		name, src string
		format    int16
		want      []string
		bad       bool
	}{
		{"empty", `{}`, 0, nil, false},
		{"plain", `{a,b , c}`, 0, []string{"a", "b", "c"}, false},
		{"quoted", `{"a,b","q\"x","back\\slash",""}`, 0, []string{"a,b", `q"x`, `back\slash`, ""}, false},
		{"nulls", `{NULL,null,"NULL",x}`, 0, []string{"NULL", "x"}, false},
		{"nested", `{{1,2},{3,4}}`, 0, []string{"1", "2", "3", "4"}, false},
		{"unicode", `{zoë,"☃ snow"}`, 0, []string{"zoë", "☃ snow"}, false},
		{"no braces", `a,b`, 0, nil, true},
		{"dimension decoration", `[1:2]={a,b}`, 0, nil, true},
		{"unterminated", `{"a`, 0, nil, true},
		{"trailing", `{a}x`, 0, nil, true},
		// ndim 1, no nulls, text (25), dim 3 lbound 1: "ab", NULL, "c"
		{"binary", "00000001" + "00000001" + "00000019" + "00000003" + "00000001" +
			"00000002" + "6162" + "ffffffff" + "00000001" + "63", 1, []string{"ab", "c"}, false},
		{"binary empty", "00000000" + "00000000" + "00000019", 1, nil, false},
		{"binary short", "0000000100000000", 1, nil, true},
		{"binary trailing", "00000001" + "00000000" + "00000019" + "00000001" + "00000001" + "00000001" + "61" + "00", 1, nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := []byte(tt.src)
			if tt.format == 1 {
				var err error
				if src, err = hex.DecodeString(tt.src); err != nil {
					t.Fatal(err)
				}
			}
			got, err := pgcrypt.ArrayElems(src, tt.format)
			if (err != nil) != tt.bad {
				t.Fatalf("err = %v, want error %v", err, tt.bad)
			}
			if !tt.bad && !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}
