package keys_test

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"testing"

	"github.com/dbproxy/dbproxy/crypto"
	"github.com/dbproxy/dbproxy/crypto/keys"
	"github.com/dbproxy/dbproxy/crypto/keystore"
)

// gatedStore holds its first Get, once armed, after reading: a read of
// the store that finishes late.
type gatedStore struct {
	keystore.Store
	mu       sync.Mutex
	armed    bool
	got      chan struct{} // closed once the held Get has read
	release  chan struct{} // closing it lets the held Get return
	heldOnce bool
}

func (s *gatedStore) Get(ctx context.Context, name string) ([]keystore.Record, error) {
	recs, err := s.Store.Get(ctx, name)
	s.mu.Lock()
	hold := s.armed && !s.heldOnce
	s.heldOnce = s.heldOnce || hold
	s.mu.Unlock()
	if hold {
		close(s.got)
		<-s.release
	}
	return recs, err
}

// TestRotateDuringRead: a version-list read that started before a
// rotation in the same Manager and finishes after it is not cached: the
// next lookup sees the new primary at once, not after the TTL.
func TestRotateDuringRead(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keys.json")
	master := newFakeMaster(t, "m1")
	mustInit(t, newManager(t, keys.Options{Store: openStoreAt(t, path), Master: master}),
		[]keys.Spec{{Name: "det", Algorithm: crypto.AlgorithmAESSIV}})

	gs := &gatedStore{Store: openStoreAt(t, path), got: make(chan struct{}), release: make(chan struct{})}
	m := newManager(t, keys.Options{Store: gs, Master: master}) // TTL: a minute
	// Version 1 unwrapped and cached, its list dropped: the next lookup
	// reads the list and needs no unwrap (which would read it again).
	if _, err := m.Primary(ctx, "det"); err != nil {
		t.Fatal(err)
	}
	keys.Forget(m, "det")
	gs.mu.Lock()
	gs.armed = true
	gs.mu.Unlock()

	done := make(chan error, 1)
	go func() {
		k, err := m.Primary(ctx, "det") // reads version 1 only, and is held
		if err == nil && k.Version() != 1 {
			err = fmt.Errorf("held read's primary is version %d, want 1 (it read before the rotation)", k.Version())
		}
		done <- err
	}()
	<-gs.got
	if _, err := m.Rotate(ctx, "det"); err != nil {
		t.Fatal(err)
	}
	close(gs.release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}

	k, err := m.Primary(ctx, "det")
	if err != nil {
		t.Fatal(err)
	}
	if k.Version() != 2 {
		t.Fatalf("primary after the rotation is version %d, want 2: a read older than the rotation was cached", k.Version())
	}
	live, err := m.Live(ctx, "det")
	if err != nil || len(live) != 2 {
		t.Fatalf("Live after the rotation: %d versions, %v; want 2", len(live), err)
	}
}
