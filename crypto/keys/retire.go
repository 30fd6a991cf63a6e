package keys

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"

	"github.com/dbproxy/dbproxy/crypto/keystore"
)

// ErrPrimary: the version to retire is the primary one, which every new
// value is encrypted with.
var ErrPrimary = errors.New("is the primary version")

// Retire removes version of data key name from the keystore, so that its
// ciphertexts can no longer be decrypted: the caller must first make sure
// that no stored value uses it (`dbproxy keys retire` counts them in every
// configured column). The primary version cannot be retired, nor a
// version of a store that cannot delete records.
func (m *Manager) Retire(ctx context.Context, name string, version uint32) error {
	if m.closed.Load() {
		return ErrClosed
	}
	del, ok := m.store.(keystore.Deleter)
	if !ok {
		return fmt.Errorf("retire data key %q v%d: the keystore cannot delete records", name, version)
	}
	recs, err := m.store.Get(ctx, name)
	if err != nil {
		return fmt.Errorf("retire data key %q v%d: read keystore: %w", name, version, err)
	}
	if len(recs) == 0 {
		return fmt.Errorf("retire: %w", notFound(name))
	}
	newest := slices.MaxFunc(recs, func(a, b keystore.Record) int { return cmp.Compare(a.Version, b.Version) })
	if newest.Version == version {
		return fmt.Errorf("retire data key %q v%d: %w (rotate the key first)", name, version, ErrPrimary)
	}
	if err := del.Delete(ctx, name, version); err != nil {
		return fmt.Errorf("retire data key %q v%d: %w", name, version, err)
	}
	m.forget(name)
	m.log.LogAttrs(ctx, slog.LevelInfo, "retired data key version", attrKey(name), attrVersion(version))
	return nil
}

// PrimaryVersion returns the number of the primary version of data key
// name, as the keystore records it now.
func (m *Manager) PrimaryVersion(ctx context.Context, name string) (uint32, error) {
	recs, err := m.store.Get(ctx, name)
	if err != nil {
		return 0, fmt.Errorf("data key %q: read keystore: %w", name, err)
	}
	if len(recs) == 0 {
		return 0, notFound(name)
	}
	return slices.MaxFunc(recs, func(a, b keystore.Record) int { return cmp.Compare(a.Version, b.Version) }).Version, nil
}
