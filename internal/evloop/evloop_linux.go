//go:build linux

package evloop

import (
	"errors"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Event bits a [Handler] asks for and receives.
const (
	In  = unix.EPOLLIN | unix.EPOLLRDHUP
	Out = unix.EPOLLOUT
	// Hup and Err are always reported.
	Hup = unix.EPOLLHUP | unix.EPOLLRDHUP
	Err = unix.EPOLLERR
)

// ErrClosed is returned by Add after Close.
var ErrClosed = errors.New("evloop: loop closed")

// Handler receives the events of one registered descriptor, on the loop's
// goroutine; it must not block.
type Handler interface {
	// Event is called with the epoll events (level-triggered) of the
	// descriptor.
	Event(events uint32)
	// Abort is called when the loop closes with the descriptor still
	// registered: the handler must Remove it.
	Abort()
}

// Reg is a registration of a descriptor on a loop.
type Reg struct {
	fd    int
	token uint64
}

// wakeToken marks the loop's own eventfd.
const wakeToken = 0

// A token is a slot of Loop.slots (low 32 bits, counting from 1) and the
// slot's generation (high 32 bits), which Remove advances: a token is
// not reused until a slot has been reused 2^32 times, and an event never
// outlives one epoll_wait batch. A slice lookup, where a map of tokens
// cost a hash per event.
type slot struct {
	h   Handler
	gen uint32
}

// Loop is one event loop; see the package doc. Create it with [New].
type Loop struct {
	epfd, evfd int
	done       chan struct{}

	mu       sync.Mutex
	cmds     []func()
	signaled bool // evfd was written since the loop last took cmds
	closing  bool

	// Loop goroutine only.
	slots []slot   // by token's slot - 1
	free  []uint32 // indexes of unused slots
	spare []func()
	cur   *runner // the goroutine running the loop now

	// tid is the thread of the goroutine running the loop now (0 while
	// it hands off): see OnLoop.
	tid atomic.Int64
	// busy is when the loop started its current batch of events (clock,
	// plus one), 0 while it waits for events: see WatchStalls.
	busy atomic.Int64
	base time.Time
}

// runner is one goroutine's turn at running a loop; Handoff ends it.
type runner struct {
	// detached: the goroutine gave the loop to another one (Handoff)
	// and must return as soon as the handler that did so returns.
	detached bool
	// cmds are the functions given to Do that runCmds is running, next
	// the index of the one after the running one: Handoff passes those
	// on.
	cmds []func()
	next int
}

// New starts a loop on a goroutine of its own.
func New() (*Loop, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("evloop: epoll_create1: %w", err)
	}
	evfd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		_ = unix.Close(epfd)
		return nil, fmt.Errorf("evloop: eventfd: %w", err)
	}
	ev := unix.EpollEvent{Events: unix.EPOLLIN}
	setToken(&ev, wakeToken)
	if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, evfd, &ev); err != nil {
		_ = unix.Close(evfd)
		_ = unix.Close(epfd)
		return nil, fmt.Errorf("evloop: epoll_ctl: %w", err)
	}
	l := &Loop{epfd: epfd, evfd: evfd, done: make(chan struct{}), base: time.Now()}
	l.cur = &runner{}
	go l.run(l.cur)
	return l, nil
}

// setToken stores t in the event's 64 bits of user data.
func setToken(ev *unix.EpollEvent, t uint64) {
	ev.Fd = int32(uint32(t))
	ev.Pad = int32(uint32(t >> 32))
}

func token(ev *unix.EpollEvent) uint64 {
	return uint64(uint32(ev.Fd)) | uint64(uint32(ev.Pad))<<32
}

// Do runs f on the loop's goroutine, after the functions given before it.
// It reports false, and f never runs, if the loop is closed.
func (l *Loop) Do(f func()) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closing {
		return false
	}
	l.cmds = append(l.cmds, f)
	l.wakeLocked()
	return true
}

// Close stops the loop once the functions given to Do before it have run:
// every descriptor still registered then is aborted ([Handler.Abort]),
// and Do refuses further functions. It waits for the loop to end; it must
// not be called from the loop's goroutine.
func (l *Loop) Close() {
	l.mu.Lock()
	if !l.closing {
		l.closing = true
		l.wakeLocked()
	}
	l.mu.Unlock()
	<-l.done
}

// wakeLocked makes the loop's epoll_wait return for its eventfd, unless
// it was made to since the loop last took its functions. Under mu, so that
// the eventfd, closed by stop once closing is set, is never written after.
func (l *Loop) wakeLocked() {
	if l.signaled {
		return
	}
	l.signaled = true
	one := [8]byte{1}
	_, _ = unix.Write(l.evfd, one[:])
}

