package proxy_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	"github.com/dbproxy/dbproxy/proxy"
)

// handlerFunc adapts a func to proxy.Handler.
type handlerFunc func(ctx context.Context, c *proxy.Conn)

func (f handlerFunc) ServeConn(ctx context.Context, c *proxy.Conn) { f(ctx, c) }

// echo serves until the peer closes; on drain it ends at once (always idle).
func echo(ctx context.Context, c *proxy.Conn) {
	c.OnDrain(func() { _ = c.NetConn().SetReadDeadline(time.Unix(1, 0)) })
	c.SetState(proxy.StateIdle)
	_, _ = io.Copy(c.NetConn(), c.NetConn())
}

func serve(t *testing.T, srv *proxy.Server) (addr string, done chan error) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done = make(chan error, 1)
	go func() { done <- srv.Serve(l) }()
	t.Cleanup(func() { _ = srv.Close() })
	return l.Addr().String(), done
}

// dialTest connects to addr or fails the test.
func dialTest(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func roundTrip(t *testing.T, addr, s string) {
	t.Helper()
	c := dialTest(t, addr)
	defer c.Close()
	if _, err := c.Write([]byte(s)); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, len(s))
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != s {
		t.Fatalf("echo: %q %v", buf, err)
	}
}

func TestServeAndShutdown(t *testing.T) {
	srv := &proxy.Server{Handler: handlerFunc(echo)}
	addr, done := serve(t, srv)
	roundTrip(t, addr, "hello")
	held := dialTest(t, addr) // an idle connection, drained by Shutdown
	defer held.Close()
	roundTripConn(t, held, "x")
	if err := srv.Shutdown(context.Background()); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if err := <-done; !errors.Is(err, proxy.ErrServerClosed) {
		t.Fatalf("Serve: %v, want ErrServerClosed", err)
	}
	if _, err := net.Dial("tcp", addr); err == nil {
		t.Fatal("new connection accepted after Shutdown")
	}
	if n := srv.NumConns(); n != 0 {
		t.Fatalf("%d connections after Shutdown", n)
	}
	// Serve after Shutdown refuses at once.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Serve(l); !errors.Is(err, proxy.ErrServerClosed) {
		t.Fatalf("Serve after Shutdown: %v", err)
	}
}

func roundTripConn(t *testing.T, c net.Conn, s string) {
	t.Helper()
	if _, err := c.Write([]byte(s)); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, len(s))
	if _, err := io.ReadFull(c, buf); err != nil {
		t.Fatal(err)
	}
}

// TestShutdownWaitsForBusy: a busy connection delays Shutdown until it
// finishes; one that never does is closed hard when ctx expires, and its
// context is cancelled.
func TestShutdownWaitsForBusy(t *testing.T) {
	release := make(chan struct{})
	ctxDone := make(chan struct{})
	started := make(chan struct{}, 2)
	srv := &proxy.Server{Handler: handlerFunc(func(ctx context.Context, c *proxy.Conn) {
		c.SetState(proxy.StateActive)
		started <- struct{}{}
		<-release
	})}
	addr, _ := serve(t, srv)
	c1 := dialTest(t, addr)
	defer c1.Close()
	<-started

	shut := make(chan error, 1)
	go func() { shut <- srv.Shutdown(context.Background()) }()
	select {
	case err := <-shut:
		t.Fatalf("Shutdown returned %v while a connection was busy", err)
	case <-time.After(50 * time.Millisecond):
	}
	close(release)
	if err := <-shut; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}

	// A second server whose connection never finishes.
	srv2 := &proxy.Server{Handler: handlerFunc(func(ctx context.Context, c *proxy.Conn) {
		c.SetState(proxy.StateActive)
		started <- struct{}{}
		<-ctx.Done()
		close(ctxDone)
	})}
	addr2, _ := serve(t, srv2)
	c2 := dialTest(t, addr2)
	defer c2.Close()
	<-started
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := srv2.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shutdown: %v, want deadline exceeded", err)
	}
	<-ctxDone // the handler's context was cancelled
	if _, err := c2.Read(make([]byte, 1)); err == nil {
		t.Fatal("connection still open after the hard close")
	}
}

