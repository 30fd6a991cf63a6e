//go:build linux

package crypto_test

import (
	"runtime"
	"syscall"
	"testing"
	"time"
)

// startCPUTimer pins the benchmark goroutine to its OS thread and returns a
// function that reports the thread's CPU time per op as "cpu-ns/op". Unlike
// ns/op (wall time) it does not count time the thread spent descheduled, so
// ratios stay meaningful on a loaded machine. Call it right before the loop
// and the returned function right after.
func startCPUTimer(b *testing.B) func() {
	runtime.LockOSThread()
	start := threadCPUTime(b)
	return func() {
		d := threadCPUTime(b) - start
		runtime.UnlockOSThread()
		if b.N > 0 {
			b.ReportMetric(float64(d.Nanoseconds())/float64(b.N), "cpu-ns/op")
		}
	}
}

func threadCPUTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_THREAD, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
