package keys

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/golang-lru/v2/simplelru"
	"golang.org/x/sync/singleflight"

	"github.com/dbproxy/dbproxy/crypto"
	"github.com/dbproxy/dbproxy/crypto/keystore"
	"github.com/dbproxy/dbproxy/crypto/kms"
	"github.com/dbproxy/dbproxy/internal/blocking"
)

// Defaults used when Options leaves a field at zero. They match the
// defaults of the keys.cache section of the configuration (docs/config.md).
const (
	DefaultMaxEntries = 1024
	DefaultTTL        = 10 * time.Minute
)

// Legacy AES-256-GCM with random 96-bit nonces must not be used for more
// than 2^32 encryptions under one key (NIST SP 800-38D §8.3,
// crypto.GCMEncryptionLimit). The manager warns at gcmWarnAt and refuses to
// hand out such a primary key at gcmLimit, which keeps a margin of 2^20 for
// encryptions already in flight. Both count this process's encryptions
// only, so they are lower bounds; XAES-256-GCM versions are not counted.
const (
	gcmWarnAt = crypto.GCMEncryptionLimit / 2
	gcmLimit  = crypto.GCMEncryptionLimit - 1<<20
)

// flightTimeout bounds a shared keystore read or KMS unwrap. The call runs
// detached from the context of the caller that started it (so that one
// cancelled query does not fail every query waiting on the same key), but
// not forever.
const flightTimeout = 30 * time.Second

// minRefresh is the shortest interval between two keystore reads for the
// same key name triggered by a miss (unknown name or unknown version). A
// ciphertext naming a bogus version therefore cannot turn every query into a
// keystore read.
const minRefresh = time.Second

var (
	// ErrNotFound: the data key name, or the requested version of it, is
	// not in the keystore.
	ErrNotFound = errors.New("not found")
	// ErrUnavailable: the data key could not be unwrapped (the master key
	// provider failed or refused, or the master key that wrapped it is not
	// configured). The provider's error is wrapped as well.
	ErrUnavailable = errors.New("data key unavailable")
	// ErrClosed: the Manager was closed.
	ErrClosed = errors.New("key manager closed")
)

// Options configures a Manager.
type Options struct {
	// Store holds the wrapped data keys. Required. The Manager does not
	// close it.
	Store keystore.Store
	// Master is the current master key: it wraps new data keys and is the
	// target of Rewrap. Required.
	Master kms.MasterKey
	// Previous are older master keys, selected by Record.MasterKeyID, used
	// only to unwrap keys not yet rewrapped under Master.
	Previous []kms.MasterKey
	// MaxEntries bounds the number of unwrapped key versions held in
	// memory. Zero means DefaultMaxEntries.
	MaxEntries int
	// TTL is how long an unwrapped key is used after it was unwrapped
	// (not after its last use); then it is unwrapped again from its
	// keystore record as read then. It is also how long cached keys keep
	// working after the master key is revoked or the keystore loses them,
	// and how stale the cached list of versions may get. Zero means
	// DefaultTTL.
	TTL time.Duration
	// Logger receives key names and versions, never key material. Nil
	// discards.
	Logger *slog.Logger
	// Now stamps CreatedAt on new records and is the clock that decides
	// when a version's activation has passed. Nil means time.Now. Cache
	// expiry and polls use the runtime clock and timers; tests fake those
	// with testing/synctest.
	Now func() time.Time
	// Observer, if set, is told of cache hits, misses and evictions.
	Observer CacheObserver
	// Poll, when positive, makes the Manager re-read the keystore every
	// Poll in the background (one Store.List) and refresh the version
	// lists of the names it has cached, so that a rotation made by another
	// process is known within Poll. A failed poll is logged and retried
	// at the next tick; the lists read before stay (up to TTL). Zero: no
	// background reads (lists are re-read after TTL, or on a miss).
	Poll time.Duration
	// Activation is how long after its CreatedAt a new version (any but
	// the first of a key) becomes the primary one; until then the previous
	// primary stays, while decryption and deterministic lookups already use
	// the new version. Every process sharing the keystore must use the same
	// value, at least ActivationDelay(Poll) of the slowest poller. Zero: a
	// new version is primary at once (a single process).
	Activation time.Duration
	// Unwrapped, if set, is told of every master key call that unwraps a
	// data key version (audit).
	Unwrapped UnwrapObserver
}

