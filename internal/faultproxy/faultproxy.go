package faultproxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Direction is one way of a forwarded connection.
type Direction int

const (
	// ToUpstream is the client → target direction.
	ToUpstream Direction = iota
	// ToClient is the target → client direction.
	ToClient
)

func (d Direction) String() string {
	if d == ToUpstream {
		return "to-upstream"
	}
	return "to-client"
}

// dialTimeout bounds one upstream dial.
const dialTimeout = 10 * time.Second

// Proxy forwards TCP connections accepted on Addr to a target address,
// with faults switched on and off by its methods. Its zero value is not
// usable: create one with Start.
type Proxy struct {
	target string
	addr   string
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	accepted atomic.Int64

	mu       sync.Mutex
	ln       net.Listener // nil while refusing or after Close
	links    map[*link]struct{}
	latency  [2]time.Duration
	stallEnd chan struct{} // nil unless stalled; closed when the stall ends
	closed   bool
}

// link is one forwarded connection.
type link struct {
	client   net.Conn
	mu       sync.Mutex
	upstream net.Conn // nil until dialed
	halfOpen bool
	done     bool
}

// Start listens on a free port of 127.0.0.1 and forwards every accepted
// connection to target (host:port). ctx bounds the proxy's life like
// Close does.
func Start(ctx context.Context, target string) (*Proxy, error) {
	return StartOn(ctx, "127.0.0.1:0", target)
}

// StartOn is Start on a given listen address.
func StartOn(ctx context.Context, listen, target string) (*Proxy, error) {
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return nil, fmt.Errorf("faultproxy: listen on %s: %w", listen, err)
	}
	p := &Proxy{target: target, addr: ln.Addr().String(), links: map[*link]struct{}{}}
	p.ctx, p.cancel = context.WithCancel(ctx)
	p.startAccepting(ln)
	return p, nil
}

// Addr is the address clients connect to ("127.0.0.1:port"). It stays the
// same across Refuse.
func (p *Proxy) Addr() string { return p.addr }

// Target is the address connections are forwarded to.
func (p *Proxy) Target() string { return p.target }

// Accepted is the number of connections accepted so far.
func (p *Proxy) Accepted() int64 { return p.accepted.Load() }

// Active is the number of connections currently forwarded (or held).
func (p *Proxy) Active() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.links)
}

// SetLatency delays every chunk of data forwarded in direction d by lat
// (0 removes the delay). It applies to chunks read from then on.
func (p *Proxy) SetLatency(d Direction, lat time.Duration) {
	p.mu.Lock()
	p.latency[d] = lat
	p.mu.Unlock()
}

// Stall stops forwarding in both directions, for current and new
// connections, until Resume: sockets stay open, data already read is held,
// and the kernel's buffers fill up, as on a network path that silently
// stops delivering. New connections are accepted but not dialed upstream
// until Resume.
func (p *Proxy) Stall() {
	p.mu.Lock()
	if p.stallEnd == nil {
		p.stallEnd = make(chan struct{})
	}
	p.mu.Unlock()
}

// Resume ends a stall: held data is forwarded and held connections dialed.
func (p *Proxy) Resume() {
	p.mu.Lock()
	if p.stallEnd != nil {
		close(p.stallEnd)
		p.stallEnd = nil
	}
	p.mu.Unlock()
}

// Reset closes every current connection, client and upstream side, with a
// TCP RST (SO_LINGER 0), and returns how many there were. New connections
// are forwarded as usual.
func (p *Proxy) Reset() int {
	links := p.current()
	for _, l := range links {
		l.reset()
	}
	return len(links)
}

// HalfOpen drops the upstream side of every current connection and keeps
// the client side open: the client's writes are accepted and discarded and
// nothing reaches it again, not even a FIN, as when the path to a host that
// vanished goes silent. The upstream side is closed (the database sees the
// connection end). Returns how many connections were affected; new
// connections are forwarded as usual. Half-open connections end when the
// client closes them, on Reset or on Close.
func (p *Proxy) HalfOpen() int {
	links := p.current()
	for _, l := range links {
		l.mu.Lock()
		l.halfOpen = true
		up := l.upstream
		l.mu.Unlock()
		if up != nil {
			_ = up.Close()
		}
	}
	return len(links)
}

// Refuse stops listening (new connections get ECONNREFUSED) when on, and
// listens again on the same address when off. Current connections are not
// touched.
func (p *Proxy) Refuse(on bool) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return errors.New("faultproxy: closed")
	}
	if on {
		if p.ln != nil {
			_ = p.ln.Close()
			p.ln = nil
		}
		return nil
	}
	if p.ln != nil {
		return nil
	}
	var (
		ln  net.Listener
		err error
	)
	for range 50 { // the old socket may take a moment to leave the port
		if ln, err = net.Listen("tcp", p.addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		return fmt.Errorf("faultproxy: listen again on %s: %w", p.addr, err)
	}
	p.startAcceptingLocked(ln)
	return nil
}

