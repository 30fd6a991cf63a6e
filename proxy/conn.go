package proxy

import (
	"context"
	"log/slog"
	"net"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dbproxy/dbproxy/internal/evloop"
	"github.com/dbproxy/dbproxy/internal/netpark"
)

// ConnState is the state of a client connection, as reported to
// [Server.ConnState]. The zero value is invalid.
type ConnState int32

const (
	_ ConnState = iota // the zero value is invalid
	// StateNew: accepted, handshake not finished.
	StateNew
	// StateActive: a request (transaction, query) is in flight.
	StateActive
	// StateIdle: between transactions; safe to close during a drain.
	StateIdle
	// StateClosed: the connection has ended. Reported once, last.
	StateClosed
)

func (s ConnState) String() string {
	switch s {
	case StateNew:
		return "new"
	case StateActive:
		return "active"
	case StateIdle:
		return "idle"
	case StateClosed:
		return "closed"
	default:
		return "invalid"
	}
}

// Conn is one accepted client connection tracked by a [Server]. The handler
// owns reading and writing NetConn; the server only closes it (at the end of
// [Handler.ServeConn] or, once detached, when the handler says so; or on
// [Server.Close]).
//
// All methods are safe for concurrent use.
type Conn struct {
	srv      *Server
	nc       net.Conn
	state    atomic.Int32
	draining atomic.Bool
	reason   atomic.Int32 // DrainReason, set before draining
	cancel   context.CancelFunc
	detached atomic.Bool
	endOnce  sync.Once

	admission error // set before the handler runs; see Admission

	// looped is the connection's relay while it runs on an event loop,
	// for the hooks' announcements that they are about to wait
	// (beforeBlock).
	looped atomic.Pointer[Relay]

	// Listener limits (see gate); the fields below hsDone are guarded by
	// gate.mu.
	gate        *gate // nil when the server has no connection limits
	hsDone      atomic.Bool
	src         *source
	seq         uint64
	hsPrev      *Conn
	hsNext      *Conn
	inHandshake bool
	admitted    bool

	mu        sync.Mutex
	ctx       context.Context // the handler's context; see AfterCancel
	ownCtx    bool            // only cancelAndClose cancels ctx (its base cannot be cancelled)
	cancelled bool            // cancelAndClose ran
	onCancel  func()          // see AfterCancel
	onDrain   func()
	onClose   func()
	idleTimer *time.Timer // armed while idle, with Limits.IdleTimeout
	idleAt    time.Time   // when the connection last became idle
}

// beforeBlock runs when code of the session is about to wait
// (blocking.Announce with the handler's context).
func (c *Conn) beforeBlock() {
	if r := c.looped.Load(); r != nil {
		r.beforeBlock()
	}
}

// Admission reports whether the server admitted the connection under its
// limits: nil, or an error (a *[LimitError]) naming the limit it is over.
// A handler that gets an error answers the client with it in its own
// protocol, at the first point the protocol allows an error, and returns
// without contacting the database.
func (c *Conn) Admission() error { return c.admission }

// Detach keeps the connection open after [Handler.ServeConn] returns, as
// http.Hijacker does, for a handler that goes on serving it from other
// goroutines (a relay whose idle sockets are parked; see [Conn.Poller]).
// The server then neither closes nor forgets the connection when
// ServeConn returns; the handler calls done, once, when the session really
// ends, and the server does then what it does at the end of ServeConn:
// cancels the context, closes the socket, reports StateClosed and releases
// the connection's limits. Drains, idle timeouts and hard closes
// ([Conn.OnDrain], [Conn.OnClose], the context) reach a detached
// connection as before. Extra calls of done do nothing.
func (c *Conn) Detach() (done func()) {
	c.detached.Store(true)
	return c.end
}

// Poller returns the server's poller on which the handler may park an idle
// socket of this connection (the client's or its upstream's), so that no
// goroutine waits on it; nil when parking is unsupported (outside Linux)
// or the server has stopped. A parked socket must be unparked before it is
// closed; [Conn.OnClose] says when the server is about to close it.
func (c *Conn) Poller() *netpark.Poller { return c.srv.pollerFor() }

