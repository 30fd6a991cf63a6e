package mysql

import (
	"io"
	"sync"
	"sync/atomic"

	"github.com/dbproxy/dbproxy/internal/bufpool"
	"github.com/dbproxy/dbproxy/proxy"
	"github.com/dbproxy/dbproxy/proxy/relay"
)

// clientMode says how the client->server relay reads the next client
// packet.
type clientMode uint8

const (
	modeCommand clientMode = iota // a new command
	modeInfile                    // LOCAL INFILE data, until an empty packet
	modeAuth                      // COM_CHANGE_USER authentication, until the server's OK or ERR
)

// queue is the state the two relay goroutines of a session share: the
// commands in flight, in order (a client may pipeline), the client's mode,
// and, in a relay.Exchanges, how many exchanges are outstanding and
// whether the session is closing. One mutex guards the list and the mode;
// it is taken about twice per command.
//
// The client->server goroutine appends an exchange before it forwards the
// command, so the server->client goroutine always knows what a response
// answers. The server->client goroutine marks exchanges done as their last
// packet is classified and removes them only after that packet has been
// written: a command the proxy answers itself (a refusal) is written by
// the client->server goroutine only when nothing is in flight, and is
// queued otherwise, so replies reach the client in command order.
type queue struct {
	mu    sync.Mutex
	items []*exchange
	done  int // items[:done] are complete but may not be written yet
	free  []*exchange
	mode  clientMode
	modeX *exchange // the exchange the client's non-command packets belong to

	// ex counts the items (an item is added to it before it is queued,
	// and done once removed): so the count is never below len(items),
	// and a drain closes the session only when both are zero. The
	// client is in command mode whenever nothing is outstanding.
	ex      *relay.Exchanges
	inTrans atomic.Bool // SERVER_STATUS_IN_TRANS of the last status seen
	client  *relay.Shared
	spill   []byte // local replies written by written(); server->client goroutine only
}

func newQueue(conn *proxy.Conn, client io.Writer) *queue {
	return &queue{ex: relay.NewExchanges(conn), client: relay.NewShared(client)}
}

// clientState returns the client's mode and, outside command mode, the
// exchange its packets belong to and the sequence id offset.
func (q *queue) clientState() (clientMode, *exchange, uint8) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.mode == modeCommand {
		return modeCommand, nil, 0
	}
	return q.mode, q.modeX, q.modeX.d
}

// endInfile returns the client to command mode after its last LOCAL INFILE
// packet.
func (q *queue) endInfile() {
	q.mu.Lock()
	if q.mode == modeInfile {
		q.mode, q.modeX = modeCommand, nil
	}
	q.mu.Unlock()
}

// alloc returns a cleared exchange.
func (q *queue) alloc() *exchange {
	q.mu.Lock()
	defer q.mu.Unlock()
	if n := len(q.free); n > 0 {
		x := q.free[n-1]
		q.free = q.free[:n-1]
		return x
	}
	return &exchange{}
}

func (q *queue) recycleLocked(x *exchange) {
	x.reset()
	if len(q.free) < 8 {
		q.free = append(q.free, x)
	}
}

// recycle returns an exchange that was never queued.
func (q *queue) recycle(x *exchange) {
	q.mu.Lock()
	q.recycleLocked(x)
	q.mu.Unlock()
}

// push queues x before its command is forwarded. It returns false when the
// session is closing: the command must not be forwarded.
func (q *queue) push(x *exchange) bool {
	if !q.ex.Add(1, false) {
		return false
	}
	q.mu.Lock()
	if x.resp == respAuth {
		q.mode, q.modeX = modeAuth, x
	}
	q.items = append(q.items, x)
	q.mu.Unlock()
	return true
}

// idle reports whether nothing is in flight and the client is between
// commands (the server->client pump may park).
func (q *queue) idle() bool { return q.ex.Idle() }

// commandMode reports whether the client is between commands or sending
// one (not LOCAL INFILE data nor COM_CHANGE_USER authentication): the
// client->server pump may park.
func (q *queue) commandMode() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.mode == modeCommand && !q.ex.Closing()
}

// open reports whether commands may still be forwarded.
func (q *queue) open() bool { return !q.ex.Closing() }

