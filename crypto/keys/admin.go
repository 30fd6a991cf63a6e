package keys

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"time"

	"github.com/dbproxy/dbproxy/crypto"
	"github.com/dbproxy/dbproxy/crypto/keystore"
	"github.com/dbproxy/dbproxy/crypto/kms"
)

// Spec names a data key the configuration needs and the algorithm of its
// first version. Existing versions satisfy a Spec when they are of the same
// kind (randomized or deterministic): a key whose versions are legacy
// AES-256-GCM satisfies a spec of XAES-256-GCM, and the reverse.
type Spec struct {
	Name      string
	Algorithm crypto.Algorithm
}

// KeyInfo describes one version of a data key. It deliberately has no
// field that could carry key material, wrapped or not.
type KeyInfo struct {
	Name      string
	Version   uint32
	Algorithm crypto.Algorithm
	Primary   bool // the one new values are encrypted with: the newest past its activation
	// Pending: a version newer than the primary one, still waiting for its
	// activation. It already decrypts and is matched by lookups.
	Pending   bool
	CreatedAt time.Time
	// PrimaryAt is when the version becomes (or became) eligible as the
	// primary one: CreatedAt plus the activation delay (CreatedAt for the
	// first version).
	PrimaryAt   time.Time
	MasterKeyID string // the master key that wraps this version
}

// Init creates version 1 of every data key in specs that has no version
// yet, and returns the names it created. It first checks every key that
// already exists: one with a version of another kind than its spec
// (randomized vs deterministic) is an error naming the key, and then
// nothing is created. Init is idempotent; when
// another process creates the same key concurrently, its key is used.
func (m *Manager) Init(ctx context.Context, specs []Spec) (created []string, err error) {
	if m.closed.Load() {
		return nil, ErrClosed
	}
	want := make(map[string]crypto.Algorithm, len(specs))
	var names []string
	for _, s := range specs {
		if s.Name == "" {
			return nil, errors.New("init data keys: empty key name")
		}
		if !s.Algorithm.Valid() {
			return nil, fmt.Errorf("init data key %q: invalid algorithm %s", s.Name, s.Algorithm)
		}
		if prev, ok := want[s.Name]; ok {
			if prev != s.Algorithm {
				return nil, fmt.Errorf("init data key %q: configured with both %s and %s", s.Name, prev, s.Algorithm)
			}
			continue
		}
		want[s.Name] = s.Algorithm
		names = append(names, s.Name)
	}

	// Pass 1: check what exists, so a conflict creates nothing.
	var conflicts []error
	var toCreate []string
	for _, name := range names {
		recs, err := m.store.Get(ctx, name)
		if err != nil {
			return nil, fmt.Errorf("init data key %q: read keystore: %w", name, err)
		}
		if len(recs) == 0 {
			toCreate = append(toCreate, name)
			continue
		}
		if err := checkAlgorithm(name, recs, want[name]); err != nil {
			conflicts = append(conflicts, err)
		}
	}
	if err := errors.Join(conflicts...); err != nil {
		return nil, err
	}

	// Pass 2: create the missing ones.
	for _, name := range toCreate {
		r, err := m.newVersion(ctx, name, 1, want[name])
		if err != nil {
			return created, fmt.Errorf("init data key %q: %w", name, err)
		}
		err = m.store.Create(ctx, r)
		m.forget(name)
		switch {
		case err == nil:
			created = append(created, name)
			m.log.LogAttrs(ctx, slog.LevelInfo, "created data key",
				attrKey(name), attrVersion(1), slog.String("algorithm", r.Algorithm.String()), attrMaster(r.MasterKeyID))
		case errors.Is(err, keystore.ErrExists):
			// Another process won the race: use its key, if it agrees.
			recs, gerr := m.store.Get(ctx, name)
			if gerr != nil {
				return created, fmt.Errorf("init data key %q: created concurrently; re-read keystore: %w", name, gerr)
			}
			if cerr := checkAlgorithm(name, recs, want[name]); cerr != nil {
				return created, fmt.Errorf("init: %w (created concurrently by another process)", cerr)
			}
			m.log.LogAttrs(ctx, slog.LevelInfo, "data key was created concurrently by another process; using it", attrKey(name))
		default:
			return created, fmt.Errorf("init data key %q: store: %w", name, err)
		}
	}
	return created, nil
}

