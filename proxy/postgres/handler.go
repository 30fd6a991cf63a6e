package postgres

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"sync/atomic"
	"time"

	"github.com/dbproxy/dbproxy/internal/rawio"
	"github.com/dbproxy/dbproxy/proxy"
)

// ALPN is the TLS application protocol PostgreSQL clients offer; direct SSL
// (PostgreSQL 17 sslnegotiation=direct) requires it.
const ALPN = "postgresql"

// DefaultHandshakeTimeout is the handshake timeout of a Handler whose
// Options leave it zero.
const DefaultHandshakeTimeout = 30 * time.Second

// Options configure a [Handler]: one listener forwarding to one server.
// Without ListenerOptions.TLS, SSLRequest is answered 'N'; a TLS
// configuration without NextProtos gets [ALPN]. A client still in its
// startup when ListenerOptions.HandshakeTimeout expires gets FATAL 57014
// (as from the server's authentication_timeout).
type Options struct {
	proxy.ListenerOptions
	// Interceptor, if set, may inspect and rewrite messages of each session.
	Interceptor Interceptor
	// MaxMessageSize bounds the body of one client message; default
	// DefaultMaxMessageSize (1 GB, as the server).
	MaxMessageSize int
}

// Handler is the PostgreSQL protocol of a listener; it implements
// proxy.Handler. Create it with [NewHandler].
type Handler struct {
	proxy.ListenerBase
	opts   Options
	keys   *cancelKeys
	nextID atomic.Uint64
}

var _ proxy.Handler = (*Handler)(nil)

// NewHandler validates opts and returns a Handler.
func NewHandler(opts Options) (*Handler, error) {
	base, err := opts.Prepare(DefaultHandshakeTimeout)
	if err != nil {
		return nil, fmt.Errorf("postgres: %w", err)
	}
	if opts.TLS != nil && len(opts.TLS.NextProtos) == 0 {
		opts.TLS.NextProtos = []string{ALPN}
	}
	if opts.MaxMessageSize <= 0 || opts.MaxMessageSize > DefaultMaxMessageSize {
		opts.MaxMessageSize = DefaultMaxMessageSize
	}
	return &Handler{opts: opts, ListenerBase: base, keys: newCancelKeys()}, nil
}

// ServeConn serves one client connection (proxy.Handler).
func (h *Handler) ServeConn(ctx context.Context, c *proxy.Conn) {
	nc := rawio.Wrap(c.NetConn()) // the server's wrapper, if it wrapped
	id := h.nextID.Add(1)
	s := &session{
		h:         h,
		pc:        c,
		id:        id,
		rawClient: nc,
		client:    nc,
		log: h.Log.With(
			slog.Uint64("conn", id),
			slog.String("remote", nc.RemoteAddr().String())),
	}
	s.serve(ctx)
}

// dialHost connects to host (to addr instead when set: a cancel request
// goes to the server its session is on) within ctx, which carries the
// connect timeout, and negotiates TLS per sslmode. It reports whether the
// connection is TLS.
func (h *Handler) dialHost(ctx context.Context, host *proxy.UpstreamHost, addr string) (net.Conn, bool, error) {
	dial := func() (net.Conn, error) {
		if addr != "" {
			return h.Up.DialAddr(ctx, addr)
		}
		return h.Up.DialHost(ctx, host)
	}
	conn, err := dial()
	if err != nil {
		return nil, false, err
	}
	if host.TLS() == nil {
		return conn, false, nil
	}
	tconn, err := h.startUpstreamTLS(ctx, conn, host.TLS())
	if err == nil {
		if tconn == nil { // server said 'N' and sslmode allows plaintext
			return conn, false, nil
		}
		return tconn, true, nil
	}
	_ = conn.Close()
	if h.opts.UpstreamTLS.Mode != proxy.SSLPrefer {
		return nil, false, err
	}
	// sslmode=prefer: like libpq, retry without TLS when TLS failed.
	conn, derr := dial()
	if derr != nil {
		return nil, false, derr
	}
	return conn, false, nil
}

// startUpstreamTLS sends SSLRequest and, if the server agrees, performs the
// TLS handshake. It returns nil, nil when the server declined and the mode
// allows plaintext.
func (h *Handler) startUpstreamTLS(ctx context.Context, conn net.Conn, cfg *tls.Config) (*rawio.TLSConn, error) {
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Now()) })
	defer stop()
	tconn, err := h.negotiateUpstreamTLS(ctx, conn, cfg)
	if err != nil || tconn == nil {
		return nil, err
	}
	if !stop() {
		return nil, fmt.Errorf("upstream TLS handshake: %w", ctx.Err())
	}
	_ = conn.SetDeadline(time.Time{})
	return tconn, nil
}

func (h *Handler) negotiateUpstreamTLS(ctx context.Context, conn net.Conn, cfg *tls.Config) (*rawio.TLSConn, error) {
	if _, err := conn.Write(appendRequest(nil, sslRequestCode)); err != nil {
		return nil, fmt.Errorf("send SSLRequest upstream: %w", err)
	}
	// Read exactly one byte: anything the server sent after it would be
	// unauthenticated plaintext (CVE-2021-23222).
	var b [1]byte
	if _, err := conn.Read(b[:]); err != nil {
		return nil, fmt.Errorf("read SSLRequest answer: %w", err)
	}
	switch b[0] {
	case 'S':
	case 'N':
		if h.opts.UpstreamTLS.Mode == proxy.SSLPrefer {
			return nil, nil
		}
		return nil, fmt.Errorf("server does not support SSL, but sslmode %s requires it", h.opts.UpstreamTLS.Mode)
	default:
		return nil, fmt.Errorf("unexpected answer %q to SSLRequest", b[0])
	}
	// Through a record reader, so that the relay can park the idle leg
	// (rawio.TLSConn).
	tconn := rawio.TLSClient(conn, cfg)
	if err := tconn.HandshakeContext(ctx); err != nil {
		return nil, fmt.Errorf("upstream TLS handshake: %w", err)
	}
	return tconn, nil
}
