package proxy_test

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dbproxy/dbproxy/proxy"
)

// switchResolver resolves every name to what the test set last, and
// counts lookups.
type switchResolver struct {
	mu      sync.Mutex
	addrs   []string
	lookups int
}

func (r *switchResolver) set(addrs ...string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.addrs = addrs
}

func (r *switchResolver) LookupHost(_ context.Context, _ string) ([]string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.lookups++
	return append([]string(nil), r.addrs...), nil
}

// listenOn listens on ip:port ("0": any free port) until the test ends,
// accepting and holding connections; it returns the port.
func listenOn(t *testing.T, ip, port string) string {
	t.Helper()
	l, err := net.Listen("tcp", net.JoinHostPort(ip, port))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			t.Cleanup(func() { _ = c.Close() })
		}
	}()
	_, p, _ := net.SplitHostPort(l.Addr().String())
	return p
}

// freePort returns a port nothing listens on at 127.0.0.1 (connection
// refused).
func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	_, p, _ := net.SplitHostPort(l.Addr().String())
	_ = l.Close()
	return p
}

func newUpstream(t *testing.T, c proxy.UpstreamConfig) *proxy.Upstream {
	t.Helper()
	if c.TLS.Mode == 0 {
		c.TLS.Mode = proxy.SSLDisable
	}
	c.DefaultTimeout = 10 * time.Second
	u, err := proxy.NewUpstream(c)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func remoteIP(t *testing.T, c net.Conn) string {
	t.Helper()
	host, _, err := net.SplitHostPort(c.RemoteAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	return host
}

// TestUpstreamResolvesEveryDial: nothing pins an address; each dial asks
// the resolver again, so moving the name moves new connections.
func TestUpstreamResolvesEveryDial(t *testing.T) {
	port := listenOn(t, "127.0.0.2", "0")
	listenOn(t, "127.0.0.3", port)
	r := &switchResolver{}
	r.set("127.0.0.2")
	u := newUpstream(t, proxy.UpstreamConfig{Addr: "db.example.test:" + port, Resolver: r})
	for i, want := range []string{"127.0.0.2", "127.0.0.3"} {
		if i == 1 {
			r.set("127.0.0.3")
		}
		conn, host, err := u.Dial(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if got := remoteIP(t, conn); got != want || host.Addr != "db.example.test:"+port {
			t.Errorf("dial %d reached %s (host %s), want %s", i, got, host.Addr, want)
		}
		_ = conn.Close()
	}
	if r.lookups != 2 {
		t.Errorf("%d lookups for 2 dials, want 2", r.lookups)
	}
}

// TestUpstreamTriesEveryAddress: a name resolving to several addresses
// is tried in order until one accepts.
func TestUpstreamTriesEveryAddress(t *testing.T) {
	port := listenOn(t, "127.0.0.3", "0")
	r := &switchResolver{}
	r.set("127.0.0.2", "127.0.0.3") // nothing listens on 127.0.0.2:port
	var tried []string
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		tried = append(tried, addr)
		var d net.Dialer
		return d.DialContext(ctx, network, addr)
	}
	u := newUpstream(t, proxy.UpstreamConfig{Addr: "db.example.test:" + port, Resolver: r, Dial: dial})
	conn, _, err := u.Dial(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if got := remoteIP(t, conn); got != "127.0.0.3" {
		t.Errorf("reached %s, want 127.0.0.3", got)
	}
	want := []string{"127.0.0.2:" + port, "127.0.0.3:" + port}
	if strings.Join(tried, " ") != strings.Join(want, " ") {
		t.Errorf("dial attempts %v, want %v (one per address, in order)", tried, want)
	}
}

// TestUpstreamHostsInOrder: the first host that accepts wins; when none
// does, the error names every host tried and why.
func TestUpstreamHostsInOrder(t *testing.T) {
	dead, live := "127.0.0.1:"+freePort(t), "127.0.0.1:"+listenOn(t, "127.0.0.1", "0")
	u := newUpstream(t, proxy.UpstreamConfig{Addr: dead + ", " + live})
	conn, host, err := u.Dial(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	_ = conn.Close()
	if host.Addr != live {
		t.Errorf("dialled %s, want the second host %s", host.Addr, live)
	}

	dead2 := "127.0.0.1:" + freePort(t)
	u = newUpstream(t, proxy.UpstreamConfig{Addr: dead + "," + dead2})
	_, _, err = u.Dial(context.Background())
	var ue *proxy.UpstreamError
	if !errors.As(err, &ue) {
		t.Fatalf("error %v (%T), want *proxy.UpstreamError", err, err)
	}
	want := dead + " (connection refused), " + dead2 + " (connection refused)"
	if got := ue.Tried(); got != want {
		t.Errorf("Tried() = %q, want %q", got, want)
	}
}

// TestUpstreamReadWriteOrder: with read-write, new sessions start at the
// host that last took one; a host found read-only hands first place on.
func TestUpstreamReadWriteOrder(t *testing.T) {
	u := newUpstream(t, proxy.UpstreamConfig{Addr: "a:1,b:2,c:3", Target: proxy.TargetReadWrite})
	order := func() string {
		var s []string
		for _, h := range u.Hosts() {
			s = append(s, h.Addr)
		}
		return strings.Join(s, " ")
	}
	hosts := u.Hosts()
	if got := order(); got != "a:1 b:2 c:3" {
		t.Fatalf("initial order %s", got)
	}
	u.ReadOnly(hosts[0])
	if got := order(); got != "b:2 c:3 a:1" {
		t.Errorf("after a read-only: %s, want b:2 c:3 a:1", got)
	}
	u.ReadOnly(hosts[0]) // no longer first: nothing changes
	if got := order(); got != "b:2 c:3 a:1" {
		t.Errorf("after a read-only again: %s", got)
	}
	u.Writable(hosts[2])
	if got := order(); got != "c:3 a:1 b:2" {
		t.Errorf("after c writable: %s, want c:3 a:1 b:2", got)
	}

	any := newUpstream(t, proxy.UpstreamConfig{Addr: "a:1,b:2"})
	any.ReadOnly(any.Hosts()[0])
	if got := any.Hosts()[0].Addr; got != "a:1" {
		t.Errorf("any: first host %s, want a:1 (configured order)", got)
	}
}

// TestUpstreamServerNamePerHost: without a configured server name each
// host verifies its own name; a configured one applies to all.
func TestUpstreamServerNamePerHost(t *testing.T) {
	u := newUpstream(t, proxy.UpstreamConfig{Addr: "db1.example:5432,db2.example:5432",
		TLS: proxy.UpstreamTLS{Mode: proxy.SSLVerifyFull}})
	for i, h := range u.Hosts() {
		want := []string{"db1.example", "db2.example"}[i]
		if got := h.TLS().ServerName; got != want {
			t.Errorf("host %s: server name %q, want %q", h.Addr, got, want)
		}
	}
	u = newUpstream(t, proxy.UpstreamConfig{Addr: "db1.example:5432,db2.example:5432",
		TLS: proxy.UpstreamTLS{Mode: proxy.SSLVerifyFull, ServerName: "cluster.example"}})
	for _, h := range u.Hosts() {
		if got := h.TLS().ServerName; got != "cluster.example" {
			t.Errorf("host %s: server name %q, want cluster.example", h.Addr, got)
		}
	}
	for _, bad := range []string{"", " , ", "db1:5432,nohost", "db1:5432,:5432"} {
		if _, err := proxy.NewUpstream(proxy.UpstreamConfig{Addr: bad, TLS: proxy.UpstreamTLS{Mode: proxy.SSLDisable}}); err == nil {
			t.Errorf("NewUpstream(%q) accepted", bad)
		}
	}
}

// TestUpstreamBlackholeLeavesTimeForNext: a first host that never answers
// (packets dropped) gets only its share of the caller's deadline, so the
// second host is still tried within it, though the connect timeout alone
// would have spent it all on the first.
func TestUpstreamBlackholeLeavesTimeForNext(t *testing.T) {
	live := "127.0.0.1:" + listenOn(t, "127.0.0.1", "0")
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		if addr != live {
			<-ctx.Done() // a blackhole: no answer, no refusal
			return nil, ctx.Err()
		}
		var d net.Dialer
		return d.DialContext(ctx, network, addr)
	}
	u := newUpstream(t, proxy.UpstreamConfig{Addr: "192.0.2.1:5432," + live, Dial: dial, ConnectTimeout: time.Minute})
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Second)
	defer cancel()
	conn, host, err := u.Dial(ctx)
	if err != nil {
		t.Fatalf("the second host was not reached within the deadline: %v", err)
	}
	_ = conn.Close()
	if host.Addr != live {
		t.Errorf("reached %s, want %s", host.Addr, live)
	}
}
