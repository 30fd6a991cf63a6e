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
// A hook that must wait (a catalog or key cache miss, the answer to a
// query the proxy injected) says so first (blocking.Announce with the
// session's context, which calls beforeBlock). If it runs on the loop, in
// one of this relay's steps, the loop is handed to a new goroutine
// (evloop.Handoff) and the hook goes on, and waits, on the old one: its
// leg is away. The loop meanwhile relays the other leg (which may be the
// one that brings the answer) and the other sessions; the away leg's
// socket is not read until its step has returned and it is back
// (resumeAway). The sockets' write side may be used by both meanwhile
// (the lender serializes it, and a write that leaves output pending off
// the loop has the loop flush it: loopPending). The relay ends only once
// no leg is away.
//
// A leg whose source streams (two reads in a row filled the pump's
// buffer: a large result) is relayed off the loop for the rest of the
// stream, on a goroutine of its own (streamAway): a step decrypts a
// read's worth of rows, and the loop's other sessions would wait for each
// one. The leg is away meanwhile, as for a hook that waits, and comes
// back at the first read that does not fill the buffer, when its
// destination stops taking what is written, or when the relay ends.
//
// Everything here runs on the loop's goroutine, except startLoop (the
// session's goroutine, before the loop knows the relay), the functions
// that post to the loop (loopKick, loopStop, loopPending), an away leg's
// step, streamAway and resumeAway.

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
	// away: leg i's step left the loop to wait (beforeBlock) and has not
	// come back; unstepped: leg i has not been stepped since the loan
	// (its leftover still to relay).
	away      [2]bool
	unstepped [2]bool
	expired   bool // FinalWriteTimeout passed while flushing
	timer     *time.Timer
	done      bool
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
		ls[j].OnPending(r.loopPending)
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
	st.unstepped = [2]bool{true, true}
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
	r.loopSettle()
}

// loopSettle relays what the pumps held before the loan (the handshake's
// leftover: no readiness would announce it), then stops the legs stopped
// meanwhile, as a goroutine's Run would have scanned its leftover before
// its read met the deadline. A step that goes away leaves the rest to
// resumeAway.
func (r *Relay) loopSettle() {
	st := r.ls
	for i := range r.legs {
		if st.unstepped[i] && st.active[i] && !st.away[i] {
			st.unstepped[i] = false
			if !r.loopStep(i) {
				return
			}
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
		case st.away[s.j]:
			// Not read until its step is back; a hang-up, reported
			// whatever the interest, would be reported again and again.
			if ev&(evloop.Err|unixHup) != 0 {
				r.loopLegEnd(s.j, r.readError(s.j, syscall.ECONNRESET))
			}
		case !st.socks[1-s.j].lender.Pending():
			if ev&(evloop.In|evloop.Err|unixHup) != 0 {
				st.unstepped[s.j] = false
				if !r.loopStep(s.j) {
					return // off the loop now: touch nothing
				}
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
		if !r.loop.OnLoop() {
			// An away leg's goroutine: it ends when the loop sees it.
			r.loopKick()
			return
		}
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

// loopStep steps leg i's pump once. It reports false if the step went
// away (beforeBlock): the caller is no longer on the loop and must return
// at once without touching the loop's state. A leg found streaming goes
// on off the loop (streamAway).
func (r *Relay) loopStep(i int) bool {
	r.stepping.Store(int32(i + 1))
	err := r.legs[i].Step()
	if r.wentAway[i] {
		r.wentAway[i] = false
		r.resumeAway(i, err)
		return false
	}
	r.stepping.Store(0)
	if err != nil {
		r.loopLegEnd(i, err)
		return true
	}
	if full := r.legs[i].FullReads; full != nil && full() >= streamReads && !r.ls.socks[1-i].lender.Pending() {
		r.ls.away[i] = true
		r.c.srv.relayStreams.Add(1)
		go r.streamAway(i)
	}
	return true
}

// streamReads is how many reads in a row must fill the pump's buffer
// before a leg's stream is relayed off the loop.
const streamReads = 2

// streamAway relays leg i while its source streams, on a goroutine of its
// own, and then brings the leg back to the loop. A large result (one
// read's worth of it decrypted per step on the loop) would otherwise hold
// up the loop's other sessions for every read, their short statements
// waiting behind it; off the loop it runs beside them, as on goroutines.
// It goes on while each read fills the buffer (more is waiting), the
// destination takes what is written (a slow reader is waited for on the
// loop, EPOLLOUT) and the relay's legs have not ended (halt); a read that
// does not fill the buffer, or an error, ends it. The leg is away
// meanwhile: the loop does not read its socket, and the socket's write
// side is serialized by the lender, as for a step that waits
// (beforeBlock).
func (r *Relay) streamAway(i int) {
	leg := r.legs[i]
	dst := r.ls.socks[1-i].lender // read-only here: the lender is safe to share
	var err error
	for !r.halt.Load() {
		if err = leg.Step(); err != nil || leg.FullReads() == 0 || dst.Pending() {
			break
		}
	}
	r.resumeAway(i, err)
}

// beforeBlock runs when code of the session announces that it is about
// to wait. On the loop, inside a step of leg i, it hands the loop to a
// new goroutine and the step goes on here, away from it; anywhere else
// (a leg on a goroutine, a step already away, a goroutine of the hook's
// own) waiting is harmless and it does nothing.
func (r *Relay) beforeBlock() {
	i := int(r.stepping.Load()) - 1
	if i < 0 || !r.loop.OnLoop() {
		return
	}
	st := r.ls
	st.away[i] = true
	r.wentAway[i] = true
	r.stepping.Store(0)
	r.c.srv.relayHandoffs.Add(1)
	// Output pending now is flushed by the loop: it may be what the
	// wait waits for (a query injected ahead of the wait).
	r.loopUpdate()
	r.loop.Handoff()
}

// resumeAway brings leg i back to the loop once its step returned err,
// on the step's goroutine. If the loop has closed meanwhile (it aborted
// the relay), the relay ends from here once the loop is gone.
func (r *Relay) resumeAway(i int, err error) {
	back := func() {
		st := r.ls
		st.away[i] = false
		if err != nil {
			r.loopLegEnd(i, err)
		}
		if st.done {
			return
		}
		r.loopSettle()
	}
	if r.loopDo(back) {
		return
	}
	<-r.loop.Done()
	// Both legs may be away: the last one back ends the relay.
	r.awayMu.Lock()
	defer r.awayMu.Unlock()
	st := r.ls
	st.away[i] = false
	if err != nil {
		r.loopLegEnd(i, err)
	}
	r.loopKicked()
	if !st.done && !st.away[1-i] {
		r.loopFinish()
	}
}

// loopPending runs after a write left output pending on one of the
// relay's sockets: off the loop (an away leg wrote it), the loop must
// register for its flush.
func (r *Relay) loopPending() {
	if !r.loop.OnLoop() {
		r.loopDo(r.loopUpdate)
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
	r.halt.Store(true)
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
		if st.active[j] && !st.away[j] && !st.socks[1-j].lender.Pending() {
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
	if st.ending && !left && !st.away[0] && !st.away[1] {
		r.loopFinish()
	}
}

// loopFinish gives the sockets back to their connections and ends the
// session on a goroutine of its own.
func (r *Relay) loopFinish() {
	st := r.ls
	st.done = true
	r.c.looped.Store(nil)
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
