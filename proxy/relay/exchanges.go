package relay

import (
	"sync/atomic"

	"github.com/dbproxy/dbproxy/proxy"
)

// Exchanges counts the outstanding exchanges of a session — requests
// forwarded whose answers have not all reached the client — so that a
// drain closes it only between transactions with nothing outstanding,
// and the relay parks it only while it is idle.
//
// The state is one atomic word, so that "idle" and "closing" are decided
// together: the client->server side adds an exchange before it forwards
// the request, and a drain marks the session closing only while the word
// is zero, so once closing is set no further request is forwarded.
//
//	word = outstanding<<2 | holdBit | closingBit
//
// holdBit marks a request partly sent (PostgreSQL's extended-protocol
// messages before their Sync): the session is not idle, yet no answer is
// owed. The transaction state is the protocol's: it is passed in at each
// boundary.
type Exchanges struct {
	word atomic.Int64
	conn *proxy.Conn // nil in tests
	// onBusy is called when the session goes from idle to busy, before
	// the request is forwarded; onIdle when the last outstanding exchange
	// is done. The relay parks idle sessions with them.
	onBusy, onIdle func()
}

const (
	closingBit = 1
	holdBit    = 2
	countShift = 2
)

// NewExchanges returns the exchange count of c's session (c nil in tests):
// its state (active, idle) follows the count.
func NewExchanges(c *proxy.Conn) *Exchanges { return &Exchanges{conn: c} }

// Notify sets the functions called when the session becomes busy and
// idle (proxy.Relay's Busy and Idle). Call it before the relay starts.
func (e *Exchanges) Notify(onBusy, onIdle func()) { e.onBusy, e.onIdle = onBusy, onIdle }

// Add adds delta outstanding exchanges (a negative delta corrects a count,
// never below zero) and, with release, clears the hold. It returns false,
// changing nothing, when the session is closing: the request must not be
// forwarded.
func (e *Exchanges) Add(delta int64, release bool) bool {
	for {
		old := e.word.Load()
		if old&closingBit != 0 {
			return false
		}
		nw := old + delta<<countShift
		if nw < 0 {
			nw = old & (holdBit | closingBit)
		}
		if release {
			nw &^= holdBit
		}
		if e.word.CompareAndSwap(old, nw) {
			if old == 0 && nw != 0 {
				e.busy()
			}
			return true
		}
	}
}

// Hold marks a request partly sent. It returns false when the session is
// closing.
func (e *Exchanges) Hold() bool {
	for {
		old := e.word.Load()
		if old&closingBit != 0 {
			return false
		}
		if old&holdBit != 0 {
			return true
		}
		if e.word.CompareAndSwap(old, old|holdBit) {
			if old == 0 {
				e.busy()
			}
			return true
		}
	}
}

// busy reports the session's change from idle to busy.
func (e *Exchanges) busy() {
	if e.conn != nil {
		e.conn.SetState(proxy.StateActive)
	}
	if e.onBusy != nil {
		e.onBusy()
	}
}

// Done ends k exchanges whose answers reached the client (or are about
// to, in the same write); inTxn is whether a transaction is open after
// them. A session left with nothing outstanding and no transaction is
// idle; if a drain is under way it is marked closing and Done returns
// true: the side relaying answers stops once it has written them.
func (e *Exchanges) Done(k int64, inTxn bool) bool {
	var nw int64
	for {
		old := e.word.Load()
		n := min(k, old>>countShift) // answers not counted are left as they are
		nw = old - n<<countShift
		if n == 0 || e.word.CompareAndSwap(old, nw) {
			break
		}
	}
	if nw == 0 && e.onIdle != nil {
		e.onIdle()
	}
	if nw != 0 || inTxn || e.conn == nil {
		return false
	}
	e.conn.SetState(proxy.StateIdle)
	return e.conn.Draining() && e.word.CompareAndSwap(0, closingBit)
}

// CloseIfIdle marks the session closing if nothing is outstanding and no
// transaction is open (inTxn), and reports whether it did.
func (e *Exchanges) CloseIfIdle(inTxn bool) bool {
	return !inTxn && e.word.CompareAndSwap(0, closingBit)
}

// Closing reports whether the session was marked closing.
func (e *Exchanges) Closing() bool { return e.word.Load()&closingBit != 0 }

// Idle reports whether nothing is outstanding or held and the session is
// not closing.
func (e *Exchanges) Idle() bool { return e.word.Load() == 0 }

// Sole reports whether exactly one exchange is outstanding, nothing is
// held and the session is not closing: the request being handled is the
// only one not yet answered.
func (e *Exchanges) Sole() bool { return e.word.Load() == 1<<countShift }

// Draining reports whether the session's listener is draining (a
// request answered locally could end the session under requests already
// buffered behind it: leave those to the server).
func (e *Exchanges) Draining() bool { return e.conn != nil && e.conn.Draining() }

// Quiet reports whether no request is partly sent and the session is not
// closing (the client's side may wait without a goroutine).
func (e *Exchanges) Quiet() bool { return e.word.Load()&(holdBit|closingBit) == 0 }
