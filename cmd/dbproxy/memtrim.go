package main

import (
	"context"
	"runtime"
	"runtime/debug"
	"time"
)

// Returning memory after sessions come or go in bulk. Go keeps freed
// memory for reuse and hands it back to the operating system only as the
// garbage collector's goal falls — which takes collections, and an idle
// proxy allocates too little to run any. Two bursts leave the RSS far above
// what the sessions hold:
//
//   - many sessions ending at once (thousands of idle connections closing):
//     the RSS would stay at its peak for minutes;
//   - many sessions starting at once (a pool opening its connections): their
//     handshakes' garbage, up to GOGC's headroom (at the default 200, twice
//     the live heap), and the grown stacks of their handshake goroutines stay
//     resident while the sessions sit idle, parked, holding a few KiB each.
//
// serve watches the number of open connections and forces a collection that
// returns free memory (debug.FreeOSMemory) when it has fallen by a quarter
// and at least trimMinDrop since the last peak, or has risen by at least
// trimMinDrop since the last trim and then settled (grew by less than an
// eighth of that during the last interval): a few milliseconds of
// collection at most once per trimInterval, only after sessions came or went
// in bulk.
const (
	trimInterval = 2 * time.Second
	trimMinDrop  = 256
)

// trimMemory runs until ctx ends: every interval it reads count (the open
// connections of every listener) and calls free when the count fell from
// its peak since the last free by at least minDrop and a quarter, or rose
// from its low since the last free by at least minDrop and rose by less
// than minDrop/8 since the previous reading.
func trimMemory(ctx context.Context, count func() int, interval time.Duration, minDrop int, free func()) {
	t := time.NewTicker(interval)
	defer t.Stop()
	trimMemoryTicks(ctx, count, t.C, minDrop, free)
}

// trimMemoryTicks is trimMemory reading count at every tick.
func trimMemoryTicks[T any](ctx context.Context, count func() int, ticks <-chan T, minDrop int, free func()) {
	peak := count()
	low, prev := peak, peak
	for {
		select {
		case <-ctx.Done():
			return
		case <-ticks:
		}
		n := count()
		fell := peak-n >= minDrop && n <= peak-peak/4
		roseAndSettled := n-low >= minDrop && n-prev < minDrop/8
		if fell || roseAndSettled {
			free()
			peak, low = n, n
		}
		peak, low, prev = max(peak, n), min(low, n), n
	}
}

// freeOSMemory is the free of trimMemory in serve: two collections, as
// what sync.Pools hold (the relays' buffers given back by sessions that
// went idle) is only dropped by the second.
func freeOSMemory() {
	runtime.GC()
	debug.FreeOSMemory()
}
