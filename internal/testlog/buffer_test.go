package testlog_test

import (
	"fmt"
	"slices"
	"sync"
	"testing"

	"github.com/dbproxy/dbproxy/internal/testlog"
)

func TestBufferConcurrentWrites(t *testing.T) {
	var b testlog.Buffer
	if got := b.Lines(); got != nil {
		t.Fatalf("empty buffer: lines %q", got)
	}
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			fmt.Fprintf(&b, "line %d\n", i)
			_ = b.String()
		}()
	}
	wg.Wait()
	lines := b.Lines()
	slices.Sort(lines)
	want := []string{"line 0", "line 1", "line 2", "line 3", "line 4", "line 5", "line 6", "line 7"}
	if !slices.Equal(lines, want) {
		t.Fatalf("lines %q, want %q", lines, want)
	}
}

func TestBufferContains(t *testing.T) {
	var b testlog.Buffer
	fmt.Fprintf(&b, "line %d\n", 7)
	if !b.Contains("line 7\n") || b.Contains("line 8") {
		t.Fatalf("Contains on %q", b.String())
	}
}
