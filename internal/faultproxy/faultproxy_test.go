package faultproxy

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// echoServer echoes every connection and records how each ended.
type echoServer struct {
	ln   net.Listener
	wg   sync.WaitGroup
	mu   sync.Mutex
	ends []error // the read error that ended each connection (io.EOF, ECONNRESET, ...)
	open map[net.Conn]struct{}
}

func startEcho(t *testing.T) *echoServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &echoServer{ln: ln, open: map[net.Conn]struct{}{}}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.mu.Lock()
			s.open[c] = struct{}{}
			s.mu.Unlock()
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				_, err := io.Copy(c, c)
				if err == nil {
					err = io.EOF
				}
				s.mu.Lock()
				delete(s.open, c)
				s.ends = append(s.ends, err)
				s.mu.Unlock()
				_ = c.Close()
			}()
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		s.mu.Lock()
		for c := range s.open {
			_ = c.Close()
		}
		s.mu.Unlock()
		s.wg.Wait()
	})
	return s
}

func (s *echoServer) endings() []error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]error(nil), s.ends...)
}

func (s *echoServer) waitEndings(t *testing.T, n int) []error {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if e := s.endings(); len(e) >= n {
			return e
		}
		if time.Now().After(deadline) {
			t.Fatalf("the target saw %d connections end, want %d", len(s.endings()), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func startProxy(t *testing.T, target string) *Proxy {
	t.Helper()
	p, err := Start(context.Background(), target)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return p
}

func dial(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// startLink starts an echo target and a proxy in front of it, and returns
// them with a client connection that has made one round trip (msg).
func startLink(t *testing.T, msg string) (*echoServer, *Proxy, net.Conn) {
	t.Helper()
	echo := startEcho(t)
	p := startProxy(t, echo.ln.Addr().String())
	c := dial(t, p.Addr())
	roundTrip(t, c, msg)
	return echo, p, c
}

// roundTrip writes msg and reads it back within 10 s.
func roundTrip(t *testing.T, c net.Conn, msg string) {
	t.Helper()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write([]byte(msg)); err != nil {
		t.Fatalf("write: %v", err)
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatalf("read: %v", err)
	}
	if string(got) != msg {
		t.Fatalf("echo %q, want %q", got, msg)
	}
	_ = c.SetDeadline(time.Time{})
}

// expectSilence checks that nothing, not even EOF, arrives within d.
func expectSilence(t *testing.T, c net.Conn, d time.Duration) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(d))
	n, err := c.Read(make([]byte, 64))
	var ne net.Error
	if n != 0 || !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("read %d bytes, err %v; want nothing until the deadline", n, err)
	}
	_ = c.SetReadDeadline(time.Time{})
}

func TestForwardsAndCounts(t *testing.T) {
	echo := startEcho(t)
	p := startProxy(t, echo.ln.Addr().String())
	a, b := dial(t, p.Addr()), dial(t, p.Addr())
	roundTrip(t, a, "hello")
	roundTrip(t, b, "world")
	if p.Active() != 2 || p.Accepted() != 2 {
		t.Fatalf("active %d accepted %d, want 2 and 2", p.Active(), p.Accepted())
	}
	// A client's FIN reaches the target, and the link goes away.
	_ = a.(*net.TCPConn).CloseWrite()
	if _, err := io.ReadAll(a); err != nil {
		t.Fatalf("read after half-close: %v", err)
	}
	if e := echo.waitEndings(t, 1); !errors.Is(e[0], io.EOF) {
		t.Fatalf("target saw %v, want EOF", e[0])
	}
	roundTrip(t, b, "still here")
}

func TestLatency(t *testing.T) {
	_, p, c := startLink(t, "warm")
	p.SetLatency(ToUpstream, 120*time.Millisecond)
	p.SetLatency(ToClient, 80*time.Millisecond)
	start := time.Now()
	roundTrip(t, c, "slow")
	if rtt := time.Since(start); rtt < 200*time.Millisecond {
		t.Fatalf("round trip %v with 120ms+80ms of added latency", rtt)
	}
	p.SetLatency(ToUpstream, 0)
	p.SetLatency(ToClient, 0)
	roundTrip(t, c, "fast again")
}

func TestStallHoldsDataAndSockets(t *testing.T) {
	echo, p, c := startLink(t, "before")
	p.Stall()
	if _, err := c.Write([]byte("held")); err != nil {
		t.Fatal(err)
	}
	expectSilence(t, c, 300*time.Millisecond)
	// A connection made during the stall is held too.
	late := dial(t, p.Addr())
	if _, err := late.Write([]byte("late")); err != nil {
		t.Fatal(err)
	}
	expectSilence(t, late, 100*time.Millisecond)
	if n := len(echo.endings()); n != 0 {
		t.Fatalf("%d target connections ended during the stall", n)
	}
	p.Resume()
	got := make([]byte, 4)
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadFull(c, got); err != nil || string(got) != "held" {
		t.Fatalf("after the stall: %q %v", got, err)
	}
	_ = late.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadFull(late, got); err != nil || string(got) != "late" {
		t.Fatalf("connection made during the stall: %q %v", got, err)
	}
	roundTrip(t, c, "after")
}

func TestResetSendsRSTBothWays(t *testing.T) {
	echo, p, c := startLink(t, "x")
	if n := p.Reset(); n != 1 {
		t.Fatalf("Reset affected %d connections, want 1", n)
	}
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Read(make([]byte, 1)); !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("client read after Reset: %v, want ECONNRESET", err)
	}
	if e := echo.waitEndings(t, 1); !errors.Is(e[0], syscall.ECONNRESET) {
		t.Fatalf("target saw %v, want ECONNRESET", e[0])
	}
	roundTrip(t, dial(t, p.Addr()), "new connections work")
}

