package testlog_test

import (
	"fmt"
	"sync"
	"testing"

	"github.com/dbproxy/dbproxy/internal/testlog"
)

func TestBufferConcurrentWrites(t *testing.T) {
	var b testlog.Buffer
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() { fmt.Fprintf(&b, "line %d\n", i) })
	}
	wg.Wait()
	for i := range 8 {
		if want := fmt.Sprintf("line %d\n", i); !b.Contains(want) {
			t.Errorf("buffer lacks %q:\n%s", want, b.String())
		}
	}
	if b.Contains("line 8") {
		t.Errorf("buffer holds a line nobody wrote:\n%s", b.String())
	}
}
