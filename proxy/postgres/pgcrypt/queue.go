package pgcrypt

import (
	"github.com/dbproxy/dbproxy/proxy/postgres/pgmsg"
	"github.com/dbproxy/dbproxy/rules"
	"github.com/dbproxy/dbproxy/sqlplan"
)

// newEvent returns a new event holding e. Events are carved from slabs to
// spare an allocation per message; a slab is never reused (frontend
// goroutine only).
func (s *session) newEvent(e event) *event {
	return carve(&s.slabs.events, &s.slabs.nEvents, slabSize, e)
}

// newPortal is newEvent for portals.
func (s *session) newPortal(p portalInfo) *portalInfo {
	return carve(&s.slabs.portals, &s.slabs.nPortals, slabSize, p)
}

// carve returns the first element of *slab, set to v, and drops it from the
// slab. An empty slab is first refilled with *next new elements (at least
// one), and *next doubles up to max: a session that runs a statement or
// two and then sits idle for hours keeps one or two, not a full slab.
func carve[T any](slab *[]T, next *int, max int, v T) *T {
	if len(*slab) == 0 {
		n := *next
		if n < 1 {
			n = 1
		}
		*slab = make([]T, n)
		*next = min(2*n, max)
	}
	p := &(*slab)[0]
	*p = v
	*slab = (*slab)[1:]
	return p
}

const slabSize = 32

// slabs are what newEvent, newPortal and newMatchSet carve from, and the
// size of each one's next refill (frontend goroutine only).
type slabs struct {
	events    []event
	portals   []portalInfo
	matchSets []rules.Matches

	nEvents, nPortals, nMatchSets int
}

// pendingQueue holds the requests awaiting a response, in order: events
// from events[head] (session.mu held).
type pendingQueue struct {
	events []*event
	head   int
}

// The match sets are filled by the frontend goroutine before the request
// is queued and read by the backend goroutine after it is dequeued (the
// queue's mutex orders the two); never changed afterwards.
var _ sqlplan.MatchRecorder = (*rules.Matches)(nil)

// newMatchSet is newEvent for match sets (kept apart: most events and
// portals need none).
func (s *session) newMatchSet() *rules.Matches {
	return carve(&s.slabs.matchSets, &s.slabs.nMatchSets, slabSize/4, rules.Matches{})
}

// append queues evs, first moving the pending events to the front when
// that spares growing the slice.
func (q *pendingQueue) append(evs []*event) {
	if q.head > 0 && len(q.events)+len(evs) > cap(q.events) {
		n := copy(q.events, q.events[q.head:])
		clear(q.events[n:])
		q.events, q.head = q.events[:n], 0
	}
	q.events = append(q.events, evs...)
}

// first returns the first pending event, nil if none.
func (q *pendingQueue) first() *event {
	if q.head == len(q.events) {
		return nil
	}
	return q.events[q.head]
}

// drop drops the first event, if any.
func (q *pendingQueue) drop() {
	if q.head == len(q.events) {
		return
	}
	q.events[q.head] = nil
	q.head++
	if q.head == len(q.events) {
		q.events, q.head = q.events[:0], 0
	}
}

// dropUntilSync drops the events before the next Sync (or simple Query)
// and returns that one, which stays queued.
func (q *pendingQueue) dropUntilSync() *event {
	for q.head < len(q.events) {
		if ev := q.events[q.head]; ev.kind == pgmsg.TypeSync || ev.kind == pgmsg.TypeQuery {
			return ev
		}
		q.drop()
	}
	return nil
}

// len returns the number of pending events.
func (q *pendingQueue) len() int { return len(q.events) - q.head }

func (s *session) push(evs ...*event) {
	s.lock()
	s.pending.append(evs)
	s.mu.Unlock()
}

// head returns the first pending event, nil if none (backend goroutine).
// The event it returned last is still first until the backend drops it:
// only then is the queue read again, under mu.
func (s *session) head() *event {
	if s.first != nil {
		return s.first
	}
	s.lock()
	s.first = s.pending.first()
	s.mu.Unlock()
	return s.first
}

// pop drops the first pending event, if any (backend goroutine).
func (s *session) pop() {
	s.lock()
	s.pending.drop()
	s.first = s.pending.first()
	s.mu.Unlock()
}

// popUntilSync drops the events before the next Sync (or simple Query) and
// returns that one, which stays queued (backend goroutine).
func (s *session) popUntilSync() *event {
	if ev := s.first; ev != nil && (ev.kind == pgmsg.TypeSync || ev.kind == pgmsg.TypeQuery) {
		return ev
	}
	s.lock()
	s.first = s.pending.dropUntilSync()
	s.mu.Unlock()
	return s.first
}
