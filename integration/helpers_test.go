package integration

import (
	"context"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/dbproxy/dbproxy/proxy"
)

// legOpts is what the options of both protocols' in-process test proxies
// (proxyOpts, myProxyOpts) have in common: the TLS legs, the addresses,
// dialling and limits. Each converts to it with its legs method.
type legOpts struct {
	ClientTLS        bool               // offer TLS to clients
	RequireTLS       bool               // refuse plaintext clients
	Upstream         proxy.SSLMode      // default SSLDisable
	UpstreamTLS      *proxy.UpstreamTLS // overrides Upstream
	Dial             func(ctx context.Context, network, addr string) (net.Conn, error)
	ListenHost       string // address the proxy listens on; default 127.0.0.1
	UpstreamAddr     string // host:port of the server; default the server's address
	Limits           proxy.Limits
	HandshakeTimeout time.Duration
	RelayLoops       int // proxy.Server.RelayLoops: -1 relays every session on goroutines
}

// testServer is the server a test proxy is put in front of.
type testServer struct {
	addr   string // host:port
	host   string // the name its certificate is checked against
	caFile string // its CA ("" without TLS)
}

// start makes p a test proxy named name in front of srv with the legs o:
// it builds the listener options (a client-facing certificate offering
// alpn when o asks for client TLS), has newHandler build the protocol's
// handler from them, and serves it until the test ends (then hard).
func (p *servedProxy) start(t testing.TB, o legOpts, name string, srv testServer, alpn []string, newHandler func(proxy.ListenerOptions) (proxy.Handler, error)) {
	t.Helper()
	sp, logger := newServedProxy(slog.LevelDebug)
	*p = sp
	p.Host, p.Limits, p.RelayLoops = o.ListenHost, o.Limits, o.RelayLoops
	lo := proxy.ListenerOptions{
		Name:             name,
		Upstream:         srv.addr,
		UpstreamTLS:      upstreamTLS(t, o.Upstream, o.UpstreamTLS, srv.host, srv.caFile),
		Logger:           logger,
		Dial:             o.Dial,
		HandshakeTimeout: o.HandshakeTimeout,
	}
	if o.UpstreamAddr != "" {
		lo.Upstream = o.UpstreamAddr
	}
	if o.ClientTLS || o.RequireTLS {
		lo.TLS, lo.RequireTLS = p.offerTLS(t, alpn...), o.RequireTLS
	}
	h, err := newHandler(lo)
	if err != nil {
		t.Fatal(err)
	}
	p.serve(t, h, logger)
}

// testCtx is a context for one test's statements, cancelled when it ends.
func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func freeTCPPort() (int, error) {
	for {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, err
		}
		port := l.Addr().(*net.TCPAddr).Port
		_ = l.Close()
		// The kernel may hand the same port out again at once: two
		// listeners of one configuration got one port that way.
		if _, dup := portsHandedOut.LoadOrStore(port, true); !dup {
			return port, nil
		}
	}
}

// portsHandedOut holds every port freeTCPPort has returned in this test
// binary.
var portsHandedOut sync.Map

func dialTimeout(addr string, d time.Duration) (net.Conn, error) {
	return net.DialTimeout("tcp", addr, d)
}
