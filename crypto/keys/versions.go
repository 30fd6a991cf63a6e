package keys

import (
	"bytes"
	"cmp"
	"context"
	"fmt"
	"maps"
	"slices"
	"sync/atomic"
	"time"

	"github.com/dbproxy/dbproxy/crypto/keystore"
)

// keyMeta is the cached list of versions of one data key name, as read from
// the store. Its records are immutable once published. An empty records
// slice is a negative entry: the name was not in the store when loaded.
type keyMeta struct {
	records []keystore.Record // ascending by version
	// loaded is when the last read that returned these records started
	// (carries a monotonic reading). A read that finds the list unchanged
	// (a poll, say) moves it forward in place.
	loaded atomic.Pointer[time.Time]
	// missedAt is when a read prompted by a missing version last started
	// (nil: never): such reads happen at most once per minRefresh.
	missedAt atomic.Pointer[time.Time]
	// stale is set by timer TTL after loading: a timer rather than a clock
	// read keeps time.Now off the hot path.
	stale atomic.Bool
	timer *time.Timer
	// settled: no version is waiting for its activation any more, so the
	// newest is the primary one without a clock read (see primaryIndex).
	settled atomic.Bool
	// slots[i] is the last cache entry handed out for records[i]: the
	// lock-free hit path (see Manager.entry). It may hold an entry that
	// has since left the cache; entry.dead tells.
	slots []atomic.Pointer[entry]
}

func (km *keyMeta) loadedAt() time.Time { return *km.loaded.Load() }
func (km *keyMeta) age() time.Duration  { return time.Since(km.loadedAt()) }
func (km *keyMeta) fresh(since time.Time) bool {
	return !km.stale.Load() && !km.loadedAt().Before(since)
}

// missedRecently reports whether a read prompted by a missing version
// started less than minRefresh ago.
func (km *keyMeta) missedRecently() bool {
	t := km.missedAt.Load()
	return t != nil && time.Since(*t) < minRefresh
}

// find returns the index in km.records of the given version.
func (km *keyMeta) find(version uint32) (int, bool) {
	// Versions are usually 1..n without gaps: try the direct index first.
	if i := int(version) - 1; i >= 0 && i < len(km.records) && km.records[i].Version == version {
		return i, true
	}
	return slices.BinarySearchFunc(km.records, version, func(r keystore.Record, v uint32) int {
		return cmp.Compare(r.Version, v)
	})
}

func notFound(name string) error {
	return fmt.Errorf("data key %q %w; run dbproxy keys init", name, ErrNotFound)
}

// meta returns the versions of name, reading the store when the cached list
// is missing or older than the TTL. An unknown name is re-read at most once
// per minRefresh.
func (m *Manager) meta(ctx context.Context, name string) (*keyMeta, error) {
	km := (*m.metas.Load())[name]
	var after time.Time
	if km != nil {
		if !km.stale.Load() {
			if len(km.records) > 0 {
				return km, nil
			}
			if km.age() < minRefresh {
				return nil, notFound(name)
			}
		}
		after = km.loadedAt()
	}
	km, err := m.refreshMeta(ctx, name, after, false)
	if err != nil {
		return nil, err
	}
	if len(km.records) == 0 {
		return nil, notFound(name)
	}
	return km, nil
}

// refreshMeta reads the versions of name from the store, unless another
// caller published a list read after the moment after (when the caller
// found its list wanting). missed records that a missing version prompted
// the read.
func (m *Manager) refreshMeta(ctx context.Context, name string, after time.Time, missed bool) (*keyMeta, error) {
	return flight(ctx, &m.metaGrp, name, func(ctx context.Context) (*keyMeta, error) {
		if m.closed.Load() {
			return nil, ErrClosed
		}
		if cur := (*m.metas.Load())[name]; cur != nil && !cur.stale.Load() && cur.loadedAt().After(after) {
			return cur, nil
		}
		return m.readMeta(ctx, name, missed)
	})
}

// rereadMeta returns the versions of name as read from the store at or
// after since: the cached list if it was read since then, else a new read.
// Concurrent callers share one read.
func (m *Manager) rereadMeta(ctx context.Context, name string, since time.Time) (*keyMeta, error) {
	if cur := (*m.metas.Load())[name]; cur != nil && cur.fresh(since) {
		return cur, nil
	}
	return flight(ctx, &m.metaGrp, "\x00reread\x00"+name, func(ctx context.Context) (*keyMeta, error) {
		if m.closed.Load() {
			return nil, ErrClosed
		}
		if cur := (*m.metas.Load())[name]; cur != nil && cur.fresh(since) {
			return cur, nil
		}
		return m.readMeta(ctx, name, false)
	})
}