// reply answers x with the framed packets local (a command the proxy
// refused): at once if nothing is in flight, else after the responses
// before it. It returns false if the session is closing.
//
// The write happens under the client writer's lock only: q.mu is handed
// over to it first, so no response queued later can overtake the reply,
// and a drain (which takes q.mu) never waits for a slow client.
func (q *queue) reply(x *exchange, local []byte) (bool, error) {
	q.mu.Lock()
	// Queued, the reply counts as an outstanding exchange.
	if len(q.items) == 0 && q.ex.Closing() || len(q.items) > 0 && !q.ex.Add(1, false) {
		q.recycleLocked(x)
		q.mu.Unlock()
		return false, nil
	}
	if len(q.items) == 0 {
		q.recycleLocked(x)
		q.client.Lock()
		q.mu.Unlock()
		err := q.client.WriteLocked(local)
		q.client.Unlock()
		return true, err
	}
	x.resp = respLocal
	x.local = append(x.local[:0], local...)
	q.items = append(q.items, x)
	q.mu.Unlock()
	return true, nil
}

// current returns the first exchange whose response is not complete
// (locally answered ones included), or nil.
func (q *queue) current() *exchange {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.done < len(q.items) {
		return q.items[q.done]
	}
	return nil
}

// next returns the exchange the next server packet answers, or nil. The
// replies of locally answered commands queued before it are appended to
// dst (and marked done): they go to the client before that packet.
func (q *queue) next(dst []byte) (*exchange, []byte) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for q.done < len(q.items) && q.items[q.done].resp == respLocal {
		dst = append(dst, q.items[q.done].local...)
		q.done++
	}
	if q.done < len(q.items) {
		return q.items[q.done], dst
	}
	return nil, dst
}

// setInfile switches the client to LOCAL INFILE mode for x.
func (q *queue) setInfile(x *exchange) {
	q.mu.Lock()
	q.mode, q.modeX = modeInfile, x
	q.mu.Unlock()
}

// setDelta updates x's sequence id offset (read by the client->server
// goroutine in infile and auth modes).
func (q *queue) setDelta(x *exchange, d uint8) {
	q.mu.Lock()
	x.d = d
	q.mu.Unlock()
}

// complete marks the current exchange done. It is removed once its last
// packet has been written (written).
func (q *queue) complete() {
	q.mu.Lock()
	defer q.mu.Unlock()
	x := q.items[q.done]
	if q.modeX == x {
		q.mode, q.modeX = modeCommand, nil
	}
	q.done++
}

// written removes the exchanges whose last packet has been written, writes
// the replies of local exchanges now at the front, and updates the
// connection state. It returns errDrained when the session became idle
// during a drain: it is now marked closing. Only the server->client
// goroutine calls it.
func (q *queue) written() error {
	q.mu.Lock()
	if q.done == 0 && (len(q.items) == 0 || q.items[0].resp != respLocal) {
		q.mu.Unlock()
		return nil
	}
	removed := q.done
	for _, x := range q.items[:q.done] {
		q.recycleLocked(x)
	}
	n := copy(q.items, q.items[q.done:])
	clear(q.items[n:])
	q.items = q.items[:n]
	q.done = 0
	q.spill = q.spill[:0]
	for len(q.items) > 0 && q.items[0].resp == respLocal {
		x := q.items[0]
		q.spill = append(q.spill, x.local...)
		n := copy(q.items, q.items[1:])
		q.items[n] = nil
		q.items = q.items[:n]
		q.recycleLocked(x)
		removed++
	}
	var err error
	if q.ex.Done(int64(removed), q.inTrans.Load()) {
		err = errDrained
	}
	if len(q.spill) == 0 {
		q.mu.Unlock()
		return err
	}
	q.client.Lock() // see reply
	q.mu.Unlock()
	werr := q.client.WriteLocked(q.spill)
	q.client.Unlock()
	if cap(q.spill) > bufpool.MaxKeptWriter {
		q.spill = nil
	}
	if werr != nil {
		return &proxy.WriteError{Err: werr}
	}
	return err
}

// closeIfIdle marks the session closing if nothing is in flight and no
// transaction is open, and reports whether it did.
func (q *queue) closeIfIdle() bool { return q.ex.CloseIfIdle(q.inTrans.Load()) }

// isClosing reports whether the session was marked closing.
func (q *queue) isClosing() bool { return q.ex.Closing() }
