package proxy_test

import (
	"bufio"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/dbproxy/dbproxy/internal/testlog"
	"github.com/dbproxy/dbproxy/proxy"
)

// gated serves a toy protocol for the limit tests: a connection over a
// limit is told so in one line; any other stays in its handshake until
// the client sends 'H', then gets "ok" and an echo. Every accepted
// connection is announced on started, in accept order.
type gated struct {
	started chan *proxy.Conn
}

func newGated() *gated { return &gated{started: make(chan *proxy.Conn, 100)} }

func (g *gated) ServeConn(ctx context.Context, c *proxy.Conn) {
	g.started <- c
	nc := c.NetConn()
	if err := c.Admission(); err != nil {
		_, _ = io.WriteString(nc, "refused: "+err.Error()+"\n")
		return
	}
	var b [1]byte
	if _, err := io.ReadFull(nc, b[:]); err != nil || b[0] != 'H' {
		return
	}
	c.SetState(proxy.StateIdle)
	if _, err := io.WriteString(nc, "ok\n"); err != nil {
		return
	}
	_, _ = io.Copy(nc, nc)
}

// dialFrom connects to addr from the loopback address ip (Linux routes all
// of 127.0.0.0/8 to lo), so that tests have several client sources. It
// waits until the server has accepted the connection.
func dialFrom(t *testing.T, g *gated, addr, ip string) (net.Conn, *proxy.Conn) {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	select {
	case pc := <-g.started:
		if pc.NetConn().RemoteAddr().String() != c.LocalAddr().String() {
			t.Fatalf("accepted %s, want %s", pc.NetConn().RemoteAddr(), c.LocalAddr())
		}
		return c, pc
	case <-time.After(30 * time.Second):
		t.Fatal("connection not accepted")
	}
	return nil, nil
}

// hello completes the toy handshake and returns the server's line.
func hello(t *testing.T, c net.Conn) string {
	t.Helper()
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	defer func() { _ = c.SetDeadline(time.Time{}) }()
	if _, err := c.Write([]byte{'H'}); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	return strings.TrimSpace(line)
}

// waitClosed waits until the server has closed c (the client reads EOF or
// a reset).
func waitClosed(t *testing.T, c net.Conn) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
	var b [64]byte
	for {
		_, err := c.Read(b[:])
		if err == nil {
			continue
		}
		if errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) || strings.Contains(err.Error(), "reset") {
			return
		}
		t.Fatalf("connection not closed by the server: %v", err)
	}
}

// wantHello fails the test unless each of conns gets through to the
// handler; what says which connections they are.
func wantHello(t *testing.T, what string, conns ...net.Conn) {
	t.Helper()
	for _, c := range conns {
		if got := hello(t, c); got != "ok" {
			t.Fatalf("%s: %q", what, got)
		}
	}
}

// loggingServer is a server of h with limits whose logs are kept.
func loggingServer(h proxy.Handler, limits proxy.Limits) (*proxy.Server, *testlog.Buffer) {
	logs := &testlog.Buffer{}
	return &proxy.Server{Handler: h, Limits: limits, Logger: slog.New(slog.NewTextHandler(logs, nil))}, logs
}

func waitNumConns(t *testing.T, srv *proxy.Server, n int) {
	t.Helper()
	for start := time.Now(); srv.NumConns() != n; time.Sleep(time.Millisecond) {
		if time.Since(start) > 30*time.Second {
			t.Fatalf("%d connections, want %d", srv.NumConns(), n)
		}
	}
}

func TestLimitMaxConnections(t *testing.T) {
	g := newGated()
	srv, logs := loggingServer(g, proxy.Limits{MaxConnections: 2})
	addr, _ := serve(t, srv)
	c1, _ := dialFrom(t, g, addr, "127.0.0.1")
	c2, _ := dialFrom(t, g, addr, "127.0.0.2")
	wantHello(t, "under the limit", []net.Conn{c1, c2}...)
	c3, pc3 := dialFrom(t, g, addr, "127.0.0.3")
	var le *proxy.LimitError
	if !errors.As(pc3.Admission(), &le) || le.Setting != "max_connections" || le.Limit != 2 {
		t.Fatalf("Admission() = %v, want max_connections", pc3.Admission())
	}
	if got, want := hello(t, c3), "refused: dbproxy: too many connections (limits.max_connections = 2)"; got != want {
		t.Fatalf("over the limit: %q, want %q", got, want)
	}
	waitClosed(t, c3)
	// A refused connection does not hold a slot; a closed one frees its.
	_ = c1.Close()
	waitNumConns(t, srv, 1)
	c4, _ := dialFrom(t, g, addr, "127.0.0.1")
	wantHello(t, "after a close", c4)
	if n := srv.Counters().Refused; n != 1 {
		t.Fatalf("Refused = %d, want 1", n)
	}
	if !strings.Contains(logs.String(), "setting=limits.max_connections") {
		t.Fatalf("refusal not logged:\n%s", logs.String())
	}
}

