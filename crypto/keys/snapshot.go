package keys

import (
	"context"

	"github.com/dbproxy/dbproxy/crypto"
)

// Snapshot holds what one lookup of a data key returned (Live, Primary
// or Version), for a caller that keeps it per column and uses it again
// while it is Current: a hit then costs two atomic loads instead of the
// version list's map lookup and the per-version cache slots, which on a
// proxy serving one client at a time (its caches evicted between
// statements) was a good part of what a lookup cost.
//
// A Snapshot is Current while the Manager changed nothing since it was
// taken that could change the lookup's answer: no version list published,
// re-read to another list or dropped, no key unwrapped into the cache or
// evicted from it (TTL, capacity, Close), no key due for a refresh ahead
// of its TTL (the next lookup starts it), and its version list not past
// its TTL. The lookup would then return the same keys, through its
// lock-free hit path: a rotation becomes visible exactly as soon, and a
// key evicted after Current said yes fails with crypto.ErrKeyDestroyed,
// as one handed out by the lookup would, and the caller asks again.
type Snapshot struct {
	m     *Manager
	km    *keyMeta
	epoch uint64 // m.epoch before the lookup
	keys  []*crypto.Key
	// version is the key version of a Version snapshot.
	version uint32
}

// Current reports whether the lookup s was taken from would return the
// same keys now (see Snapshot). It counts the hits of the cache observer
// that lookup would have counted.
func (s *Snapshot) Current() bool {
	if s.km.stale.Load() || s.m.epoch.Load() != s.epoch {
		return false
	}
	if s.m.obs != nil {
		for range s.keys {
			s.m.obs.KeyCacheHit()
		}
	}
	return true
}

// Of reports whether s was taken from m.
func (s *Snapshot) Of(m *Manager) bool { return s.m == m }

// Keys returns the keys of the lookup: every live version newest first
// (LiveSnapshot), or the one primary or requested version. The caller
// must not modify the slice.
func (s *Snapshot) Keys() []*crypto.Key { return s.keys }

// Version is the version a VersionSnapshot was taken for.
func (s *Snapshot) Version() uint32 { return s.version }

// LiveSnapshot is Live, as a Snapshot.
func (m *Manager) LiveSnapshot(ctx context.Context, name string) (*Snapshot, error) {
	return m.snapshot(ctx, name, func(km *keyMeta) (*Snapshot, error) {
		s := &Snapshot{keys: make([]*crypto.Key, 0, len(km.records))}
		for i := len(km.records) - 1; i >= 0; i-- {
			e, err := m.entry(ctx, km, i)
			if err != nil {
				return nil, err
			}
			s.keys = append(s.keys, e.key)
		}
		return s, nil
	})
}

// PrimarySnapshot is Primary, as a Snapshot, when its answer can only
// change with the cache: nil (and no error) while a version waits for its
// activation (the primary then changes with the clock) or when the
// primary is legacy AES-256-GCM (every encryption is counted and may
// warn): the caller then asks Primary each time.
func (m *Manager) PrimarySnapshot(ctx context.Context, name string) (*Snapshot, error) {
	return m.snapshot(ctx, name, func(km *keyMeta) (*Snapshot, error) {
		last := len(km.records) - 1
		if !km.settled.Load() || km.records[last].Algorithm.NonceLimited() {
			return nil, nil
		}
		e, err := m.entry(ctx, km, last)
		if err != nil {
			return nil, err
		}
		return &Snapshot{keys: []*crypto.Key{e.key}}, nil
	})
}

// VersionSnapshot is Version, as a Snapshot; nil (and no error) when the
// cached list of name lacks the version: the caller then asks Version
// (which reads the store again for it).
func (m *Manager) VersionSnapshot(ctx context.Context, name string, version uint32) (*Snapshot, error) {
	return m.snapshot(ctx, name, func(km *keyMeta) (*Snapshot, error) {
		i, ok := km.find(version)
		if !ok {
			return nil, nil
		}
		e, err := m.entry(ctx, km, i)
		if err != nil {
			return nil, err
		}
		return &Snapshot{keys: []*crypto.Key{e.key}, version: version}, nil
	})
}

// snapshot runs lookup on the version list of name and returns its
// Snapshot (or nil, nil), stamped with the epoch read before the lookup.
// A lookup that changed the cache (it unwrapped a key) or ran while
// another did is therefore not current: the next use takes a fresh one,
// all hits by then. Looking up again at once instead would count the
// hits twice and, with a cache smaller than the working set, unwrap
// every key twice.
func (m *Manager) snapshot(ctx context.Context, name string, lookup func(*keyMeta) (*Snapshot, error)) (*Snapshot, error) {
	epoch := m.epoch.Load()
	km, err := m.meta(ctx, name)
	if err != nil {
		return nil, err
	}
	s, err := lookup(km)
	if err != nil || s == nil {
		return nil, err
	}
	s.m, s.km, s.epoch = m, km, epoch
	return s, nil
}

// changed marks every Snapshot taken so far as no longer current.
func (m *Manager) changed() { m.epoch.Add(1) }
