//go:build !linux

package pgcrypt_test

import "testing"

// startCPUTimer reports nothing outside Linux (see bench_linux_test.go).
func startCPUTimer(*testing.B) func() { return func() {} }
