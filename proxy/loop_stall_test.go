package proxy

import (
	"log/slog"
	"runtime"
	"testing"
	"time"

	"github.com/dbproxy/dbproxy/internal/testlog"
)

// TestLoopStallLogged: an event loop held up by one of its handlers (one
// that waited without handing the loop off) is logged as a warning.
func TestLoopStallLogged(t *testing.T) {
	var logs testlog.Buffer
	s := &Server{Logger: slog.New(slog.NewTextHandler(&logs, nil))}
	l := s.loopFor()
	if l == nil {
		if runtime.GOOS == "linux" {
			t.Fatal("no event loop on Linux")
		}
		t.Skip("event loops are Linux-only")
	}
	defer s.closePoller()
	done := make(chan struct{})
	if !l.Do(func() { time.Sleep(3 * loopStallPeriod); close(done) }) {
		t.Fatal("Do refused")
	}
	<-done
	deadline := time.Now().Add(5 * time.Second)
	for !logs.Contains("an event loop was held up") {
		if time.Now().After(deadline) {
			t.Fatalf("no warning for a stalled loop; logs:\n%s", logs.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if !logs.Contains("level=WARN") {
		t.Fatalf("not a warning:\n%s", logs.String())
	}
}
