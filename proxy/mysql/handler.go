package mysql

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/dbproxy/dbproxy/internal/rawio"
	"github.com/dbproxy/dbproxy/proxy"
)

// DefaultHandshakeTimeout is the handshake timeout of a Handler whose
// Options leave it zero.
const DefaultHandshakeTimeout = 5 * time.Second

// Options configure a [Handler]: one listener forwarding to one server.
// Without ListenerOptions.TLS, CLIENT_SSL is not offered.
type Options struct {
	proxy.ListenerOptions
	// Interceptor, if set, may inspect and rewrite commands and responses
	// of each session.
	Interceptor Interceptor
	// MaxPacketSize bounds a logical packet a hook must see whole; default
	// DefaultMaxPacketSize (1 GiB).
	MaxPacketSize int
	// HideCapabilities are capability flags (CLIENT_*, MariaDB extended
	// flags in the high 32 bits) not offered to clients even if the server
	// has them, e.g. CLIENT_DEPRECATE_EOF to serve old-style EOF packets.
	HideCapabilities uint64
}

// Handler is the MySQL protocol of a listener; it implements
// proxy.Handler. Create it with [NewHandler].
type Handler struct {
	proxy.ListenerBase
	opts Options
	rsa  rsaKey

	// greeting is the template of the proxy's own greetings: the last
	// usable initial handshake read from the server (nil before the first
	// one). See doc.go, "Connection phase".
	greeting atomic.Pointer[handshake]
	// ids maps the connection ids of the proxy's greetings to the
	// server's thread ids.
	ids connIDs
}

var _ proxy.Handler = (*Handler)(nil)

// NewHandler validates opts and returns a Handler.
func NewHandler(opts Options) (*Handler, error) {
	base, err := opts.Prepare(DefaultHandshakeTimeout)
	if err != nil {
		return nil, fmt.Errorf("mysql: %w", err)
	}
	if opts.TargetSessionAttrs != proxy.TargetAny {
		return nil, errors.New("mysql: target_session_attrs read-write is not supported: MySQL listeners take the first upstream host that accepts a connection")
	}
	if opts.MaxPacketSize <= 0 || opts.MaxPacketSize > DefaultMaxPacketSize {
		opts.MaxPacketSize = DefaultMaxPacketSize
	}
	return &Handler{opts: opts, ListenerBase: base}, nil
}

// ServeConn serves one client connection (proxy.Handler).
func (h *Handler) ServeConn(ctx context.Context, c *proxy.Conn) {
	nc := rawio.Wrap(c.NetConn())
	s := &session{
		h:         h,
		pc:        c,
		rawClient: nc,
		client:    nc,
		log:       h.Log.With(slog.String("remote", nc.RemoteAddr().String())),
	}
	s.serve(ctx)
}

// learnGreeting makes the server's greeting hs the template of the
// proxy's greetings if it is usable and differs from the current one in
// more than connection id and scramble. It reports whether the template
// changed.
func (h *Handler) learnGreeting(hs *handshake) bool {
	if !usableTemplate(hs) {
		return false
	}
	for {
		cur := h.greeting.Load()
		if cur != nil && sameGreeting(cur, hs) {
			return false
		}
		if h.greeting.CompareAndSwap(cur, hs) {
			if cur != nil {
				h.Log.LogAttrs(context.Background(), slog.LevelInfo, "the database server's greeting changed; greeting template updated",
					slog.String("server_version", hs.serverVersion))
			}
			return true
		}
	}
}

// limitedLog is the session's logger for connection-phase failures:
// rate-limited per message, with the session's attributes.
func (s *session) limitedLog() *slog.Logger {
	attrs := []any{slog.String("remote", s.rawClient.RemoteAddr().String())}
	if s.resp != nil {
		attrs = append(attrs, slog.String("user", s.resp.user), slog.String("database", s.resp.database))
	}
	return s.h.LimitLog.With(attrs...)
}
