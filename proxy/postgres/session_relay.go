package postgres

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/dbproxy/dbproxy/internal/netpark"
	"github.com/dbproxy/dbproxy/proxy"
)

// aLongTimeAgo is a deadline in the past: setting it interrupts a blocked
// Read without closing the connection.
var aLongTimeAgo = time.Unix(1, 0)

// parkDelay is how long a session must stay idle (no request outstanding)
// before its plain TCP sockets are parked: long enough that a session
// sending queries back to back never parks, short enough that idle ones
// soon hold no goroutine.
const parkDelay = 200 * time.Millisecond

// relay runs the two pumps until the session ends, then says goodbye to
// whichever side is still there.
//
// The connection is detached from the server (proxy.Conn.Detach) so that
// the session can go on without the goroutine that served it. Once the
// session has been idle for parkDelay, each pump whose source is a plain
// TCP socket is interrupted in its wait (a read deadline), parks the
// socket on the server's poller and its goroutine returns; the poller
// starts a fresh goroutine when the socket has input, and the pump goes on
// from its own state. An idle session thus holds no goroutine. Whichever
// pump ends last ends the session (relayer.finish).
func (s *session) relay(ctx context.Context, hooks *SessionHooks) {
	// server -> client
	up := newPump(s.server, s.client, proxy.Buffered(s.sbr))
	up.acct = s.acct
	var ready MessageTypes
	ready.Add('Z')
	// client -> server
	down := newPump(s.client, s.server, proxy.Buffered(s.cbr))
	down.fromClient = true
	down.allowFlush()
	down.acct = s.acct
	down.maxBody = s.h.opts.MaxMessageSize
	if hooks != nil {
		up.setHooks(hooks.BackendTypes, hooks.Backend, ready)
		down.setHooks(hooks.FrontendTypes, hooks.Frontend, MessageTypes{})
	} else {
		up.full = ready
	}
	s.cbr, s.sbr = nil, nil
	// Startup state the relay does not need: an idle session keeps
	// only what it uses.
	s.startup, s.srvParams = nil, nil

	r := &relayer{s: s, ctx: ctx, hooks: hooks}
	r.up = &leg{p: up, r: r, conn: s.rawServer}
	r.down = &leg{p: down, r: r, conn: s.rawClient}
	r.pending.Store(2)
	if poller := s.pc.Poller(); poller != nil {
		r.poller = poller
		// Only plain TCP sockets park: a TLS connection may hold decrypted
		// bytes its socket no longer shows.
		if sc, ok := s.rawServer.(syscall.Conn); ok && !s.serverTLS {
			r.up.sock = sc
		}
		if sc, ok := s.rawClient.(syscall.Conn); ok && !s.clientTLS {
			r.down.sock = sc
		}
	}
	if r.up.sock != nil || r.down.sock != nil {
		// A request wakes a parked server->client pump so that it waits
		// for the answer in the runtime, as when not parking.
		s.acct.onBusy = r.busy
		s.acct.onIdle = r.idle
		r.armed.Store(true)
		r.timer = time.AfterFunc(parkDelay, r.parkIfIdle)
	}
	s.relayer.Store(r)
	s.detached = true
	r.done = s.pc.Detach()

	// A drain closes the session when it is idle at that moment; a busy one
	// is closed by the server->client pump at its next idle ReadyForQuery.
	s.pc.OnDrain(func() {
		if s.acct.closeIfIdle() {
			r.up.kick(func() { _ = s.rawServer.SetReadDeadline(aLongTimeAgo) })
			r.down.kick(func() { _ = s.rawClient.SetReadDeadline(aLongTimeAgo) })
		}
	})
	// A hard close by the server: wake parked sockets before they close.
	s.pc.OnClose(r.kickAll)
	if ctx.Err() != nil {
		// Hard-closed while the relay was being set up: hardClose may
		// have looked for the relayer before it was stored.
		r.kickAll()
	}

	go r.run(r.up)
	r.run(r.down)
}

// relayer is the state of a relaying session shared by its pumps'
// goroutines.
type relayer struct {
	s      *session
	ctx    context.Context
	hooks  *SessionHooks
	poller *netpark.Poller // nil: no parking
	up     *leg            // server -> client
	down   *leg            // client -> server
	done   func()          // ends the detached proxy.Conn

	pending        atomic.Int32 // pumps not ended yet
	upErr, downErr error        // each set by its pump before pending drops

	// Parking after parkDelay of idleness: busy counts requests; the timer
	// runs while armed, and parks the session when no request came since
	// it was set (seen) and none is outstanding.
	timer *time.Timer
	armed atomic.Bool
	busyN atomic.Uint64
	seen  atomic.Uint64
	ended atomic.Bool
}

// busy is the accounting's onBusy: a request is about to be forwarded.
func (r *relayer) busy() {
	r.busyN.Add(1)
	r.up.unpark()
}