func checkAlgorithm(name string, recs []keystore.Record, want crypto.Algorithm) error {
	for _, r := range recs {
		if !sameKind(r.Algorithm, want) {
			return fmt.Errorf("data key %q version %d exists with algorithm %s, but the configuration needs %s (a data key cannot change algorithm; use another key name)",
				name, r.Version, r.Algorithm, want)
		}
	}
	return nil
}

// sameKind reports whether versions of algorithms a and b can be versions
// of one data key: both randomized or both deterministic.
func sameKind(a, b crypto.Algorithm) bool {
	return a.Valid() && b.Valid() && a.Deterministic() == b.Deterministic()
}

// rotateTo is the algorithm of the version that Rotate adds after a
// version of algorithm a: legacy AES-256-GCM moves to XAES-256-GCM, which
// needs no per-key message limit; the others stay. Each version keeps its
// own algorithm (recorded in the keystore), so old ciphertexts still
// decrypt under their version.
func rotateTo(a crypto.Algorithm) crypto.Algorithm {
	if a == crypto.AlgorithmAESGCM {
		return crypto.AlgorithmXAESGCM
	}
	return a
}

// newVersion generates a data key under the current master key and returns
// its record. The plaintext key is zeroed before returning.
func (m *Manager) newVersion(ctx context.Context, name string, version uint32, alg crypto.Algorithm) (keystore.Record, error) {
	ref := kms.KeyRef{Name: name, Version: version}
	pt, wrapped, err := m.master.GenerateDataKey(ctx, ref, alg.KeySize())
	clear(pt)
	if err != nil {
		return keystore.Record{}, fmt.Errorf("generate data key %s with master key %q: %w", ref, m.master.ID(), err)
	}
	if len(pt) != alg.KeySize() {
		return keystore.Record{}, fmt.Errorf("generate data key %s with master key %q: got %d bytes, want %d",
			ref, m.master.ID(), len(pt), alg.KeySize())
	}
	return keystore.Record{
		Name:        name,
		Version:     version,
		Algorithm:   alg,
		CreatedAt:   m.now().UTC(),
		MasterKeyID: m.master.ID(),
		Wrapped:     wrapped,
	}, nil
}

// Rotate adds a new version (the highest so far plus one) to the data key
// name; it becomes the primary version at once without an activation
// delay, else once the delay has passed after its CreatedAt (see
// Manager.Activation). The new version has the algorithm
// of the newest one, except that legacy AES-256-GCM becomes XAES-256-GCM
// (see rotateTo). Old versions stay for decryption. If another process rotates the same key at the same time,
// one of them fails with an error wrapping keystore.ErrExists.
func (m *Manager) Rotate(ctx context.Context, name string) (keystore.Record, error) {
	if m.closed.Load() {
		return keystore.Record{}, ErrClosed
	}
	recs, err := m.store.Get(ctx, name)
	if err != nil {
		return keystore.Record{}, fmt.Errorf("rotate data key %q: read keystore: %w", name, err)
	}
	if len(recs) == 0 {
		return keystore.Record{}, fmt.Errorf("rotate: %w", notFound(name))
	}
	newest := slices.MaxFunc(recs, func(a, b keystore.Record) int { return cmp.Compare(a.Version, b.Version) })
	if newest.Version == math.MaxUint32 {
		return keystore.Record{}, fmt.Errorf("rotate data key %q: no version left after %d", name, newest.Version)
	}
	r, err := m.newVersion(ctx, name, newest.Version+1, rotateTo(newest.Algorithm))
	if err != nil {
		return keystore.Record{}, fmt.Errorf("rotate data key %q: %w", name, err)
	}
	err = m.store.Create(ctx, r)
	m.forget(name)
	if errors.Is(err, keystore.ErrExists) {
		return keystore.Record{}, fmt.Errorf("rotate data key %q: version %d was created concurrently by another rotation; check dbproxy keys list before rotating again: %w",
			name, r.Version, err)
	}
	if err != nil {
		return keystore.Record{}, fmt.Errorf("rotate data key %q: store version %d: %w", name, r.Version, err)
	}
	m.log.LogAttrs(ctx, slog.LevelInfo, "rotated data key", attrKey(name), attrVersion(r.Version),
		slog.String("algorithm", r.Algorithm.String()), slog.String("previous_algorithm", newest.Algorithm.String()), attrMaster(r.MasterKeyID))
	return r, nil
}