// UnwrapObserver is told of each master key call unwrapping a data key
// version: the key's name and version, the master key's ID, how long the
// call took and its error (nil: unwrapped). It never sees key material.
// It is called on the lookup path of a cache miss: it must be quick and
// must not block or call the Manager.
type UnwrapObserver interface {
	KeyUnwrapped(name string, version uint32, masterKeyID string, took time.Duration, err error)
}

// CacheObserver is told of the cache's activity (metrics). Its methods are
// called on the lookup path, concurrently: they must be quick and must not
// block or call the Manager.
type CacheObserver interface {
	// KeyCacheHit: a lookup found its key version unwrapped in the cache.
	KeyCacheHit()
	// KeyCacheMiss: a lookup had to read the keystore and unwrap.
	KeyCacheMiss()
	// KeyCacheEviction: an unwrapped key version left the cache (TTL or
	// capacity; not Close) and was destroyed.
	KeyCacheEviction()
}

// Manager creates, rotates and rewraps data keys, and hands out unwrapped
// data keys from an in-memory cache. It is safe for concurrent use.
type Manager struct {
	store    keystore.Store
	master   kms.MasterKey
	masters  map[string]kms.MasterKey // by ID: Master and Previous
	ttl      time.Duration
	log      *slog.Logger
	now      func() time.Time
	closed   atomic.Bool
	keyGroup singleflight.Group
	metaGrp  singleflight.Group

	// metas is a copy-on-write map of key name to its versions; readers
	// load it without locking, writers hold metaMu.
	metas  atomic.Pointer[map[string]*keyMeta]
	metaMu sync.Mutex
	// forgot holds when this Manager last changed the store for a name
	// (forget), forgotAll for every name (forgetAll); under metaMu. A
	// read that started before may predate the change and is not
	// cached (see publish).
	forgot    map[string]time.Time
	forgotAll time.Time

	mu  sync.Mutex    // guards lru and used
	gen atomic.Uint64 // insertions into lru; written with mu held
	// epoch counts the changes that end every Snapshot: a version list
	// published or dropped, an entry inserted into or evicted from lru.
	epoch atomic.Uint64
	lru   *simplelru.LRU[cacheKey, *entry]
	used  map[cacheKey]uint64 // encryptions by evicted instances of a version
	// legacy holds the AES-256-GCM primary versions whose "rotate me"
	// warning this Manager has logged.
	legacy map[cacheKey]bool
	obs    CacheObserver // nil: none
	hooks  testHooks

	poll       time.Duration
	activation time.Duration
	stopPoll   context.CancelFunc // nil without Poll
	pollDone   chan struct{}      // closed when pollLoop returns
	unwrapped  UnwrapObserver     // nil: none
}

// testHooks are set only by export_test.go.
type testHooks struct {
	beforeDecrypt func()
}

// New returns a Manager. It does not contact the store or the master key;
// with Options.Poll it starts the background poll, which Close stops.
func New(opts Options) (*Manager, error) {
	if opts.Store == nil {
		return nil, errors.New("key manager: no keystore")
	}
	if opts.Master == nil {
		return nil, errors.New("key manager: no master key")
	}
	if opts.MaxEntries < 0 {
		return nil, fmt.Errorf("key manager: negative cache size %d", opts.MaxEntries)
	}
	if opts.TTL < 0 {
		return nil, fmt.Errorf("key manager: negative cache TTL %s", opts.TTL)
	}
	if opts.Poll < 0 || opts.Activation < 0 {
		return nil, fmt.Errorf("key manager: negative poll interval %s or activation delay %s", opts.Poll, opts.Activation)
	}
	if opts.Poll > 0 && opts.Activation < ActivationDelay(opts.Poll) {
		return nil, fmt.Errorf("key manager: activation delay %s is shorter than twice the poll interval %s: a version could be written before every replica has read it",
			opts.Activation, opts.Poll)
	}
	m := &Manager{
		store:   opts.Store,
		master:  opts.Master,
		masters: make(map[string]kms.MasterKey, 1+len(opts.Previous)),
		ttl:     opts.TTL,
		log:     opts.Logger,
		now:     opts.Now,
		used:    make(map[cacheKey]uint64),
		legacy:  make(map[cacheKey]bool),
		obs:     opts.Observer,

		poll:       opts.Poll,
		activation: opts.Activation,
	}
	m.unwrapped = opts.Unwrapped
	if m.master.ID() == "" {
		return nil, errors.New("key manager: master key has an empty ID")
	}
	m.masters[m.master.ID()] = m.master
	for i, p := range opts.Previous {
		if p == nil {
			return nil, fmt.Errorf("key manager: previous master key %d is nil", i)
		}
		id := p.ID()
		if id == "" {
			return nil, fmt.Errorf("key manager: previous master key %d has an empty ID", i)
		}
		if _, dup := m.masters[id]; dup {
			return nil, fmt.Errorf("key manager: master key %q configured twice", id)
		}
		m.masters[id] = p
	}
	if m.ttl == 0 {
		m.ttl = DefaultTTL
	}
	if m.log == nil {
		m.log = slog.New(slog.DiscardHandler)
	}
	if m.now == nil {
		m.now = time.Now
	}
	size := opts.MaxEntries
	if size == 0 {
		size = DefaultMaxEntries
	}
	lru, err := simplelru.NewLRU(size, m.onEvict)
	if err != nil {
		return nil, fmt.Errorf("key manager: %w", err)
	}
	m.lru = lru
	m.metas.Store(&map[string]*keyMeta{})
	if m.poll > 0 {
		var ctx context.Context
		ctx, m.stopPoll = context.WithCancel(context.Background())
		m.pollDone = make(chan struct{})
		go m.pollLoop(ctx)
	}
	return m, nil
}

