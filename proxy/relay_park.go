package proxy

import (
	"context"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/dbproxy/dbproxy/internal/evloop"
	"github.com/dbproxy/dbproxy/internal/netpark"
)

// ParkDelay is how long a relayed session must stay idle (no request
// outstanding) before its plain TCP sockets are parked: long enough that
// a session sending queries back to back never parks, short enough that
// idle ones soon hold no goroutine.
const ParkDelay = 200 * time.Millisecond

// FinalWriteTimeout bounds the writes still going on to the other side
// when a leg of a [Relay] ends, and the last words of its session.
const FinalWriteTimeout = 5 * time.Second

// relayInterrupt is a read deadline in the past: setting it interrupts a
// blocked Read without closing the connection.
var relayInterrupt = time.Unix(1, 0)

// RelayLeg describes one direction of a [Relay]: a pump reading Conn.
type RelayLeg struct {
	// Run runs the pump until it stops with an error (never nil). It is
	// called again, on a fresh goroutine, after the leg was parked: the
	// pump's state must live outside the call.
	Run func() error
	// Conn is the raw socket the pump reads (read deadlines).
	Conn net.Conn
	// Parkable: Conn is a TCP socket the pump reads directly, or through
	// a TLS wrapper that tells when it holds no input (rawio.TLSConn:
	// AtRest then also asks it); never a TLS leg that may hold decrypted
	// bytes the socket no longer shows.
	Parkable bool
	// AtRest reports whether the pump is at a message boundary with
	// nothing buffered or pending; MayPark whether the session lets this
	// direction wait without a goroutine now; Release gives the pump's
	// buffers back before it parks.
	AtRest, MayPark func() bool
	Release         func()
	// IsReadDeadline reports whether an error of Run is a read deadline
	// expiring (not a write's, nor one a hook met).
	IsReadDeadline func(error) bool
	// Step, if not nil, is Run for an event loop: one read without
	// waiting, relayed (see relay_loop.go). FullReads, with Step, reports
	// how many of its reads in a row, up to the last one, filled their
	// buffer: the source is streaming (a large result), and the loop
	// relays the rest of the stream off the loop.
	Step      func() error
	FullReads func() int
}

// Relay runs the two directions of a proxied session on a detached
// connection ([Conn.Detach]) and parks them when the session is idle.
//
// Once the session has had no request outstanding for [ParkDelay]
// (the protocol reports requests with Busy and their ends with Idle),
// each parkable leg is interrupted in its wait with a read deadline,
// parks its socket on the server's poller ([Conn.Poller]) if it is at
// rest, and its goroutine returns. Input starts a fresh goroutine that
// runs the leg again. Busy wakes the server->client leg at once, so that
// a busy session waits for its answers in the runtime as before. Stop,
// a drain's close or a hard close ([Relay.KickAll]) wake parked legs
// before anything is closed. The end runs once, on whichever leg's
// goroutine ends last.
type Relay struct {
	c       *Conn
	poller  *netpark.Poller // nil: no parking
	legs    [2]*relayLeg    // 0: server -> client, 1: client -> server
	idleNow func() bool
	done    func()

	// Event loop (relay_loop.go): loop is nil when the legs run on
	// goroutines. stepping is the leg a loop is stepping, plus one (0:
	// none); wentAway[i] is set by beforeBlock and read, then cleared, by
	// whoever runs leg i's step.
	loop     *evloop.Loop
	ls       *loopState
	stepping atomic.Int32
	wentAway [2]bool
	awayMu   sync.Mutex // resumeAway after the loop closed
	// halt is set once a looped relay's legs have ended: a stream relayed
	// off the loop (streamAway) stops at its next read.
	halt atomic.Bool

	onLegEnd func(i int, err error)
	finish   func(errs [2]error)
	errs     [2]error
	pending  atomic.Int32

	// Parking after ParkDelay of idleness: busyN counts requests; the
	// timer runs while armed, and parks the session when no request came
	// since it was set (seen) and none is outstanding (idleNow).
	timer *time.Timer
	armed atomic.Bool
	busyN atomic.Uint64
	seen  atomic.Uint64
	ended atomic.Bool
}