// readMeta reads the versions of name from the store and publishes them.
// It runs inside a flight.
func (m *Manager) readMeta(ctx context.Context, name string, missed bool) (*keyMeta, error) {
	start := time.Now()
	recs, err := m.store.Get(ctx, name)
	if err != nil {
		return nil, fmt.Errorf("read data key %q from keystore: %w", name, err)
	}
	return m.publish(ctx, name, recs, start, missed, false)
}

// publish makes recs, the versions of name as read from the store by a
// read that started at start, the cached list of name, and returns it.
//
// A list published by a read that started later is kept instead (reads
// may finish out of order). A list equal to the cached one only moves the
// cached one's read time forward, so its lock-free slots stay. With
// onlyCached (a poll), a name that is not cached is left alone and nil is
// returned. Versions new to this Manager are logged (noteNew).
func (m *Manager) publish(ctx context.Context, name string, recs []keystore.Record, start time.Time, missed, onlyCached bool) (*keyMeta, error) {
	recs = slices.DeleteFunc(slices.Clone(recs), func(r keystore.Record) bool { return r.Name != name })
	slices.SortFunc(recs, func(a, b keystore.Record) int { return cmp.Compare(a.Version, b.Version) })
	m.metaMu.Lock()
	defer m.metaMu.Unlock()
	if m.closed.Load() {
		return nil, ErrClosed
	}
	old := (*m.metas.Load())[name]
	switch {
	case old == nil && onlyCached:
		return nil, nil
	case old != nil && old.loadedAt().After(start):
		return old, nil
	case start.Before(m.forgotAll) || start.Before(m.forgot[name]):
		// The read may predate a change this Manager made (a rotation
		// that forgot the list meanwhile): its answer goes to its own
		// callers, as a concurrent lookup may see either, but is not
		// cached, or the change would stay unseen for a whole TTL.
		km := m.newMeta(recs, start, missed)
		km.stale.Store(true)
		return km, nil
	case old != nil && slices.EqualFunc(old.records, recs, sameRecord):
		old.loaded.Store(&start)
		if missed {
			old.missedAt.Store(&start)
		}
		old.timer.Reset(m.ttl)
		old.stale.Store(false)
		return old, nil
	}
	km := m.newMeta(recs, start, missed)
	km.timer = time.AfterFunc(m.ttl, func() { km.stale.Store(true) })
	next := maps.Clone(*m.metas.Load())
	if old != nil {
		old.timer.Stop()
		m.noteNew(ctx, old.records, recs)
	}
	next[name] = km
	m.metas.Store(&next)
	m.changed()
	return km, nil
}

// newMeta is the version list recs as read by a read that started at
// start (prompted by a missing version if missed), not yet published.
func (m *Manager) newMeta(recs []keystore.Record, start time.Time, missed bool) *keyMeta {
	km := &keyMeta{records: recs, slots: make([]atomic.Pointer[entry], len(recs))}
	km.loaded.Store(&start)
	if missed {
		km.missedAt.Store(&start)
	}
	km.settled.Store(m.settled(recs))
	return km
}

// sameRecord reports whether two records of one name are the same.
func sameRecord(a, b keystore.Record) bool {
	return a.Version == b.Version && a.Algorithm == b.Algorithm && a.CreatedAt.Equal(b.CreatedAt) &&
		a.MasterKeyID == b.MasterKeyID && bytes.Equal(a.Wrapped, b.Wrapped)
}

// forget drops the cached versions of names, so the next lookup reads the
// store. Unwrapped keys stay cached.
func (m *Manager) forget(names ...string) {
	m.metaMu.Lock()
	defer m.metaMu.Unlock()
	next := maps.Clone(*m.metas.Load())
	if m.forgot == nil {
		m.forgot = make(map[string]time.Time)
	}
	now := time.Now()
	for _, n := range names {
		m.forgot[n] = now
		if old := next[n]; old != nil {
			old.timer.Stop()
			delete(next, n)
		}
	}
	m.metas.Store(&next)
	m.changed()
}

// forgetAll drops every cached version list and stops their timers.
func (m *Manager) forgetAll() {
	m.metaMu.Lock()
	defer m.metaMu.Unlock()
	for _, km := range *m.metas.Load() {
		km.timer.Stop()
	}
	m.metas.Store(&map[string]*keyMeta{})
	m.forgot, m.forgotAll = nil, time.Now()
	m.changed()
}
