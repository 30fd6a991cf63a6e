package proxy

import (
	"context"
	"log/slog"
	"net"
	"os"
	"syscall"
	"time"

	"github.com/dbproxy/dbproxy/internal/evloop"
	"github.com/dbproxy/dbproxy/internal/rawio"
)

// A Relay whose legs both read plain TCP sockets (RelayLeg.Step), and
// whose protocol has no hook that may wait (NewRelay's loopOK), runs on
// one of the server's event loops ([Conn.Loop]) instead of two
// goroutines: its sockets are lent to the loop (rawio.Lender: descriptors
// of their own, out of Go's netpoller), and the loop, woken by epoll,
// steps the pumps itself (Pump.Step: one read, the frames scanned, one
// write). A relayed message thus costs no goroutine wake-up, no
// scheduler round and no futex, and a busy loop handles many sessions per
// wake-up: what a proxy written around one epoll loop pays, not what two
// goroutines per session pay.
//
// A write the destination does not take whole is kept by the lender and
// the source's leg stops reading until the loop has flushed it (EPOLLOUT):
// a client that does not read holds up only its own session, and what is
// kept is bounded by one read. When a leg ends, as on goroutines, the
// other is stopped; pending output is flushed for up to FinalWriteTimeout,
// the sockets go back to their connections (Release: ordinary blocking
// I/O under deadlines) and the relay's end (the protocol's goodbyes, the
// connection's end) runs on a goroutine of its own.
//
// Everything here runs on the loop's goroutine, except startLoop (the
// session's goroutine, before the loop knows the relay) and the functions
// that post to the loop (loopKick, loopStop).

// loopState is a looped relay's state; loop goroutine only.
type loopState struct {
	socks [2]loopSock // 0: the server socket (leg 0 reads it), 1: the client's
	// active: leg i still reads its socket.
	active [2]bool
	// registered: the sockets are on the loop; stopped: legs stopped before
	// they were (Stop or a kick came first).
	registered bool
	stopped    [2]bool
	kicked     bool // closed hard: end without flushing
	ending     bool // both legs ended: flushing, then the end
	expired    bool // FinalWriteTimeout passed while flushing
	timer      *time.Timer
	done       bool
}

// loopSock is one socket of a looped relay: read by legs[j], written by
// legs[1-j].
type loopSock struct {
	r      *Relay
	j      int
	lender rawio.Lender
	fd     int
	reg    evloop.Reg
	on     bool   // registered
	events uint32 // the interest registered
}

// loopable reports whether the relay can run on an event loop, and
// prepares it to.
func (r *Relay) loopable(loopOK bool) bool {
	if !loopOK {
		return false
	}
	var ls [2]rawio.Lender
	for i, l := range r.legs {
		lender, ok := l.Conn.(rawio.Lender)
		if !ok || l.Step == nil {
			return false
		}
		ls[i] = lender
	}
	// The client socket must be the connection's own: closing the
	// connection closes the lent descriptor.
	if r.legs[1].Conn != r.c.NetConn() {
		return false
	}
	loop := r.c.Loop()
	if loop == nil {
		return false
	}
	r.loop = loop
	r.ls = &loopState{}
	for j := range ls {
		r.ls.socks[j] = loopSock{r: r, j: j, lender: ls[j], fd: -1}
	}
	return true
}

// startLoop lends the sockets and hands the relay to its loop. If a
// socket cannot be lent (no descriptor left, or the connection was closed
// meanwhile) or the loop refuses (the server is stopping), the session
// ends as one interrupted by the proxy: no goodbye to the client, a
// Terminate to the server.
func (r *Relay) startLoop() {
	st := r.ls
	for j := range st.socks {
		fd, err := st.socks[j].lender.Lend()
		if err != nil {
			r.c.srv.logger().LogAttrs(context.Background(), slog.LevelWarn, "cannot hand the session to an event loop; closing it",
				slog.String("remote", r.c.nc.RemoteAddr().String()), slog.Any("error", err))
			r.loopAbandon(j)
			return
		}
		st.socks[j].fd = fd
	}
	if !r.loopDo(r.loopRegister) {
		r.loopAbandon(len(st.socks))
	}
}

// loopAbandon ends a relay that never reached its loop, its first n
// sockets lent.
func (r *Relay) loopAbandon(n int) {
	for j := range n {
		r.ls.socks[j].lender.Release()
	}
	r.errs = [2]error{r.stopError(0), r.stopError(1)}
	go r.end()
}

// loopRegister puts the sockets on the loop and relays what the pumps
// already hold.
func (r *Relay) loopRegister() {
	st := r.ls
	st.registered = true
	st.active = [2]bool{true, true}
	r.c.srv.looped.Add(1)
	for j := range st.socks {
		s := &st.socks[j]
		reg, err := r.loop.Add(s.fd, evloop.In, s)
		if err != nil {
			r.loopLegEnd(j, err)
			r.loopUpdate()
			return
		}
		s.reg, s.on, s.events = reg, true, evloop.In
	}
	if st.kicked {
		r.loopKicked()
		return
	}
	// Bytes buffered before the loan (the handshake's leftover) are
	// relayed now: no readiness would announce them. Then the legs
	// stopped meanwhile stop, as a goroutine's Run would have scanned its
	// leftover before its read met the deadline.
	for i := range r.legs {
		if st.active[i] {
			r.loopStep(i)
		}
	}
	for i := range st.stopped {
		if st.stopped[i] {
			r.loopLegEnd(i, r.stopError(i))
		}
	}
	r.loopUpdate()
}