type relayLeg struct {
	RelayLeg
	r    *Relay
	i    int
	sock syscall.Conn // nil: never parks

	mu      sync.Mutex
	kicked  bool            // woken for good (stop, drain, hard close): never parks again
	parkReq bool            // requestPark set the deadline that interrupts the pump
	parked  *netpark.Handle // the socket is parked; the leg's goroutine has returned
	// isParked mirrors parked != nil for unpark's lock-free check on every
	// idle-to-busy transition (a leg that parks just after the check is
	// woken by its input).
	isParked atomic.Bool
}

// NewRelay prepares a relay of c's session: up reads the server, down
// the client. idleNow reports whether no request is outstanding. loopOK
// says whether the protocol lets an event loop relay the session: its
// hooks never wait without announcing it first (blocking.Announce with
// the handler's context). It does when both legs read plain TCP sockets
// and the server has loops (see relay_loop.go).
func NewRelay(c *Conn, up, down RelayLeg, idleNow func() bool, loopOK bool) *Relay {
	r := &Relay{c: c, idleNow: idleNow}
	r.legs[0] = &relayLeg{RelayLeg: up, r: r, i: 0}
	r.legs[1] = &relayLeg{RelayLeg: down, r: r, i: 1}
	if r.loopable(loopOK) {
		// A looped session holds no goroutine: nothing to park.
		r.pending.Store(2)
		return r
	}
	if p := c.Poller(); p != nil {
		for _, l := range r.legs {
			if sc, ok := l.Conn.(syscall.Conn); ok && l.Parkable {
				l.sock = sc
				r.poller = p
			}
		}
	}
	if r.poller != nil {
		r.armed.Store(true)
		r.timer = time.AfterFunc(ParkDelay, r.parkIfIdle)
	}
	r.pending.Store(2)
	return r
}

// Start detaches the connection and runs the legs: the server->client one
// on a new goroutine, the other on the caller's, until it ends or parks.
// onLegEnd runs on a leg's goroutine when its pump has ended (before the
// other leg is stopped); finish, once, after both ended, and then the
// connection ends. ctx is the connection's: if it is already cancelled
// the legs are woken for good at once.
func (r *Relay) Start(ctx context.Context, onLegEnd func(i int, err error), finish func(errs [2]error)) {
	r.onLegEnd, r.finish = onLegEnd, finish
	r.done = r.c.Detach()
	r.c.OnClose(r.KickAll)
	if r.loop != nil {
		r.c.looped.Store(r)
		r.startLoop()
		if ctx.Err() != nil {
			r.KickAll()
		}
		return
	}
	if ctx.Err() != nil {
		r.KickAll()
	}
	go r.run(r.legs[0])
	r.run(r.legs[1])
}

// Busy reports a request about to be forwarded.
func (r *Relay) Busy() {
	if r.poller == nil {
		return
	}
	r.busyN.Add(1)
	r.legs[0].unpark()
}

// Idle reports that no request is outstanding any more.
func (r *Relay) Idle() {
	if r.poller != nil && r.armed.CompareAndSwap(false, true) {
		r.seen.Store(r.busyN.Load())
		r.timer.Reset(ParkDelay)
	}
}

// Stop ends leg i's reads (0: server -> client, 1: client -> server):
// it will not park again, a read deadline in the past interrupts it, and
// it is woken if parked.
func (r *Relay) Stop(i int) {
	if r.loop != nil {
		r.loopStop(i)
		return
	}
	l := r.legs[i]
	l.kick(func() { _ = l.Conn.SetReadDeadline(relayInterrupt) })
}

// KickAll wakes both legs for good, without interrupting their reads; a
// hard close calls it before closing the sockets (a socket must not be
// closed while parked).
func (r *Relay) KickAll() {
	if r.loop != nil {
		r.loopKick()
		return
	}
	r.legs[0].kick(nil)
	r.legs[1].kick(nil)
}

