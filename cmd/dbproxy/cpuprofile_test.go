package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestCPUProfile: DBPROXY_CPUPROFILE's file holds a gzip-compressed pprof
// profile once stopped; an unwritable path is an error naming the
// variable; unset, nothing is written.
func TestCPUProfile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "cpu.pprof")
	stop, err := startCPUProfile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(b, []byte{0x1f, 0x8b}) {
		t.Fatalf("profile starts %x, want gzip", b[:min(len(b), 4)])
	}

	if _, err := startCPUProfile(filepath.Join(dir, "missing", "cpu.pprof")); err == nil || !strings.Contains(err.Error(), cpuProfileEnv) {
		t.Fatalf("unwritable path: %v, want an error naming %s", err, cpuProfileEnv)
	}
	stop, err = startCPUProfile("")
	if err != nil || stop() != nil {
		t.Fatalf("unset: %v", err)
	}
}
