package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync/atomic"
	"time"

	"github.com/dbproxy/dbproxy/internal/rawio"
)

// DialFunc dials an address, as net.Dialer.DialContext does. The upstream
// calls it once per attempt, with a resolved IP address and port.
type DialFunc func(ctx context.Context, network, addr string) (net.Conn, error)

// Resolver looks up the addresses of a host name, as
// net.DefaultResolver does. Tests inject one to move a name between
// servers.
type Resolver interface {
	LookupHost(ctx context.Context, host string) ([]string, error)
}

// UpstreamConfig is what [NewUpstream] builds an [Upstream] from.
type UpstreamConfig struct {
	// Addr is host:port, or several separated by commas, tried in order
	// ("db1:5432,db2:5432", as libpq's multi-host strings).
	Addr string
	// TLS is the database leg's sslmode. Its ServerName, when empty,
	// becomes the host name of each host in turn.
	TLS UpstreamTLS
	// Keepalive is the TCP keepalive idle time (see [UpstreamDialer]).
	Keepalive time.Duration
	// Dial, if set, replaces the dialer (tests, fault injection, timing).
	Dial DialFunc
	// Resolver resolves host names on every dial; nil: net.DefaultResolver.
	Resolver Resolver
	// Target is libpq's target_session_attrs.
	Target TargetSessionAttrs
	// ConnectTimeout bounds dialing one host and its TLS handshake; not
	// positive: DefaultTimeout.
	ConnectTimeout, DefaultTimeout time.Duration
}

// Upstream is the database a listener forwards to, as both wire protocols
// reach it: its hosts in order, the TLS configuration of the database leg
// per host, the dialer, the resolver and the connect timeout.
//
// Nothing here caches an address: every dial looks the host name up again
// (Go's resolver keeps no cache either), so when the DNS name of an
// Aurora or RDS cluster endpoint moves to a new writer, the next session
// reaches it. Each address a name resolves to is tried in order, as libpq
// does.
type Upstream struct {
	hosts    []*UpstreamHost
	useTLS   bool
	dialer   *net.Dialer
	dial     DialFunc // replaces dialer if set
	resolver Resolver
	target   TargetSessionAttrs
	timeout  time.Duration
	writer   atomic.Int32 // read-write: the host that last took a session
}

// UpstreamHost is one host of an [Upstream].
type UpstreamHost struct {
	Addr  string // host:port as configured
	host  string
	port  string
	tls   *tls.Config // nil: sslmode disable
	index int
}

// TLS returns the client TLS configuration for this host (its server
// name set), nil for sslmode disable.
func (h *UpstreamHost) TLS() *tls.Config { return h.tls }

// NewUpstream validates a listener's upstream: every host is host:port,
// and the sslmode must be set.
func NewUpstream(c UpstreamConfig) (*Upstream, error) {
	addrs := SplitHosts(c.Addr)
	if len(addrs) == 0 {
		return nil, errors.New("upstream address is required")
	}
	if c.TLS.Mode == 0 {
		return nil, errors.New("upstream sslmode is not set")
	}
	u := &Upstream{dialer: UpstreamDialer(c.Keepalive), dial: c.Dial, resolver: c.Resolver,
		target: c.Target, timeout: PositiveOr(c.ConnectTimeout, c.DefaultTimeout)}
	if u.resolver == nil {
		u.resolver = net.DefaultResolver
	}
	for i, addr := range addrs {
		host, port, err := net.SplitHostPort(addr)
		if err != nil {
			return nil, fmt.Errorf("upstream %q: %w", addr, err)
		}
		if host == "" {
			return nil, fmt.Errorf("upstream %q: host is missing", addr)
		}
		t := c.TLS
		if t.ServerName == "" {
			t.ServerName = host
		}
		cfg, err := t.ClientConfig()
		if err != nil {
			return nil, fmt.Errorf("upstream TLS for %s: %w", addr, err)
		}
		u.useTLS = cfg != nil
		u.hosts = append(u.hosts, &UpstreamHost{Addr: addr, host: host, port: port, tls: cfg, index: i})
	}
	return u, nil
}

// SplitHosts splits a comma-separated upstream into its host:port items,
// trimmed, empty items dropped.
func SplitHosts(addr string) []string {
	var out []string
	for _, a := range strings.Split(addr, ",") {
		if a = strings.TrimSpace(a); a != "" {
			out = append(out, a)
		}
	}
	return out
}

// UsesTLS reports whether the database leg negotiates TLS (sslmode other
// than disable).
func (u *Upstream) UsesTLS() bool { return u.useTLS }

// ConnectTimeout bounds dialing one host and its TLS handshake.
func (u *Upstream) ConnectTimeout() time.Duration { return u.timeout }

