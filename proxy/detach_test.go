package proxy_test

import (
	"context"
	"io"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/dbproxy/dbproxy/internal/netpark"
	"github.com/dbproxy/dbproxy/proxy"
)

// parkedEcho is a handler that detaches and echoes with no goroutine
// between reads: each read parks the socket on the server's poller. It
// ends on EOF, on a drain (when parked), and on a hard close (OnClose).
type parkedEcho struct {
	mu      sync.Mutex
	c       *proxy.Conn
	done    func()
	parked  *netpark.Handle
	stopped bool
	closed  chan struct{} // closed when done ran
}

func (e *parkedEcho) ServeConn(ctx context.Context, c *proxy.Conn) {
	e.c, e.done = c, c.Detach()
	c.SetState(proxy.StateIdle)
	c.OnDrain(e.stop)
	c.OnClose(e.stop)
	e.park()
}

// park waits for input without a goroutine.
func (e *parkedEcho) park() {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.stopped {
		go e.end()
		return
	}
	h, err := e.c.Poller().Park(e.c.NetConn().(syscall.Conn), func() { go e.wake() })
	if err != nil {
		go e.end()
		return
	}
	e.parked = h
}

func (e *parkedEcho) wake() {
	e.mu.Lock()
	e.parked = nil
	stopped := e.stopped
	e.mu.Unlock()
	if stopped {
		e.end()
		return
	}
	buf := make([]byte, 64)
	n, err := e.c.NetConn().Read(buf)
	if err != nil {
		e.end()
		return
	}
	_, _ = e.c.NetConn().Write(buf[:n])
	e.park()
}

func (e *parkedEcho) stop() {
	e.mu.Lock()
	e.stopped = true
	h := e.parked
	e.parked = nil
	e.mu.Unlock()
	if h != nil {
		h.Unpark()
	}
}

func (e *parkedEcho) end() {
	e.done()
	close(e.closed)
}

func TestDetachedParkedConnection(t *testing.T) {
	for _, how := range []string{"eof", "shutdown", "close"} {
		t.Run(how, func(t *testing.T) {
			e := &parkedEcho{closed: make(chan struct{})}
			var mu sync.Mutex
			var states []proxy.ConnState
			srv := &proxy.Server{Handler: e, ConnState: func(c *proxy.Conn, s proxy.ConnState) {
				mu.Lock()
				states = append(states, s)
				mu.Unlock()
			}}
			addr, _ := serve(t, srv)
			c := dialTest(t, addr)
			defer c.Close()
			for _, msg := range []string{"one", "two", "three"} {
				if _, err := c.Write([]byte(msg)); err != nil {
					t.Fatal(err)
				}
				buf := make([]byte, len(msg))
				if _, err := io.ReadFull(c, buf); err != nil || string(buf) != msg {
					t.Fatalf("echo %q: %q, %v", msg, buf, err)
				}
			}
			// Between messages the handler has returned and nothing waits:
			// the connection is tracked and its socket parked.
			for srv.Parked() != 1 {
				time.Sleep(time.Millisecond)
			}
			if n := srv.NumConns(); n != 1 {
				t.Fatalf("NumConns = %d with a detached connection, want 1", n)
			}
			switch how {
			case "eof":
				_ = c.Close()
			case "shutdown":
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				if err := srv.Shutdown(ctx); err != nil {
					t.Fatalf("Shutdown: %v", err)
				}
			case "close":
				if err := srv.Close(); err != nil {
					t.Fatal(err)
				}
			}
			<-e.closed
			for srv.NumConns() != 0 {
				time.Sleep(time.Millisecond)
			}
			if how != "eof" {
				if _, err := io.ReadFull(c, make([]byte, 1)); err == nil {
					t.Fatal("the socket is still open after the connection ended")
				}
			}
			mu.Lock()
			defer mu.Unlock()
			if last := states[len(states)-1]; last != proxy.StateClosed {
				t.Fatalf("states %v: want StateClosed last", states)
			}
		})
	}
}
