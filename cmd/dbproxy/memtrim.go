package main

import (
	"context"
	"runtime/debug"
	"time"
)

// Returning memory after many sessions end. Go keeps the memory freed by
// ended sessions for reuse, and hands it back to the operating system only
// as the garbage collector's goal falls — which takes collections, and an
// idle proxy allocates too little to run any. After a burst of sessions
// (thousands of idle connections closing at once) the RSS would then stay
// at its peak for minutes. serve watches the number of open connections and
// forces a collection that returns free memory (debug.FreeOSMemory) when it
// has fallen by a quarter and at least trimMinDrop since the last peak: a
// few milliseconds of collection at most once per trimInterval, only after
// sessions ended in bulk.
const (
	trimInterval = 2 * time.Second
	trimMinDrop  = 256
)

// trimMemory runs until ctx ends: every interval it reads count (the open
// connections of every listener) and calls free when the count fell from
// its peak since the last free by at least minDrop and a quarter.
func trimMemory(ctx context.Context, count func() int, interval time.Duration, minDrop int, free func()) {
	t := time.NewTicker(interval)
	defer t.Stop()
	peak := count()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		n := count()
		switch {
		case n > peak:
			peak = n
		case peak-n >= minDrop && n <= peak-peak/4:
			free()
			peak = n
		}
	}
}

// freeOSMemory is the free of trimMemory in serve.
func freeOSMemory() { debug.FreeOSMemory() }
