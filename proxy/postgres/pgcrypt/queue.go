package pgcrypt

import (
	"github.com/dbproxy/dbproxy/proxy/postgres/pgsql"
	"github.com/dbproxy/dbproxy/rules"
)

// newEvent returns a new event holding e. Events are carved from slabs to
// spare an allocation per message; a slab is never reused (frontend
// goroutine only).
func (s *session) newEvent(e event) *event {
	if len(s.evSlab) == 0 {
		s.evSlab = make([]event, slabSize)
	}
	ev := &s.evSlab[0]
	*ev = e
	s.evSlab = s.evSlab[1:]
	return ev
}

// newPortal is newEvent for portals.
func (s *session) newPortal(p portalInfo) *portalInfo {
	if len(s.portalSlab) == 0 {
		s.portalSlab = make([]portalInfo, slabSize)
	}
	pi := &s.portalSlab[0]
	*pi = p
	s.portalSlab = s.portalSlab[1:]
	return pi
}

const slabSize = 32

// The match sets are filled by the frontend goroutine before the request
// is queued and read by the backend goroutine after it is dequeued (the
// queue's mutex orders the two); never changed afterwards.
var _ pgsql.MatchRecorder = (*rules.Matches)(nil)

// newMatchSet is newEvent for match sets (kept apart: most events and
// portals need none).
func (s *session) newMatchSet() *rules.Matches {
	if len(s.matchSlab) == 0 {
		s.matchSlab = make([]rules.Matches, slabSize/2)
	}
	m := &s.matchSlab[0]
	s.matchSlab = s.matchSlab[1:]
	return m
}

func (s *session) push(evs ...*event) {
	s.mu.Lock()
	if s.qhead > 0 && len(s.queue)+len(evs) > cap(s.queue) {
		n := copy(s.queue, s.queue[s.qhead:])
		clear(s.queue[n:])
		s.queue, s.qhead = s.queue[:n], 0
	}
	s.queue = append(s.queue, evs...)
	s.mu.Unlock()
}

func (s *session) head() *event {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.qhead == len(s.queue) {
		return nil
	}
	return s.queue[s.qhead]
}

// popLocked drops the first event; s.mu held, the queue not empty.
func (s *session) popLocked() {
	s.queue[s.qhead] = nil
	s.qhead++
	if s.qhead == len(s.queue) {
		s.queue, s.qhead = s.queue[:0], 0
	}
}

func (s *session) pop() {
	s.mu.Lock()
	if s.qhead < len(s.queue) {
		s.popLocked()
	}
	s.mu.Unlock()
}

// popUntilSync drops the events before the next Sync (or simple Query) and
// returns that one, which stays queued.
func (s *session) popUntilSync() *event {
	s.mu.Lock()
	defer s.mu.Unlock()
	for s.qhead < len(s.queue) {
		if ev := s.queue[s.qhead]; ev.kind == 'S' || ev.kind == 'Q' {
			return ev
		}
		s.popLocked()
	}
	return nil
}
