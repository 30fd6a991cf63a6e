package proxy

import (
	"crypto/tls"
	"errors"
	"log/slog"
	"time"
)

// DefaultConnectTimeout is the connect timeout of a handler whose
// [ListenerOptions] leave it zero.
const DefaultConnectTimeout = 10 * time.Second

// ListenerOptions are the options of a wire protocol's handler that do
// not depend on the protocol: one listener forwarding to one server. Both
// proxy/postgres and proxy/mysql embed them in their Options.
type ListenerOptions struct {
	// Name identifies the listener in logs.
	Name string
	// Upstream is the server's host:port, or several separated by commas,
	// tried in order (see [Upstream]). Required.
	Upstream string
	// TargetSessionAttrs selects among several upstream hosts (libpq's
	// target_session_attrs); read-write is for PostgreSQL only.
	TargetSessionAttrs TargetSessionAttrs
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
	// ConnectTimeout bounds dialing the upstream and its TLS handshake;
	// default DefaultConnectTimeout.
	ConnectTimeout time.Duration
	// HandshakeTimeout bounds a client's connection phase: TLS,
	// authentication and the server's answers; the default is the
	// protocol's.
	HandshakeTimeout time.Duration
	// UpstreamKeepalive is the TCP keepalive idle time of the upstream
	// socket (see UpstreamDialer): 0 means DefaultUpstreamKeepalive,
	// negative leaves the system defaults.
	UpstreamKeepalive time.Duration
	// Dial replaces the upstream dialer (tests, fault injection, timing
	// the connects); it is called once per attempt, with a resolved
	// address.
	Dial DialFunc
	// Resolver resolves upstream host names on every dial; nil:
	// net.DefaultResolver.
	Resolver Resolver
	// Observer counts the listener's logins, bytes and statements; nil:
	// nothing is counted.
	Observer Observer
}

// ListenerBase is what a handler builds from its [ListenerOptions]: the
// upstream, the listener's logs (see [ListenerLogs]) and the handshake
// timeout in force.
type ListenerBase struct {
	Up               *Upstream
	Log              *slog.Logger
	LimitLog         *slog.Logger // rate-limited: connection-phase failures
	HandshakeTimeout time.Duration
	// Obs is the listener's Observer, never nil (see ObserverOrNop);
	// CountFromClient and CountFromUpstream its byte counters for the
	// relay's pumps, nil without an Observer (see ByteCounts).
	Obs                                Observer
	CountFromClient, CountFromUpstream func(int)
}

// Prepare validates o and builds the listener's upstream and logs;
// defaultHandshake, the protocol's, replaces a handshake timeout that is
// not positive. It replaces o.TLS by a clone, which the handler may adjust.
func (o *ListenerOptions) Prepare(defaultHandshake time.Duration) (ListenerBase, error) {
	up, err := NewUpstream(UpstreamConfig{Addr: o.Upstream, TLS: o.UpstreamTLS, Keepalive: o.UpstreamKeepalive,
		Dial: o.Dial, Resolver: o.Resolver, Target: o.TargetSessionAttrs,
		ConnectTimeout: o.ConnectTimeout, DefaultTimeout: DefaultConnectTimeout})
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
	fromClient, fromUpstream := ByteCounts(o.Observer)
	return ListenerBase{Up: up, Log: log, LimitLog: limitLog,
		HandshakeTimeout: PositiveOr(o.HandshakeTimeout, defaultHandshake),
		Obs:              ObserverOrNop(o.Observer), CountFromClient: fromClient, CountFromUpstream: fromUpstream}, nil
}
