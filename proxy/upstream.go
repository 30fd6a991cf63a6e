package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/dbproxy/dbproxy/internal/rawio"
)

// DialFunc dials an address, as net.Dialer.DialContext does.
type DialFunc func(ctx context.Context, network, addr string) (net.Conn, error)

// Upstream is the database server a listener forwards to, as both wire
// protocols reach it: the validated address, the TLS configuration of the
// database leg, the dialer and the connect timeout.
type Upstream struct {
	addr    string
	tls     *tls.Config // nil: sslmode disable
	dialer  *net.Dialer
	dial    DialFunc // replaces dialer if set (tests, fault injection)
	timeout time.Duration
}

// NewUpstream validates a listener's upstream: addr is host:port, sslmode
// must be set. keepalive is the TCP keepalive idle time (see
// [UpstreamDialer]); dial, if set, replaces the dialer; connectTimeout
// (default def when not positive) bounds dialing and the TLS handshake.
func NewUpstream(addr string, sslmode UpstreamTLS, keepalive time.Duration, dial DialFunc,
	connectTimeout, def time.Duration) (*Upstream, error) {
	if addr == "" {
		return nil, errors.New("upstream address is required")
	}
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return nil, fmt.Errorf("upstream %q: %w", addr, err)
	}
	if sslmode.Mode == 0 {
		return nil, errors.New("upstream sslmode is not set")
	}
	cfg, err := sslmode.ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("upstream TLS: %w", err)
	}
	return &Upstream{addr: addr, tls: cfg, dialer: UpstreamDialer(keepalive), dial: dial,
		timeout: PositiveOr(connectTimeout, def)}, nil
}

// TLS returns the client TLS configuration of the database leg, nil for
// sslmode disable.
func (u *Upstream) TLS() *tls.Config { return u.tls }

// ConnectTimeout bounds dialing the upstream and its TLS handshake.
func (u *Upstream) ConnectTimeout() time.Duration { return u.timeout }

// Dial connects to the upstream within ctx (which should carry the
// connect timeout). On Linux TCP the connection does raw-syscall I/O (see
// internal/rawio).
func (u *Upstream) Dial(ctx context.Context) (net.Conn, error) {
	var conn net.Conn
	var err error
	if u.dial != nil {
		conn, err = u.dial(ctx, "tcp", u.addr)
	} else {
		conn, err = u.dialer.DialContext(ctx, "tcp", u.addr)
	}
	if err != nil {
		return nil, fmt.Errorf("dial upstream: %w", err)
	}
	return rawio.Wrap(conn), nil
}
