package proxy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dbproxy/dbproxy/internal/blocking"
	"github.com/dbproxy/dbproxy/internal/evloop"
	"github.com/dbproxy/dbproxy/internal/netpark"
	"github.com/dbproxy/dbproxy/internal/ratelog"
	"github.com/dbproxy/dbproxy/internal/rawio"
)

// ErrServerClosed is returned by [Server.Serve] after [Server.Shutdown] or
// [Server.Close].
var ErrServerClosed = errors.New("proxy: server closed")

// Handler serves client connections of one wire protocol.
//
// ServeConn is called in a new goroutine for every accepted connection and
// runs it to completion. It must return promptly when ctx is cancelled (the
// server closes the socket at the same time). It must not close
// c.NetConn() itself only to signal the end; returning is enough, the server
// closes it. Calls for different connections run concurrently. A handler
// that goes on serving the connection from other goroutines calls
// [Conn.Detach] before returning.
type Handler interface {
	ServeConn(ctx context.Context, c *Conn)
}

// Accept-loop backoff bounds for temporary errors such as EMFILE.
const (
	acceptBackoffMin = 5 * time.Millisecond
	acceptBackoffMax = time.Second
)

// Shutdown poll bounds.
const (
	shutdownPollMin = time.Millisecond
	shutdownPollMax = 500 * time.Millisecond
)

// Server accepts connections and hands each to Handler. The zero value is not
// usable: Handler must be set. Fields must not change after the first call to
// Serve.
type Server struct {
	// Handler serves each accepted connection. Required.
	Handler Handler
	// Logger receives accept errors and recovered panics. nil discards.
	Logger *slog.Logger
	// BaseContext optionally returns the base context of connections accepted
	// on l; default context.Background().
	BaseContext func(l net.Listener) context.Context
	// ConnState, if set, is called on every connection state change, from the
	// connection's goroutines or from the event loop relaying it (see
	// RelayLoops). It must not block, nor close the server.
	ConnState func(c *Conn, s ConnState)
	// Limits bound the connections of each listener served (each Serve
	// call counts its own); the zero value sets none.
	Limits Limits
	// RelayLoops is the number of event loops that relay sessions whose
	// protocol allows it (plain TCP on both legs, no hooks; see Relay):
	// 0 means one per two Ps (GOMAXPROCS), at least one; negative, none
	// (every session relays on goroutines). Linux only. A looped
	// session's protocol work, ConnState calls included, runs on its
	// loop, shared with other sessions.
	RelayLoops int

	inShutdown atomic.Bool
	hardClosed atomic.Bool

	refused      atomic.Uint64
	evicted      atomic.Uint64
	idleTimeouts atomic.Uint64

	limitLogOnce sync.Once
	limitLogger  *slog.Logger

	pollerMu     sync.Mutex
	poller       *netpark.Poller // started by the first Conn.Poller call
	pollerClosed bool
	loops        []*evloop.Loop // started with the poller
	loopsOff     bool           // evloop.New failed
	loopNext     atomic.Uint32
	looped       atomic.Int64 // sessions on the loops
	// relayHandoffs counts hooks that left a loop to wait (beforeBlock).
	relayHandoffs atomic.Int64
	// relayStreams counts legs whose stream left a loop (streamAway).
	relayStreams atomic.Int64

	mu        sync.Mutex
	listeners map[*net.Listener]struct{}
	conns     map[*Conn]struct{}
	done      chan struct{} // closed when shutting down; wakes accept backoff
}

func (s *Server) logger() *slog.Logger {
	if s.Logger != nil {
		return s.Logger
	}
	return slog.New(slog.DiscardHandler)
}

// limitLog is the logger for refusals and evictions: rate-limited, so
// that a flood of connections does not flood the log.
func (s *Server) limitLog() *slog.Logger {
	s.limitLogOnce.Do(func() {
		s.limitLogger = slog.New(ratelog.New(s.logger().Handler(), ratelog.Options{}))
	})
	return s.limitLogger
}

// Counters returns the server's totals of refused and evicted connections
// and idle timeouts.
func (s *Server) Counters() Counters {
	return Counters{Refused: s.refused.Load(), Evicted: s.evicted.Load(), IdleTimeouts: s.idleTimeouts.Load()}
}

func (s *Server) doneChan() chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.doneChanLocked()
}

func (s *Server) doneChanLocked() chan struct{} {
	if s.done == nil {
		s.done = make(chan struct{})
	}
	return s.done
}