func TestHalfOpen(t *testing.T) {
	echo, p, c := startLink(t, "x")
	if n := p.HalfOpen(); n != 1 {
		t.Fatalf("HalfOpen affected %d connections, want 1", n)
	}
	// The target's side is gone ...
	if e := echo.waitEndings(t, 1); !errors.Is(e[0], io.EOF) {
		t.Fatalf("target saw %v, want EOF", e[0])
	}
	// ... while the client's writes are accepted and nothing comes back.
	for range 3 {
		if _, err := c.Write([]byte("into the void")); err != nil {
			t.Fatalf("write to a half-open connection: %v", err)
		}
	}
	expectSilence(t, c, 300*time.Millisecond)
	if p.Active() != 1 {
		t.Fatalf("active %d, want the half-open connection held", p.Active())
	}
	roundTrip(t, dial(t, p.Addr()), "new connections work")
	_ = c.Close()
	deadline := time.Now().Add(10 * time.Second)
	for p.Active() != 1 { // the new one is still open
		if time.Now().After(deadline) {
			t.Fatalf("active %d after the client closed the half-open connection", p.Active())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestRefuse(t *testing.T) {
	_, p, c := startLink(t, "x")
	if err := p.Refuse(true); err != nil {
		t.Fatal(err)
	}
	if _, err := net.DialTimeout("tcp", p.Addr(), 5*time.Second); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("dial while refusing: %v, want ECONNREFUSED", err)
	}
	roundTrip(t, c, "current connections go on")
	if err := p.Refuse(false); err != nil {
		t.Fatal(err)
	}
	roundTrip(t, dial(t, p.Addr()), "accepted again")
}

func TestUpstreamDownResetsClient(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	target := ln.Addr().String()
	_ = ln.Close() // nothing listens there now
	p := startProxy(t, target)
	c, err := net.DialTimeout("tcp", p.Addr(), 5*time.Second)
	if errors.Is(err, syscall.ECONNRESET) {
		return // the reset came before the dial returned
	}
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Read(make([]byte, 1)); !errors.Is(err, syscall.ECONNRESET) && !errors.Is(err, io.EOF) {
		t.Fatalf("read with the target down: %v, want the connection ended", err)
	}
}

func TestCloseEndsEverything(t *testing.T) {
	echo := startEcho(t)
	p, err := Start(context.Background(), echo.ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	held := dial(t, p.Addr())
	roundTrip(t, held, "x")
	half := dial(t, p.Addr())
	roundTrip(t, half, "y")
	p.HalfOpen()
	p.Stall()
	stalled := dial(t, p.Addr())
	_, _ = stalled.Write([]byte("z"))
	done := make(chan struct{})
	go func() { _ = p.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("Close did not return")
	}
	for _, c := range []net.Conn{held, half, stalled} {
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, err := c.Read(make([]byte, 1)); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("connection still open after Close: %v", err)
		}
	}
	if _, err := net.DialTimeout("tcp", p.Addr(), 5*time.Second); err == nil {
		t.Fatal("dial after Close succeeded")
	}
}