// Activation is the activation delay of new versions (Options.Activation).
func (m *Manager) Activation() time.Duration { return m.activation }

// Close stops the keystore poll (waiting for it to end), destroys every
// cached key and stops the expiry timers. Keys handed out earlier fail
// with crypto.ErrKeyDestroyed afterwards, and every later call returns
// ErrClosed. Close does not close the Store or master keys.
func (m *Manager) Close() {
	m.closed.Store(true)
	if m.stopPoll != nil {
		m.stopPoll()
		<-m.pollDone
	}
	m.mu.Lock()
	m.lru.Purge()
	m.mu.Unlock()
	m.forgetAll()
}

// masterFor returns the configured master key with the given ID.
func (m *Manager) masterFor(ref kms.KeyRef, id string) (kms.MasterKey, error) {
	mk, ok := m.masters[id]
	if !ok {
		return nil, fmt.Errorf("data key %s is wrapped by master key %q, which is not configured (current master key %q): %w",
			ref, id, m.master.ID(), ErrUnavailable)
	}
	return mk, nil
}

// unwrap returns the plaintext of r's data key, checked for size. The
// caller must zero it.
func (m *Manager) unwrap(ctx context.Context, r *keystore.Record) ([]byte, error) {
	ref := kms.KeyRef{Name: r.Name, Version: r.Version}
	mk, err := m.masterFor(ref, r.MasterKeyID)
	if err != nil {
		return nil, err
	}
	start := time.Now()
	pt, err := mk.Unwrap(ctx, ref, r.Wrapped)
	if m.unwrapped != nil {
		m.unwrapped.KeyUnwrapped(r.Name, r.Version, mk.ID(), time.Since(start), err)
	}
	if err != nil {
		return nil, fmt.Errorf("unwrap data key %s with master key %q: %w: %w", ref, mk.ID(), ErrUnavailable, err)
	}
	if want := r.Algorithm.KeySize(); want == 0 || len(pt) != want {
		clear(pt)
		return nil, fmt.Errorf("unwrap data key %s with master key %q: got %d bytes, %s needs %d: %w",
			ref, mk.ID(), len(pt), r.Algorithm, want, ErrUnavailable)
	}
	return pt, nil
}

// flight runs fn once for all concurrent callers with the same key. fn runs
// detached from the cancellation of ctx (bounded by flightTimeout); each
// caller stops waiting when its own ctx is done.
func flight[T any](ctx context.Context, g *singleflight.Group, key string, fn func(context.Context) (T, error)) (T, error) {
	var zero T
	if err := ctx.Err(); err != nil {
		return zero, err
	}
	ch := g.DoChan(key, func() (any, error) {
		// A goroutine of its own: it may wait without announcing it.
		fctx, cancel := context.WithTimeout(blocking.Without(context.WithoutCancel(ctx)), flightTimeout)
		defer cancel()
		return fn(fctx)
	})
	// The caller may be a hook on an event loop.
	blocking.Announce(ctx)
	select {
	case r := <-ch:
		if r.Err != nil {
			return zero, r.Err
		}
		return r.Val.(T), nil
	case <-ctx.Done():
		return zero, ctx.Err()
	}
}