// parkIfIdle runs on the timer: it asks the legs to park if the session
// stayed idle since the timer was set, and looks again later otherwise.
func (r *Relay) parkIfIdle() {
	if r.ended.Load() {
		return
	}
	n := r.busyN.Load()
	if n != r.seen.Load() || !r.idleNow() {
		r.seen.Store(n)
		r.timer.Reset(ParkDelay)
		return
	}
	r.armed.Store(false)
	r.legs[0].requestPark()
	r.legs[1].requestPark()
}

// requestPark interrupts the leg's wait for input with a read deadline,
// so that it parks (see afterDeadline).
func (l *relayLeg) requestPark() {
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
	_ = l.Conn.SetReadDeadline(relayInterrupt)
}

// afterDeadline handles a read deadline that interrupted the pump. A
// kicked leg ends (goOn false). Otherwise the deadline was requestPark's
// (or a stale one of an earlier request): it is cleared, and the pump
// parks if it is at rest and allowed to (parked), or reads on. A kick
// sets kicked under mu before it sets its own deadline, so clearing the
// deadline here never loses a kick's.
func (l *relayLeg) afterDeadline() (goOn, parked bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.kicked {
		return false, false
	}
	_ = l.Conn.SetReadDeadline(time.Time{})
	req := l.parkReq
	l.parkReq = false
	if !req || l.sock == nil || !l.AtRest() || !l.MayPark() {
		return true, false
	}
	h, err := l.r.poller.Park(l.sock, func() { go l.r.resume(l) })
	if err != nil {
		l.sock = nil // the poller closed: no more parking
		return true, false
	}
	l.Release()
	l.parked = h
	l.isParked.Store(true)
	return true, true
}

// kick stops the leg from parking again, runs interrupt and wakes the leg
// if it is parked.
func (l *relayLeg) kick(interrupt func()) {
	h := l.takeParked(true)
	if interrupt != nil {
		interrupt()
	}
	if h != nil {
		h.Unpark()
	}
}

// unpark wakes the leg if it is parked; it may park again.
func (l *relayLeg) unpark() {
	if !l.isParked.Load() {
		return
	}
	if h := l.takeParked(false); h != nil {
		h.Unpark()
	}
}

// takeParked clears and returns the leg's parked handle (nil if it is not
// parked); with kick, in the same critical section, it stops the leg from
// parking again.
func (l *relayLeg) takeParked(kick bool) *netpark.Handle {
	l.mu.Lock()
	defer l.mu.Unlock()
	if kick {
		l.kicked = true
	}
	h := l.parked
	l.parked = nil
	l.isParked.Store(false)
	return h
}

// resume runs a woken leg on its new goroutine. The timer is armed again:
// input that is no request (a notification from the server) leaves the
// session idle, and it must park again.
func (r *Relay) resume(l *relayLeg) {
	l.mu.Lock()
	l.parked = nil
	l.isParked.Store(false)
	l.mu.Unlock()
	r.Idle()
	r.run(l)
}

// run runs l until it parks or ends; the leg that ends last ends the
// session.
func (r *Relay) run(l *relayLeg) {
	var err error
	for {
		err = l.Run()
		if !l.IsReadDeadline(err) {
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
	r.errs[l.i] = err
	if r.onLegEnd != nil {
		r.onLegEnd(l.i, err)
	}
	// Stop the other leg: its reads and, bounded, its writes to this
	// leg's socket.
	r.Stop(1 - l.i)
	_ = l.Conn.SetWriteDeadline(time.Now().Add(FinalWriteTimeout))
	if r.pending.Add(-1) == 0 {
		r.end()
	}
}

// end runs finish once both legs ended, then ends the connection.
func (r *Relay) end() {
	r.ended.Store(true)
	if r.timer != nil {
		r.timer.Stop()
	}
	defer r.done()
	defer func() {
		if v := recover(); v != nil {
			r.c.logPanic(context.Background(), "relay panicked", v)
		}
	}()
	r.finish(r.errs)
}