// Close stops listening, resets every connection and waits for every
// goroutine of the proxy to end.
func (p *Proxy) Close() error {
	p.mu.Lock()
	p.closed = true
	if p.ln != nil {
		_ = p.ln.Close()
		p.ln = nil
	}
	p.mu.Unlock()
	p.cancel()
	p.Reset()
	p.wg.Wait()
	return nil
}

func (p *Proxy) current() []*link {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]*link, 0, len(p.links))
	for l := range p.links {
		out = append(out, l)
	}
	return out
}

func (p *Proxy) startAccepting(ln net.Listener) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.startAcceptingLocked(ln)
}

func (p *Proxy) startAcceptingLocked(ln net.Listener) {
	p.ln = ln
	p.wg.Add(1)
	go p.accept(ln)
}

func (p *Proxy) accept(ln net.Listener) {
	defer p.wg.Done()
	for {
		c, err := ln.Accept()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return // closed (Refuse or Close)
		}
		p.accepted.Add(1)
		l := &link{client: c}
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			rst(c)
			continue
		}
		p.links[l] = struct{}{}
		p.wg.Add(1)
		p.mu.Unlock()
		go p.serve(l)
	}
}

// stallGate returns a channel closed when no stall is in force.
func (p *Proxy) stallGate() <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stallEnd
}

// waitForward blocks while a stall is in force; false when the proxy closes.
func (p *Proxy) waitForward() bool {
	for {
		gate := p.stallGate()
		if gate == nil {
			return p.ctx.Err() == nil
		}
		select {
		case <-gate:
		case <-p.ctx.Done():
			return false
		}
	}
}

func (p *Proxy) latencyOf(d Direction) time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.latency[d]
}

func (p *Proxy) serve(l *link) {
	defer p.wg.Done()
	defer func() {
		p.mu.Lock()
		delete(p.links, l)
		p.mu.Unlock()
		l.close()
	}()
	if !p.waitForward() {
		return
	}
	d := net.Dialer{Timeout: dialTimeout}
	up, err := d.DialContext(p.ctx, "tcp", p.target)
	if err != nil {
		rst(l.client) // as the target's refusal would look from a client
		return
	}
	l.mu.Lock()
	if l.done || l.halfOpen {
		// Reset or HalfOpen ran while the dial was in flight.
		l.mu.Unlock()
		_ = up.Close()
		if l.halfOpen {
			p.pump(l, l.client, nil, ToUpstream)
		}
		return
	}
	l.upstream = up
	l.mu.Unlock()

	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		p.pump(l, up, l.client, ToClient)
	}()
	p.pump(l, l.client, up, ToUpstream)
	wg.Wait()
}

// pump copies src to dst in one direction, with the faults in force.
// dst nil discards (a half-open link).
func (p *Proxy) pump(l *link, src, dst net.Conn, dir Direction) {
	buf := make([]byte, 32<<10)
	for {
		n, rerr := src.Read(buf)
		if n > 0 {
			if !p.waitForward() {
				return
			}
			if lat := p.latencyOf(dir); lat > 0 {
				t := time.NewTimer(lat)
				select {
				case <-t.C:
				case <-p.ctx.Done():
					t.Stop()
					return
				}
				if !p.waitForward() { // a stall may have begun meanwhile
					return
				}
			}
			if dst != nil && !l.isHalfOpen() {
				if _, err := dst.Write(buf[:n]); err != nil {
					if dir == ToUpstream && l.isHalfOpen() {
						dst = nil // the upstream was dropped: keep swallowing
						continue
					}
					l.close()
					return
				}
			}
		}
		if rerr != nil {
			switch {
			case l.isHalfOpen() && dir == ToClient:
				// The upstream side was dropped: say nothing to the client.
				return
			case rerr == io.EOF && dst != nil && !l.isHalfOpen():
				// Pass the half-close on; the other direction may go on.
				if tc, ok := dst.(*net.TCPConn); ok {
					_ = tc.CloseWrite()
					return
				}
				l.close()
			default:
				l.close()
			}
			return
		}
	}
}

func (l *link) isHalfOpen() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.halfOpen
}

// reset ends both sides with an RST.
func (l *link) reset() {
	l.mu.Lock()
	l.done = true
	up := l.upstream
	l.mu.Unlock()
	// Both sockets linger 0 before either closes: the pumps close the
	// other side as soon as one fails.
	setLinger0(l.client)
	if up != nil {
		setLinger0(up)
		_ = up.Close()
	}
	_ = l.client.Close()
}

// close ends both sides normally (idempotent).
func (l *link) close() {
	l.mu.Lock()
	l.done = true
	up := l.upstream
	l.mu.Unlock()
	_ = l.client.Close()
	if up != nil {
		_ = up.Close()
	}
}

// rst closes c with SO_LINGER 0, so the peer gets a TCP RST.
func rst(c net.Conn) {
	setLinger0(c)
	_ = c.Close()
}

func setLinger0(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
}