// Add registers fd for events (In, Out or both) with h. Loop goroutine
// only.
func (l *Loop) Add(fd int, events uint32, h Handler) (Reg, error) {
	var i uint32
	if k := len(l.free); k > 0 {
		i, l.free = l.free[k-1], l.free[:k-1]
	} else {
		l.slots = append(l.slots, slot{})
		i = uint32(len(l.slots) - 1)
	}
	r := Reg{fd: fd, token: uint64(l.slots[i].gen)<<32 | uint64(i+1)}
	ev := unix.EpollEvent{Events: events}
	setToken(&ev, r.token)
	if err := unix.EpollCtl(l.epfd, unix.EPOLL_CTL_ADD, fd, &ev); err != nil {
		l.free = append(l.free, i)
		return Reg{}, fmt.Errorf("evloop: epoll_ctl add: %w", err)
	}
	l.slots[i].h = h
	return r, nil
}

// handler returns the handler of token t, nil if it was removed.
func (l *Loop) handler(t uint64) Handler {
	i := uint32(t) - 1
	if int(i) >= len(l.slots) || l.slots[i].gen != uint32(t>>32) {
		return nil
	}
	return l.slots[i].h
}

// Modify changes the events r waits for. Loop goroutine only.
func (l *Loop) Modify(r Reg, events uint32) error {
	ev := unix.EpollEvent{Events: events}
	setToken(&ev, r.token)
	if err := unix.EpollCtl(l.epfd, unix.EPOLL_CTL_MOD, r.fd, &ev); err != nil {
		return fmt.Errorf("evloop: epoll_ctl mod: %w", err)
	}
	return nil
}

// Remove ends r, before its descriptor may be closed. Loop goroutine only.
func (l *Loop) Remove(r Reg) {
	if l.handler(r.token) == nil {
		return
	}
	l.release(uint32(r.token) - 1)
	_ = unix.EpollCtl(l.epfd, unix.EPOLL_CTL_DEL, r.fd, nil)
}

// release frees slot i and advances its generation.
func (l *Loop) release(i uint32) {
	l.slots[i] = slot{gen: l.slots[i].gen + 1}
	l.free = append(l.free, i)
}

// Len returns the number of registered descriptors. Loop goroutine only.
func (l *Loop) Len() int { return len(l.slots) - len(l.free) }

// Handoff gives the loop to a new goroutine, for the handler (or the
// function given to Do) that calls it: that code is about to wait, and
// goes on waiting on the calling goroutine, which is the loop's no more.
// Once the handler returns, the calling goroutine leaves the loop (the
// rest of its batch of events is reported again to the new goroutine:
// epoll is level-triggered) and must not touch the loop's state any
// more, except through Do. Loop goroutine only.
//
// A loop's handlers must not block; Handoff is how one that finds it
// must (a cache miss that needs I/O) keeps the other sessions on the loop
// running: it costs a goroutine start, so it is for rare paths.
func (l *Loop) Handoff() {
	me := l.cur
	me.detached = true
	rest := me.cmds[min(me.next, len(me.cmds)):]
	l.mu.Lock()
	if len(rest) > 0 {
		l.cmds = append(slices.Clone(rest), l.cmds...)
		clear(rest)
	}
	if len(l.cmds) > 0 || l.closing {
		// The next goroutine runs them, or sees the close.
		l.wakeLocked()
	}
	l.mu.Unlock()
	me.cmds = nil
	l.tid.Store(0)
	releaseThread()
	next := &runner{}
	l.cur = next
	go l.run(next)
}

// clock is the time since the loop was made, plus one (never 0).
func (l *Loop) clock() int64 { return int64(time.Since(l.base)) + 1 }

// WatchStalls checks every period, until the loop ends, whether the loop
// has been busy with one batch of events for longer than period: a
// handler that waited without handing the loop off (see Handoff), while
// every other registration waited for it. report gets how long, once per
// such batch. Stalls shorter than period may go unseen; one of twice the
// period is always seen.
func (l *Loop) WatchStalls(period time.Duration, report func(busy time.Duration)) {
	go func() {
		t := time.NewTicker(period)
		defer t.Stop()
		var reported int64
		for {
			select {
			case <-l.done:
				return
			case <-t.C:
			}
			start := l.busy.Load()
			if start == 0 || start == reported {
				continue
			}
			if d := time.Duration(l.clock() - start); d > period {
				reported = start
				report(d)
			}
		}
	}()
}

// OnLoop reports whether the caller is the goroutine running the loop
// now (so that it may call Handoff). It costs a system call.
func (l *Loop) OnLoop() bool { return l.tid.Load() == int64(unix.Gettid()) }

// Done is closed once the loop has ended (after Close, or a failure).
func (l *Loop) Done() <-chan struct{} { return l.done }

