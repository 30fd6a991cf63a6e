package integration

import (
	"errors"
	"log/slog"
	"net"
	"testing"

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
	Logs   *lockedBuffer
	Limits proxy.Limits // the server's connection limits

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
	p.Srv = &proxy.Server{Handler: h, Logger: logger, Limits: p.Limits}
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
