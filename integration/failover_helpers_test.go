package integration

import (
	"context"
	"io"
	"log/slog"
	"net"
	"sync"
	"testing"

	"github.com/dbproxy/dbproxy/proxy"
	"github.com/dbproxy/dbproxy/proxy/mysql"
	"github.com/dbproxy/dbproxy/proxy/postgres"
)

// dnsSwitch is the resolver of a failover test: every name resolves to
// the address set last, as a cluster endpoint's DNS record that moves to
// the new writer.
type dnsSwitch struct {
	mu   sync.Mutex
	addr string
}

func (d *dnsSwitch) set(addr string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.addr = addr
}

func (d *dnsSwitch) LookupHost(context.Context, string) ([]string, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return []string{d.addr}, nil
}

// hostRelay stands for a database host at its own IP address: it listens
// on ip:port and relays each connection to a test server's real address,
// so that two servers on different ports can sit behind one host:port
// whose name a resolver moves.
type hostRelay struct {
	port string
	l    net.Listener
	wg   sync.WaitGroup

	mu    sync.Mutex
	conns []net.Conn
}

// startHostRelay listens on ip:port ("0": a free port) and relays to
// target until close or the end of the test.
func startHostRelay(t testing.TB, ip, port, target string) *hostRelay {
	t.Helper()
	l, err := net.Listen("tcp", net.JoinHostPort(ip, port))
	if err != nil {
		t.Fatalf("relay listen on %s: %v", ip, err)
	}
	_, p, _ := net.SplitHostPort(l.Addr().String())
	r := &hostRelay{port: p, l: l}
	r.wg.Go(func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			r.wg.Go(func() { r.relay(c, target) })
		}
	})
	t.Cleanup(r.close)
	return r
}

func (r *hostRelay) relay(c net.Conn, target string) {
	defer c.Close()
	up, err := net.Dial("tcp", target)
	if err != nil {
		return
	}
	defer up.Close()
	r.mu.Lock()
	r.conns = append(r.conns, c, up)
	r.mu.Unlock()
	done := make(chan struct{}, 2)
	pipe := func(dst, src net.Conn) {
		_, _ = io.Copy(dst, src)
		_ = dst.Close()
		done <- struct{}{}
	}
	go pipe(up, c)
	go pipe(c, up)
	<-done
	<-done
}

// close stops listening (the host's address is gone), ends the relayed
// connections and waits for the relays.
func (r *hostRelay) close() {
	_ = r.l.Close()
	r.mu.Lock()
	for _, c := range r.conns {
		_ = c.Close()
	}
	r.mu.Unlock()
	r.wg.Wait()
}

// failoverOpts are the upstream settings of a failover test's proxy.
type failoverOpts struct {
	Upstream string // one or more host:port, comma-separated
	Resolver proxy.Resolver
	Target   proxy.TargetSessionAttrs
	TLS      *proxy.UpstreamTLS // nil: sslmode disable
}

// movableName returns an upstream host:port whose name dns resolves to
// 127.0.0.2, relayed to first (h1), until the test sets 127.0.0.3,
// relayed to second.
func movableName(t testing.TB, first, second string) (string, *dnsSwitch, *hostRelay) {
	t.Helper()
	h1 := startHostRelay(t, "127.0.0.2", "0", first)
	startHostRelay(t, "127.0.0.3", h1.port, second)
	dns := &dnsSwitch{}
	dns.set("127.0.0.2")
	return "cluster.failover.test:" + h1.port, dns, h1
}

// startFailoverPG starts a PostgreSQL proxy with o's upstream.
func startFailoverPG(t testing.TB, o failoverOpts) *servedProxy {
	return startFailover(t, o, "pg-failover", func(lo proxy.ListenerOptions) (proxy.Handler, error) {
		return postgres.NewHandler(postgres.Options{ListenerOptions: lo})
	})
}

// startFailoverMySQL starts a MySQL proxy with o's upstream.
func startFailoverMySQL(t testing.TB, o failoverOpts) *servedProxy {
	return startFailover(t, o, "mysql-failover", func(lo proxy.ListenerOptions) (proxy.Handler, error) {
		return mysql.NewHandler(mysql.Options{ListenerOptions: lo})
	})
}

func startFailover(t testing.TB, o failoverOpts, name string,
	build func(proxy.ListenerOptions) (proxy.Handler, error)) *servedProxy {
	t.Helper()
	sp, logger := newServedProxy(slog.LevelDebug)
	up := proxy.UpstreamTLS{Mode: proxy.SSLDisable}
	if o.TLS != nil {
		up = *o.TLS
	}
	h, err := build(proxy.ListenerOptions{Name: name, Upstream: o.Upstream, Resolver: o.Resolver,
		TargetSessionAttrs: o.Target, UpstreamTLS: up, Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	sp.serve(t, h, logger)
	return &sp
}
