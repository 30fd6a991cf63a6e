package pgcrypt_test

import (
	"encoding/hex"
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
