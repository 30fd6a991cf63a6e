package main

import (
	"context"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
)

// TestTrimMemory: memory is returned after the connection count falls by a
// quarter and at least minDrop from its peak — once per fall — and never
// for small or partial falls. It runs on the fake clock of a synctest
// bubble: each step lets exactly 20 ticks pass, whatever the machine's load.
func TestTrimMemory(t *testing.T) { synctest.Test(t, testTrimMemory) }

func testTrimMemory(t *testing.T) {
	var conns, frees atomic.Int64
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		trimMemory(ctx, func() int { return int(conns.Load()) }, time.Millisecond, 100, func() { frees.Add(1) })
	}()
	settle := func() {
		time.Sleep(20 * time.Millisecond)
		synctest.Wait()
	}
	step := func(n int64, wantFrees int64) {
		t.Helper()
		conns.Store(n)
		settle()
		if got := frees.Load(); got != wantFrees {
			t.Fatalf("at %d connections: %d frees, want %d", n, got, wantFrees)
		}
	}
	step(1000, 0) // a new peak
	step(900, 0)  // fell by less than a quarter
	step(700, 1)  // by 300 ≥ 100 and ≥ a quarter
	step(650, 1)  // the peak is now 700: a small fall
	step(120, 2)  // a big fall
	step(40, 2)   // fell by 80 < minDrop
	step(5000, 2)
	step(0, 3)
	cancel()
	<-done
}
