package rawio

// Looper is a connection that can run a read loop without returning to
// the caller between reads: each read goes into next(), a non-empty buffer,
// and handle is called with the number of bytes read (n > 0). ReadLoop
// returns handle's first error, the read error (io.EOF at end of stream),
// or the deadline/close error that interrupted a wait. It never returns
// nil.
//
// Wrapped TCP connections implement it on Linux; callers test for it and
// fall back to Read otherwise.
type Looper interface {
	ReadLoop(next func() []byte, handle func(n int) error) error
}
