package proxy

import (
	"errors"
	"io"
	"net"
	"os"
	"syscall"
)

// Small helpers the wire packages share for their sessions, and the
// accept loop's test of a temporary error.

// ByteSet is a set of bytes: the message types or command bytes a hook
// asks for. The zero value is empty.
type ByteSet [4]uint64

// Add adds bs to the set.
func (s *ByteSet) Add(bs ...byte) {
	for _, b := range bs {
		s[b>>6] |= 1 << (b & 63)
	}
}

// Has reports whether b is in the set.
func (s *ByteSet) Has(b byte) bool { return s[b>>6]&(1<<(b&63)) != 0 }

// Buffered returns what r has buffered (aliasing r's buffer), nil if
// nothing.
func Buffered(r interface {
	Buffered() int
	Peek(int) ([]byte, error)
}) []byte {
	if r == nil || r.Buffered() == 0 {
		return nil
	}
	b, _ := r.Peek(r.Buffered())
	return b
}

// IsLoopback reports whether a is a loopback TCP address or a Unix socket.
func IsLoopback(a net.Addr) bool {
	switch a := a.(type) {
	case *net.TCPAddr:
		return a.IP.IsLoopback()
	case *net.UnixAddr:
		return true
	}
	return false
}

// IsClientGone reports whether err is a routine disconnect (or the
// deadline a relay sets to interrupt itself), not worth a log line above
// debug.
func IsClientGone(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, net.ErrClosed) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, syscall.EPIPE) || errors.Is(err, os.ErrDeadlineExceeded)
}

// isTemporaryAcceptError reports whether err is worth retrying: running out
// of descriptors or a connection aborted before it was accepted.
func isTemporaryAcceptError(err error) bool {
	if errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) ||
		errors.Is(err, syscall.ECONNABORTED) || errors.Is(err, syscall.ENOBUFS) ||
		errors.Is(err, syscall.ENOMEM) {
		return true
	}
	var te interface{ Temporary() bool }
	return errors.As(err, &te) && te.Temporary()
}

// FirstReal returns the first error that is not a relay's own deadline
// interrupt (os.ErrDeadlineExceeded), nil if none.
func FirstReal(errs ...error) error {
	for _, err := range errs {
		if err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
			return err
		}
	}
	return nil
}