// idle is the accounting's onIdle: nothing is outstanding any more.
func (r *relayer) idle() {
	if r.armed.CompareAndSwap(false, true) {
		r.seen.Store(r.busyN.Load())
		r.timer.Reset(parkDelay)
	}
}

// parkIfIdle runs on the timer: it asks the legs to park if the session
// stayed idle since the timer was set, and looks again later otherwise.
func (r *relayer) parkIfIdle() {
	if r.ended.Load() {
		return
	}
	n := r.busyN.Load()
	if n != r.seen.Load() || r.s.acct.word.Load() != 0 {
		r.seen.Store(n)
		r.timer.Reset(parkDelay)
		return
	}
	r.armed.Store(false)
	r.up.requestPark()
	r.down.requestPark()
}

// leg is one direction of the relay: its pump and its parking state.
type leg struct {
	p    *pump
	r    *relayer
	conn net.Conn     // the raw source socket: read deadlines
	sock syscall.Conn // the same, to park; nil: never parks

	mu      sync.Mutex
	kicked  bool            // woken for good (stop, drain, hard close): never parks again
	parkReq bool            // requestPark set the read deadline that interrupts the pump
	parked  *netpark.Handle // the pump's socket is parked; its goroutine has returned
}

// requestPark interrupts the leg's wait for input with a read deadline,
// so that it parks (see afterDeadline).
func (l *leg) requestPark() {
	if l.sock == nil {
		return
	}
	l.mu.Lock()
	if l.kicked || l.parked != nil || l.parkReq {
		l.mu.Unlock()
		return
	}
	l.parkReq = true
	l.mu.Unlock()
	_ = l.conn.SetReadDeadline(aLongTimeAgo)
}

// afterDeadline handles a read deadline that interrupted the pump. A
// kicked leg ends (false). Otherwise the deadline was requestPark's (or a
// stale one of an earlier request): it is cleared, and the pump parks if
// it is at rest and the session still idle (parked), or reads on.
//
// The server->client pump parks only when no request is outstanding, so
// that a busy session waits for its answers in the runtime; the
// client->server one unless an extended-protocol batch or a COPY is half
// sent. A kick sets kicked under mu before it sets its own deadline, so
// clearing the deadline here never loses a kick's.
func (l *leg) afterDeadline() (goOn, parked bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.kicked {
		return false, false
	}
	_ = l.conn.SetReadDeadline(time.Time{})
	req := l.parkReq
	l.parkReq = false
	if !req || !l.p.atRest() {
		return true, false
	}
	w := l.r.s.acct.word.Load()
	if (l == l.r.up && w != 0) || w&(partialBit|closingBit) != 0 {
		return true, false
	}
	h, err := l.r.poller.Park(l.sock, func() { go l.r.resume(l) })
	if err != nil {
		l.sock = nil // the poller closed: no more parking
		return true, false
	}
	l.p.release() // no relay buffers while parked
	l.parked = h
	return true, true
}

// kick stops the leg from parking again, runs interrupt (which sets the
// deadline that ends its reads) and wakes it if it is parked.
func (l *leg) kick(interrupt func()) {
	l.mu.Lock()
	l.kicked = true
	h := l.parked
	l.parked = nil
	l.mu.Unlock()
	if interrupt != nil {
		interrupt()
	}
	if h != nil {
		h.Unpark()
	}
}

// unpark wakes the leg if it is parked; it may park again.
func (l *leg) unpark() {
	l.mu.Lock()
	h := l.parked
	l.parked = nil
	l.mu.Unlock()
	if h != nil {
		h.Unpark()
	}
}

// kickAll wakes both legs for good, before the sockets are closed hard.
func (r *relayer) kickAll() {
	r.up.kick(nil)
	r.down.kick(nil)
}

// resume runs a woken leg on its new goroutine. The timer is armed again:
// input that is no request (a notification from the server, a client
// Sync with nothing to answer) leaves the session idle, and it must park
// again.
func (r *relayer) resume(l *leg) {
	l.mu.Lock()
	l.parked = nil
	l.mu.Unlock()
	r.idle()
	r.run(l)
}

// run runs l's pump until it parks or ends; the pump that ends last ends
// the session.
func (r *relayer) run(l *leg) {
	s := r.s
	var err error
	for {
		err = s.runPump(l.p)
		if !isReadDeadline(err) {
			break
		}
		goOn, parked := l.afterDeadline()
		if parked {
			return
		}
		if !goOn {
			break
		}
	}
	if l == r.up {
		r.upErr = err
		if r.hooks != nil && r.hooks.Close != nil {
			// The server side is done: a Frontend hook waiting for the
			// server's answer to something it injected must give up.
			r.hooks.Close()
		}
		// Stop the client->server pump: its reads and, bounded, its writes.
		r.down.kick(func() { _ = s.rawClient.SetReadDeadline(aLongTimeAgo) })
		_ = s.rawServer.SetWriteDeadline(time.Now().Add(finalWriteTimeout))
	} else {
		r.downErr = err
		r.up.kick(func() { _ = s.rawServer.SetReadDeadline(aLongTimeAgo) })
		_ = s.rawClient.SetWriteDeadline(time.Now().Add(finalWriteTimeout))
	}
	if r.pending.Add(-1) == 0 {
		r.ended.Store(true)
		if r.timer != nil {
			r.timer.Stop()
		}
		r.finish()
	}
}

