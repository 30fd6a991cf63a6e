package testlog

import (
	"bytes"
	"strings"
	"sync"
)

// Buffer collects what is written to it; it is safe for concurrent use.
// The zero value is an empty buffer.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *Buffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// String returns everything written so far.
func (l *Buffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// Contains reports whether what was written so far contains s.
func (l *Buffer) Contains(s string) bool { return strings.Contains(l.String(), s) }