// Loop returns an event loop of the server for relaying the connection's
// session without goroutines (see [Relay]); nil if there is none.
func (c *Conn) Loop() *evloop.Loop { return c.srv.loopFor() }

// OnClose registers f to be called, once, just before the server closes
// the connection from outside the handler ([Server.Close], or
// [Server.Shutdown] when its context expires), before the context is
// cancelled and the socket closed. A handler that parks sockets unparks
// them there. f must not block. A later call replaces f.
func (c *Conn) OnClose(f func()) {
	c.mu.Lock()
	c.onClose = f
	c.mu.Unlock()
}

func (c *Conn) runOnClose() {
	c.mu.Lock()
	f := c.onClose
	c.onClose = nil
	c.mu.Unlock()
	if f != nil {
		f()
	}
}

// NetConn returns the accepted connection.
func (c *Conn) NetConn() net.Conn { return c.nc }

// SetState records the connection's state and reports changes to
// [Server.ConnState]. Handlers call it with StateActive and StateIdle; the
// server reports StateNew and StateClosed itself.
//
// The first StateActive or StateIdle ends the connection's handshake (see
// [Conn.HandshakeDone]). With [Limits.IdleTimeout] set, StateIdle arms the
// connection's idle timer and any other state stops it; when it expires
// the connection is drained with [DrainIdleTimeout].
func (c *Conn) SetState(s ConnState) {
	if s == StateIdle || s == StateActive {
		c.HandshakeDone()
	}
	if d := c.srv.Limits.IdleTimeout; d > 0 {
		c.mu.Lock()
		old := ConnState(c.state.Swap(int32(s)))
		if old != s {
			c.idleTimerLocked(s, d)
		}
		c.mu.Unlock()
		if old == s {
			return
		}
	} else if ConnState(c.state.Swap(int32(s))) == s {
		return
	}
	if hook := c.srv.ConnState; hook != nil {
		hook(c, s)
	}
}

// HandshakeDone reports that the client has completed its handshake
// (authentication), freeing its slot under [Limits.MaxHandshakes]. The
// first StateIdle or StateActive does the same; later calls do nothing.
func (c *Conn) HandshakeDone() {
	if c.hsDone.Load() || !c.hsDone.CompareAndSwap(false, true) {
		return
	}
	if c.gate != nil {
		c.gate.handshakeDone(c)
	}
}

// idleTimerLocked arms the idle timer on StateIdle and stops it on any
// other state; c.mu is held.
func (c *Conn) idleTimerLocked(s ConnState, d time.Duration) {
	if s != StateIdle {
		if c.idleTimer != nil {
			c.idleTimer.Stop()
		}
		return
	}
	c.idleAt = time.Now()
	if c.idleTimer == nil {
		c.idleTimer = time.AfterFunc(d, c.idleExpired)
		return
	}
	c.idleTimer.Reset(d)
}

// idleExpired runs when the idle timer fires. A timer that fired just
// before the connection became active (and maybe idle again) finds the
// state or the idle start changed and does nothing.
func (c *Conn) idleExpired() {
	d := c.srv.Limits.IdleTimeout
	c.mu.Lock()
	expired := c.State() == StateIdle && time.Since(c.idleAt) >= d && !c.draining.Load()
	c.mu.Unlock()
	if !expired {
		return
	}
	c.srv.idleTimeouts.Add(1)
	c.srv.logger().LogAttrs(context.Background(), slog.LevelDebug, "session idle longer than limits.idle_timeout; closing it",
		slog.String("remote", c.nc.RemoteAddr().String()), slog.Duration("idle_timeout", d))
	c.StartDrain(DrainIdleTimeout)
}

// State returns the last state recorded by SetState.
func (c *Conn) State() ConnState { return ConnState(c.state.Load()) }

// Draining reports whether the server is shutting down. A handler that sees it
// at an idle point ends the connection.
func (c *Conn) Draining() bool { return c.draining.Load() }

