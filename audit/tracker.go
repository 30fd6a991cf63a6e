package audit

import (
	"cmp"
	"context"
	"errors"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/dbproxy/dbproxy/fieldcrypt"
	"github.com/dbproxy/dbproxy/proxy"
	"github.com/dbproxy/dbproxy/rules"
)

// Emitter takes events (a *Log).
type Emitter interface{ Emit(Event) }

// Tracker is the fieldcrypt.Monitor of audit: it follows each session's
// use of column keys and emits a first_use event for each new (operation,
// column, key version) of a session, a denied event for each use the
// Guard refused, and a session_summary of the counts every interval and a
// session_end when the session ends. KeyUsed takes one session's lock and
// emits nothing but those events, so it stays off the I/O path.
type Tracker struct {
	out      Emitter
	now      func() time.Time
	mu       sync.RWMutex // guards sessions
	sessions map[sessionKey]*session
	stop     chan struct{}
	done     chan struct{}
}

type sessionKey struct {
	listener string
	id       uint64
}

type useKey struct {
	op      fieldcrypt.Op
	col     *rules.ColumnRule
	version uint32
}

type colKey struct {
	op  fieldcrypt.Op
	col *rules.ColumnRule
}

type session struct {
	mu        sync.Mutex
	principal proxy.Principal
	seen      map[useKey]struct{}
	counts    map[colKey]*ColumnCount
	since     time.Time
	ended     bool
	loggedIn  bool // tracked from Login (which ends it)
}

// NewTracker returns a Tracker emitting to out, with a summary of every
// active session each interval (none if interval <= 0). Close stops it.
func NewTracker(out Emitter, interval time.Duration) *Tracker {
	t := &Tracker{out: out, now: time.Now, sessions: map[sessionKey]*session{}, stop: make(chan struct{}), done: make(chan struct{})}
	if interval <= 0 {
		close(t.done)
		return t
	}
	go func() {
		defer close(t.done)
		tick := time.NewTicker(interval)
		defer tick.Stop()
		for {
			select {
			case <-t.stop:
				return
			case <-tick.C:
				t.Summarize()
			}
		}
	}()
	return t
}

// Close stops the periodic summaries.
func (t *Tracker) Close() {
	select {
	case <-t.stop:
	default:
		close(t.stop)
	}
	<-t.done
}

// Login records a client's login as p (err: the proxy refused the
// session). When track is set and err is nil, the session's key use is
// followed and the returned func, called once when the session ends,
// emits its session_end; otherwise it does nothing.
func (t *Tracker) Login(p proxy.Principal, err error, track bool) (end func()) {
	e := Event{Type: TypeLogin, Principal: NewPrincipal(p), Outcome: OutcomeOK}
	if err != nil {
		e.Outcome, e.Error = OutcomeRefused, err.Error()
	}
	t.out.Emit(e)
	if err != nil || !track {
		return func() {}
	}
	k := sessionKey{p.Listener, p.SessionID}
	s := t.newSession(p)
	s.loggedIn = true
	t.mu.Lock()
	t.sessions[k] = s
	t.mu.Unlock()
	return sync.OnceFunc(func() {
		t.forget(k, s)
		t.summarize(s, TypeSessionEnd)
	})
}

func (t *Tracker) newSession(p proxy.Principal) *session {
	return &session{principal: p, seen: map[useKey]struct{}{}, counts: map[colKey]*ColumnCount{}, since: t.now()}
}

