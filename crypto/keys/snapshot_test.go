package keys_test

import (
	"errors"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/dbproxy/dbproxy/crypto"
	"github.com/dbproxy/dbproxy/crypto/keys"
)

// TestSnapshotCurrent: a Snapshot holds the keys its lookup returned and
// stays current until something may have changed the lookup's answer: a
// rotation in this process, a key unwrapped or evicted (an evicted key is
// destroyed), Close.
func TestSnapshotCurrent(t *testing.T) {
	m := newManager(t, keys.Options{Store: openStore(t), Master: newFakeMaster(t, "m1")})
	mustInit(t, m, []keys.Spec{{Name: "det", Algorithm: crypto.AlgorithmAESSIV}, {Name: "rnd", Algorithm: crypto.AlgorithmXAESGCM}})

	live, err := m.LiveSnapshot(ctx, "det")
	if err != nil {
		t.Fatal(err)
	}
	// A lookup that unwrapped a key is not current (the cache changed
	// under it); the next one, all hits, is.
	if live.Current() {
		t.Fatal("snapshot of a lookup that unwrapped a key is current")
	}
	if live, err = m.LiveSnapshot(ctx, "det"); err != nil {
		t.Fatal(err)
	}
	if !live.Current() || !live.Of(m) || !slices.Equal(versions(live.Keys()), []uint32{1}) {
		t.Fatalf("fresh live snapshot: current %v, versions %v", live.Current(), versions(live.Keys()))
	}
	prim, err := m.PrimarySnapshot(ctx, "rnd")
	if err != nil || prim == nil {
		t.Fatalf("PrimarySnapshot = %v, %v", prim, err)
	}
	v1, err := m.VersionSnapshot(ctx, "rnd", 1)
	if err != nil || v1 == nil || v1.Version() != 1 || v1.Keys()[0] != prim.Keys()[0] {
		t.Fatalf("VersionSnapshot(1) = %v, %v", v1, err)
	}
	if s, err := m.VersionSnapshot(ctx, "rnd", 7); s != nil || !errors.Is(err, nil) {
		t.Fatalf("VersionSnapshot of a version not in the list = %v, %v; want nil, nil", s, err)
	}
	// Unwrapping a key ends every snapshot (it may have evicted one);
	// looking up what is cached changes nothing.
	if live.Current() {
		t.Fatal("live snapshot still current after another key was unwrapped")
	}
	if live, err = m.LiveSnapshot(ctx, "det"); err != nil {
		t.Fatal(err)
	}
	if prim, err = m.PrimarySnapshot(ctx, "rnd"); err != nil || prim == nil {
		t.Fatalf("PrimarySnapshot = %v, %v", prim, err)
	}
	if _, err := m.Live(ctx, "det"); err != nil {
		t.Fatal(err)
	}
	if !live.Current() || !prim.Current() {
		t.Fatal("a cache hit ended the snapshots")
	}

	if _, err := m.Rotate(ctx, "det"); err != nil {
		t.Fatal(err)
	}
	if live.Current() {
		t.Fatal("live snapshot still current after a rotation in this process")
	}
	live, err = m.LiveSnapshot(ctx, "det")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(versions(live.Keys()), []uint32{2, 1}) {
		t.Fatalf("live versions after rotation %v, want [2 1]", versions(live.Keys()))
	}
	if p, err := m.PrimarySnapshot(ctx, "det"); err != nil || p == nil || p.Keys()[0].Version() != 2 {
		t.Fatalf("primary after rotation: %v, %v", p, err)
	}

	// An eviction (here: the test hook dropping the version) ends every
	// snapshot; the evicted key is destroyed.
	live, _ = m.LiveSnapshot(ctx, "det")
	old := live.Keys()[0]
	keys.SetEncryptions(m, "det", 2, 0)
	if live.Current() {
		t.Fatal("live snapshot still current after its key was evicted")
	}
	mustBeDestroyed(t, old, "evicted version 2")
	live, err = m.LiveSnapshot(ctx, "det")
	if err != nil || live.Keys()[0] == old {
		t.Fatalf("live snapshot after eviction: %v, %v", live, err)
	}
	encrypt(t, live.Keys()[0], "x")

	m.Close()
	if live.Current() {
		t.Fatal("snapshot current after Close")
	}
	if _, err := m.LiveSnapshot(ctx, "det"); err == nil {
		t.Fatal("LiveSnapshot after Close succeeded")
	}
}

// TestSnapshotOtherProcessRotation: a rotation by another process ends a
// snapshot when the version list passes its TTL, as it becomes visible to
// the lookups; an entry past its TTL ends it too.
func TestSnapshotOtherProcessRotation(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keys.json")
	master := newFakeMaster(t, "m1")
	const ttl = 150 * time.Millisecond
	m := newManager(t, keys.Options{Store: openStoreAt(t, path), Master: master, TTL: ttl})
	other := newManager(t, keys.Options{Store: openStoreAt(t, path), Master: master})
	mustInit(t, m, []keys.Spec{{Name: "det", Algorithm: crypto.AlgorithmAESSIV}})
	if _, err := m.LiveSnapshot(ctx, "det"); err != nil { // unwraps: not current
		t.Fatal(err)
	}
	s, err := m.LiveSnapshot(ctx, "det")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := other.Rotate(ctx, "det"); err != nil {
		t.Fatal(err)
	}
	if !s.Current() {
		t.Fatal("snapshot ended before the TTL by a rotation this process cannot see yet")
	}
	deadline := time.Now().Add(10 * ttl)
	for s.Current() {
		if time.Now().After(deadline) {
			t.Fatal("snapshot still current long past the TTL")
		}
		time.Sleep(ttl / 10)
	}
	// A snapshot also ends when its key becomes due for a refresh, a
	// little before the TTL: the rotation shows once the list's TTL is
	// past.
	for {
		s, err = m.LiveSnapshot(ctx, "det")
		if err != nil {
			t.Fatal(err)
		}
		if slices.Equal(versions(s.Keys()), []uint32{2, 1}) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("live versions long after the TTL %v, want [2 1]", versions(s.Keys()))
		}
		time.Sleep(ttl / 10)
	}
}

// TestPrimarySnapshotLegacy: a legacy AES-256-GCM primary, whose every
// encryption Primary counts, is never snapshotted.
func TestPrimarySnapshotLegacy(t *testing.T) {
	m := newManager(t, keys.Options{Store: openStore(t), Master: newFakeMaster(t, "m1")})
	mustInit(t, m, []keys.Spec{{Name: "gcm", Algorithm: crypto.AlgorithmAESGCM}})
	if s, err := m.PrimarySnapshot(ctx, "gcm"); s != nil || err != nil {
		t.Fatalf("PrimarySnapshot of a legacy key = %v, %v; want nil, nil", s, err)
	}
}