func TestLimitMaxConnectionsPerSource(t *testing.T) {
	g := newGated()
	srv := &proxy.Server{Handler: g, Limits: proxy.Limits{MaxConnectionsPerSource: 2}}
	addr, _ := serve(t, srv)
	a1, _ := dialFrom(t, g, addr, "127.0.0.5")
	a2, _ := dialFrom(t, g, addr, "127.0.0.5")
	a3, pc := dialFrom(t, g, addr, "127.0.0.5")
	b1, _ := dialFrom(t, g, addr, "127.0.0.6")
	wantHello(t, "under the limit", []net.Conn{a1, a2, b1}...)
	if got, want := hello(t, a3), "refused: dbproxy: too many connections (limits.max_connections_per_source = 2)"; got != want {
		t.Fatalf("third from one source: %q, want %q", got, want)
	}
	var le *proxy.LimitError
	if !errors.As(pc.Admission(), &le) || le.Setting != "max_connections_per_source" {
		t.Fatalf("Admission() = %v", pc.Admission())
	}
	waitClosed(t, a3)
	_ = a1.Close()
	waitNumConns(t, srv, 2)
	a4, _ := dialFrom(t, g, addr, "127.0.0.5")
	wantHello(t, "after a close", a4)
}

// TestLimitHandshakeEviction: at max_handshakes, a new connection closes
// the oldest handshake of the source holding the most; connections past
// their handshake are never touched, so a client that completes its
// handshake gets through however many stalled ones arrive.
func TestLimitHandshakeEviction(t *testing.T) {
	g := newGated()
	srv, logs := loggingServer(g, proxy.Limits{MaxHandshakes: 3})
	addr, _ := serve(t, srv)
	const flood, legit = "127.0.0.7", "127.0.0.8"

	l1, _ := dialFrom(t, g, addr, legit) // the oldest, but its source holds fewer
	f1, _ := dialFrom(t, g, addr, flood)
	f2, _ := dialFrom(t, g, addr, flood)
	f3, _ := dialFrom(t, g, addr, flood) // 4th: evicts f1
	waitClosed(t, f1)
	wantHello(t, "legitimate client", l1)
	f4, _ := dialFrom(t, g, addr, flood) // a slot is free: nobody evicted
	l2, _ := dialFrom(t, g, addr, legit) // evicts f2
	wantHello(t, "second legitimate client", l2)
	waitClosed(t, f2)
	// A long flood: every one evicts an older flood connection, never a
	// completed session.
	var fl []net.Conn
	for range 20 {
		c, _ := dialFrom(t, g, addr, flood)
		fl = append(fl, c)
	}
	waitClosed(t, f3)
	waitClosed(t, f4)
	for _, c := range fl[:len(fl)-3] {
		waitClosed(t, c)
	}
	if n := srv.Counters().Evicted; n != 2+19 { // the first of the 20 took the slot l2 freed
		t.Fatalf("Evicted = %d, want 21", n)
	}
	for _, c := range []net.Conn{l1, l2} {
		roundTripConn(t, c, "still here")
	}
	// The last three flood connections still hold the slots; they are
	// still open and may complete.
	wantHello(t, "newest flood connection", fl[len(fl)-3:]...)
	// The busiest source pays, not the oldest handshake.
	y1, _ := dialFrom(t, g, addr, "127.0.0.10")
	x1, _ := dialFrom(t, g, addr, "127.0.0.9")
	x2, _ := dialFrom(t, g, addr, "127.0.0.9")
	y2, _ := dialFrom(t, g, addr, "127.0.0.10") // evicts x1, not y1
	waitClosed(t, x1)
	wantHello(t, "not of the busiest source", []net.Conn{y1, x2, y2}...)
	if !strings.Contains(logs.String(), "limit=3") || !strings.Contains(logs.String(), "max_handshakes") {
		t.Fatalf("eviction not logged:\n%s", logs.String())
	}
}

