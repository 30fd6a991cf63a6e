package rules_test

import (
	"bytes"
	"fmt"
	"testing"

	"github.com/dbproxy/dbproxy/rules"
	"github.com/dbproxy/dbproxy/value"
)

func matchRule(t *testing.T) *rules.ColumnRule {
	t.Helper()
	set, err := rules.New(rules.DialectPostgres, []rules.Spec{
		{Table: "users", Column: "email", Key: "email", Mode: rules.ModeDeterministic, Type: value.TypeText},
	})
	if err != nil {
		t.Fatal(err)
	}
	return set.Column("db", "public", "users", "email")
}

// TestMatchesCopies: RecordMatch copies the plaintext and the ciphertexts,
// so that callers may record from scratch buffers they reuse, whether the
// lookup fits the inline storage or not.
func TestMatchesCopies(t *testing.T) {
	col := matchRule(t)
	for _, size := range []int{8, 40, 200} {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			var m rules.Matches
			buf := make([]byte, 0, 4*size)
			var cts [][]byte
			var canons [][]byte
			for i := range 3 {
				canon := bytes.Repeat([]byte{byte('a' + i)}, size)
				start := len(buf)
				buf = append(buf, bytes.Repeat([]byte{byte('A' + i)}, size)...)
				cts = append(cts[:0], buf[start:], buf[start:start+size/2])
				m.RecordMatch(col, canon, cts)
				canons = append(canons, bytes.Clone(canon))
				clear(canon)
			}
			want := bytes.Clone(buf)
			clear(buf)
			for i := range cts {
				clear(cts[i])
			}
			for i := range 3 {
				got, ok := m.Lookup(col, want[i*size:(i+1)*size])
				if !ok || !bytes.Equal(got, canons[i]) {
					t.Errorf("lookup %d: %q, %v; want %q", i, got, ok, canons[i])
				}
				if _, ok := m.Lookup(col, want[i*size:i*size+size/2]); !ok {
					t.Errorf("lookup %d: second ciphertext not found", i)
				}
			}
		})
	}
}

// TestMatchesInline: a single lookup of a short value under two key
// versions allocates nothing.
func TestMatchesInline(t *testing.T) {
	col := matchRule(t)
	canon := []byte("user42@example.com")
	cts := [][]byte{bytes.Repeat([]byte{1}, 41), bytes.Repeat([]byte{2}, 41)}
	m := new(rules.Matches)
	allocs := testing.AllocsPerRun(100, func() {
		*m = rules.Matches{}
		m.RecordMatch(col, canon, cts)
		if _, ok := m.Lookup(col, cts[1]); !ok {
			t.Fatal("not found")
		}
	})
	if allocs != 0 {
		t.Errorf("%v allocations per lookup, want 0", allocs)
	}
}

// TestMatchesNil: a nil Matches (a statement with no lookup gets none)
// records nothing and finds nothing.
func TestMatchesNil(t *testing.T) {
	col := matchRule(t)
	var m *rules.Matches
	m.RecordMatch(col, []byte("a"), [][]byte{[]byte("ct")})
	if canon, ok := m.Lookup(col, []byte("ct")); ok {
		t.Fatalf("nil Matches found %q", canon)
	}
}
