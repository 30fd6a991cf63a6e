package postgres

import (
	"errors"
	"sync/atomic"

	"github.com/dbproxy/dbproxy/proxy"
	"github.com/dbproxy/dbproxy/proxy/relay"
)

// errAnswerWrite ends the client->server pump when a reply the proxy made
// itself ([Writer.Answer]) could not be written: the client is gone.
var errAnswerWrite = errors.New("write to client failed")

// answers is what the two framers of a session with hooks share so that
// a Frontend hook can answer a request itself ([Writer.Answer]): the
// client connection, written through a relay.Shared by the server->client
// pump and by the replies, and how many ReadyForQuery messages that pump
// has accounted for but not yet written.
type answers struct {
	client    *relay.Shared
	unwritten atomic.Int32
	buf       []byte // client->server goroutine only
}

// readyAccounted is called by the server->client framer before it feeds
// a ReadyForQuery to the accounting; written after each write.
func (a *answers) readyAccounted() { a.unwritten.Add(1) }
func (a *answers) written()        { a.unwritten.Store(0) }

// answer writes msgs and a ReadyForQuery to the client in place of the
// request of type typ being hooked, if that cannot reorder or change what
// the client sees (see Writer.Answer). It is the client->server framer's.
func (f *msgFramer) answer(msgs []byte) (bool, error) {
	a := f.answers
	// The order of the checks matters: a ReadyForQuery is counted as
	// unwritten before the accounting sees it, so once the accounting
	// shows only this request outstanding, unwritten is zero only when
	// the answers before it are on the wire.
	if a == nil || f.acct == nil || f.current != 'Q' && f.current != 'F' ||
		!f.acct.Sole() || a.unwritten.Load() != 0 || f.acct.txStatus.Load() != 'I' || f.acct.Draining() {
		return false, nil
	}
	a.client.Lock()
	if !a.client.AtBoundary() { // an asynchronous message is streaming through
		a.client.Unlock()
		return false, nil
	}
	a.buf = append(append(a.buf[:0], msgs...), 'Z', 0, 0, 0, 5, 'I')
	err := a.client.WriteLocked(a.buf)
	a.client.Unlock()
	if cap(a.buf) > 4096 {
		a.buf = nil
	}
	if err != nil {
		return false, errAnswerWrite
	}
	if f.acct.Done(1, false) {
		f.stop = proxy.ErrDrained // a drain waited for this session to be idle
	}
	return true, nil
}
