package pgcrypt_test

import (
	"context"
	"encoding/hex"
	"testing"

	"github.com/dbproxy/dbproxy/proxy/postgres"
)

// TestExchangeAllocations: a point select by email on the encrypted table
// (simple protocol with new literals: plan-template hits; and a prepared
// statement's Bind/Execute), and an insert of three encrypted literals,
// allocate no more per exchange than decrypting (or encrypting) their
// randomized cells does: planning, the lookup's ciphertexts, the rewrite
// and the rows come from per-session memory.
func TestExchangeAllocations(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are not meaningful under -race")
	}
	f := newFixture(t)
	crypto := f.randomizedCellAllocs(t)
	simple := f.simpleExchanges(t, "users_enc", encOID, encTypes, true, 8)
	prepared := f.prepare(t, "users_enc", encOID, encTypes, f.encRow, f.plainOut)
	inserts := insertExchanges("users_enc", 8)
	for _, tc := range []struct {
		name string
		xs   []exchange
	}{{"simple select", simple}, {"prepared select", []exchange{prepared}}, {"simple insert", inserts}} {
		var front, back postgres.Writer
		i := 0
		run := func() {
			if front.Len()+back.Len() > 1<<16 {
				front.Reset()
				back.Reset()
			}
			if err := f.run(&tc.xs[i%len(tc.xs)], &front, &back); err != nil {
				t.Fatal(err)
			}
			i++
		}
		for range len(tc.xs) {
			run() // every text planned once, every buffer grown
		}
		allocs := testing.AllocsPerRun(200, run)
		t.Logf("%s: %v allocations per exchange; its randomized cells' cryptography: %v", tc.name, allocs, crypto)
		if allocs > crypto {
			t.Errorf("%s: %v allocations per exchange, want no more than the %v of its cryptography", tc.name, allocs, crypto)
		}
	}
}

// randomizedCellAllocs returns the allocations of decrypting the two
// randomized cells of the fixture's row (XAES-256-GCM sets up AES and GCM
// under a per-value key): the baseline the layer must add nothing to.
func (f *fixture) randomizedCellAllocs(t *testing.T) float64 {
	t.Helper()
	ctx := context.Background()
	buf := make([]byte, 0, 256)
	var raw [2][]byte
	for i, c := range []int{3, 4} {
		var err error
		if raw[i], err = hex.DecodeString(string(f.encCells[c][2:])); err != nil { // bytea hex: \x...
			t.Fatal(err)
		}
	}
	return testing.AllocsPerRun(100, func() {
		for i, c := range []int{3, 4} {
			var err error
			if buf, err = f.enc.AppendDecrypt(ctx, buf[:0], f.cols[c], raw[i]); err != nil {
				t.Fatal(err)
			}
		}
	})
}

// TestDataRowAllocations: decrypting a whole row (the deterministic cell
// too) allocates no more than its randomized cells' cryptography.
func TestDataRowAllocations(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are not meaningful under -race (sync.Pool drops items)")
	}
	f := newFixture(t)
	var w postgres.Writer
	if err := f.sess.DataRow(f.cols, f.encRow, &w); err != nil {
		t.Fatal(err)
	}
	if w.Len() != f.plainOut {
		t.Fatalf("decrypted DataRow is %d bytes, want %d", w.Len(), f.plainOut)
	}
	primitive := f.randomizedCellAllocs(t)
	allocs := testing.AllocsPerRun(100, func() {
		if w.Len() > 1<<16 {
			w.Reset()
		}
		if err := f.sess.DataRow(f.cols, f.encRow, &w); err != nil {
			t.Fatal(err)
		}
	})
	t.Logf("DataRow: %v allocations per row; decrypting its randomized cells: %v", allocs, primitive)
	if allocs > primitive {
		t.Errorf("DataRow rewrite: %v allocations per row, want no more than the %v of decrypting its cells", allocs, primitive)
	}
}