// Serve accepts connections on l until the server is shut down, then returns
// ErrServerClosed. Any other return is an accept error that was not
// temporary. Serve closes l before returning. It may be called concurrently
// for several listeners.
func (s *Server) Serve(l net.Listener) error {
	if s.Handler == nil {
		return errors.New("proxy: Server.Handler is nil")
	}
	l = &onceCloseListener{Listener: l}
	defer l.Close()
	if !s.trackListener(&l, true) {
		return ErrServerClosed
	}
	defer s.trackListener(&l, false)

	base := context.Background()
	if s.BaseContext != nil {
		base = s.BaseContext(l)
		if base == nil {
			return errors.New("proxy: BaseContext returned a nil context")
		}
	}
	done := s.doneChan()
	var g *gate
	if lim := s.Limits; lim.MaxConnections > 0 || lim.MaxConnectionsPerSource > 0 || lim.MaxHandshakes > 0 {
		g = newGate(s, l)
	}
	var backoff time.Duration
	for {
		nc, err := l.Accept()
		if err != nil {
			if s.inShutdown.Load() {
				return ErrServerClosed
			}
			if isTemporaryAcceptError(err) {
				if backoff == 0 {
					backoff = acceptBackoffMin
				} else {
					backoff = min(2*backoff, acceptBackoffMax)
				}
				s.logger().LogAttrs(context.Background(), slog.LevelWarn, "accept failed; retrying",
					slog.String("listen", l.Addr().String()), slog.Any("error", err), slog.Duration("backoff", backoff))
				t := time.NewTimer(backoff)
				select {
				case <-t.C:
				case <-done:
					t.Stop()
					return ErrServerClosed
				}
				continue
			}
			return fmt.Errorf("accept on %s: %w", l.Addr(), err)
		}
		backoff = 0
		// Wrapped once, here, so that everything holding the client
		// socket holds the same wrapper (a relay may lend its socket to
		// an event loop, see Relay).
		c := &Conn{srv: s, nc: rawio.Wrap(nc)}
		c.state.Store(int32(StateNew))
		if g != nil {
			g.accept(c)
		}
		s.trackConn(c, true)
		go s.serveConn(base, c)
	}
}

// serveConn runs one connection. It recovers a panic in the handler, logging
// it and closing only this connection.
func (s *Server) serveConn(base context.Context, c *Conn) {
	ctx, cancel := context.WithCancel(base)
	if s.RelayLoops >= 0 {
		// A hook about to wait on an event loop moves off it first
		// (Relay.beforeBlock).
		ctx = blocking.WithHook(ctx, c.beforeBlock)
	}
	c.mu.Lock()
	c.cancel, c.ctx, c.ownCtx = cancel, ctx, base.Done() == nil
	c.mu.Unlock()
	defer func() {
		if r := recover(); r != nil {
			c.logPanic(ctx, "connection handler panicked", r)
			c.runOnClose() // a detached session may be parked: wake it first
		} else if c.detached.Load() {
			return // the handler calls the function Detach returned
		}
		c.end()
	}()
	if hook := s.ConnState; hook != nil {
		hook(c, StateNew)
	}
	s.Handler.ServeConn(ctx, c)
}

// end runs once when the connection ends: it cancels the context, closes
// the socket, reports StateClosed and stops tracking the connection.
func (c *Conn) end() {
	c.endOnce.Do(func() {
		c.cancelAndClose()
		c.SetState(StateClosed)
		if c.gate != nil {
			c.gate.release(c)
		}
		c.srv.trackConn(c, false)
	})
}

// pollerFor returns the server's poller for parking idle sockets, starting
// it on first use; nil where parking is unsupported or after the server
// stopped.
func (s *Server) pollerFor() *netpark.Poller {
	s.pollerMu.Lock()
	defer s.pollerMu.Unlock()
	if s.poller == nil && !s.pollerClosed {
		p, err := netpark.New()
		if err != nil {
			s.pollerClosed = true // unsupported: do not try again
			return nil
		}
		s.poller = p
	}
	return s.poller
}

// loopFor returns an event loop for a relay, the server's loops taking
// turns; nil where loops are unsupported or off, or after the server
// stopped.
func (s *Server) loopFor() *evloop.Loop {
	s.pollerMu.Lock()
	if s.loops == nil && !s.pollerClosed && !s.loopsOff && s.RelayLoops >= 0 {
		n := s.RelayLoops
		if n == 0 {
			n = max(1, runtime.GOMAXPROCS(0)/2)
		}
		for range n {
			l, err := evloop.New()
			if err != nil {
				break // unsupported
			}
			l.WatchStalls(loopStallPeriod, s.loopStalled)
			s.loops = append(s.loops, l)
		}
		if s.loops == nil {
			s.loopsOff = true // unsupported: do not try again
		}
	}
	loops := s.loops
	s.pollerMu.Unlock()
	if len(loops) == 0 {
		return nil
	}
	return loops[int(s.loopNext.Add(1))%len(loops)]
}

// loopStallPeriod is how long an event loop may be busy with one batch of
// events before that is reported: its handlers never wait (a hook hands
// the loop off first), so one that does holds up every session on the
// loop.
const loopStallPeriod = 250 * time.Millisecond

// loopStalled reports a loop that was busy for d with one batch of events.
func (s *Server) loopStalled(d time.Duration) {
	s.limitLog().LogAttrs(context.Background(), slog.LevelWarn,
		"an event loop was held up by a session (a hook that waited without announcing it); the loop's other sessions waited too",
		slog.Duration("busy", d))
}

// closePoller stops the poller (waking anything still parked) and the
// event loops (ending the sessions they still relay).
func (s *Server) closePoller() {
	s.pollerMu.Lock()
	p, loops := s.poller, s.loops
	s.poller, s.pollerClosed, s.loops = nil, true, nil
	s.pollerMu.Unlock()
	if p != nil {
		_ = p.Close()
	}
	for _, l := range loops {
		l.Close()
	}
}