// TestLimitHandshakeDone: HandshakeDone frees the slot even before the
// handler reports a state.
func TestLimitHandshakeDone(t *testing.T) {
	started := make(chan *proxy.Conn, 10)
	srv := &proxy.Server{Limits: proxy.Limits{MaxHandshakes: 1}, Handler: handlerFunc(func(ctx context.Context, c *proxy.Conn) {
		c.HandshakeDone()
		started <- c
		_, _ = io.Copy(c.NetConn(), c.NetConn())
	})}
	addr, _ := serve(t, srv)
	var conns []net.Conn
	for range 5 {
		c := dialTest(t, addr)
		defer c.Close()
		<-started
		conns = append(conns, c)
	}
	for _, c := range conns {
		roundTripConn(t, c, "x")
	}
	if n := srv.Counters().Evicted; n != 0 {
		t.Fatalf("Evicted = %d, want 0", n)
	}
}

// TestIdleTimeout: a session idle for limits.idle_timeout is drained with
// DrainIdleTimeout; activity stops the clock and a new idle period starts
// it afresh; an active session (a transaction) is never timed out.
func TestIdleTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := &fakeListener{results: make(chan acceptResult), closed: make(chan struct{})}
		type ended struct {
			reason proxy.DrainReason
			at     time.Time
		}
		endedc := make(chan ended, 4)
		srv := &proxy.Server{Limits: proxy.Limits{IdleTimeout: 10 * time.Second}, Handler: handlerFunc(func(ctx context.Context, c *proxy.Conn) {
			nc := c.NetConn()
			c.OnDrain(func() { _ = nc.SetReadDeadline(time.Unix(1, 0)) })
			c.SetState(proxy.StateIdle)
			var b [1]byte
			for {
				if _, err := nc.Read(b[:]); err != nil {
					if c.Draining() {
						endedc <- ended{c.DrainReason(), time.Now()}
					}
					return
				}
				switch b[0] {
				case 'B': // begin: busy until 'E'
					c.SetState(proxy.StateActive)
				case 'E':
					c.SetState(proxy.StateIdle)
				}
			}
		})}
		done := make(chan error, 1)
		go func() { done <- srv.Serve(l) }()
		open := func() net.Conn {
			a, b := net.Pipe()
			l.results <- acceptResult{c: a}
			return b
		}
		start := time.Now()

		idle := open()
		busy := open()
		time.Sleep(5 * time.Second)
		if _, err := busy.Write([]byte{'B'}); err != nil {
			t.Fatal(err)
		}
		e := <-endedc
		if e.reason != proxy.DrainIdleTimeout || e.at.Sub(start) != 10*time.Second {
			t.Fatalf("idle session ended for %v after %v, want idle timeout after 10s", e.reason, e.at.Sub(start))
		}
		_ = idle.Close()

		// In its transaction for a minute: not timed out.
		time.Sleep(time.Minute)
		synctest.Wait()
		select {
		case e := <-endedc:
			t.Fatalf("busy session ended (%v)", e.reason)
		default:
		}
		// Idle again: the clock starts from there.
		if _, err := busy.Write([]byte{'E'}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(9 * time.Second)
		if _, err := busy.Write([]byte{'B'}); err != nil { // active just before the timeout
			t.Fatal(err)
		}
		if _, err := busy.Write([]byte{'E'}); err != nil {
			t.Fatal(err)
		}
		idleAt := time.Now()
		e = <-endedc
		if e.reason != proxy.DrainIdleTimeout || e.at.Sub(idleAt) != 10*time.Second {
			t.Fatalf("session ended for %v %v after it became idle, want idle timeout after 10s", e.reason, e.at.Sub(idleAt))
		}
		_ = busy.Close()
		if n := srv.Counters().IdleTimeouts; n != 2 {
			t.Fatalf("IdleTimeouts = %d, want 2", n)
		}
		_ = srv.Close()
		<-done
	})
}