func TestPanicClosesOnlyThatConnection(t *testing.T) {
	var logs strings.Builder
	var mu sync.Mutex
	srv := &proxy.Server{
		Logger: slog.New(slog.NewTextHandler(lockedWriter{&mu, &logs}, nil)),
		Handler: handlerFunc(func(ctx context.Context, c *proxy.Conn) {
			buf := make([]byte, 5)
			if _, err := io.ReadFull(c.NetConn(), buf); err != nil {
				return
			}
			if string(buf) == "panic" {
				panic("boom")
			}
			_, _ = c.NetConn().Write(buf)
		}),
	}
	addr, _ := serve(t, srv)
	c := dialTest(t, addr)
	defer c.Close()
	if _, err := c.Write([]byte("panic")); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Fatal("panicking connection not closed")
	}
	roundTrip(t, addr, "hello") // the server still serves
	mu.Lock()
	defer mu.Unlock()
	if !strings.Contains(logs.String(), "panicked") || !strings.Contains(logs.String(), "boom") {
		t.Fatalf("panic not logged: %s", logs.String())
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (w lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.w.Write(p)
}

func TestConnStateHook(t *testing.T) {
	var mu sync.Mutex
	var states []proxy.ConnState
	closed := make(chan struct{})
	srv := &proxy.Server{
		Handler: handlerFunc(func(ctx context.Context, c *proxy.Conn) {
			c.SetState(proxy.StateActive)
			c.SetState(proxy.StateActive) // no change: not reported
			c.SetState(proxy.StateIdle)
		}),
		ConnState: func(c *proxy.Conn, s proxy.ConnState) {
			mu.Lock()
			states = append(states, s)
			mu.Unlock()
			if s == proxy.StateClosed {
				close(closed)
			}
		},
	}
	addr, _ := serve(t, srv)
	c := dialTest(t, addr)
	defer c.Close()
	<-closed
	mu.Lock()
	defer mu.Unlock()
	want := []proxy.ConnState{proxy.StateNew, proxy.StateActive, proxy.StateIdle, proxy.StateClosed}
	if len(states) != len(want) {
		t.Fatalf("states %v, want %v", states, want)
	}
	for i := range want {
		if states[i] != want[i] {
			t.Fatalf("states %v, want %v", states, want)
		}
	}
}

// fakeListener returns queued results from Accept.
type fakeListener struct {
	results chan acceptResult
	closed  chan struct{}
	once    sync.Once
}

type acceptResult struct {
	c   net.Conn
	err error
}

func (l *fakeListener) Accept() (net.Conn, error) {
	select {
	case r := <-l.results:
		return r.c, r.err
	case <-l.closed:
		return nil, net.ErrClosed
	}
}

func (l *fakeListener) Close() error {
	l.once.Do(func() { close(l.closed) })
	return nil
}

func (l *fakeListener) Addr() net.Addr { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1} }

// TestAcceptBackoff: EMFILE does not end Serve; it retries after 5 ms,
// 10 ms, 20 ms, ... up to 1 s, and resets after a success.
func TestAcceptBackoff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		emfile := &net.OpError{Op: "accept", Net: "tcp", Err: os.NewSyscallError("accept4", syscall.EMFILE)}
		l := &fakeListener{results: make(chan acceptResult), closed: make(chan struct{})}
		served := make(chan struct{}, 1)
		srv := &proxy.Server{Handler: handlerFunc(func(ctx context.Context, c *proxy.Conn) { served <- struct{}{} })}
		done := make(chan error, 1)
		go func() { done <- srv.Serve(l) }()

		var gaps []time.Duration
		last := time.Now()
		for range 10 {
			l.results <- acceptResult{err: emfile}
			now := time.Now()
			gaps = append(gaps, now.Sub(last))
			last = now
		}
		// Accept is called again only after the backoff.
		want := []time.Duration{0, 5, 10, 20, 40, 80, 160, 320, 640, 1000}
		for i, w := range want {
			if gaps[i] != w*time.Millisecond {
				t.Fatalf("gaps %v, want %v ms", gaps, want)
			}
		}
		a, b := net.Pipe()
		defer b.Close()
		l.results <- acceptResult{c: a}
		<-served
		if err := srv.Close(); err != nil {
			t.Fatal(err)
		}
		if err := <-done; !errors.Is(err, proxy.ErrServerClosed) {
			t.Fatalf("Serve: %v", err)
		}
	})
}

func TestAcceptPermanentError(t *testing.T) {
	l := &fakeListener{results: make(chan acceptResult, 1), closed: make(chan struct{})}
	l.results <- acceptResult{err: errors.New("listener broke")}
	srv := &proxy.Server{Handler: handlerFunc(echo)}
	if err := srv.Serve(l); err == nil || errors.Is(err, proxy.ErrServerClosed) || !strings.Contains(err.Error(), "listener broke") {
		t.Fatalf("Serve: %v, want the accept error", err)
	}
}