// RewrapOption changes what Rewrap does.
type RewrapOption func(*rewrapConfig)

type rewrapConfig struct{ all bool }

// RewrapAll makes Rewrap rewrap every record, including those already
// wrapped by the current master key.
func RewrapAll() RewrapOption { return func(c *rewrapConfig) { c.all = true } }

// Rewrap re-wraps under the current master key every data key version that
// another master key wraps (or every version, with RewrapAll): it unwraps it
// with the master key named by its record (Options.Master or one of
// Options.Previous), wraps it again with Options.Master and replaces the
// record's wrapped bytes. Key material, versions and data are unchanged, so
// cached keys and existing ciphertexts are unaffected. It returns the number
// of records rewrapped; on error it stops, and running it again resumes.
func (m *Manager) Rewrap(ctx context.Context, opts ...RewrapOption) (n int, err error) {
	if m.closed.Load() {
		return 0, ErrClosed
	}
	var cfg rewrapConfig
	for _, o := range opts {
		o(&cfg)
	}
	recs, err := m.store.List(ctx)
	if err != nil {
		return 0, fmt.Errorf("rewrap: read keystore: %w", err)
	}
	target := m.master.ID()
	for i := range recs {
		r := &recs[i]
		if r.MasterKeyID == target && !cfg.all {
			continue
		}
		if err := m.rewrapOne(ctx, r); err != nil {
			return n, fmt.Errorf("rewrap: %w", err)
		}
		n++
		m.log.LogAttrs(ctx, slog.LevelInfo, "rewrapped data key", attrKey(r.Name), attrVersion(r.Version),
			slog.String("from_master_key_id", r.MasterKeyID), slog.String("to_master_key_id", target))
	}
	return n, nil
}

func (m *Manager) rewrapOne(ctx context.Context, r *keystore.Record) error {
	pt, err := m.unwrap(ctx, r)
	if err != nil {
		return err
	}
	ref := kms.KeyRef{Name: r.Name, Version: r.Version}
	wrapped, err := m.master.Wrap(ctx, ref, pt)
	clear(pt)
	if err != nil {
		return fmt.Errorf("wrap data key %s with master key %q: %w", ref, m.master.ID(), err)
	}
	if err := m.store.Replace(ctx, r.Name, r.Version, m.master.ID(), wrapped); err != nil {
		return fmt.Errorf("store rewrapped data key %s: %w", ref, err)
	}
	m.forget(r.Name)
	return nil
}

// List describes every data key version in the store, sorted by name and
// version. It reads the store, not the cache, and never returns key
// material.
func (m *Manager) List(ctx context.Context) ([]KeyInfo, error) {
	recs, err := m.store.List(ctx)
	if err != nil {
		return nil, fmt.Errorf("list data keys: %w", err)
	}
	recs = slices.Clone(recs)
	slices.SortFunc(recs, func(a, b keystore.Record) int {
		return cmp.Or(cmp.Compare(a.Name, b.Name), cmp.Compare(a.Version, b.Version))
	})
	now := m.now()
	out := make([]KeyInfo, 0, len(recs))
	for start := 0; start < len(recs); {
		end := start + 1
		for end < len(recs) && recs[end].Name == recs[start].Name {
			end++
		}
		key := recs[start:end]
		primary := m.primaryOf(key, now)
		for i, r := range key {
			out = append(out, KeyInfo{
				Name:        r.Name,
				Version:     r.Version,
				Algorithm:   r.Algorithm,
				Primary:     i == primary,
				Pending:     i > primary,
				CreatedAt:   r.CreatedAt,
				PrimaryAt:   m.activeAt(key, i),
				MasterKeyID: r.MasterKeyID,
			})
		}
		start = end
	}
	return out, nil
}
