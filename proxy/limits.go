package proxy

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"
)

// LimitError says which of a listener's limits a connection is over. Its
// message names the YAML setting so that an operator knows what to raise.
type LimitError struct {
	Setting string // e.g. "max_connections"
	Limit   int64
}

func (e *LimitError) Error() string {
	return fmt.Sprintf("dbproxy: too many connections (limits.%s = %d)", e.Setting, e.Limit)
}

// Limits bound the connections a [Server] holds on each listener it
// serves. A zero field means no limit.
type Limits struct {
	// MaxConnections bounds the connections of one listener. A connection
	// over it is not closed by the server: [Conn.Admission] reports the
	// limit and the handler refuses the client in its own protocol.
	MaxConnections int
	// MaxConnectionsPerSource bounds the connections of one listener from
	// one client IP address, refused the same way.
	MaxConnectionsPerSource int
	// MaxHandshakes bounds the connections of one listener that are still
	// in their handshake (from accept until the handler first reports
	// StateIdle or StateActive, or calls [Conn.HandshakeDone]). When it is
	// reached, a new connection evicts the oldest handshake of the source
	// address that holds the most of them: its socket is closed. A flood
	// of stalled handshakes thus only ever evicts itself, and a client
	// that completes its handshake promptly gets through.
	MaxHandshakes int
	// IdleTimeout ends a session idle (StateIdle) for that long: the
	// server starts its drain with [DrainIdleTimeout], and the handler
	// closes it with an error saying so.
	IdleTimeout time.Duration
}

// Counters are a server's totals since it started.
type Counters struct {
	// Refused counts connections over MaxConnections or
	// MaxConnectionsPerSource.
	Refused uint64
	// Evicted counts handshakes closed to make room under MaxHandshakes.
	Evicted uint64
	// IdleTimeouts counts sessions drained for IdleTimeout.
	IdleTimeouts uint64
}

// gate applies Limits to the connections of one listener. Its mutex is
// taken once at accept, once when a handshake ends and once at close.
type gate struct {
	limits Limits
	srv    *Server
	listen string

	mu         sync.Mutex
	seq        uint64                 // accept order
	conns      int                    // admitted connections
	handshakes int                    // connections in their handshake
	sources    map[netip.Addr]*source // sources with connections
}

// source is one client address: its admitted connections and its
// connections in handshake, oldest first.
type source struct {
	addr       netip.Addr
	conns      int
	handshakes int
	head, tail *Conn // in-handshake list, linked through Conn.hsPrev/hsNext
	members    int   // connections tracked (admitted or in handshake)
}

func newGate(s *Server, l net.Listener) *gate {
	return &gate{limits: s.Limits, srv: s, listen: l.Addr().String(), sources: make(map[netip.Addr]*source)}
}

// sourceAddr returns the client IP of a connection (the zero Addr for
// non-IP sockets, which then form one source).
func sourceAddr(nc net.Conn) netip.Addr {
	if a, ok := nc.RemoteAddr().(*net.TCPAddr); ok {
		if ip, ok := netip.AddrFromSlice(a.IP); ok {
			return ip.Unmap()
		}
	}
	return netip.Addr{}
}

// admit registers a new connection: it takes a handshake slot (evicting
// one if none is free) and decides its admission. It returns the evicted
// connection, if any, which the caller closes outside the lock.
func (g *gate) admit(c *Conn) (evicted *Conn) {
	addr := sourceAddr(c.nc)
	g.mu.Lock()
	defer g.mu.Unlock()
	if m := g.limits.MaxHandshakes; m > 0 && g.handshakes >= m {
		evicted = g.victimLocked()
		if evicted != nil {
			g.endHandshakeLocked(evicted)
		}
	}
	src := g.sources[addr]
	if src == nil {
		src = &source{addr: addr}
		g.sources[addr] = src
	}
	g.seq++
	c.gate, c.src, c.seq = g, src, g.seq
	src.members++
	c.inHandshake = true
	g.handshakes++
	src.handshakes++
	c.hsPrev = src.tail
	if src.tail != nil {
		src.tail.hsNext = c
	} else {
		src.head = c
	}
	src.tail = c

	switch {
	case g.limits.MaxConnections > 0 && g.conns >= g.limits.MaxConnections:
		c.admission = &LimitError{Setting: "max_connections", Limit: int64(g.limits.MaxConnections)}
	case g.limits.MaxConnectionsPerSource > 0 && src.conns >= g.limits.MaxConnectionsPerSource:
		c.admission = &LimitError{Setting: "max_connections_per_source", Limit: int64(g.limits.MaxConnectionsPerSource)}
	default:
		c.admitted = true
		g.conns++
		src.conns++
	}
	return evicted
}

// accept admits c and closes the connection it evicts, counting and
// logging both.
func (g *gate) accept(c *Conn) {
	if victim := g.admit(c); victim != nil {
		g.srv.evicted.Add(1)
		g.logEvicted(victim)
		victim.closeHard()
	}
	if le, ok := c.admission.(*LimitError); ok {
		g.srv.refused.Add(1)
		g.logRefused(c, le)
	}
}

// victimLocked returns the oldest in-handshake connection of the source
// with the most connections in handshake (ties: the source whose oldest
// handshake is older).
func (g *gate) victimLocked() *Conn {
	var best *source
	for _, s := range g.sources {
		if s.head == nil {
			continue
		}
		if best == nil || s.handshakes > best.handshakes ||
			(s.handshakes == best.handshakes && s.head.seq < best.head.seq) {
			best = s
		}
	}
	if best == nil {
		return nil
	}
	return best.head
}

// endHandshakeLocked takes c off its source's handshake list.
func (g *gate) endHandshakeLocked(c *Conn) {
	if !c.inHandshake {
		return
	}
	c.inHandshake = false
	src := c.src
	if c.hsPrev != nil {
		c.hsPrev.hsNext = c.hsNext
	} else {
		src.head = c.hsNext
	}
	if c.hsNext != nil {
		c.hsNext.hsPrev = c.hsPrev
	} else {
		src.tail = c.hsPrev
	}
	c.hsPrev, c.hsNext = nil, nil
	src.handshakes--
	g.handshakes--
}

// handshakeDone frees c's handshake slot.
func (g *gate) handshakeDone(c *Conn) {
	g.mu.Lock()
	g.endHandshakeLocked(c)
	g.mu.Unlock()
}

// release forgets c when it has ended.
func (g *gate) release(c *Conn) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.endHandshakeLocked(c)
	src := c.src
	if c.admitted {
		c.admitted = false
		g.conns--
		src.conns--
	}
	if src.members--; src.members == 0 {
		delete(g.sources, src.addr)
	}
}

// logRefused logs (rate-limited) a connection refused for le.
func (g *gate) logRefused(c *Conn, le *LimitError) {
	g.srv.limitLog().LogAttrs(context.Background(), slog.LevelWarn, "connection over a listener limit; refusing it",
		slog.String("listen", g.listen), slog.String("remote", c.nc.RemoteAddr().String()),
		slog.String("setting", "limits."+le.Setting), slog.Int64("limit", le.Limit))
}

// logEvicted logs (rate-limited) a handshake closed to make room.
func (g *gate) logEvicted(victim *Conn) {
	g.srv.limitLog().LogAttrs(context.Background(), slog.LevelWarn,
		"handshakes at limits.max_handshakes; closing the oldest handshake of the busiest source",
		slog.String("listen", g.listen), slog.String("remote", victim.nc.RemoteAddr().String()),
		slog.Int("limit", g.limits.MaxHandshakes))
}