// KeyUsed implements fieldcrypt.Monitor.
func (t *Tracker) KeyUsed(_ context.Context, u fieldcrypt.Use) {
	s := t.session(u.Principal)
	refused := refusal(u.Err)
	isRefused := refused != nil
	s.mu.Lock()
	if s.principal.User != u.Principal.User || s.principal.Database != u.Principal.Database {
		s.principal = u.Principal // MySQL COM_CHANGE_USER
	}
	c := s.counts[colKey{u.Op, u.Column}]
	if c == nil {
		c = &ColumnCount{Op: u.Op.String(), Column: u.Column.String(), Key: u.Column.Key}
		s.counts[colKey{u.Op, u.Column}] = c
	}
	c.Version = max(c.Version, u.KeyVersion)
	var first bool
	switch {
	case isRefused:
		c.Refused++
	case u.Err != nil:
		c.Errors++
	default:
		c.Values++
		c.Bytes += uint64(max(u.Bytes, 0))
		uk := useKey{u.Op, u.Column, u.KeyVersion}
		if _, seen := s.seen[uk]; !seen {
			s.seen[uk], first = struct{}{}, true
		}
	}
	s.mu.Unlock()
	switch {
	case first:
		t.out.Emit(Event{Type: TypeFirstUse, Principal: NewPrincipal(u.Principal), Op: u.Op.String(),
			Column: u.Column.String(), Key: u.Column.Key, Version: u.KeyVersion})
	case isRefused:
		t.out.Emit(Event{Type: TypeDenied, Principal: NewPrincipal(u.Principal), Op: u.Op.String(),
			Column: u.Column.String(), Key: u.Column.Key, Outcome: OutcomeRefused, Error: refused.Err.Error()})
	}
}

// refusal is err as a Guard's refusal (nil: none).
func refusal(err error) *fieldcrypt.RefusedError {
	if err == nil {
		return nil
	}
	var r *fieldcrypt.RefusedError
	if errors.As(err, &r) {
		return r
	}
	return nil
}

// session returns the state of p's session. One whose login was not
// seen is followed from its first use, until a summary finds it idle.
func (t *Tracker) session(p proxy.Principal) *session {
	k := sessionKey{p.Listener, p.SessionID}
	t.mu.RLock()
	s := t.sessions[k]
	t.mu.RUnlock()
	if s != nil {
		return s
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if s = t.sessions[k]; s == nil {
		s = t.newSession(p)
		t.sessions[k] = s
	}
	return s
}

// forget drops session k if it is still s.
func (t *Tracker) forget(k sessionKey, s *session) {
	t.mu.Lock()
	if t.sessions[k] == s {
		delete(t.sessions, k)
	}
	t.mu.Unlock()
}

// Summarize emits a session_summary for every session that used a key
// since its last summary, and forgets sessions whose login was not seen
// once they are idle.
func (t *Tracker) Summarize() {
	t.mu.RLock()
	all := make(map[sessionKey]*session, len(t.sessions))
	maps.Copy(all, t.sessions)
	t.mu.RUnlock()
	for k, s := range all {
		// A session followed from its login stays until it ends; one
		// whose login was not seen is forgotten once idle.
		if !t.summarize(s, TypeSessionSummary) && !s.loggedIn {
			t.forget(k, s)
		}
	}
}

// summarize emits the counts of s since its last summary as an event of
// typ (a session_end is emitted even without counts); it reports whether
// s had any.
func (t *Tracker) summarize(s *session, typ string) bool {
	now := t.now()
	s.mu.Lock()
	if s.ended || (len(s.counts) == 0 && typ != TypeSessionEnd) {
		s.mu.Unlock()
		return false
	}
	counts, since, p := s.counts, s.since, s.principal
	s.counts, s.since = map[colKey]*ColumnCount{}, now
	s.ended = typ == TypeSessionEnd
	s.mu.Unlock()
	cols := make([]ColumnCount, 0, len(counts))
	for _, c := range counts {
		cols = append(cols, *c)
	}
	slices.SortFunc(cols, func(a, b ColumnCount) int {
		return cmp.Or(cmp.Compare(a.Column, b.Column), cmp.Compare(a.Op, b.Op))
	})
	since = since.UTC()
	t.out.Emit(Event{Time: now.UTC(), Type: typ, Principal: NewPrincipal(p), Since: &since, Columns: cols})
	return len(cols) > 0
}