func (s *Server) trackListener(l *net.Listener, add bool) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.listeners == nil {
		s.listeners = make(map[*net.Listener]struct{})
	}
	if add {
		if s.inShutdown.Load() {
			return false
		}
		s.listeners[l] = struct{}{}
	} else {
		delete(s.listeners, l)
	}
	return true
}

// trackConn adds or removes c. A connection added during Shutdown (accepted
// just before the listener closed) starts out draining.
func (s *Server) trackConn(c *Conn, add bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.conns == nil {
		s.conns = make(map[*Conn]struct{})
	}
	if !add {
		delete(s.conns, c)
		return
	}
	if s.inShutdown.Load() {
		c.draining.Store(true)
	}
	if s.hardClosed.Load() {
		_ = c.nc.Close() // accepted while Close ran: the handler's first read fails
	}
	s.conns[c] = struct{}{}
}

// DrainConns asks every current connection to end at its next idle point,
// for reason, as Shutdown does, while the server goes on accepting new
// connections. A reload that changes what sessions must do uses it, so
// that no session keeps running under the old rules.
func (s *Server) DrainConns(reason DrainReason) {
	for _, c := range s.snapshotConns() {
		c.startDrainReason(reason)
	}
}

// Parked returns the number of sockets of idle sessions parked on the
// server's poller (waiting for input without a goroutine; see
// [Conn.Poller]).
func (s *Server) Parked() int {
	s.pollerMu.Lock()
	p := s.poller
	s.pollerMu.Unlock()
	if p == nil {
		return 0
	}
	return p.Len()
}

// Looped returns the number of sessions relayed by the server's event
// loops (no goroutine at all; see [Relay]).
func (s *Server) Looped() int { return int(s.looped.Load()) }

// RelayHandoffs returns how many times a session's hook, about to wait,
// handed its event loop to a new goroutine so that the loop's other
// sessions went on meanwhile.
func (s *Server) RelayHandoffs() int64 { return s.relayHandoffs.Load() }

// RelayStreams returns how many times a looped session's leg, its source
// streaming (reads that fill the relay's buffer), was relayed off its
// event loop until the stream ended.
func (s *Server) RelayStreams() int64 { return s.relayStreams.Load() }

// NumConns returns the number of tracked connections.
func (s *Server) NumConns() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}

// closeListeners closes every listener; it is called with s.mu held.
func (s *Server) closeListenersLocked() error {
	var err error
	for l := range s.listeners {
		if cerr := (*l).Close(); cerr != nil && err == nil {
			err = cerr
		}
	}
	return err
}

// Shutdown stops the server gracefully: it closes every listener (Serve
// returns ErrServerClosed), asks every connection to drain, and waits,
// polling with backoff, until all connections have ended. If ctx expires
// first, Shutdown closes the remaining connections hard and returns ctx's
// error. New connections are refused from the moment Shutdown is called.
func (s *Server) Shutdown(ctx context.Context) error {
	s.inShutdown.Store(true)
	s.mu.Lock()
	lerr := s.stopAcceptingLocked()
	conns := s.connsLocked()
	s.mu.Unlock()
	for _, c := range conns {
		c.startDrain()
	}

	poll := shutdownPollMin
	t := time.NewTimer(poll)
	defer t.Stop()
	for {
		if s.NumConns() == 0 {
			s.closePoller()
			return lerr
		}
		select {
		case <-ctx.Done():
			s.hardClosed.Store(true)
			s.closeConns()
			s.closePoller()
			return ctx.Err()
		case <-t.C:
			poll = min(2*poll, shutdownPollMax)
			t.Reset(poll)
		}
	}
}

// Close stops the server hard: it closes every listener and every
// connection (cancelling their contexts) without waiting.
func (s *Server) Close() error {
	s.inShutdown.Store(true)
	s.hardClosed.Store(true)
	s.mu.Lock()
	err := s.stopAcceptingLocked()
	s.mu.Unlock()
	s.closeConns()
	s.closePoller()
	return err
}

func (s *Server) closeConns() {
	for _, c := range s.snapshotConns() {
		c.closeHard()
	}
}

// snapshotConns returns the current connections.
func (s *Server) snapshotConns() []*Conn {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.connsLocked()
}

// connsLocked returns the current connections; s.mu is held.
func (s *Server) connsLocked() []*Conn {
	conns := make([]*Conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	return conns
}

// stopAcceptingLocked closes the listeners and the channel that tells
// Serve the server is closed; s.mu is held.
func (s *Server) stopAcceptingLocked() error {
	err := s.closeListenersLocked()
	done := s.doneChanLocked()
	select {
	case <-done:
	default:
		close(done)
	}
	return err
}

// onceCloseListener makes Close idempotent: Serve's defer and Shutdown may
// both close it.
type onceCloseListener struct {
	net.Listener
	once sync.Once
	err  error
}

func (l *onceCloseListener) Close() error {
	l.once.Do(func() { l.err = l.Listener.Close() })
	return l.err
}
