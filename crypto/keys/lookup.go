package keys

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"

	"github.com/dbproxy/dbproxy/crypto"
	"github.com/dbproxy/dbproxy/value"
)

// The lookups below are the hot path. A returned *crypto.Key stays usable
// until the cache drops it (TTL, capacity or Close); after that its Encrypt
// and Decrypt return crypto.ErrKeyDestroyed and the caller should look the
// key up again. Do not hold keys across statements.

// Primary returns the primary version of the data key name, for
// encrypting: the newest version past its activation (Options.Activation;
// with none, simply the newest). While a newer version waits for its
// activation, the previous primary stays, so no process writes under a
// version other replicas have not read yet.
//
// A primary version of legacy AES-256-GCM (random 96-bit nonces; good for
// 2^32 encryptions across every process that uses it, which none of them
// can count) logs a warning the first time this Manager hands it out,
// asking to rotate: rotation gives an XAES-256-GCM version, which has no
// per-key limit. It also logs a warning once the version passes 2^31
// encryptions in this process, and from 2^32-2^20 on it returns an error
// wrapping crypto.ErrKeyExhausted (NIST SP 800-38D). That count is per
// process, so with many proxies, restarts or replicas it is only a lower
// bound.
func (m *Manager) Primary(ctx context.Context, name string) (*crypto.Key, error) {
	km, err := m.meta(ctx, name)
	if err != nil {
		return nil, err
	}
	i := m.primaryIndex(ctx, km)
	r := &km.records[i]
	e, err := m.entry(ctx, km, i)
	if err != nil {
		return nil, err
	}
	if r.Algorithm.NonceLimited() {
		if !e.legacyNoted.Load() && !e.legacyNoted.Swap(true) && m.noteLegacy(cacheKey{name, r.Version}) {
			m.log.LogAttrs(ctx, slog.LevelWarn, "data key version uses legacy AES-256-GCM, whose random 96-bit nonces allow 2^32 encryptions across all proxies; rotate it (dbproxy keys rotate) so new values use XAES-256-GCM",
				attrKey(name), attrVersion(r.Version))
		}
		if n := e.encryptions(); n >= gcmWarnAt {
			if n >= gcmLimit {
				return nil, fmt.Errorf("data key %q version %d has made %d AES-GCM encryptions, the limit for random nonces (NIST SP 800-38D); run dbproxy keys rotate %s: %w",
					name, r.Version, n, name, crypto.ErrKeyExhausted)
			}
			if !e.warned.Load() && !e.warned.Swap(true) {
				m.log.LogAttrs(ctx, slog.LevelWarn, "data key is approaching the AES-GCM encryption limit; rotate it (dbproxy keys rotate)",
					attrKey(name), attrVersion(r.Version), slog.Uint64("encryptions", n), slog.Uint64("limit", gcmLimit))
			}
		}
	}
	return e.key, nil
}

// noteLegacy reports whether the legacy-algorithm warning for ck is yet to
// be logged by this Manager, and marks it logged.
func (m *Manager) noteLegacy(ck cacheKey) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.legacy[ck] {
		return false
	}
	m.legacy[ck] = true
	return true
}

// Version returns the given version of the data key name, for decrypting.
// An unknown version makes the manager re-read the store (after a read
// prompted by a missing version, not again for a second), so ciphertexts
// written by another process right after a rotation decrypt at once.
func (m *Manager) Version(ctx context.Context, name string, version uint32) (*crypto.Key, error) {
	km, err := m.meta(ctx, name)
	if err != nil {
		return nil, err
	}
	i, ok := km.find(version)
	if !ok && !km.missedRecently() {
		if km, err = m.refreshMeta(ctx, name, km.loadedAt(), true); err != nil {
			return nil, err
		}
		i, ok = km.find(version)
	}
	if !ok {
		return nil, fmt.Errorf("data key %q version %d %w", name, version, ErrNotFound)
	}
	e, err := m.entry(ctx, km, i)
	if err != nil {
		return nil, err
	}
	return e.key, nil
}

// Live returns every version of the data key name, newest first,
// including one still waiting for its activation (which other processes
// may already write with). A deterministic lookup must match the
// ciphertexts of all of them until old data is re-encrypted. It fails if any version cannot be unwrapped, rather
// than return a partial list that would miss rows.
func (m *Manager) Live(ctx context.Context, name string) ([]*crypto.Key, error) {
	return m.AppendLive(ctx, nil, name)
}

// AppendLive is Live appending the keys to dst, so that a caller reusing
// dst allocates nothing when the keys are cached. On error it returns nil.
func (m *Manager) AppendLive(ctx context.Context, dst []*crypto.Key, name string) ([]*crypto.Key, error) {
	km, err := m.meta(ctx, name)
	if err != nil {
		return nil, err
	}
	dst = slices.Grow(dst, len(km.records))
	for i := len(km.records) - 1; i >= 0; i-- {
		e, err := m.entry(ctx, km, i)
		if err != nil {
			return nil, err
		}
		dst = append(dst, e.key)
	}
	return dst, nil
}

// LiveCount returns how many versions of the data key name Live would
// return, without building the list. Like Live, it fails if any version
// cannot be unwrapped.
func (m *Manager) LiveCount(ctx context.Context, name string) (int, error) {
	km, err := m.meta(ctx, name)
	if err != nil {
		return 0, err
	}
	for i := len(km.records) - 1; i >= 0; i-- {
		if _, err := m.entry(ctx, km, i); err != nil {
			return 0, err
		}
	}
	return len(km.records), nil
}

// Decrypt decrypts ct, a ciphertext of the data key name, appending the
// plaintext to dst. The key version comes from the ciphertext header. If
// the key is evicted between lookup and use, Decrypt fetches it once more.
// A ciphertext that does not authenticate yields an error wrapping
// crypto.ErrDecrypt; a malformed one, crypto.ErrMalformed.
func (m *Manager) Decrypt(ctx context.Context, name string, dst, ct []byte) ([]byte, value.Type, error) {
	h, err := crypto.ParseHeader(ct)
	if err != nil {
		return nil, value.TypeUnknown, fmt.Errorf("decrypt with data key %q: %w", name, err)
	}
	for attempt := 0; ; attempt++ {
		k, err := m.Version(ctx, name, h.KeyVersion)
		if err != nil {
			return nil, value.TypeUnknown, err
		}
		if m.hooks.beforeDecrypt != nil {
			m.hooks.beforeDecrypt()
		}
		pt, t, err := k.Decrypt(dst, ct)
		if errors.Is(err, crypto.ErrKeyDestroyed) && attempt == 0 {
			continue
		}
		if err != nil {
			return nil, value.TypeUnknown, err // names the key and version
		}
		return pt, t, nil
	}
}

const slogDebug = slog.LevelDebug

func attrKey(name string) slog.Attr  { return slog.String("key", name) }
func attrVersion(v uint32) slog.Attr { return slog.Uint64("version", uint64(v)) }
func attrMaster(id string) slog.Attr { return slog.String("master_key_id", id) }