// Event implements evloop.Handler.
func (s *loopSock) Event(ev uint32) {
	r := s.r
	st := r.ls
	if st.done || !s.on {
		return
	}
	defer r.loopRecover()
	if ev&(evloop.Out|evloop.Err|unixHup) != 0 && s.lender.Pending() {
		if _, err := s.lender.Flush(); err != nil && st.active[1-s.j] {
			// The peer of socket j is gone: the leg writing to it ends.
			r.loopLegEnd(1-s.j, &WriteError{Err: err})
		}
	}
	// A leg whose destination holds output waits for the flush. If its
	// socket hung up or failed meanwhile (always reported, even when not
	// asked for, so it must not be left pending), the leg ends without
	// reading: what the socket still holds would have to be kept, up to
	// a whole receive queue, for a peer that is not reading.
	if st.active[s.j] {
		switch {
		case !st.socks[1-s.j].lender.Pending():
			if ev&(evloop.In|evloop.Err|unixHup) != 0 {
				r.loopStep(s.j)
			}
		case ev&(evloop.Err|unixHup) != 0:
			r.loopLegEnd(s.j, r.readError(s.j, syscall.ECONNRESET))
		}
	}
	r.loopUpdate()
}

// loopRecover, deferred by whatever runs a relay's code on its loop,
// turns a panic into the end of that relay: the loop and its other
// sessions go on.
func (r *Relay) loopRecover() {
	if v := recover(); v != nil {
		r.c.logPanic(context.Background(), "relay event loop panicked", v)
		r.loopKicked()
	}
}

// loopDo runs f on the relay's loop under loopRecover; false if the loop
// is closed (it aborted the relay already).
func (r *Relay) loopDo(f func()) bool {
	return r.loop.Do(func() {
		defer r.loopRecover()
		f()
	})
}

// unixHup is EPOLLHUP alone (evloop.Hup includes EPOLLRDHUP, which In
// asks for and which a read handles like input).
const unixHup = 0x10

// Abort implements evloop.Handler: the loop is closing.
func (s *loopSock) Abort() { s.r.loopKicked() }

// loopStep steps leg i's pump once.
func (r *Relay) loopStep(i int) {
	if err := r.legs[i].Step(); err != nil {
		r.loopLegEnd(i, err)
	}
}

// stopError is the error of a leg stopped while it waited, as a read
// deadline would interrupt it on a goroutine.
func (r *Relay) stopError(i int) error { return r.readError(i, os.ErrDeadlineExceeded) }

// readError is err as a read of leg i's socket returns it.
func (r *Relay) readError(i int, err error) error {
	c := r.legs[i].Conn
	return &net.OpError{Op: "read", Net: "tcp", Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: err}
}

// loopLegEnd ends leg i with err and, as Relay.run does, stops the other.
func (r *Relay) loopLegEnd(i int, err error) {
	st := r.ls
	if !st.active[i] {
		return
	}
	st.active[i] = false
	r.errs[i] = err
	if r.onLegEnd != nil {
		r.onLegEnd(i, err)
	}
	if st.active[1-i] {
		st.active[1-i] = false
		e := r.stopError(1 - i)
		r.errs[1-i] = e
		if r.onLegEnd != nil {
			r.onLegEnd(1-i, e)
		}
	}
	if !st.ending {
		st.ending = true
		st.timer = time.AfterFunc(FinalWriteTimeout, func() {
			r.loopDo(func() {
				st.expired = true
				r.loopUpdate()
			})
		})
	}
}

// loopKicked ends the relay at once (a hard close, or the loop closing).
func (r *Relay) loopKicked() {
	st := r.ls
	st.kicked = true
	if !st.registered || st.done {
		return
	}
	r.loopLegEnd(0, r.stopError(0))
	r.loopUpdate()
}

// loopUpdate registers for each socket the events its legs wait for and,
// once the relay is ending and nothing is left to flush, ends it.
func (r *Relay) loopUpdate() {
	st := r.ls
	if st.done {
		return
	}
	left := false
	for j := range st.socks {
		s := &st.socks[j]
		if !s.on {
			continue
		}
		pending := s.lender.Pending()
		if st.ending && (!pending || st.kicked || st.expired) {
			r.loop.Remove(s.reg)
			s.on = false
			continue
		}
		left = true
		var want uint32
		if st.active[j] && !st.socks[1-j].lender.Pending() {
			want = evloop.In
		}
		if pending {
			want |= evloop.Out
		}
		if want != s.events {
			if err := r.loop.Modify(s.reg, want); err == nil {
				s.events = want
			}
		}
	}
	if st.ending && !left {
		r.loopFinish()
	}
}

// loopFinish gives the sockets back to their connections and ends the
// session on a goroutine of its own.
func (r *Relay) loopFinish() {
	st := r.ls
	st.done = true
	r.c.srv.looped.Add(-1)
	if st.timer != nil {
		st.timer.Stop()
	}
	for j := range st.socks {
		st.socks[j].lender.Release()
	}
	go r.end()
}

// loopKick is KickAll for a looped relay. If the loop is closed it
// aborted the relay already.
func (r *Relay) loopKick() { r.loopDo(r.loopKicked) }

// loopStop is Stop for a looped relay.
func (r *Relay) loopStop(i int) {
	r.loopDo(func() {
		st := r.ls
		if !st.registered {
			st.stopped[i] = true
			return
		}
		if st.done {
			return
		}
		r.loopLegEnd(i, r.stopError(i))
		r.loopUpdate()
	})
}