// OnDrain registers f to be called once, from the goroutine running
// [Server.Shutdown], when a drain starts; f must not block. If the drain has
// already started, f is called before OnDrain returns. A handler uses it to
// close a connection that is idle at that moment (a busy one notices
// [Conn.Draining] at its next idle point instead). A later call replaces an
// earlier f that has not run yet.
func (c *Conn) OnDrain(f func()) {
	c.mu.Lock()
	if c.draining.Load() {
		c.mu.Unlock()
		f()
		return
	}
	c.onDrain = f
	c.mu.Unlock()
}

// DrainReason says why a connection is asked to end at its next idle
// point; handlers word the client's error after it.
type DrainReason int32

const (
	// DrainShutdown: the server is shutting down (the zero value reads as
	// this too).
	DrainShutdown DrainReason = iota
	// DrainRulesChanged: a reload changed the encryption rules the session
	// was started under.
	DrainRulesChanged
	// DrainIdleTimeout: the session stayed idle longer than the listener's
	// idle timeout.
	DrainIdleTimeout
)

func (r DrainReason) String() string {
	switch r {
	case DrainRulesChanged:
		return "rules changed"
	case DrainIdleTimeout:
		return "idle timeout"
	default:
		return "shutdown"
	}
}

// DrainReason returns why the connection is draining (meaningful once
// [Conn.Draining] reports true).
func (c *Conn) DrainReason() DrainReason { return DrainReason(c.reason.Load()) }

// StartDrain asks the connection to end at its next idle point, for
// reason, as [Server.Shutdown] does for every connection. The first reason
// given wins.
func (c *Conn) StartDrain(reason DrainReason) { c.startDrainReason(reason) }

// startDrain marks the connection draining (for shutdown) and runs its
// drain callback.
func (c *Conn) startDrain() { c.startDrainReason(DrainShutdown) }

func (c *Conn) startDrainReason(reason DrainReason) {
	c.mu.Lock()
	if c.draining.Load() {
		c.mu.Unlock()
		return
	}
	c.reason.Store(int32(reason))
	c.draining.Store(true)
	f := c.onDrain
	c.onDrain = nil
	c.mu.Unlock()
	if f != nil {
		f()
	}
}

// closeHard cancels the connection's context and closes its socket.
func (c *Conn) closeHard() {
	c.runOnClose()
	c.cancelAndClose()
}

// cancelAndClose cancels the connection's context, starts the function
// of AfterCancel, and closes its socket.
func (c *Conn) cancelAndClose() {
	c.mu.Lock()
	cancel, f := c.cancel, c.onCancel
	c.cancelled, c.onCancel = true, nil
	c.mu.Unlock()
	if cancel != nil {
		cancel()
	}
	if f != nil {
		go f()
	}
	_ = c.nc.Close()
}

// AfterCancel arranges for f to run on a goroutine of its own once ctx is
// cancelled, as context.AfterFunc(ctx, f) does; stop undoes that unless f
// has started. When ctx is the context [Handler.ServeConn] got for c and
// nothing but the server cancels it (no cancellable [Server.BaseContext]),
// f is kept on c instead and started when the server cancels ctx: an idle
// session does not hold the half KiB of a context.AfterFunc. One function
// at a time is kept; a second call while one is registered uses
// context.AfterFunc.
func (c *Conn) AfterCancel(ctx context.Context, f func()) (stop func()) {
	c.mu.Lock()
	own := c.ownCtx && ctx == c.ctx && c.onCancel == nil
	cancelled := c.cancelled
	if own && !cancelled {
		c.onCancel = f
	}
	c.mu.Unlock()
	switch {
	case !own:
		s := context.AfterFunc(ctx, f)
		return func() { s() }
	case cancelled:
		go f()
		return func() {}
	}
	return c.stopOnCancel
}

func (c *Conn) stopOnCancel() {
	c.mu.Lock()
	c.onCancel = nil
	c.mu.Unlock()
}

// logPanic logs v, recovered from a panic while serving c, with its stack.
func (c *Conn) logPanic(ctx context.Context, msg string, v any) {
	c.srv.logger().LogAttrs(ctx, slog.LevelError, msg,
		slog.String("remote", c.nc.RemoteAddr().String()),
		slog.Any("panic", v), slog.String("stack", string(debug.Stack())))
}
