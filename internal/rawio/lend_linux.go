package rawio

import (
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// errLent is returned by SyscallConn once the socket was lent.
var errLent = errors.New("rawio: socket lent to an event loop")

// lendState is a wrapped connection's life after [Lender.Lend]: the
// socket is a descriptor of its own, unknown to the runtime's netpoller.
type lendState struct {
	fd int
	// loopOwned: an event loop reads and writes fd (Read never waits,
	// Write keeps what the socket does not take in pend), until
	// Release. Set by Lend, cleared by Release, on the loop's side only.
	loopOwned bool
	// The write side may be used by another goroutine than the loop's
	// (a hook that left the loop to wait, see evloop.Handoff): wmu
	// guards pend, the output the socket has not taken yet; pending
	// mirrors len(pend) > 0 for the loop's lock-free checks; onPend, set
	// before Lend, runs after a write left output pending where none
	// was.
	wmu     sync.Mutex
	pend    []byte
	pending atomic.Bool
	onPend  func()

	// Under lmu: deadlines for the waiting I/O after Release, Close, and
	// the I/O calls in progress after Release (the descriptor is closed
	// only once none is).
	closed, fdClosed bool
	ops              int
	rdl, wdl         time.Time
}

// Lend implements [Lender].
func (c *rawIOConn) Lend() (int, error) {
	var nfd int
	var derr error
	err := c.rc.Control(func(fd uintptr) {
		nfd, derr = unix.FcntlInt(fd, unix.F_DUPFD_CLOEXEC, 0)
	})
	if err == nil {
		err = derr
	}
	if err != nil {
		return -1, err
	}
	c.lmu.Lock()
	defer c.lmu.Unlock()
	// Closing the net.Conn takes its descriptor out of the runtime's
	// netpoller; the socket lives on in nfd (no FIN: another descriptor
	// still refers to it).
	if err := c.TCPConn.Close(); err != nil {
		_ = unix.Close(nfd)
		return -1, err
	}
	c.ls = &lendState{fd: nfd, loopOwned: true, onPend: c.onPend}
	c.lent.Store(true)
	return nfd, nil
}

// sysRead and sysWrite are read(2) and write(2) on a non-blocking
// descriptor as raw system calls: they never block, so the runtime's
// entersyscall/exitsyscall bookkeeping would be pure cost on the event
// loop's hot path (see rawIOConn).
func sysRead(fd int, p []byte) (int, error) {
	r, _, e := syscall.RawSyscall(syscall.SYS_READ, uintptr(fd), uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
	if e != 0 {
		return 0, e
	}
	return int(r), nil
}

func sysWrite(fd int, p []byte) (int, error) {
	r, _, e := syscall.RawSyscall(syscall.SYS_WRITE, uintptr(fd), uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
	if e != 0 {
		return 0, e
	}
	return int(r), nil
}

// OnPending implements [Lender].
func (c *rawIOConn) OnPending(f func()) { c.onPend = f }

// Pending implements [Lender].
func (c *rawIOConn) Pending() bool { return c.ls.pending.Load() }

// Flush implements [Lender].
func (c *rawIOConn) Flush() (bool, error) {
	s := c.ls
	s.wmu.Lock()
	defer s.wmu.Unlock()
	defer func() { s.pending.Store(len(s.pend) > 0) }()
	for len(s.pend) > 0 {
		n, err := sysWrite(s.fd, s.pend)
		switch {
		case err == unix.EINTR:
			continue
		case err == unix.EAGAIN:
			return false, nil
		case err != nil:
			s.pend = nil
			return false, c.opError("write", err)
		}
		s.pend = s.pend[n:]
	}
	s.pend = nil
	return true, nil
}

// Release implements [Lender].
func (c *rawIOConn) Release() {
	c.lmu.Lock()
	defer c.lmu.Unlock()
	c.ls.loopOwned = false
	c.closeIfDoneLocked()
}

// closeIfDoneLocked closes the descriptor once the connection is closed
// and nothing uses it any more.
func (c *rawIOConn) closeIfDoneLocked() {
	s := c.ls
	if s.closed && !s.loopOwned && s.ops == 0 && !s.fdClosed {
		s.fdClosed = true
		_ = unix.Close(s.fd)
	}
}

func (c *rawIOConn) opError(op string, err error) error {
	return &net.OpError{Op: op, Net: "tcp", Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: err}
}

// lentRead is Read on a lent socket.
func (c *rawIOConn) lentRead(p []byte) (int, error) {
	s := c.ls
	if s.loopOwned {
		for {
			n, err := sysRead(s.fd, p)
			switch {
			case err == unix.EINTR:
				continue
			case err == unix.EAGAIN:
				return 0, ErrWouldBlock
			case err != nil:
				return 0, c.opError("read", err)
			case n == 0:
				return 0, io.EOF
			}
			return n, nil
		}
	}
	if err := c.beginOp(); err != nil {
		return 0, c.opError("read", err)
	}
	defer c.endOp()
	for {
		n, err := unix.Read(s.fd, p)
		switch {
		case err == unix.EINTR:
			continue
		case err == unix.EAGAIN:
			if werr := c.wait(unix.POLLIN, false); werr != nil {
				return 0, c.opError("read", werr)
			}
			continue
		case err != nil:
			return 0, c.opError("read", err)
		case n == 0:
			return 0, io.EOF
		}
		return n, nil
	}
}

// lentWrite is Write on a lent socket.
func (c *rawIOConn) lentWrite(p []byte) (int, error) {
	s := c.ls
	if s.loopOwned {
		return c.loopWrite(p)
	}
	if err := c.beginOp(); err != nil {
		return 0, c.opError("write", err)
	}
	defer c.endOp()
	for s.pending.Load() {
		done, err := c.Flush()
		if err != nil {
			return 0, err
		}
		if !done {
			if werr := c.wait(unix.POLLOUT, true); werr != nil {
				return 0, c.opError("write", werr)
			}
		}
	}
	n := 0
	for n < len(p) {
		m, err := unix.Write(s.fd, p[n:])
		switch {
		case err == unix.EINTR:
			continue
		case err == unix.EAGAIN:
			if werr := c.wait(unix.POLLOUT, true); werr != nil {
				return n, c.opError("write", werr)
			}
			continue
		case err != nil:
			return n, c.opError("write", err)
		}
		n += m
	}
	return n, nil
}

// loopWrite is Write on a loop-owned socket: it never waits, and keeps
// what the socket does not take.
func (c *rawIOConn) loopWrite(p []byte) (int, error) {
	s := c.ls
	s.wmu.Lock()
	if len(s.pend) > 0 {
		s.pend = append(s.pend, p...)
		s.wmu.Unlock()
		return len(p), nil
	}
	n := 0
	for n < len(p) {
		m, err := sysWrite(s.fd, p[n:])
		switch {
		case err == unix.EINTR:
			continue
		case err == unix.EAGAIN:
			// Kept, in a buffer of its own: p is the pump's.
			s.pend = append([]byte(nil), p[n:]...)
			s.pending.Store(true)
			s.wmu.Unlock()
			if s.onPend != nil {
				s.onPend()
			}
			return len(p), nil
		case err != nil:
			s.wmu.Unlock()
			return n, c.opError("write", err)
		}
		n += m
	}
	s.wmu.Unlock()
	return n, nil
}

func (c *rawIOConn) beginOp() error {
	c.lmu.Lock()
	defer c.lmu.Unlock()
	if c.ls.closed {
		return net.ErrClosed
	}
	c.ls.ops++
	return nil
}

func (c *rawIOConn) endOp() {
	c.lmu.Lock()
	c.ls.ops--
	c.closeIfDoneLocked()
	c.lmu.Unlock()
}

// maxPoll bounds one poll(2) wait, so that a deadline set or a Close
// during the wait is seen soon.
const maxPoll = 50 * time.Millisecond

// wait waits with poll(2) until the socket is ready for events, the
// read (or write) deadline passes or the connection is closed. It runs
// only on the cold paths after Release (a session's last words).
func (c *rawIOConn) wait(events int16, write bool) error {
	c.lmu.Lock()
	closed, dl := c.ls.closed, c.ls.rdl
	if write {
		dl = c.ls.wdl
	}
	c.lmu.Unlock()
	if closed {
		return net.ErrClosed
	}
	d := maxPoll
	if !dl.IsZero() {
		left := time.Until(dl)
		if left <= 0 {
			return os.ErrDeadlineExceeded
		}
		d = min(d, left)
	}
	fds := []unix.PollFd{{Fd: int32(c.ls.fd), Events: events}}
	_, err := unix.Poll(fds, int(d.Milliseconds())+1)
	if err != nil && err != unix.EINTR {
		return err
	}
	return nil
}

// lentCloseLocked closes a lent socket: at once if nothing uses it, else
// it is shut down now (the user sees the end) and closed by the last
// user. lmu is held.
func (c *rawIOConn) lentCloseLocked() error {
	s := c.ls
	if s.closed {
		return net.ErrClosed
	}
	s.closed = true
	if s.loopOwned || s.ops > 0 {
		_ = unix.Shutdown(s.fd, unix.SHUT_RDWR)
		return nil
	}
	c.closeIfDoneLocked()
	return nil
}

func (c *rawIOConn) lentDeadline(read, write bool, t time.Time) error {
	c.lmu.Lock()
	defer c.lmu.Unlock()
	if c.ls.closed {
		return net.ErrClosed
	}
	if read {
		c.ls.rdl = t
	}
	if write {
		c.ls.wdl = t
	}
	return nil
}

// Close closes the connection.
func (c *rawIOConn) Close() error {
	c.lmu.Lock()
	defer c.lmu.Unlock()
	if c.lent.Load() {
		return c.lentCloseLocked()
	}
	return c.TCPConn.Close()
}

// SetDeadline sets both deadlines.
func (c *rawIOConn) SetDeadline(t time.Time) error {
	if c.lent.Load() {
		return c.lentDeadline(true, true, t)
	}
	return c.TCPConn.SetDeadline(t)
}

// SetReadDeadline sets the read deadline.
func (c *rawIOConn) SetReadDeadline(t time.Time) error {
	if c.lent.Load() {
		return c.lentDeadline(true, false, t)
	}
	return c.TCPConn.SetReadDeadline(t)
}

// SetWriteDeadline sets the write deadline.
func (c *rawIOConn) SetWriteDeadline(t time.Time) error {
	if c.lent.Load() {
		return c.lentDeadline(false, true, t)
	}
	return c.TCPConn.SetWriteDeadline(t)
}

// SyscallConn returns the raw connection; it fails once the socket was
// lent.
func (c *rawIOConn) SyscallConn() (syscall.RawConn, error) {
	if c.lent.Load() {
		return nil, errLent
	}
	return c.TCPConn.SyscallConn()
}
