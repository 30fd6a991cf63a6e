package postgres

import (
	"sync/atomic"

	"github.com/dbproxy/dbproxy/proxy"
)

// accounting tracks whether a session is idle — between transactions with
// nothing outstanding — so a drain can close it without cutting a query.
//
// The state is one atomic word so that "idle" and "closing" are decided
// together: the client->server pump adds outstanding work before it
// forwards a message, and a drain marks the session closing only while the
// word is zero, so once closing is set no further message is forwarded.
//
//	word = outstanding<<2 | partialBit | closingBit
//
// outstanding counts messages that will be answered by one ReadyForQuery
// each (Query, Sync, FunctionCall) and have not been yet. partialBit is set
// while extended-protocol messages wait for their Sync. txStatus is the
// status byte of the last ReadyForQuery ('I', 'T' or 'E').
type accounting struct {
	word     atomic.Int64
	txStatus atomic.Uint32
	conn     *proxy.Conn // nil in tests
	// onBusy, if set, is called by the client->server pump when the
	// session goes from idle to busy, before the message is forwarded;
	// onIdle by the server->client pump when a ReadyForQuery leaves
	// nothing outstanding. The relay parks idle sessions with them.
	onBusy, onIdle func()

	// Client->server goroutine only.
	syncsSinceExecute int64 // Syncs forwarded since the last Execute or Query
	inCopy            bool  // client is sending CopyData
}

const (
	closingBit   = 1
	partialBit   = 2
	pendingShift = 2
)

func newAccounting(c *proxy.Conn) *accounting {
	a := &accounting{conn: c}
	a.txStatus.Store('I')
	return a
}

// frontend is called by the client->server pump for each message before it
// is forwarded. It returns false when the session is closing: the message
// must not be forwarded.
func (a *accounting) frontend(typ byte) bool {
	switch typ {
	case 'Q', 'F':
		a.syncsSinceExecute = 0
		a.inCopy = false
		return a.update(1, false)
	case 'S':
		a.syncsSinceExecute++
		return a.update(1, true)
	case 'E':
		a.syncsSinceExecute = 0
		return a.setPartial()
	case 'P', 'B', 'D', 'C', 'H':
		return a.setPartial()
	case 'd', 'c', 'f':
		if !a.inCopy {
			// The server entered COPY FROM STDIN. Syncs the client sent after
			// the Execute that started it were ignored by the server (it
			// ignores Sync during copy-in), so they get no ReadyForQuery;
			// the Sync the client sends after CopyDone will.
			a.inCopy = true
			if n := a.syncsSinceExecute; n > 0 {
				a.syncsSinceExecute = 0
				if !a.update(-n, false) {
					return false
				}
				return a.setPartial()
			}
		}
		if typ != 'd' {
			a.inCopy = false
		}
		return a.word.Load()&closingBit == 0
	default:
		return a.word.Load()&closingBit == 0
	}
}

// update adds delta outstanding responses and optionally clears partialBit.
func (a *accounting) update(delta int64, clearPartial bool) bool {
	for {
		old := a.word.Load()
		if old&closingBit != 0 {
			return false
		}
		nw := old + delta<<pendingShift
		if nw < 0 {
			nw = old & (partialBit | closingBit)
		}
		if clearPartial {
			nw &^= partialBit
		}
		if a.word.CompareAndSwap(old, nw) {
			if old == 0 && nw != 0 {
				a.busy()
			}
			return true
		}
	}
}

func (a *accounting) setPartial() bool {
	for {
		old := a.word.Load()
		if old&closingBit != 0 {
			return false
		}
		if old&partialBit != 0 {
			return true
		}
		if a.word.CompareAndSwap(old, old|partialBit) {
			if old == 0 {
				a.busy()
			}
			return true
		}
	}
}

// busy reports the session's change from idle to busy.
func (a *accounting) busy() {
	if a.conn != nil {
		a.conn.SetState(proxy.StateActive)
	}
	if a.onBusy != nil {
		a.onBusy()
	}
}

// readyForQuery is called by the server->client pump for each
// ReadyForQuery, before it is forwarded. It returns true when the session
// just became idle during a drain and has been marked closing: the pump
// forwards this ReadyForQuery and stops.
func (a *accounting) readyForQuery(status byte) bool {
	a.txStatus.Store(uint32(status))
	var nw int64
	for {
		old := a.word.Load()
		if old>>pendingShift == 0 {
			nw = old // a ReadyForQuery we did not count: leave as is
			break
		}
		nw = old - 1<<pendingShift
		if a.word.CompareAndSwap(old, nw) {
			break
		}
	}
	if nw == 0 && a.onIdle != nil {
		a.onIdle()
	}
	if nw != 0 || status != 'I' || a.conn == nil {
		return false
	}
	a.conn.SetState(proxy.StateIdle)
	return a.conn.Draining() && a.word.CompareAndSwap(0, closingBit)
}

// closeIfIdle marks the session closing if it is idle, and reports whether
// it did.
func (a *accounting) closeIfIdle() bool {
	return a.txStatus.Load() == 'I' && a.word.CompareAndSwap(0, closingBit)
}

// closing reports whether the session was marked closing.
func (a *accounting) closing() bool { return a.word.Load()&closingBit != 0 }
