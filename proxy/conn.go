package proxy

import (
	"context"
	"net"
	"sync"
	"sync/atomic"
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
// [Handler.ServeConn], or on [Server.Close]).
//
// All methods are safe for concurrent use.
type Conn struct {
	srv      *Server
	nc       net.Conn
	state    atomic.Int32
	draining atomic.Bool
	reason   atomic.Int32 // DrainReason, set before draining
	cancel   context.CancelFunc

	admission error // set before the handler runs; see Admission

	mu      sync.Mutex
	onDrain func()
}

// Admission reports whether the server admitted the connection under its
// limits: nil, or an error (a *[LimitError]) naming the limit it is over.
// A handler that gets an error answers the client with it in its own
// protocol, at the first point the protocol allows an error, and returns
// without contacting the database.
func (c *Conn) Admission() error { return c.admission }

// NetConn returns the accepted connection.
func (c *Conn) NetConn() net.Conn { return c.nc }

// SetState records the connection's state and reports changes to
// [Server.ConnState]. Handlers call it with StateActive and StateIdle; the
// server reports StateNew and StateClosed itself.
func (c *Conn) SetState(s ConnState) {
	if ConnState(c.state.Swap(int32(s))) == s {
		return
	}
	if hook := c.srv.ConnState; hook != nil {
		hook(c, s)
	}
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
	c.mu.Lock()
	cancel := c.cancel
	c.mu.Unlock()
	if cancel != nil {
		cancel()
	}
	_ = c.nc.Close()
}
