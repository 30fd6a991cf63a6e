package rawio

import "errors"

// ErrWouldBlock is returned by Read on a socket lent to an event loop
// when no input is waiting.
var ErrWouldBlock = errors.New("rawio: no input waiting")

// Lender is a connection whose socket can be lent to an event loop.
// Wrapped TCP connections implement it on Linux.
type Lender interface {
	// Lend moves the socket to a descriptor of its own, out of the
	// runtime's netpoller, and returns it. From then on Read returns
	// ErrWouldBlock instead of waiting and Write never waits (what the
	// socket does not take is kept, see Pending and Flush), until
	// Release; Close only shuts the socket down. The caller must not
	// close fd. An error leaves the connection as it was.
	Lend() (fd int, err error)
	// OnPending, called before Lend, sets a function that runs after a
	// write left output pending where none was, on the writing
	// goroutine: one that is not the loop's must have the loop flush it.
	OnPending(f func())
	// Pending reports whether written output waits for the socket. The
	// write side (Write, Pending, Flush) may be used from another
	// goroutine than the loop's while the loan lasts.
	Pending() bool
	// Flush writes pending output without waiting; done reports that
	// none is left. After an error none is left either: the peer is
	// gone.
	Flush() (done bool, err error)
	// Release ends the loan: Read and Write wait again (with poll(2),
	// under the connection's deadlines), writing pending output first,
	// and Close closes the descriptor once no call is using it.
	Release()
}
