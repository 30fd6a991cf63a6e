package netpark

import (
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// tcpPair returns both ends of a loopback TCP connection.
func tcpPair(t *testing.T) (a, b *net.TCPConn) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	ch := make(chan net.Conn, 1)
	go func() {
		c, _ := l.Accept()
		ch <- c
	}()
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	s := <-ch
	if s == nil {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { c.Close(); s.Close() })
	return c.(*net.TCPConn), s.(*net.TCPConn)
}

func newPoller(t *testing.T) *Poller {
	t.Helper()
	p, err := New()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return p
}

func TestWakeOnData(t *testing.T) {
	p := newPoller(t)
	a, b := tcpPair(t)
	woke := make(chan struct{}, 2)
	h, err := p.Park(b, func() { woke <- struct{}{} })
	if err != nil {
		t.Fatal(err)
	}
	if p.Len() != 1 {
		t.Fatalf("Len = %d, want 1", p.Len())
	}
	if _, err := a.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	<-woke
	// The socket reads normally through net.Conn after the wake.
	buf := make([]byte, 5)
	if _, err := io.ReadFull(b, buf); err != nil || string(buf) != "hello" {
		t.Fatalf("read %q, %v", buf, err)
	}
	if h.Unpark() {
		t.Fatal("Unpark after the wake woke again")
	}
	if p.Len() != 0 {
		t.Fatalf("Len = %d after wake, want 0", p.Len())
	}
	// Park again: a later read blocking in the runtime poller still works.
	if _, err := p.Park(b, func() { woke <- struct{}{} }); err != nil {
		t.Fatal(err)
	}
	go func() { _, _ = a.Write([]byte("again")) }()
	<-woke
	if _, err := io.ReadFull(b, buf); err != nil || string(buf) != "again" {
		t.Fatalf("read %q, %v", buf, err)
	}
	go func() {
		time.Sleep(10 * time.Millisecond)
		_, _ = a.Write([]byte("third"))
	}()
	if _, err := io.ReadFull(b, buf); err != nil || string(buf) != "third" {
		t.Fatalf("blocking read %q, %v", buf, err)
	}
	select {
	case <-woke:
		t.Fatal("woken twice")
	default:
	}
}

func TestWakeOnDataAlreadyThere(t *testing.T) {
	p := newPoller(t)
	a, b := tcpPair(t)
	if _, err := a.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1)
	if _, err := b.Read(buf); err != nil { // the runtime saw the edge already
		t.Fatal(err)
	}
	if _, err := a.Write([]byte("y")); err != nil {
		t.Fatal(err)
	}
	time.Sleep(10 * time.Millisecond) // let the data arrive before parking
	woke := make(chan struct{})
	if _, err := p.Park(b, func() { close(woke) }); err != nil {
		t.Fatal(err)
	}
	<-woke
}

func TestWakeOnHangup(t *testing.T) {
	p := newPoller(t)
	a, b := tcpPair(t)
	woke := make(chan struct{})
	if _, err := p.Park(b, func() { close(woke) }); err != nil {
		t.Fatal(err)
	}
	a.Close()
	<-woke
	if _, err := b.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("read after hangup: %v, want EOF", err)
	}
}

func TestUnpark(t *testing.T) {
	p := newPoller(t)
	a, b := tcpPair(t)
	var wakes atomic.Int32
	h, err := p.Park(b, func() { wakes.Add(1) })
	if err != nil {
		t.Fatal(err)
	}
	if !h.Unpark() {
		t.Fatal("Unpark of a parked socket reported false")
	}
	if h.Unpark() {
		t.Fatal("second Unpark reported true")
	}
	if _, err := a.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	// The socket is unregistered: closing it is safe, and no event comes.
	time.Sleep(20 * time.Millisecond)
	if n := wakes.Load(); n != 1 {
		t.Fatalf("wake ran %d times, want 1", n)
	}
}

// TestUnparkRacesEvent: data arriving while Unpark runs wakes exactly once.
func TestUnparkRacesEvent(t *testing.T) {
	p := newPoller(t)
	a, b := tcpPair(t)
	buf := make([]byte, 64)
	for i := range 2000 {
		var wakes atomic.Int32
		done := make(chan struct{})
		h, err := p.Park(b, func() {
			if wakes.Add(1) == 1 {
				close(done)
			}
		})
		if err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		wg.Add(2)
		go func() { defer wg.Done(); _, _ = a.Write([]byte{byte(i)}) }()
		go func() { defer wg.Done(); h.Unpark() }()
		wg.Wait()
		<-done
		if _, err := b.Read(buf); err != nil {
			t.Fatal(err)
		}
		if n := wakes.Load(); n != 1 {
			t.Fatalf("iteration %d: wake ran %d times", i, n)
		}
	}
	if p.Len() != 0 {
		t.Fatalf("Len = %d, want 0", p.Len())
	}
}

func TestCloseWakesParked(t *testing.T) {
	p, err := New()
	if err != nil {
		t.Fatal(err)
	}
	_, b := tcpPair(t)
	_, d := tcpPair(t)
	var wakes atomic.Int32
	for _, c := range []*net.TCPConn{b, d} {
		if _, err := p.Park(c, func() { wakes.Add(1) }); err != nil {
			t.Fatal(err)
		}
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if n := wakes.Load(); n != 2 {
		t.Fatalf("Close woke %d, want 2", n)
	}
	if _, err := p.Park(b, func() {}); err != ErrClosed {
		t.Fatalf("Park after Close: %v, want ErrClosed", err)
	}
	if err := p.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

// TestManyParked: many sockets, each woken once by its own data.
func TestManyParked(t *testing.T) {
	p := newPoller(t)
	const n = 200
	var wg sync.WaitGroup
	writers := make([]*net.TCPConn, n)
	for i := range n {
		a, b := tcpPair(t)
		writers[i] = a
		wg.Add(1)
		var once atomic.Int32
		if _, err := p.Park(b, func() {
			if once.Add(1) != 1 {
				t.Error("woken twice")
			}
			wg.Done()
		}); err != nil {
			t.Fatal(err)
		}
	}
	for _, a := range writers {
		if _, err := a.Write([]byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	wg.Wait()
}
