package keys

// Test hooks for the black-box tests in keys_test.

// MinRefresh is the shortest interval between store reads prompted by a
// missing version.
const MinRefresh = minRefresh

// GCMWarnAt and GCMLimit are the AES-GCM encryption thresholds.
const (
	GCMWarnAt = gcmWarnAt
	GCMLimit  = gcmLimit
)

// SetBeforeDecrypt installs f to run in Decrypt between looking up the key
// and using it.
func SetBeforeDecrypt(m *Manager, f func()) { m.hooks.beforeDecrypt = f }

// SetEncryptions drops the cached instance of the key version and pretends
// this process already made n encryptions with it.
func SetEncryptions(m *Manager, name string, version uint32, n uint64) {
	ck := cacheKey{name, version}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.lru.Remove(ck)
	m.used[ck] = n
}

// CacheLen is the number of unwrapped key versions in the cache.
func CacheLen(m *Manager) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.lru.Len()
}

// Forget drops the cached version list of name, as a rotation in this
// Manager does; the unwrapped keys stay cached.
func Forget(m *Manager, name string) { m.forget(name) }
