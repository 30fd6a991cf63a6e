// Package keys manages the lifecycle of data keys: it creates them, rotates
// them, rewraps them under a new master key, and hands out unwrapped keys
// from a bounded in-memory cache. It ties together a keystore (wrapped keys
// at rest, package keystore), a master key provider (package kms) and the
// ciphertext primitives (package crypto).
//
// # Keys and versions
//
// A data key has a name (by default "<schema>.<table>.<column>") and one or
// more versions, each its own random key wrapped by a master key. The
// primary version, which [Manager.Primary] returns for encrypting, is the
// newest one past its activation (below). Every version stays usable for
// decrypting ([Manager.Version], [Manager.Decrypt]); deterministic lookups
// must match all of them ([Manager.Live]). [Manager.Rotate] adds a
// version; [Manager.Init] creates version 1 of keys that have none;
// [Manager.Rewrap] re-wraps every version under the current master key
// without touching key material or data.
//
// # Replicas: poll and activation
//
// Several processes sharing one keystore must never write under a version
// another cannot read or match yet: a deterministic lookup compares with
// the ciphertexts under every version the process knows, so a row written
// under a version it does not know is silently missed. Options.Poll makes
// the Manager re-read the keystore in the background every Poll (one
// Store.List, refreshing the version lists it has cached; a failed poll is
// logged and retried, and the lists read before stay). Options.Activation
// delays the primary role: a version other than a key's first becomes
// primary only from its CreatedAt plus Activation, at least
// [ActivationDelay](Poll) = 2×Poll; until then the previous primary stays,
// while Live and Version include the new version as soon as it is read.
// Every poller reads the version within one Poll of its creation, before
// anyone writes with it; the second Poll is the margin for clock skew
// between the host that rotated (CreatedAt) and the replicas (their own
// clocks decide), and for the time a poll takes. A replica that reads a
// version less than one Poll before its activation logs a warning. Picking
// the primary reads the clock only while a version is pending. Without
// Activation (a single process) a new version is primary at once.
//
// # Cache
//
// Unwrapped keys live only in memory, in an LRU of Options.MaxEntries key
// versions. Each is destroyed ([crypto.Key.Destroy]) Options.TTL after it
// was unwrapped, or when the LRU or [Manager.Close] evicts it; a
// *crypto.Key held past that returns crypto.ErrKeyDestroyed. Concurrent
// misses of one version make a single Unwrap call. The plaintext the master
// key returns is zeroed as soon as the key is built.
//
// A cache hit takes no lock: the cached list of a name's versions keeps,
// per version, the entry last handed out, used as long as it is still in
// the LRU and has been moved to its front since the last insertion. The
// first hit on an entry after an insertion takes the lock once to move it
// to the front; since only an insertion evicts, an entry unused since the
// last insertion is always evicted before one that was used. An entry that
// leaves the cache is marked dead before its key is destroyed, so it is
// not handed out again; a hit racing its eviction may still return the
// just-destroyed key, which callers look up again on crypto.ErrKeyDestroyed,
// as with any key evicted after lookup. [Manager.AppendLive] and
// [Manager.LiveCount] serve deterministic lookups without allocating.
//
// The list of versions per name (not secret) is cached too, and re-read
// from the keystore at every poll, after the TTL, on an unknown name, or
// on an unknown version, so a rotation made by another process is seen
// within the poll interval (without one, the TTL), and its ciphertexts
// decrypt at once. A read that finds the list unchanged keeps the cached
// list (and its lock-free slots), and a read that started before the one
// published never replaces it.
//
// The cache is a golang-lru simplelru plus one timer per entry rather than
// golang-lru's expirable LRU: expirable (v2.0.7) starts a cleanup goroutine
// that can never be stopped, which leaks one goroutine per Manager and
// cannot run under testing/synctest, and it replaces an expired entry
// without calling the eviction callback, so that key would never be
// destroyed.
//
// Options.Observer, when set, is told of every hit, miss and eviction
// (metrics; a nil Observer costs one branch). Options.Unwrapped, when
// set, is told of every master key call that unwraps a data key version,
// with its latency and outcome (audit). [Manager.CheckStore] and
// [Manager.CheckMaster] probe the keystore and the master key for
// readiness checks without touching the cache.
//
// # Failing closed
//
// An unwrapped key version is used at most the TTL after it was unwrapped
// (counted from before its keystore record was read). The first call that
// needs it afterwards reads its record from the keystore again and has the
// master key unwrap it again, so what is used is always what the keystore
// and the master key provider vouched for within the TTL: a record removed
// from the keystore fails with [ErrNotFound], a record re-wrapped elsewhere
// is unwrapped from its new wrapping, and a master key provider that is
// unreachable or refuses (for a local key file, [kms.LocalFile]: a file
// removed) fails every call that needs the key with an error wrapping
// [ErrUnavailable] and the provider's error, naming the key and version.
// There is no fallback and never a nil key. The TTL is therefore also the
// revocation delay after a master key is disabled. Failures are not
// cached: a restored provider or keystore works at the next call.
// Concurrent misses of one version share one keystore read and one unwrap.
// Likewise, once the cached list of a name's versions has expired, a
// keystore that cannot be read fails the calls for that name.
//
// # Algorithms of versions
//
// Every version records its algorithm in the keystore, and one version is
// one algorithm for its whole life: a version's key material is never used
// with another algorithm. [Manager.Init] creates the first version with
// the algorithm of its [Spec]; for randomized columns callers ask for
// XAES-256-GCM (rules.Mode.Algorithm). [Manager.Rotate] gives the new
// version the algorithm of the newest one, except that legacy AES-256-GCM
// becomes XAES-256-GCM; every old version keeps decrypting its own
// ciphertexts. A key's versions may therefore mix AES-256-GCM and
// XAES-256-GCM (both randomized); Init accepts any existing versions of the
// same kind as its spec, randomized or deterministic.
//
// Legacy AES-256-GCM versions (random 96-bit nonces) must not encrypt more
// than 2^32 times in total (NIST SP 800-38D), and no proxy can count what
// the others, or its own earlier runs, did. Primary therefore logs a
// warning, once per Manager and version, when it hands out such a version,
// asking to rotate; it warns again when the version passes 2^31 encryptions
// in this process and from 2^32-2^20 on fails with an error wrapping
// crypto.ErrKeyExhausted. That count is kept per process (across cache
// evictions), so it is a lower bound: only rotation is a fix. XAES-256-GCM
// versions have no per-key message limit and are not counted.
//
// # Logging
//
// Key names, versions and master key ids are logged; key material,
// wrapped or not, never is, nor does it appear in errors.
//
// # Boundaries
//
// This package owns data key lifecycle and the unwrapped key cache. It
// must not read configuration (callers pass [Options] and [Spec]s), must
// not import proxy or wire-protocol packages, and does not implement
// ciphertext formats (package crypto), master key providers (package kms)
// or storage (package keystore). It does not close the keystore or master
// keys it is given.
package keys
