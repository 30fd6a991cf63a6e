package postgres

import (
	"sync/atomic"

	"github.com/dbproxy/dbproxy/proxy"
	"github.com/dbproxy/dbproxy/proxy/relay"
)

// accounting tracks whether a session is idle — between transactions with
// nothing outstanding — so a drain can close it without cutting a query.
// It is the PostgreSQL reading of the session's relay.Exchanges: the
// outstanding exchanges are the messages that will be answered by one
// ReadyForQuery each (Query, Sync, FunctionCall) and have not been yet;
// the hold is set while extended-protocol messages wait for their Sync.
// txStatus is the status byte of the last ReadyForQuery ('I', 'T' or 'E').
type accounting struct {
	*relay.Exchanges
	txStatus atomic.Uint32

	// Client->server goroutine only.
	syncsSinceExecute int64 // Syncs forwarded since the last Execute or Query
	inCopy            bool  // client is sending CopyData
}

func newAccounting(c *proxy.Conn) *accounting {
	a := &accounting{Exchanges: relay.NewExchanges(c)}
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
		return a.Add(1, false)
	case 'S':
		a.syncsSinceExecute++
		return a.Add(1, true)
	case 'E':
		a.syncsSinceExecute = 0
		return a.Hold()
	case 'P', 'B', 'D', 'C', 'H':
		return a.Hold()
	case 'd', 'c', 'f':
		if !a.inCopy {
			// The server entered COPY FROM STDIN. Syncs the client sent after
			// the Execute that started it were ignored by the server (it
			// ignores Sync during copy-in), so they get no ReadyForQuery;
			// the Sync the client sends after CopyDone will.
			a.inCopy = true
			if n := a.syncsSinceExecute; n > 0 {
				a.syncsSinceExecute = 0
				if !a.Add(-n, false) {
					return false
				}
				return a.Hold()
			}
		}
		if typ != 'd' {
			a.inCopy = false
		}
		return !a.Closing()
	default:
		return !a.Closing()
	}
}

// readyForQuery is called by the server->client pump for each
// ReadyForQuery, before it is forwarded. It returns true when the session
// just became idle during a drain and has been marked closing: the pump
// forwards this ReadyForQuery and stops.
func (a *accounting) readyForQuery(status byte) bool {
	a.txStatus.Store(uint32(status))
	return a.Done(1, status != 'I')
}

// closeIfIdle marks the session closing if it is idle, and reports whether
// it did.
func (a *accounting) closeIfIdle() bool { return a.CloseIfIdle(a.txStatus.Load() != 'I') }
