package integration

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"go.uber.org/goleak"

	"github.com/dbproxy/dbproxy/internal/testenv"
	"github.com/dbproxy/dbproxy/internal/testlog"
	"github.com/dbproxy/dbproxy/proxy"
)

// servedProxy is a proxy.Server listening on a free port of Host (default
// 127.0.0.1) for one test, whatever its wire protocol.
type servedProxy struct {
	Addr   string
	Host   string
	Port   int
	CAFile string // CA of the client-facing certificate ("" without TLS)
	Srv    *proxy.Server
	Logs   *testlog.Buffer
	Limits proxy.Limits // the server's connection limits
	// RelayLoops is the server's (proxy.Server.RelayLoops).
	RelayLoops int

	serveErr chan error
}

// serve runs h until the test ends, then checks that Serve ended cleanly
// and prints the proxy's logs if the test failed.
func (p *servedProxy) serve(t testing.TB, h proxy.Handler, logger *slog.Logger) {
	t.Helper()
	if p.Host == "" {
		p.Host = "127.0.0.1"
	}
	l, err := net.Listen("tcp", net.JoinHostPort(p.Host, "0"))
	if err != nil {
		t.Fatal(err)
	}
	p.Srv = &proxy.Server{Handler: h, Logger: logger, Limits: p.Limits, RelayLoops: p.RelayLoops}
	p.Addr = l.Addr().String()
	p.Port = l.Addr().(*net.TCPAddr).Port
	go func() { p.serveErr <- p.Srv.Serve(l) }()
	t.Cleanup(func() {
		_ = p.Srv.Close()
		if err := <-p.serveErr; !errors.Is(err, proxy.ErrServerClosed) {
			t.Errorf("Serve returned %v, want ErrServerClosed", err)
		}
		if t.Failed() {
			t.Logf("proxy logs:\n%s", p.Logs.String())
		}
	})
}

// shutdown stops p gracefully (within 10 s) and checks that Serve ended
// with ErrServerClosed.
func (p *servedProxy) shutdown(t testing.TB, ctx context.Context) {
	t.Helper()
	sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := p.Srv.Shutdown(sctx); err != nil {
		t.Fatal(err)
	}
	if err := <-p.serveErr; !errors.Is(err, proxy.ErrServerClosed) {
		t.Fatalf("Serve: %v", err)
	}
	p.serveErr <- proxy.ErrServerClosed // for the cleanup
}

// verifyNoLeaks fails the test if a goroutine not in ignore survives, or
// if the proxy logged a panic.
func (p *servedProxy) verifyNoLeaks(t testing.TB, ignore goleak.Option) {
	t.Helper()
	goleak.VerifyNone(t, ignore)
	if strings.Contains(p.Logs.String(), "panic") {
		t.Fatalf("panic in logs:\n%s", p.Logs.String())
	}
}

// newServedProxy returns a servedProxy whose Logs collect the records of
// level and above, and the logger that writes them.
func newServedProxy(level slog.Level) (servedProxy, *slog.Logger) {
	logs := &testlog.Buffer{}
	logger := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: level}))
	return servedProxy{Logs: logs, serveErr: make(chan error, 1)}, logger
}

// offerTLS makes a certificate for localhost and 127.0.0.1, records its CA
// in p.CAFile and returns the proxy's server TLS configuration (protocols
// alpn).
func (p *servedProxy) offerTLS(t testing.TB, alpn ...string) *tls.Config {
	t.Helper()
	ca, cert, key := testenv.GenerateCert(t, t.TempDir(), "localhost", "127.0.0.1")
	cfg, err := proxy.ServerTLSConfig(cert, key, "", alpn...)
	if err != nil {
		t.Fatal(err)
	}
	p.CAFile = ca
	return cfg
}

// upstreamTLS returns the proxy's TLS leg to a server on host whose CA is
// caFile ("" without TLS): override when set, else mode (SSLDisable when
// 0), verifying against caFile when mode verifies.
func upstreamTLS(t testing.TB, mode proxy.SSLMode, override *proxy.UpstreamTLS, host, caFile string) proxy.UpstreamTLS {
	t.Helper()
	if override != nil {
		return *override
	}
	if mode == 0 {
		mode = proxy.SSLDisable
	}
	up := proxy.UpstreamTLS{Mode: mode, ServerName: host}
	if (mode == proxy.SSLVerifyCA || mode == proxy.SSLVerifyFull) && caFile != "" {
		up.RootCAs = caPool(t, caFile)
	}
	return up
}

// caPool loads the CA certificates of caFile.
func caPool(t testing.TB, caFile string) *x509.CertPool {
	t.Helper()
	pool, err := proxy.LoadCertPool(caFile)
	if err != nil {
		t.Fatal(err)
	}
	return pool
}

// upstreamConns is a proxy's Dial that keeps the connections it opens, so
// that a test can cut them under a running session.
type upstreamConns struct {
	mu  sync.Mutex
	fds []int
}

// dial dials addr and keeps a descriptor of its own for the socket: the
// proxy may move the socket to another descriptor (an event loop's), so
// closing the net.Conn it was given would not reach it.
func (u *upstreamConns) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	rc, err := c.(*net.TCPConn).SyscallConn()
	if err != nil {
		_ = c.Close()
		return nil, err
	}
	var fd int
	var derr error
	if err := rc.Control(func(s uintptr) { fd, derr = unix.Dup(int(s)) }); err != nil || derr != nil {
		_ = c.Close()
		return nil, errors.Join(err, derr)
	}
	u.mu.Lock()
	u.fds = append(u.fds, fd)
	u.mu.Unlock()
	return c, nil
}

// cut shuts down every upstream connection dialled so far: the proxy's
// reads end and its writes fail, as when the network drops them.
func (u *upstreamConns) cut() {
	u.mu.Lock()
	defer u.mu.Unlock()
	for _, fd := range u.fds {
		_ = unix.Shutdown(fd, unix.SHUT_RDWR)
		_ = unix.Close(fd)
	}
	u.fds = nil
}

// dialRaw opens a TCP connection to addr for hand-made bytes, with a
// deadline of timeout from now on all its I/O. It is closed when the test
// ends.
func dialRaw(t testing.TB, addr string, timeout time.Duration) net.Conn {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	_ = conn.SetDeadline(time.Now().Add(timeout))
	return conn
}
