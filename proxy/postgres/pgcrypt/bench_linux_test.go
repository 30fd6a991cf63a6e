//go:build linux

package pgcrypt_test

import (
	"syscall"
	"testing"
	"time"
)

// startCPUTimer returns a function that reports the CPU time the whole
// process used per op as "cpu-ns/op": unlike ns/op (wall time) it does not
// count time spent descheduled, so it stays meaningful on a loaded machine,
// and it includes the garbage collector's work on other threads. Run with
// -cpu 1 to keep other goroutines' work out of it.
func startCPUTimer(b *testing.B) func() {
	start := processCPUTime(b)
	return func() {
		if b.N > 0 {
			d := processCPUTime(b) - start
			b.ReportMetric(float64(d.Nanoseconds())/float64(b.N), "cpu-ns/op")
		}
	}
}

func processCPUTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