// isReadDeadline reports whether err is a read deadline expiring (not a
// write's, nor one a hook met).
func isReadDeadline(err error) bool {
	var we *writeError
	var he *hookError
	return errors.Is(err, os.ErrDeadlineExceeded) && !errors.As(err, &we) && !errors.As(err, &he)
}

// finish ends the session once both pumps have ended.
func (r *relayer) finish() {
	s := r.s
	defer r.done()
	defer s.cleanup()
	defer r.up.p.release()
	defer r.down.p.release()
	defer func() {
		if v := recover(); v != nil {
			s.log.LogAttrs(context.Background(), slog.LevelError, "relay panicked",
				slog.Any("panic", v), slog.String("stack", string(debug.Stack())))
		}
	}()
	s.endRelay(r.ctx, r.up.p, r.down.p, r.upErr, r.downErr)
}

// endRelay says goodbye to whichever side is still there.
func (s *session) endRelay(ctx context.Context, up, down *pump, upErr, downErr error) {
	if ctx.Err() != nil {
		return // closed hard: sockets are gone
	}
	_ = s.rawClient.SetDeadline(time.Now().Add(finalWriteTimeout))
	_ = s.rawServer.SetDeadline(time.Now().Add(finalWriteTimeout))
	canWriteClient := !up.dstBroken && !up.midMessage()
	canWriteServer := !down.dstBroken && !down.midMessage()
	var toClient error // FATAL for the client, if any
	terminate := canWriteServer

	var mal *malformedError
	var hookErr *hookError
	switch {
	case s.acct.closing():
		toClient = drainError(s.pc.DrainReason())
	case errors.Is(downErr, errTerminated):
		terminate = false // forwarded already
	case errors.As(downErr, &mal):
		s.log.LogAttrs(ctx, slog.LevelWarn, "malformed message from client; closing", slog.String("reason", mal.msg))
		toClient = fatalf(codeProtocolViolation, mal.msg, nil)
	case errors.As(downErr, &hookErr), errors.As(upErr, &hookErr):
		s.log.LogAttrs(ctx, slog.LevelWarn, "message hook failed; closing", slog.Any("error", hookErr.err))
		toClient = hookErr.err
	case upstreamFailed(upErr, downErr):
		terminate = false
		if up.lastType == 'E' && !up.midMessage() {
			// The server said why (e.g. 57P01 after pg_terminate_backend).
			s.log.LogAttrs(ctx, slog.LevelInfo, "server ended the session")
		} else {
			s.log.LogAttrs(ctx, slog.LevelWarn, "lost the connection to the database server",
				slog.Any("error", proxy.FirstReal(upErr, downErr)))
			toClient = s.upstreamLost(nil)
		}
	default:
		// Client gone: routine, not logged above debug.
		s.log.LogAttrs(ctx, slog.LevelDebug, "client disconnected", slog.Any("error", proxy.FirstReal(downErr, upErr)))
		canWriteClient = false
	}
	if toClient != nil && canWriteClient {
		_, _ = s.client.Write(appendError(nil, toClient))
	}
	if terminate {
		_, _ = s.server.Write([]byte{'X', 0, 0, 0, 4})
	}
}

// hookError wraps an error returned by a MessageFunc.
type hookError struct{ err error }

func (e *hookError) Error() string { return "message hook: " + e.err.Error() }
func (e *hookError) Unwrap() error { return e.err }

// runPump runs p, turning a panic into an error that ends only this
// session.
func (s *session) runPump(p *pump) (err error) {
	defer func() {
		if r := recover(); r != nil {
			s.log.LogAttrs(context.Background(), slog.LevelError, "relay panicked",
				slog.Any("panic", r), slog.String("stack", string(debug.Stack())))
			err = fmt.Errorf("relay panicked: %v", r)
		}
	}()
	return p.run()
}

// upstreamFailed reports whether the session ended because the server
// connection failed: a read error (other than our own interrupt) on the
// server->client side, or a write error on the client->server side.
func upstreamFailed(upErr, downErr error) bool {
	var we *writeError
	if errors.As(downErr, &we) && !errors.Is(we.err, os.ErrDeadlineExceeded) {
		return true
	}
	if upErr == nil || errors.As(upErr, &we) || errors.Is(upErr, os.ErrDeadlineExceeded) ||
		errors.Is(upErr, errDrained) {
		return false
	}
	return true
}
