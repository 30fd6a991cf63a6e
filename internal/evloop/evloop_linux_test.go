package evloop

import (
	"fmt"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

type recorder struct {
	l       *Loop
	fd      int
	reg     Reg
	got     chan uint32
	aborted atomic.Bool
}

func (r *recorder) Event(ev uint32) {
	var buf [64]byte
	if ev&In != 0 {
		_, _ = unix.Read(r.fd, buf[:])
	}
	select {
	case r.got <- ev:
	default: // level-triggered EPOLLOUT repeats: keep the first few
	}
}

func (r *recorder) Abort() {
	r.aborted.Store(true)
	r.l.Remove(r.reg)
}

func socketpair(t *testing.T) (int, int) {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = unix.Close(fds[0]); _ = unix.Close(fds[1]) })
	return fds[0], fds[1]
}

func do(t *testing.T, l *Loop, f func()) {
	t.Helper()
	done := make(chan struct{})
	if !l.Do(func() { f(); close(done) }) {
		t.Fatal("Do refused")
	}
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Do did not run")
	}
}

// TestLoopEvents: a registered socket's input reaches its handler on the
// loop; after Remove nothing does, even for a descriptor number reused by
// another socket; Close aborts what is still registered.
func TestLoopEvents(t *testing.T) {
	l, err := New()
	if err != nil {
		t.Fatal(err)
	}
	a, b := socketpair(t)
	r := &recorder{l: l, fd: a, got: make(chan uint32, 16)}
	do(t, l, func() {
		r.reg, err = l.Add(a, In, r)
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := unix.Write(b, []byte("x")); err != nil {
		t.Fatal(err)
	}
	select {
	case ev := <-r.got:
		if ev&unix.EPOLLIN == 0 {
			t.Fatalf("events %#x, want EPOLLIN", ev)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no event")
	}

	// Out on request, and back to none.
	do(t, l, func() { err = l.Modify(r.reg, Out) })
	if err != nil {
		t.Fatal(err)
	}
	select {
	case ev := <-r.got:
		if ev&unix.EPOLLOUT == 0 {
			t.Fatalf("events %#x, want EPOLLOUT", ev)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no EPOLLOUT")
	}
	do(t, l, func() { err = l.Modify(r.reg, 0) })
	if err != nil {
		t.Fatal(err)
	}
	drain(r.got)

	// Removed: input no longer reaches the handler.
	do(t, l, func() { l.Remove(r.reg) })
	drain(r.got)
	if _, err := unix.Write(b, []byte("y")); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond)
	if len(r.got) != 0 {
		t.Fatal("event after Remove")
	}

	// A second registration, aborted by Close.
	c, _ := socketpair(t)
	r2 := &recorder{l: l, fd: c, got: make(chan uint32, 16)}
	do(t, l, func() { r2.reg, err = l.Add(c, In, r2) })
	if err != nil {
		t.Fatal(err)
	}
	l.Close()
	if !r2.aborted.Load() || r.aborted.Load() {
		t.Fatalf("aborted: removed %v (want false), registered %v (want true)", r.aborted.Load(), r2.aborted.Load())
	}
	if l.Do(func() {}) {
		t.Fatal("Do accepted after Close")
	}
	l.Close() // twice is fine
}

func drain(c chan uint32) {
	for {
		select {
		case <-c:
		case <-time.After(20 * time.Millisecond):
			return
		}
	}
}

// TestLoopDoOrder: functions given to Do run in order, from many
// goroutines, none lost.
func TestLoopDoOrder(t *testing.T) {
	l, err := New()
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	const n = 2000
	var count atomic.Int64
	done := make(chan struct{})
	for g := range 4 {
		go func() {
			last := -1
			for i := range n {
				l.Do(func() {
					if i <= last {
						t.Errorf("goroutine %d: %d ran after %d", g, i, last)
					}
					last = i
					if count.Add(1) == 4*n {
						close(done)
					}
				})
			}
		}()
	}
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatalf("%d of %d functions ran", count.Load(), 4*n)
	}
}

func schedPolicy(t *testing.T, tid int) int {
	t.Helper()
	p, _, e := unix.RawSyscall(unix.SYS_SCHED_GETSCHEDULER, uintptr(tid), 0, 0)
	if e != 0 {
		t.Fatalf("sched_getscheduler(%d): %v", tid, e)
	}
	return int(p)
}

// TestLoopThread: the loop runs SCHED_BATCH on a thread of its own, and
// Close gives the thread back with its policy restored rather than
// ending it: a child process that thread started with a parent-death
// signal (Pdeathsig is per thread) must not be killed by a loop closing.
func TestLoopThread(t *testing.T) {
	l, err := New()
	if err != nil {
		t.Fatal(err)
	}
	var tid int
	do(t, l, func() { tid = unix.Gettid() })
	if p := schedPolicy(t, tid); p != unix.SCHED_BATCH {
		t.Fatalf("loop thread policy %d, want SCHED_BATCH", p)
	}
	l.Close()
	time.Sleep(50 * time.Millisecond)
	if _, err := os.Stat(fmt.Sprintf("/proc/self/task/%d", tid)); err != nil {
		t.Fatalf("the loop's thread ended with the loop: %v", err)
	}
	if p := schedPolicy(t, tid); p != 0 {
		t.Fatalf("thread policy after Close %d, want SCHED_OTHER", p)
	}
}

// TestLoopTokens: a slot freed by Remove is reused by the next Add under
// another token, and the old token finds no handler (the stale event of
// a removed descriptor is dropped).
func TestLoopTokens(t *testing.T) {
	l, err := New()
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	a, _ := socketpair(t)
	c, _ := socketpair(t)
	r1 := &recorder{l: l, fd: a, got: make(chan uint32, 1)}
	r2 := &recorder{l: l, fd: c, got: make(chan uint32, 1)}
	do(t, l, func() {
		if r1.reg, err = l.Add(a, In, r1); err != nil {
			return
		}
		l.Remove(r1.reg)
		l.Remove(r1.reg) // twice is fine
		if r2.reg, err = l.Add(c, In, r2); err != nil {
			return
		}
		switch {
		case uint32(r2.reg.token) != uint32(r1.reg.token):
			err = fmt.Errorf("slot not reused: tokens %#x, %#x", r1.reg.token, r2.reg.token)
		case r2.reg.token == r1.reg.token:
			err = fmt.Errorf("token %#x reused", r1.reg.token)
		case l.handler(r1.reg.token) != nil:
			err = fmt.Errorf("removed token %#x still has a handler", r1.reg.token)
		case l.handler(r2.reg.token) != Handler(r2):
			err = fmt.Errorf("token %#x lost its handler", r2.reg.token)
		case l.handler(wakeToken) != nil || l.handler(1<<40|99) != nil:
			err = fmt.Errorf("unknown tokens have handlers")
		case l.Len() != 1:
			err = fmt.Errorf("Len = %d, want 1", l.Len())
		}
	})
	if err != nil {
		t.Fatal(err)
	}
}

// blocker hands the loop off on its first event and then waits for
// release: the other sockets of the loop must go on being served.
type blocker struct {
	l         *Loop
	fd        int
	reg       Reg
	onLoop    chan [2]bool // OnLoop before and after the handoff
	release   chan struct{}
	done      chan struct{}
	handedOff bool
}

func (b *blocker) Event(uint32) {
	var buf [64]byte
	_, _ = unix.Read(b.fd, buf[:])
	if b.handedOff {
		return
	}
	b.handedOff = true
	before := b.l.OnLoop()
	b.l.Remove(b.reg) // while still the loop's
	b.l.Handoff()
	b.onLoop <- [2]bool{before, b.l.OnLoop()}
	<-b.release
	close(b.done)
}

func (b *blocker) Abort() { b.l.Remove(b.reg) }

// TestLoopHandoff: a handler that hands the loop off may block while the
// loop goes on serving its other sockets and Do; functions given to Do
// after one that hands off run, in order, on the next goroutine; Close
// ends the loop after handoffs.
func TestLoopHandoff(t *testing.T) {
	l, err := New()
	if err != nil {
		t.Fatal(err)
	}
	if l.OnLoop() {
		t.Fatal("OnLoop true off the loop")
	}
	a0, a1 := socketpair(t)
	b0, b1 := socketpair(t)
	blk := &blocker{l: l, fd: a0, onLoop: make(chan [2]bool, 1), release: make(chan struct{}), done: make(chan struct{})}
	rec := &recorder{l: l, fd: b0, got: make(chan uint32, 4)}
	do(t, l, func() {
		var err error
		if blk.reg, err = l.Add(a0, In, blk); err != nil {
			t.Error(err)
		}
		if rec.reg, err = l.Add(b0, In, rec); err != nil {
			t.Error(err)
		}
	})
	if _, err := unix.Write(a1, []byte("x")); err != nil {
		t.Fatal(err)
	}
	if got := <-blk.onLoop; got != [2]bool{true, false} {
		t.Fatalf("OnLoop before, after the handoff = %v, want [true false]", got)
	}
	// The blocker still blocks; the loop serves the other socket.
	if _, err := unix.Write(b1, []byte("y")); err != nil {
		t.Fatal(err)
	}
	select {
	case <-rec.got:
	case <-time.After(5 * time.Second):
		t.Fatal("the loop stopped serving its other sockets after a handoff")
	}

	// A handoff inside Do: the functions given after it run in order on
	// the next goroutine, while the first one waits.
	var order []int
	var onLoop atomic.Bool
	release := make(chan struct{})
	ran := make(chan struct{})
	if !l.Do(func() { l.Handoff(); <-release }) {
		t.Fatal("Do refused")
	}
	for i := range 3 {
		l.Do(func() { order = append(order, i) })
	}
	l.Do(func() { onLoop.Store(l.OnLoop()); close(ran) })
	select {
	case <-ran:
	case <-time.After(5 * time.Second):
		t.Fatal("functions given to Do after a handoff did not run")
	}
	if fmt.Sprint(order) != "[0 1 2]" || !onLoop.Load() {
		t.Fatalf("order %v, OnLoop %v; want [0 1 2], true", order, onLoop.Load())
	}
	close(release)
	close(blk.release)
	<-blk.done
	l.Close()
	select {
	case <-l.Done():
	default:
		t.Fatal("Done not closed after Close")
	}
	if !rec.aborted.Load() {
		t.Fatal("Close did not abort the registration left")
	}
}

// TestLoopWatchStalls: a handler that holds the loop without handing it
// off is reported (once), one that hands off first is not.
func TestLoopWatchStalls(t *testing.T) {
	l, err := New()
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	const period = 20 * time.Millisecond
	reports := make(chan time.Duration, 10)
	l.WatchStalls(period, func(d time.Duration) { reports <- d })

	do(t, l, func() { time.Sleep(10 * period) }) // stalls the loop
	select {
	case d := <-reports:
		if d <= period {
			t.Fatalf("reported %v, want more than %v", d, period)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a stalled loop was not reported")
	}
	time.Sleep(3 * period)
	if n := len(reports); n != 0 {
		t.Fatalf("one stall reported %d more times", n)
	}

	do(t, l, func() {
		l.Handoff()
		time.Sleep(10 * period) // waits off the loop
	})
	if n := len(reports); n != 0 {
		t.Fatalf("a handler that handed off was reported as a stall (%d)", n)
	}
}
