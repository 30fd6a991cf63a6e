package rawio

import (
	"io"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"unsafe"
)

// rawIOConn reads and writes a TCP socket with raw system calls through
// syscall.RawConn, skipping the runtime's entersyscall/exitsyscall, which
// on a relay's rhythm (a short burst, then idle) wakes the sleeping sysmon
// thread with a futex on nearly every call. The socket is non-blocking, so
// the calls return at once; waiting still goes through the netpoller, and
// deadlines and Close work as usual. SIGPIPE from a raw write to a closed
// socket is ignored by the Go runtime (the write fails with EPIPE).
//
// Read may not be called concurrently with Read, nor Write with Write; a
// relay has one reader and one writer per socket (crypto/tls serializes its
// own writes).
type rawIOConn struct {
	*net.TCPConn
	rc syscall.RawConn

	rbuf   []byte
	rn     int
	rerrno syscall.Errno
	readFn func(uintptr) bool // c.rawRead, bound once: no allocation per Read

	wbuf    []byte
	wn      int
	werrno  syscall.Errno
	writeFn func(uintptr) bool

	// After Lend (see lend_linux.go): lent is set once ls is, and never
	// cleared; lmu guards Lend against Close and ls's locked fields.
	lent atomic.Bool
	lmu  sync.Mutex
	ls   *lendState
	// onPend is given to the lendState at Lend (see OnPending).
	onPend func()
}

// Wrap returns c with raw-syscall I/O when it is a TCP connection.
func Wrap(c net.Conn) net.Conn {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return c
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return c
	}
	rio := &rawIOConn{TCPConn: tc, rc: rc}
	rio.readFn = rio.rawRead
	rio.writeFn = rio.rawWrite
	return rio
}

func (c *rawIOConn) rawRead(fd uintptr) bool {
	for {
		r, _, e := syscall.RawSyscall(syscall.SYS_READ, fd, uintptr(unsafe.Pointer(&c.rbuf[0])), uintptr(len(c.rbuf)))
		switch e {
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			return false // wait in the netpoller
		}
		c.rn, c.rerrno = int(r), e
		return true
	}
}

func (c *rawIOConn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if c.lent.Load() {
		return c.lentRead(p)
	}
	c.rbuf, c.rn, c.rerrno = p, 0, 0
	err := c.rc.Read(c.readFn)
	c.rbuf = nil
	switch {
	case err != nil:
		return 0, err
	case c.rerrno != 0:
		return 0, &net.OpError{Op: "read", Net: "tcp", Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: c.rerrno}
	case c.rn == 0:
		return 0, io.EOF
	}
	return c.rn, nil
}

// ReadLoop implements [Looper]. The whole loop runs inside one
// syscall.RawConn.Read call, so net's per-Read readiness reset happens once
// per burst rather than once per read. After a short read the loop reads
// once more before it parks (that read returns EAGAIN, or 0 for a FIN that
// arrived with the data: a short read does not report it, and the
// edge-triggered netpoller may not wake for it again).
func (c *rawIOConn) ReadLoop(next func() []byte, handle func(n int) error, idle func()) error {
	if c.lent.Load() {
		return readEachRead(c, next, handle)
	}
	var herr error
	var errno syscall.Errno
	eof, full := false, false
	loop := func(fd uintptr) bool {
		for {
			b := next()
			r, _, e := syscall.RawSyscall(syscall.SYS_READ, fd, uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)))
			switch {
			case e == syscall.EINTR:
				continue
			case e == syscall.EAGAIN:
				if idle != nil {
					idle()
				}
				return false
			case e != 0:
				errno = e
				return true
			case r == 0:
				eof = true
				return true
			}
			if herr = handle(int(r)); herr != nil {
				return true
			}
			if int(r) < len(b) {
				// A short read emptied the socket of data, but not
				// necessarily of its end: a FIN that came with the data
				// (a client that sends a command without a response,
				// such as COM_STMT_CLOSE, and closes) is reported by the
				// next read only, and its readiness edge may be spent
				// already. Read again: EAGAIN parks, 0 is the end.
				continue
			}
			// The buffer filled: more may be waiting. Leave RawRead and
			// enter it again, so that a deadline or Close interrupts even
			// a source that never pauses.
			full = true
			return true
		}
	}
	for {
		full = false
		err := c.rc.Read(loop)
		switch {
		case herr != nil:
			return herr
		case err != nil:
			return err
		case errno != 0:
			return &net.OpError{Op: "read", Net: "tcp", Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: errno}
		case eof:
			return io.EOF
		case !full:
			return io.ErrNoProgress // not reached: RawRead ends only for the cases above
		}
	}
}

func (c *rawIOConn) rawWrite(fd uintptr) bool {
	for c.wn < len(c.wbuf) {
		rest := c.wbuf[c.wn:]
		r, _, e := syscall.RawSyscall(syscall.SYS_WRITE, fd, uintptr(unsafe.Pointer(&rest[0])), uintptr(len(rest)))
		switch e {
		case 0:
			c.wn += int(r)
		case syscall.EINTR:
		case syscall.EAGAIN:
			return false // socket buffer full: wait in the netpoller
		default:
			c.werrno = e
			return true
		}
	}
	return true
}

func (c *rawIOConn) Write(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if c.lent.Load() {
		return c.lentWrite(p)
	}
	c.wbuf, c.wn, c.werrno = p, 0, 0
	err := c.rc.Write(c.writeFn)
	n := c.wn
	c.wbuf = nil
	switch {
	case err != nil:
		return n, err
	case c.werrno != 0:
		return n, &net.OpError{Op: "write", Net: "tcp", Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: c.werrno}
	}
	return n, nil
}