// run runs the loop until it closes or me hands it off.
func (l *Loop) run(me *runner) {
	batchThread()
	l.tid.Store(int64(unix.Gettid()))
	events := make([]unix.EpollEvent, 128)
	yieldAt := l.clock() + int64(yieldEvery)
	for {
		// A blocking system call: the runtime lets other goroutines have
		// this P while the loop waits.
		l.busy.Store(0)
		n, err := unix.EpollWait(l.epfd, events, -1)
		now := l.clock() // the batch's one clock read: stalls and yields
		l.busy.Store(now)
		if err != nil {
			if err == unix.EINTR {
				continue
			}
			// Not expected (the descriptors are the loop's own): end
			// everything rather than spin, after the functions already
			// given to Do.
			l.mu.Lock()
			l.closing = true
			l.mu.Unlock()
			l.runCmds(me)
			if !me.detached {
				l.end()
			}
			return
		}
		for i := range events[:n] {
			t := token(&events[i])
			if t == wakeToken {
				closing := l.runCmds(me)
				if me.detached {
					return
				}
				if closing {
					l.end()
					return
				}
				continue
			}
			if h := l.handler(t); h != nil {
				h.Event(events[i].Events)
				if me.detached {
					return
				}
			}
		}
		if now > yieldAt {
			// The runtime's monitor takes the P of a goroutine that has
			// run (here: sat in epoll_wait) for 10 ms without being
			// scheduled, and then polls every 20 µs for a while: a
			// loop that never yields kept it awake about 2,000 times a
			// second. Being scheduled now and then stops that (a
			// locked goroutine's yield costs two thread switches).
			yieldAt = now + int64(yieldEvery)
			runtime.Gosched()
		}
	}
}

// yieldEvery is how often a busy loop lets the scheduler run it again.
const yieldEvery = 5 * time.Millisecond

// batchThread locks the loop to its thread and makes that thread
// SCHED_BATCH: a thread that relays for many sessions should not preempt,
// on every wake-up, the processes it just woke (the database backend, the
// client) but run once they yield, finding several events ready; woken
// with priority, it ran for one event at a time, twice as many wake-ups
// and preemptions per message, about a fifth more CPU. Lowering one's own
// policy needs no privilege; if it fails the loop runs as it is.
func batchThread() {
	runtime.LockOSThread()
	var param struct{ priority int32 } // sched_param: 0 for SCHED_BATCH
	_, _, _ = unix.RawSyscall(unix.SYS_SCHED_SETSCHEDULER, 0, unix.SCHED_BATCH, uintptr(unsafe.Pointer(&param)))
}

// releaseThread gives the loop's thread back to the runtime as it found
// it. A goroutine that ends locked to its thread ends the thread, and a
// child process started by that thread with a parent-death signal
// (SysProcAttr.Pdeathsig is the thread's, not the process's) would get
// it: so the thread gets its policy back and is unlocked instead. If the
// policy cannot be restored the thread stays locked and ends with the
// loop.
func releaseThread() {
	const schedOther = 0 // SCHED_OTHER (not in x/sys/unix)
	var param struct{ priority int32 }
	if _, _, e := unix.RawSyscall(unix.SYS_SCHED_SETSCHEDULER, 0, schedOther, uintptr(unsafe.Pointer(&param))); e != 0 {
		return
	}
	runtime.UnlockOSThread()
}

// end ends the loop on its last goroutine.
func (l *Loop) end() {
	l.stop()
	l.tid.Store(0)
	releaseThread()
	close(l.done)
}

// runCmds runs the functions given to Do, and reports whether the loop is
// closing. If one of them hands the loop off, the ones after it are left
// to the next goroutine, ahead of any given since.
func (l *Loop) runCmds(me *runner) bool {
	var buf [8]byte
	_, _ = unix.Read(l.evfd, buf[:]) // before taking cmds: a later Do writes again
	l.mu.Lock()
	cmds := l.cmds
	l.cmds, l.spare = l.spare[:0], nil
	l.signaled = false
	closing := l.closing
	l.mu.Unlock()
	me.cmds = cmds
	for i, f := range cmds {
		me.next = i + 1
		cmds[i] = nil
		f()
		if me.detached {
			return false // Handoff passed the rest on
		}
	}
	me.cmds = nil
	l.spare = cmds[:0]
	return closing
}

// stop aborts every registration and closes the loop's descriptors.
func (l *Loop) stop() {
	for l.Len() > 0 {
		for i := range l.slots {
			if h, gen := l.slots[i].h, l.slots[i].gen; h != nil {
				h.Abort()
				if l.slots[i].gen == gen { // Abort did not Remove it
					l.release(uint32(i))
				}
			}
		}
	}
	l.mu.Lock() // see wakeLocked
	_ = unix.Close(l.evfd)
	l.mu.Unlock()
	_ = unix.Close(l.epfd)
}
