package main

import (
	"context"
	"sync/atomic"
	"testing"
)

// TestTrimMemory: memory is returned after the connection count falls by a
// quarter and at least minDrop from its peak, and after it rises by at
// least minDrop and then holds — once per fall or rise — and never for
// small or partial changes, nor while it is still rising.
func TestTrimMemory(t *testing.T) {
	var conns, frees atomic.Int64
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	// A fake clock: each tick is sent by step, which waits until the
	// trimmer has read the count.
	ticks := make(chan struct{})
	reads := make(chan struct{})
	go func() {
		defer close(done)
		// The count is taken before the reading is signalled: the test
		// stores the next count once it has the signal, which the
		// trimmer must not see before its next tick.
		trimMemoryTicks(ctx, func() int { n := int(conns.Load()); reads <- struct{}{}; return n }, ticks, 100, func() { frees.Add(1) })
	}()
	<-reads // the first reading
	step := func(n int64, wantFrees int64) {
		t.Helper()
		conns.Store(n)
		ticks <- struct{}{}
		<-reads
		// Two more ticks at the same count: a rise frees at the tick after
		// it (once it held), and that free has run only once the trimmer
		// reads the count again (count is called first in each tick, so
		// this read is what orders the check after the free). At an
		// unchanged count the last tick frees nothing.
		ticks <- struct{}{}
		<-reads
		ticks <- struct{}{}
		<-reads
		if got := frees.Load(); got != wantFrees {
			t.Fatalf("at %d connections: %d frees, want %d", n, got, wantFrees)
		}
	}
	step(1000, 1) // rose by 1000 and held for a tick
	step(900, 1)  // fell by less than a quarter
	step(700, 2)  // by 300 ≥ 100 and ≥ a quarter
	step(650, 2)  // the peak is now 700: a small fall
	step(120, 3)  // a big fall
	step(40, 3)   // fell by 80 < minDrop
	step(100, 3)  // rose by 60 < minDrop from the low
	step(5000, 4)
	step(0, 5)
	// Rising by minDrop/8 or more each tick does not free until it holds.
	for i, n := range []int64{30, 60, 90, 120, 150} {
		conns.Store(n)
		ticks <- struct{}{}
		<-reads
		if got := frees.Load(); got != 5 {
			t.Fatalf("rising, tick %d at %d: %d frees, want 5", i, n, got)
		}
	}
	step(150, 6)
	cancel()
	<-done
}
