package keys

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/dbproxy/dbproxy/crypto"
	"github.com/dbproxy/dbproxy/crypto/keystore"
)

// keyMeta is the cached list of versions of one data key name, as read from
// the store. Its records are immutable once published. An empty records
// slice is a negative entry: the name was not in the store when loaded.
type keyMeta struct {
	records []keystore.Record // ascending by version
	loaded  time.Time         // carries a monotonic reading
	missed  bool              // loaded because a version was missing
	// stale is set by timer TTL after loading: a timer rather than a clock
	// read keeps time.Now off the hot path.
	stale atomic.Bool
	timer *time.Timer
	// slots[i] is the last cache entry handed out for records[i]: the
	// lock-free hit path (see Manager.entry). It may hold an entry that
	// has since left the cache; entry.dead tells.
	slots []atomic.Pointer[entry]
}

func (km *keyMeta) age() time.Duration { return time.Since(km.loaded) }

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
	if km != nil && !km.stale.Load() {
		if len(km.records) > 0 {
			return km, nil
		}
		if km.age() < minRefresh {
			return nil, notFound(name)
		}
	}
	km, err := m.refreshMeta(ctx, name, km, false)
	if err != nil {
		return nil, err
	}
	if len(km.records) == 0 {
		return nil, notFound(name)
	}
	return km, nil
}

// refreshMeta reads the versions of name from the store, unless another
// caller replaced seen (the list this caller found wanting) less than
// minRefresh ago. missed records that a missing version prompted the read.
func (m *Manager) refreshMeta(ctx context.Context, name string, seen *keyMeta, missed bool) (*keyMeta, error) {
	return flight(ctx, &m.metaGrp, name, func(ctx context.Context) (*keyMeta, error) {
		if m.closed.Load() {
			return nil, ErrClosed
		}
		if cur := (*m.metas.Load())[name]; cur != nil && cur != seen && !cur.stale.Load() && cur.age() < minRefresh {
			return cur, nil
		}
		return m.readMeta(ctx, name, missed)
	})
}

// rereadMeta returns the versions of name as read from the store at or
// after since: the cached list if it was read since then, else a new read.
// Concurrent callers share one read.
func (m *Manager) rereadMeta(ctx context.Context, name string, since time.Time) (*keyMeta, error) {
	fresh := func() *keyMeta {
		if cur := (*m.metas.Load())[name]; cur != nil && !cur.stale.Load() && !cur.loaded.Before(since) {
			return cur
		}
		return nil
	}
	if cur := fresh(); cur != nil {
		return cur, nil
	}
	return flight(ctx, &m.metaGrp, "\x00reread\x00"+name, func(ctx context.Context) (*keyMeta, error) {
		if m.closed.Load() {
			return nil, ErrClosed
		}
		if cur := fresh(); cur != nil {
			return cur, nil
		}
		return m.readMeta(ctx, name, false)
	})
}

// readMeta reads the versions of name from the store and publishes them.
// It runs inside a flight.
func (m *Manager) readMeta(ctx context.Context, name string, missed bool) (*keyMeta, error) {
	recs, err := m.store.Get(ctx, name)
	if err != nil {
		return nil, fmt.Errorf("read data key %q from keystore: %w", name, err)
	}
	recs = slices.DeleteFunc(slices.Clone(recs), func(r keystore.Record) bool { return r.Name != name })
	slices.SortFunc(recs, func(a, b keystore.Record) int { return cmp.Compare(a.Version, b.Version) })
	km := &keyMeta{records: recs, loaded: time.Now(), missed: missed, slots: make([]atomic.Pointer[entry], len(recs))}
	m.metaMu.Lock()
	defer m.metaMu.Unlock()
	if m.closed.Load() {
		return nil, ErrClosed
	}
	km.timer = time.AfterFunc(m.ttl, func() { km.stale.Store(true) })
	next := maps.Clone(*m.metas.Load())
	if old := next[name]; old != nil {
		old.timer.Stop()
	}
	next[name] = km
	m.metas.Store(&next)
	return km, nil
}

// forget drops the cached versions of names, so the next lookup reads the
// store. Unwrapped keys stay cached.
func (m *Manager) forget(names ...string) {
	m.metaMu.Lock()
	defer m.metaMu.Unlock()
	next := maps.Clone(*m.metas.Load())
	for _, n := range names {
		if old := next[n]; old != nil {
			old.timer.Stop()
			delete(next, n)
		}
	}
	m.metas.Store(&next)
}

// forgetAll drops every cached version list and stops their timers.
func (m *Manager) forgetAll() {
	m.metaMu.Lock()
	defer m.metaMu.Unlock()
	for _, km := range *m.metas.Load() {
		km.timer.Stop()
	}
	m.metas.Store(&map[string]*keyMeta{})
}

type cacheKey struct {
	name    string
	version uint32
}

// entry is one unwrapped key version in the cache.
type entry struct {
	key    *crypto.Key
	loaded time.Time   // when unwrapped; carries a monotonic reading
	base   uint64      // encryptions by earlier (evicted) instances of this version
	timer  *time.Timer // destroys the key at loaded+TTL
	warned atomic.Bool // the 2^31 warning was logged for this instance
	// legacyNoted: Primary has asked Manager.noteLegacy about this
	// version, so later hits skip the lock.
	legacyNoted atomic.Bool
	// dead is set, with m.mu held, when the entry leaves the LRU (TTL,
	// capacity, Close), just before its key is destroyed.
	dead atomic.Bool
	// seen is the value of Manager.gen when the entry was last moved to
	// the front of the LRU; written with m.mu held.
	seen atomic.Uint64
}

