package testenv

import (
	"bytes"
	"io"
	"net"
	"sync"
	"testing"
	"time"
)

// NonLoopbackIP returns an address of this machine that is not loopback
// (a global unicast IPv4 address if there is one, else IPv6), for tests of
// rules that treat loopback connections specially: a connection from this
// machine to that address is local but not loopback to either end. A
// machine without one fails the test (never a skip).
func NonLoopbackIP(t testing.TB) net.IP {
	t.Helper()
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		t.Fatalf("testenv: list interface addresses: %v", err)
	}
	var v6 net.IP
	for _, a := range addrs {
		n, ok := a.(*net.IPNet)
		if !ok || !n.IP.IsGlobalUnicast() {
			continue
		}
		if ip4 := n.IP.To4(); ip4 != nil {
			return ip4
		}
		if v6 == nil {
			v6 = n.IP
		}
	}
	if v6 == nil {
		t.Fatal("testenv: this test needs a non-loopback IP address on this machine (for example a container's eth0); none found")
	}
	return v6
}

// Forwarder is a TCP relay started by [Forward]. It records what its
// clients sent, so that a test can prove a secret never crossed it.
type Forwarder struct {
	Addr string // host:port it listens on

	mu   sync.Mutex
	sent bytes.Buffer
}

// Sent returns a copy of every byte clients sent through the forwarder.
func (f *Forwarder) Sent() []byte {
	f.mu.Lock()
	defer f.mu.Unlock()
	return bytes.Clone(f.sent.Bytes())
}

func (f *Forwarder) Write(p []byte) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.sent.Write(p)
}

// Forward listens on ip (port chosen by the kernel) and relays each
// connection to target until the test ends. Pointing a proxy's upstream at
// it with a non-loopback ip makes that leg non-loopback.
func Forward(t testing.TB, ip net.IP, target string) *Forwarder {
	t.Helper()
	l, err := net.Listen("tcp", net.JoinHostPort(ip.String(), "0"))
	if err != nil {
		t.Fatalf("testenv: forwarder listen: %v", err)
	}
	f := &Forwarder{Addr: l.Addr().String()}
	var mu sync.Mutex
	var conns []net.Conn
	ended := false // the test's cleanup has closed conns
	serve(t, l, func(c net.Conn) {
		up, err := net.DialTimeout("tcp", target, 10*time.Second)
		if err != nil {
			return
		}
		defer up.Close()
		mu.Lock()
		if ended {
			mu.Unlock()
			return
		}
		conns = append(conns, c, up)
		mu.Unlock()
		relay(c, up, f)
	})
	// Registered after serve's: runs first, so that the relays end.
	t.Cleanup(func() {
		mu.Lock()
		defer mu.Unlock()
		ended = true
		for _, c := range conns {
			_ = c.Close()
		}
	})
	return f
}

// ServeTCP listens on 127.0.0.1 (port chosen by the kernel) until the test
// ends and runs handle on each connection in a goroutine of its own,
// closing the connection when handle returns. At the end of the test it
// stops listening and waits for the handlers. It returns the address.
func ServeTCP(t testing.TB, handle func(net.Conn)) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("testenv: listen: %v", err)
	}
	serve(t, l, handle)
	return l.Addr().String()
}

// serve accepts connections on l until the test ends, running handle on
// each in its own goroutine and closing it afterwards; the test's cleanup
// closes l and waits for the handlers.
func serve(t testing.TB, l net.Listener, handle func(net.Conn)) {
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				handle(c)
			}()
		}
	}()
	t.Cleanup(func() {
		_ = l.Close()
		wg.Wait()
	})
}

// relay copies between the client connection c and up both ways until
// both directions end, half-closing each side when its source ends and
// closing both when a copy fails. What c sends is also written to tee when
// tee is not nil.
func relay(c, up net.Conn, tee io.Writer) {
	from := io.Reader(c)
	if tee != nil {
		from = io.TeeReader(c, tee)
	}
	pipe := func(dst net.Conn, src io.Reader) {
		if _, err := io.Copy(dst, src); err != nil {
			_ = c.Close()
			_ = up.Close()
			return
		}
		closeWrite(dst)
	}
	sent := make(chan struct{})
	go func() {
		defer close(sent)
		pipe(up, from)
	}()
	pipe(c, up)
	<-sent
}

func closeWrite(c net.Conn) {
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
	}
}
