package keys

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/dbproxy/dbproxy/crypto"
)

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
	// Refresh ahead of the TTL (see refreshAhead): refresh marks the
	// entry due near its end; the first lookup that finds it due
	// (refreshing) reloads it in the background.
	refresh    *time.Timer
	due        atomic.Bool
	refreshing atomic.Bool
	warned     atomic.Bool // the 2^31 warning was logged for this instance
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
		m.refreshIfDue(e)
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
		e, err = flight(ctx, &m.keyGroup, ck.flightKey(),
			func(ctx context.Context) (*entry, error) { return m.load(ctx, ck, nil) })
		if err != nil {
			return nil, err
		}
	} else {
		m.refreshIfDue(e)
	}
	// Entries leave the cache at their TTL (see load); one evicted since
	// is marked dead and skipped by the next lookup.
	km.slots[i].Store(e)
	return e, nil
}

// flightKey names the loads of ck in Manager.keyGroup.
func (ck cacheKey) flightKey() string {
	return ck.name + "\x00" + strconv.FormatUint(uint64(ck.version), 10)
}

// refreshAhead is how long before its TTL a key in use is reloaded: a
// key used within that time of its end is unwrapped again in the
// background, so that a key in constant use never makes a statement wait
// for the keystore and the KMS. A tenth of the TTL, at most a minute.
func refreshAhead(ttl time.Duration) time.Duration { return min(ttl/10, time.Minute) }

// refreshIfDue starts the background reload of e if it is due and no
// reload of it has started. The reload goes through the same flight as a
// miss; if it fails, e expires at its TTL as it would have (a revoked
// master key still fails closed within the TTL).
func (m *Manager) refreshIfDue(e *entry) {
	if !e.due.Load() || !e.refreshing.CompareAndSwap(false, true) {
		return
	}
	ck := cacheKey{e.key.Name(), e.key.Version()}
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), flightTimeout)
		defer cancel()
		if _, err := flight(ctx, &m.keyGroup, ck.flightKey(),
			func(ctx context.Context) (*entry, error) { return m.load(ctx, ck, e) }); err != nil && !m.closed.Load() {
			m.log.LogAttrs(ctx, slog.LevelWarn, "reloading a data key ahead of its TTL failed; the cached key expires at its TTL",
				attrKey(ck.name), attrVersion(ck.version), slog.Any("error", err))
		}
	}()
}

// markDue marks e due for a refresh, and sends the snapshots through a
// lookup (which finds it due) by counting a change.
func (m *Manager) markDue(e *entry) {
	if e.dead.Load() {
		return
	}
	e.due.Store(true)
	m.changed()
}

// load unwraps the key version ck and caches it, in place of stale if
// that is the entry cached (a refresh). It runs inside a flight.
//
// The wrapped key comes from the keystore as read now (the record the
// caller found in its cached list may be up to a TTL old), and the master
// key provider unwraps it now: a key version is never used longer than
// the TTL past the moment the keystore and the master key last vouched for
// it. A version no longer in the keystore fails with ErrNotFound.
func (m *Manager) load(ctx context.Context, ck cacheKey, stale *entry) (*entry, error) {
	since := time.Now()
	m.mu.Lock()
	e, ok := m.lru.Peek(ck)
	m.mu.Unlock()
	if ok && e != stale && time.Since(e.loaded) < m.ttl {
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
	m.lru.Remove(ck) // an expired or refreshed instance: destroy it now
	e = &entry{key: k, loaded: loaded, base: m.used[ck]}
	ttl := m.ttl - time.Since(loaded)
	e.timer = time.AfterFunc(ttl, func() { m.expire(ck, e) })
	if ahead := refreshAhead(m.ttl); ttl > ahead {
		e.refresh = time.AfterFunc(ttl-ahead, func() { m.markDue(e) })
	}
	// A new generation sends every other entry through the locked path
	// once, to be moved to the front of the LRU if it is still used.
	e.seen.Store(m.gen.Add(1))
	m.changed()
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
	m.changed()
	e.timer.Stop()
	if e.refresh != nil {
		e.refresh.Stop()
	}
	m.used[ck] = e.encryptions()
	e.key.Destroy()
	if m.obs != nil && !m.closed.Load() {
		m.obs.KeyCacheEviction()
	}
}
