package rawio

import "io"

// Looper is a connection that can run a read loop without returning to
// the caller between reads: each read goes into next(), a non-empty buffer,
// and handle is called with the number of bytes read (n > 0). Before each
// wait for more data it calls idle (when not nil), so the caller can give
// its buffers back while the connection sits idle; next is called again
// after the wait. ReadLoop returns handle's first error, the read error
// (io.EOF at end of stream), or the deadline/close error that interrupted a
// wait. It never returns nil.
//
// Wrapped TCP connections and [TLSConn] implement it on Linux; callers
// test for it and fall back to Read otherwise.
type Looper interface {
	ReadLoop(next func() []byte, handle func(n int) error, idle func()) error
}

// ReadEach reads from src into next() and calls handle with each count
// (n > 0) until handle or the read fails, and returns that error (io.EOF at
// the end of the stream; never nil). A [Looper] source runs its ReadLoop
// (with idle); any other reader is read with Read, bytes that came with an
// error being handled first, and idle is not called: whether a Read will
// wait is not known in advance.
func ReadEach(src io.Reader, next func() []byte, handle func(n int) error, idle func()) error {
	if l, ok := src.(Looper); ok {
		return l.ReadLoop(next, handle, idle)
	}
	return readEachRead(src, next, handle)
}

// readEachRead is ReadEach with Read.
func readEachRead(src io.Reader, next func() []byte, handle func(n int) error) error {
	for {
		n, err := src.Read(next())
		if n > 0 {
			if herr := handle(n); herr != nil {
				return herr
			}
		}
		if err != nil {
			return err
		}
	}
}
