package rawio

import (
	"net"
	"syscall"
	"unsafe"
)

// waiter waits for a socket to become readable without reading it.
type waiter struct {
	rc     syscall.RawConn // nil: the connection is not a socket
	peekFn func(uintptr) bool
	idle   func() // during wait: called before the goroutine blocks
	b      [1]byte
}

func (w *waiter) init(conn net.Conn) {
	sc, ok := conn.(syscall.Conn)
	if !ok {
		return
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return
	}
	w.rc = rc
	w.peekFn = w.peek
}

// ready waits until the socket has input, or its end or an error to
// report (which the next read returns), calling idle (if not nil) before
// it blocks. It returns the error that interrupted the wait: a deadline,
// or the socket closed.
func (w *waiter) ready(idle func()) error {
	w.idle = idle
	err := w.rc.Read(w.peekFn)
	w.idle = nil
	return err
}

// peek looks at the socket without consuming anything: false (wait in
// the netpoller) when it has nothing.
func (w *waiter) peek(fd uintptr) bool {
	for {
		_, _, e := syscall.RawSyscall6(syscall.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(&w.b[0])), 1,
			syscall.MSG_PEEK|syscall.MSG_DONTWAIT, 0, 0)
		switch e {
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			if w.idle != nil {
				w.idle()
			}
			return false
		}
		return true // input, its end (0) or an error: the read will tell
	}
}

// ReadLoop implements [Looper]: it reads decrypted bytes into next() and,
// whenever crypto/tls holds nothing more ([TLSConn.Drained]), waits for
// the socket itself, calling idle before it blocks, so that an idle
// connection's reader holds no buffer. On a connection that is not a
// socket it reads on without idle.
func (c *TLSConn) ReadLoop(next func() []byte, handle func(n int) error, idle func()) error {
	for {
		b := next()
		n, err := c.Read(b)
		if n > 0 {
			if herr := handle(n); herr != nil {
				return herr
			}
		}
		if err != nil {
			return err
		}
		if c.wait.rc != nil && c.Drained() {
			if err := c.wait.ready(idle); err != nil {
				return err
			}
		}
	}
}
