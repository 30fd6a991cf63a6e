package proxy

import (
	"crypto/tls"
	"errors"
	"log/slog"
	"time"
)

// ListenerOptions are the options of a wire protocol's handler that do
// not depend on the protocol: one listener forwarding to one server. Both
// proxy/postgres and proxy/mysql embed them in their Options.
type ListenerOptions struct {
	// Name identifies the listener in logs.
	Name string
	// Upstream is the server's host:port. Required.
	Upstream string
	// TLS is the client-facing TLS configuration, normally from
	// ServerTLSConfig. nil: the handler offers no TLS and serves only
	// plaintext clients.
	TLS *tls.Config
	// RequireTLS refuses clients that do not use TLS (needs TLS).
	RequireTLS bool
	// UpstreamTLS is the proxy -> server leg (libpq sslmode semantics).
	UpstreamTLS UpstreamTLS
	// Logger receives the handler's logs; nil discards them.
	Logger *slog.Logger
	// ConnectTimeout bounds dialing the upstream and its TLS handshake.
	ConnectTimeout time.Duration
	// HandshakeTimeout bounds a client's connection phase: TLS,
	// authentication and the server's answers.
	HandshakeTimeout time.Duration
	// UpstreamKeepalive is the TCP keepalive idle time of the upstream
	// socket (see UpstreamDialer): 0 means DefaultUpstreamKeepalive,
	// negative leaves the system defaults.
	UpstreamKeepalive time.Duration
	// Dial replaces the upstream dialer (tests, fault injection).
	Dial DialFunc
}

// ListenerBase is what a handler builds from its [ListenerOptions]: the
// upstream and the listener's logs (see [ListenerLogs]).
type ListenerBase struct {
	Up       *Upstream
	Log      *slog.Logger
	LimitLog *slog.Logger // rate-limited: connection-phase failures
}

// Prepare validates o and builds the listener's upstream (connect timeout
// defaultConnect when o's is not positive) and logs. It replaces o.TLS by
// a clone, which the handler may adjust.
func (o *ListenerOptions) Prepare(defaultConnect time.Duration) (ListenerBase, error) {
	up, err := NewUpstream(o.Upstream, o.UpstreamTLS, o.UpstreamKeepalive, o.Dial,
		o.ConnectTimeout, defaultConnect)
	if err != nil {
		return ListenerBase{}, err
	}
	if o.RequireTLS && o.TLS == nil {
		return ListenerBase{}, errors.New("RequireTLS needs a TLS configuration")
	}
	if o.TLS != nil {
		o.TLS = o.TLS.Clone()
	}
	log, limitLog := ListenerLogs(o.Logger, o.Name)
	return ListenerBase{Up: up, Log: log, LimitLog: limitLog}, nil
}
