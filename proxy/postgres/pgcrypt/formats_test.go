package pgcrypt_test

import (
	"encoding/hex"
	"reflect"
	"testing"

	"github.com/dbproxy/dbproxy/proxy/postgres/pgcrypt"
)

// The binary forms are PostgreSQL's own (numeric_send output).
func TestNumericBinary(t *testing.T) {
	tests := []struct {
		text, bin string
	}{
		{"0", "0000000000000000"},
		{"1", "0001000000000000" + "0001"},
		{"-123.45", "0002000040000002" + "007b" + "1194"},
		{"10000", "0001000100000000" + "0001"},
		{"0.0001", "0001ffff00000004" + "0001"},
		{"12345678.9", "0003000100000001" + "04d2" + "162e" + "2328"},
		{"NaN", "00000000c0000000"},
		{"Infinity", "00000000d0000000"},
		{"-Infinity", "00000000f0000000"},
		{"0.000", "0000000000000003"},
	}
	for _, tt := range tests {
		t.Run(tt.text, func(t *testing.T) {
			got, err := pgcrypt.NumericTextToBinary(nil, []byte(tt.text))
			if err != nil {
				t.Fatal(err)
			}
			if hex.EncodeToString(got) != tt.bin {
				t.Errorf("binary %x, want %s", got, tt.bin)
			}
			bin, _ := hex.DecodeString(tt.bin)
			back, err := pgcrypt.NumericBinaryToText(nil, bin)
			if err != nil {
				t.Fatal(err)
			}
			if string(back) != tt.text {
				t.Errorf("text %q, want %q", back, tt.text)
			}
		})
	}
	for _, bad := range []string{"", "0001", "000100000000000027100000", "0000000012340000"} {
		b, _ := hex.DecodeString(bad)
		if _, err := pgcrypt.NumericBinaryToText(nil, b); err == nil {
			t.Errorf("NumericBinaryToText(%s) accepted", bad)
		}
	}
}

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