// Target is the listener's target_session_attrs.
func (u *Upstream) Target() TargetSessionAttrs { return u.target }

// Hosts returns the hosts in the order a new session tries them: as
// configured, except that with target_session_attrs read-write the host
// that last accepted a read-write session comes first (then the others,
// in order after it), so that after a failover only the first session
// finds the old writer read-only.
func (u *Upstream) Hosts() []*UpstreamHost {
	if u.target != TargetReadWrite || len(u.hosts) == 1 {
		return u.hosts
	}
	start := int(u.writer.Load())
	out := make([]*UpstreamHost, 0, len(u.hosts))
	out = append(out, u.hosts[start:]...)
	return append(out, u.hosts[:start]...)
}

// Writable records that h accepted a read-write session: new sessions
// try it first.
func (u *Upstream) Writable(h *UpstreamHost) { u.writer.Store(int32(h.index)) }

// ReadOnly records that h turned out read-only: if it was the host new
// sessions try first, the next one in order takes its place.
func (u *Upstream) ReadOnly(h *UpstreamHost) {
	u.writer.CompareAndSwap(int32(h.index), int32((h.index+1)%len(u.hosts)))
}

// Dial connects to the first host, in [Upstream.Hosts] order, that
// accepts a TCP connection, each within the connect timeout. It returns
// an [*UpstreamError] naming every host tried when none does.
func (u *Upstream) Dial(ctx context.Context) (net.Conn, *UpstreamHost, error) {
	var ue UpstreamError
	hosts := u.Hosts()
	for i, h := range hosts {
		hctx, cancel := u.HostContext(ctx, len(hosts)-i)
		conn, err := u.DialHost(hctx, h)
		cancel()
		if err == nil {
			return conn, h, nil
		}
		ue.Add(h, err)
		if ctx.Err() != nil {
			break
		}
	}
	return nil, nil, &ue
}

// DialHost resolves h's name now and connects to its addresses in order
// until one accepts, within ctx (which should carry the connect timeout).
// On Linux TCP the connection does raw-syscall I/O (see internal/rawio).
func (u *Upstream) DialHost(ctx context.Context, h *UpstreamHost) (net.Conn, error) {
	ips, err := u.resolve(ctx, h.host)
	if err != nil {
		return nil, err
	}
	var errs []error
	for i, ip := range ips {
		actx, cancel := share(ctx, len(ips)-i, 0)
		conn, err := u.DialAddr(actx, net.JoinHostPort(ip, h.port))
		cancel()
		if err == nil {
			return conn, nil
		}
		errs = append(errs, err)
		if ctx.Err() != nil {
			break
		}
	}
	return nil, errors.Join(errs...)
}

// DialAddr connects to one resolved address (ip:port): the dial seam of
// every attempt, and how a PostgreSQL cancel request reaches the server
// its session is on.
func (u *Upstream) DialAddr(ctx context.Context, addr string) (net.Conn, error) {
	var conn net.Conn
	var err error
	if u.dial != nil {
		conn, err = u.dial(ctx, "tcp", addr)
	} else {
		conn, err = u.dialer.DialContext(ctx, "tcp", addr)
	}
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", addr, err)
	}
	return rawio.Wrap(conn), nil
}

// resolve returns the addresses of host: itself for an IP literal, else
// what the resolver says now.
func (u *Upstream) resolve(ctx context.Context, host string) ([]string, error) {
	if net.ParseIP(host) != nil {
		return []string{host}, nil
	}
	ips, err := u.resolver.LookupHost(ctx, host)
	if err != nil {
		return nil, fmt.Errorf("resolve %s: %w", host, err)
	}
	if len(ips) == 0 {
		return nil, fmt.Errorf("resolve %s: no addresses", host)
	}
	return ips, nil
}

// HostContext bounds connecting to one of left hosts still to try
// (dial and TLS handshake): the connect timeout, and no more than an equal
// share of what remains until ctx's deadline (at least 2s), so that a
// host that swallows packets leaves time for the next.
func (u *Upstream) HostContext(ctx context.Context, left int) (context.Context, context.CancelFunc) {
	return share(ctx, left, u.timeout)
}

// minAttempt is the least time one attempt gets when several share a
// deadline (as Go's dialer gives each address of a name).
const minAttempt = 2 * time.Second

// share gives one of left remaining attempts its share of ctx's deadline:
// the rest divided evenly, at least minAttempt; and at most limit, if
// positive.
func share(ctx context.Context, left int, limit time.Duration) (context.Context, context.CancelFunc) {
	d := limit
	if dl, ok := ctx.Deadline(); ok && left > 1 {
		part := max(time.Until(dl)/time.Duration(left), minAttempt)
		if d <= 0 || part < d {
			d = part
		}
	}
	if d <= 0 {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, d)
}