// encryptions is the number of encryptions this process made with the key
// version, across cache instances.
func (e *entry) encryptions() uint64 { return e.base + e.key.Encryptions() }

// entry returns the unwrapped key of km.records[i], unwrapping it on a
// miss. Concurrent misses of the same version share one Unwrap call.
//
// A hit takes no lock: km.slots[i] remembers the entry last handed out for
// the record, and it is used as is while it is still in the LRU (not dead)
// and has been moved to the front of the LRU since the last insertion (its
// seen equals m.gen). Only an insertion can evict, so the LRU order then
// stays exact where it matters: an entry not used since the last insertion
// is always behind every entry that was. The first use of an entry after an
// insertion takes m.mu once to move it to the front.
//
// The slot may still hand out an entry evicted a moment ago, exactly as a
// locked lookup racing an eviction could: its key is destroyed, and
// callers look the key up again on crypto.ErrKeyDestroyed.
func (m *Manager) entry(ctx context.Context, km *keyMeta, i int) (*entry, error) {
	if e := km.slots[i].Load(); e != nil && !e.dead.Load() && e.seen.Load() == m.gen.Load() {
		if m.obs != nil {
			m.obs.KeyCacheHit()
		}
		return e, nil
	}
	r := &km.records[i]
	ck := cacheKey{r.Name, r.Version}
	m.mu.Lock()
	e, ok := m.lru.Get(ck)
	if ok {
		e.seen.Store(m.gen.Load())
	}
	m.mu.Unlock()
	if m.obs != nil {
		if ok {
			m.obs.KeyCacheHit()
		} else {
			m.obs.KeyCacheMiss()
		}
	}
	if !ok {
		var err error
		e, err = flight(ctx, &m.keyGroup, r.Name+"\x00"+strconv.FormatUint(uint64(r.Version), 10),
			func(ctx context.Context) (*entry, error) { return m.load(ctx, ck) })
		if err != nil {
			return nil, err
		}
	}
	// Entries leave the cache at their TTL (see load); one evicted since
	// is marked dead and skipped by the next lookup.
	km.slots[i].Store(e)
	return e, nil
}

// load unwraps the key version ck and caches it. It runs inside a flight.
//
// The wrapped key comes from the keystore as read now (the record the
// caller found in its cached list may be up to a TTL old), and the master
// key provider unwraps it now: a key version is never used longer than
// the TTL past the moment the keystore and the master key last vouched for
// it. A version no longer in the keystore fails with ErrNotFound.
func (m *Manager) load(ctx context.Context, ck cacheKey) (*entry, error) {
	since := time.Now()
	m.mu.Lock()
	e, ok := m.lru.Peek(ck)
	m.mu.Unlock()
	if ok && time.Since(e.loaded) < m.ttl {
		return e, nil // a flight that just finished loaded it
	}
	if m.closed.Load() {
		return nil, ErrClosed
	}
	km, err := m.rereadMeta(ctx, ck.name, since)
	if err != nil {
		return nil, err
	}
	i, found := km.find(ck.version)
	if !found {
		return nil, fmt.Errorf("data key %q version %d is no longer in the keystore: %w", ck.name, ck.version, ErrNotFound)
	}
	r := &km.records[i]
	pt, err := m.unwrap(ctx, r)
	if err != nil {
		return nil, err
	}
	loaded := since // the TTL runs from before the keystore read
	k, err := crypto.NewKey(r.Name, r.Version, r.Algorithm, pt)
	clear(pt)
	if err != nil {
		return nil, fmt.Errorf("data key %q version %d: %w", r.Name, r.Version, err)
	}

	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed.Load() {
		k.Destroy()
		return nil, ErrClosed
	}
	m.lru.Remove(ck) // an expired instance: destroy it now
	e = &entry{key: k, loaded: loaded, base: m.used[ck]}
	ttl := m.ttl - time.Since(loaded)
	e.timer = time.AfterFunc(ttl, func() { m.expire(ck, e) })
	// A new generation sends every other entry through the locked path
	// once, to be moved to the front of the LRU if it is still used.
	e.seen.Store(m.gen.Add(1))
	m.lru.Add(ck, e)
	m.log.LogAttrs(ctx, slogDebug, "unwrapped data key",
		attrKey(r.Name), attrVersion(r.Version), attrMaster(r.MasterKeyID))
	return e, nil
}

// expire removes e at its TTL, unless it was already replaced.
func (m *Manager) expire(ck cacheKey, e *entry) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if cur, ok := m.lru.Peek(ck); ok && cur == e {
		m.lru.Remove(ck)
	}
}

// onEvict runs with m.mu held whenever an entry leaves the cache (TTL,
// capacity, Close): it remembers the usage count and destroys the key.
func (m *Manager) onEvict(ck cacheKey, e *entry) {
	e.dead.Store(true)
	e.timer.Stop()
	m.used[ck] = e.encryptions()
	e.key.Destroy()
	if m.obs != nil && !m.closed.Load() {
		m.obs.KeyCacheEviction()
	}
}
