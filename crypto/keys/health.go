package keys

import (
	"context"
	"crypto/rand"
	"fmt"

	"github.com/dbproxy/dbproxy/crypto/kms"
)

// probeRef names the throwaway key CheckMaster wraps when the keystore
// holds no key wrapped by the current master key. It is never stored.
var probeRef = kms.KeyRef{Name: "dbproxy.readiness-probe", Version: 1}

// CheckStore reads the list of data keys from the keystore, to tell that
// it is reachable and readable (a readiness check). It neither uses nor
// changes the cache.
func (m *Manager) CheckStore(ctx context.Context) error {
	if m.closed.Load() {
		return ErrClosed
	}
	if _, err := m.store.List(ctx); err != nil {
		return fmt.Errorf("list data keys in the keystore: %w", err)
	}
	return nil
}

// CheckMaster has the current master key provider unwrap one data key
// version it wrapped, bypassing the cache, and zeroes the result at once
// (a readiness check: it fails when the provider is unreachable or
// refuses, as the next cache miss would). When the keystore holds no
// version wrapped by the current master key, the provider wraps a
// throwaway random key instead. Each call is one provider call (and a
// keystore read): callers rate-limit it.
func (m *Manager) CheckMaster(ctx context.Context) error {
	if m.closed.Load() {
		return ErrClosed
	}
	recs, err := m.store.List(ctx)
	if err != nil {
		return fmt.Errorf("list data keys in the keystore: %w", err)
	}
	for i := range recs {
		r := &recs[i]
		if r.MasterKeyID != m.master.ID() {
			continue
		}
		pt, err := m.unwrap(ctx, r)
		clear(pt)
		return err
	}
	key := make([]byte, 32)
	rand.Read(key)
	_, err = m.master.Wrap(ctx, probeRef, key)
	clear(key)
	if err != nil {
		return fmt.Errorf("wrap a throwaway key with master key %q: %w: %w", m.master.ID(), ErrUnavailable, err)
	}
	return nil
}
