package keys_test

import (
	"errors"
	"fmt"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dbproxy/dbproxy/crypto"
	"github.com/dbproxy/dbproxy/crypto/keys"
)

// countingObserver counts what the cache tells it.
type countingObserver struct{ hits, misses, evictions atomic.Int64 }

func (o *countingObserver) KeyCacheHit()      { o.hits.Add(1) }
func (o *countingObserver) KeyCacheMiss()     { o.misses.Add(1) }
func (o *countingObserver) KeyCacheEviction() { o.evictions.Add(1) }

func TestCacheObserver(t *testing.T) {
	obs := &countingObserver{}
	m := newManager(t, keys.Options{Store: openStore(t), Master: newFakeMaster(t, "m1"), MaxEntries: 1, Observer: obs})
	specs := []keys.Spec{{Name: "a", Algorithm: crypto.AlgorithmXAESGCM}, {Name: "b", Algorithm: crypto.AlgorithmXAESGCM}}
	if _, err := m.Init(ctx, specs); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"a", "a", "a", "b", "a"} {
		if _, err := m.Primary(ctx, name); err != nil {
			t.Fatal(err)
		}
	}
	// a: miss, hit, hit; b: miss (evicts a); a: miss (evicts b).
	if h, mi, e := obs.hits.Load(), obs.misses.Load(), obs.evictions.Load(); h != 2 || mi != 3 || e != 2 {
		t.Errorf("hits %d, misses %d, evictions %d; want 2, 3, 2", h, mi, e)
	}
	m.Close()
	if e := obs.evictions.Load(); e != 2 {
		t.Errorf("Close counted %d evictions", e-2)
	}
}

func TestCheckStoreAndMaster(t *testing.T) {
	master := newFakeMaster(t, "m1")
	m := newManager(t, keys.Options{Store: openStore(t), Master: master})
	if err := m.CheckStore(ctx); err != nil {
		t.Errorf("CheckStore: %v", err)
	}
	// No data key yet: the master key wraps a throwaway key.
	if err := m.CheckMaster(ctx); err != nil || master.wraps.Load() != 1 {
		t.Errorf("CheckMaster on an empty keystore: %v after %d wraps", err, master.wraps.Load())
	}
	if _, err := m.Init(ctx, []keys.Spec{{Name: "a", Algorithm: crypto.AlgorithmAESSIV}}); err != nil {
		t.Fatal(err)
	}
	if err := m.CheckMaster(ctx); err != nil || master.unwraps.Load() != 1 {
		t.Errorf("CheckMaster: %v after %d unwraps, want one unwrap", err, master.unwraps.Load())
	}
	master.down.Store(true)
	if err := m.CheckMaster(ctx); !errors.Is(err, keys.ErrUnavailable) || !errors.Is(err, errFakeDown) {
		t.Errorf("CheckMaster with the provider down: %v", err)
	}
	// The probes bypass the cache: the key was never cached.
	master.down.Store(false)
	if _, err := m.Primary(ctx, "a"); err != nil || master.unwraps.Load() != 3 {
		t.Errorf("Primary: %v after %d unwraps, want 3", err, master.unwraps.Load())
	}
	m.Close()
	if err := m.CheckStore(ctx); !errors.Is(err, keys.ErrClosed) {
		t.Errorf("CheckStore after Close: %v", err)
	}
}

// unwrapLog records what the Manager tells its UnwrapObserver.
type unwrapLog struct {
	calls []string
}

func (u *unwrapLog) KeyUnwrapped(name string, version uint32, master string, _ time.Duration, err error) {
	u.calls = append(u.calls, fmt.Sprintf("%s/%d/%s/%v", name, version, master, err != nil))
}

func TestUnwrapObserver(t *testing.T) {
	obs := &unwrapLog{}
	master := newFakeMaster(t, "m1")
	m := newManager(t, keys.Options{Store: openStore(t), Master: master, Unwrapped: obs})
	if _, err := m.Init(ctx, []keys.Spec{{Name: "a", Algorithm: crypto.AlgorithmAESSIV}}); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if _, err := m.Primary(ctx, "a"); err != nil {
			t.Fatal(err)
		}
	}
	master.down.Store(true)
	_ = m.CheckMaster(ctx)
	if want := []string{"a/1/m1/false", "a/1/m1/true"}; !slices.Equal(obs.calls, want) {
		t.Errorf("observed %q, want %q (one per master key call)", obs.calls, want)
	}
}
