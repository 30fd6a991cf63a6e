package bufpool_test

import (
	"testing"

	"github.com/dbproxy/dbproxy/internal/bufpool"
)

func TestGetSizes(t *testing.T) {
	tests := []struct {
		name string
		n    int
		want int // capacity
	}{
		{"zero", 0, 16 << 10},
		{"small", 100, 16 << 10},
		{"exact class", 16 << 10, 16 << 10},
		{"just above class", 16<<10 + 1, 32 << 10},
		{"largest pooled", bufpool.MaxPooled, bufpool.MaxPooled},
		{"above pooled", bufpool.MaxPooled + 1, bufpool.MaxPooled + 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := bufpool.Get(tt.n)
			if len(b) < tt.n {
				t.Fatalf("Get(%d): len %d", tt.n, len(b))
			}
			if cap(b) != tt.want {
				t.Fatalf("Get(%d): cap %d, want %d", tt.n, cap(b), tt.want)
			}
			bufpool.Put(b)
		})
	}
}

func TestPutOddSizesDropped(t *testing.T) {
	// Odd capacities are dropped: Get never returns them.
	for range 100 {
		bufpool.Put(make([]byte, 20<<10))
		if b := bufpool.Get(20 << 10); cap(b) != 32<<10 {
			t.Fatalf("Get(20 KiB) returned cap %d", cap(b))
		}
	}
}

// TestHandleNoAlloc: a handle goes back to the pool and comes out again
// without an allocation (sync.Pool may drop it under GC, so a few are
// tolerated over many rounds).
func TestHandleNoAlloc(t *testing.T) {
	allocs := testing.AllocsPerRun(1000, func() {
		h := bufpool.GetHandle(100)
		if len(*h) != 16<<10 {
			t.Fatalf("len %d", len(*h))
		}
		(*h)[0] = 1
		bufpool.PutHandle(h)
	})
	if allocs > 0.1 {
		t.Fatalf("%.2f allocations per Get/Put of a handle", allocs)
	}
}
