package keys_test

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"go.uber.org/goleak"

	"github.com/dbproxy/dbproxy/crypto"
	"github.com/dbproxy/dbproxy/crypto/keys"
	"github.com/dbproxy/dbproxy/crypto/keystore"
	"github.com/dbproxy/dbproxy/crypto/kms"
	"github.com/dbproxy/dbproxy/value"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestNewValidates(t *testing.T) {
	store := openStore(t)
	master := newFakeMaster(t, "m1")
	tests := []struct {
		name string
		opts keys.Options
	}{
		{"no store", keys.Options{Master: master}},
		{"no master", keys.Options{Store: store}},
		{"empty master id", keys.Options{Store: store, Master: &fakeMaster{}}},
		{"negative size", keys.Options{Store: store, Master: master, MaxEntries: -1}},
		{"negative ttl", keys.Options{Store: store, Master: master, TTL: -time.Second}},
		{"nil previous", keys.Options{Store: store, Master: master, Previous: []kms.MasterKey{nil}}},
		{"duplicate id", keys.Options{Store: store, Master: master, Previous: []kms.MasterKey{newFakeMaster(t, "m1")}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if m, err := keys.New(tt.opts); err == nil {
				m.Close()
				t.Fatal("New succeeded")
			}
		})
	}
}

func TestInit(t *testing.T) {
	store := openStore(t)
	master := newFakeMaster(t, "m1")
	now := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	m := newManager(t, keys.Options{Store: store, Master: master, Now: func() time.Time { return now }})
	specs := []keys.Spec{
		{Name: "public.users.email", Algorithm: crypto.AlgorithmAESSIV},
		{Name: "public.users.ssn", Algorithm: crypto.AlgorithmXAESGCM},
		{Name: "public.users.email", Algorithm: crypto.AlgorithmAESSIV}, // shared key
	}
	created, err := m.Init(ctx, specs)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"public.users.email", "public.users.ssn"}; !slices.Equal(created, want) {
		t.Fatalf("first Init created %q, want %q", created, want)
	}
	created, err = m.Init(ctx, specs)
	if err != nil || len(created) != 0 {
		t.Fatalf("second Init = %q, %v; want nothing created", created, err)
	}
	if n := master.generates.Load(); n != 2 {
		t.Fatalf("GenerateDataKey called %d times, want 2", n)
	}
	infos, err := m.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := []keys.KeyInfo{
		{Name: "public.users.email", Version: 1, Algorithm: crypto.AlgorithmAESSIV, Primary: true, CreatedAt: now, MasterKeyID: "m1"},
		{Name: "public.users.ssn", Version: 1, Algorithm: crypto.AlgorithmXAESGCM, Primary: true, CreatedAt: now, MasterKeyID: "m1"},
	}
	if len(infos) != len(want) {
		t.Fatalf("List = %+v, want %+v", infos, want)
	}
	for i := range want {
		if got := infos[i]; got.Name != want[i].Name || got.Version != want[i].Version || got.Algorithm != want[i].Algorithm ||
			got.Primary != want[i].Primary || !got.CreatedAt.Equal(want[i].CreatedAt) || got.MasterKeyID != want[i].MasterKeyID {
			t.Errorf("List[%d] = %+v, want %+v", i, got, want[i])
		}
	}
	for _, s := range specs {
		k, err := m.Primary(ctx, s.Name)
		if err != nil {
			t.Fatal(err)
		}
		if k.Name() != s.Name || k.Version() != 1 || k.Algorithm() != s.Algorithm {
			t.Errorf("Primary(%q) = %q v%d %s", s.Name, k.Name(), k.Version(), k.Algorithm())
		}
		mustDecrypt(t, m, s.Name, encrypt(t, k, "alice@example.com"), "alice@example.com")
	}
}

func TestInitRejects(t *testing.T) {
	tests := []struct {
		name    string
		specs   []keys.Spec
		wantErr string
	}{
		{"algorithm differs from existing key", []keys.Spec{
			{Name: "b", Algorithm: crypto.AlgorithmAESGCM},
			{Name: "a", Algorithm: crypto.AlgorithmAESSIV},
		}, `data key "a" version 1 exists with algorithm AES-256-GCM, but the configuration needs AES-256-SIV`},
		{"conflicting specs", []keys.Spec{
			{Name: "b", Algorithm: crypto.AlgorithmAESGCM},
			{Name: "b", Algorithm: crypto.AlgorithmAESSIV},
		}, `"b"`},
		{"invalid algorithm", []keys.Spec{{Name: "b"}}, `"b"`},
		{"empty name", []keys.Spec{{Algorithm: crypto.AlgorithmAESGCM}}, "empty key name"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			store := openStore(t)
			master := newFakeMaster(t, "m1")
			m := newManager(t, keys.Options{Store: store, Master: master})
			mustInit(t, m, []keys.Spec{{Name: "a", Algorithm: crypto.AlgorithmAESGCM}})
			created, err := m.Init(ctx, tt.specs)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Init = %q, %v; want error containing %s", created, err, tt.wantErr)
			}
			if recs, _ := store.Get(ctx, "b"); len(recs) != 0 || len(created) != 0 {
				t.Fatalf("a rejected Init created %q (store has %d versions of b)", created, len(recs))
			}
		})
	}
}

func TestInitRace(t *testing.T) {
	tests := []struct {
		name   string
		winner crypto.Algorithm
		ok     bool
	}{
		{"winner agrees", crypto.AlgorithmAESGCM, true},
		{"winner disagrees", crypto.AlgorithmAESSIV, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "keys.json")
			master := newFakeMaster(t, "m1")
			other := newManager(t, keys.Options{Store: openStoreAt(t, path), Master: master})
			mustInit(t, other, []keys.Spec{{Name: "a", Algorithm: tt.winner}})
			k := mustPrimary(t, other, "a")
			ct := encrypt(t, k, "winner")

			racing := &racingStore{Store: openStoreAt(t, path), name: "a"}
			racing.hide.Store(1)
			m := newManager(t, keys.Options{Store: racing, Master: master})
			created, err := m.Init(ctx, []keys.Spec{{Name: "a", Algorithm: crypto.AlgorithmAESGCM}})
			if len(created) != 0 {
				t.Fatalf("Init created %q although another process won", created)
			}
			if !tt.ok {
				if err == nil || !strings.Contains(err.Error(), `"a"`) {
					t.Fatalf("Init = %v; want an algorithm conflict naming the key", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			mustDecrypt(t, m, "a", ct, "winner")
			if recs, _ := racing.Store.Get(ctx, "a"); len(recs) != 1 {
				t.Fatalf("store has %d versions, want 1", len(recs))
			}
		})
	}
}

// TestRotate: a new version keeps the algorithm of the newest one, except
// that legacy AES-256-GCM becomes XAES-256-GCM; the old version still
// decrypts its own ciphertexts.
func TestRotate(t *testing.T) {
	tests := []struct{ from, to crypto.Algorithm }{
		{crypto.AlgorithmAESGCM, crypto.AlgorithmXAESGCM},
		{crypto.AlgorithmXAESGCM, crypto.AlgorithmXAESGCM},
		{crypto.AlgorithmAESSIV, crypto.AlgorithmAESSIV},
	}
	for _, tt := range tests {
		alg := tt.to
		t.Run(tt.from.String(), func(t *testing.T) {
			master := newFakeMaster(t, "m1")
			m := newManager(t, keys.Options{Store: openStore(t), Master: master})
			mustInit(t, m, []keys.Spec{{Name: "a", Algorithm: tt.from}})
			k1 := mustPrimary(t, m, "a")
			ct1 := encrypt(t, k1, "one")

			r, err := m.Rotate(ctx, "a")
			if err != nil {
				t.Fatal(err)
			}
			if r.Name != "a" || r.Version != 2 || r.Algorithm != alg || r.MasterKeyID != "m1" {
				t.Fatalf("Rotate = %+v", r)
			}
			k2 := mustPrimary(t, m, "a")
			if k2.Version() != 2 || k2.Algorithm() != alg {
				t.Fatalf("Primary after Rotate = v%d %s, want v2 %s", k2.Version(), k2.Algorithm(), alg)
			}
			ct2 := encrypt(t, k2, "two")
			mustDecrypt(t, m, "a", ct1, "one")
			mustDecrypt(t, m, "a", ct2, "two")

			live, err := m.Live(ctx, "a")
			if err != nil {
				t.Fatal(err)
			}
			if got := versions(live); !slices.Equal(got, []uint32{2, 1}) {
				t.Fatalf("Live versions = %v, want [2 1]", got)
			}
			if live[0] != k2 || live[1] != k1 {
				t.Fatal("Live did not return the cached keys")
			}
			if got := master.refs(); !slices.Equal(got, []kms.KeyRef{{Name: "a", Version: 1}, {Name: "a", Version: 2}}) {
				t.Fatalf("Unwrap refs = %v", got)
			}

			infos, err := m.List(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if len(infos) != 2 || infos[0].Version != 1 || infos[0].Primary || infos[1].Version != 2 || !infos[1].Primary ||
				infos[0].Algorithm != tt.from || infos[1].Algorithm != tt.to {
				t.Fatalf("List = %+v", infos)
			}
			if k1.Algorithm() != tt.from || ct1[1] != byte(tt.from) || ct2[1] != byte(tt.to) {
				t.Fatalf("v1 is %s writing 0x%02x, v2 writes 0x%02x; want %s then %s", k1.Algorithm(), ct1[1], ct2[1], tt.from, tt.to)
			}
			// The configuration still asks for the current algorithm of
			// the kind: a mixed key satisfies it, and nothing is created.
			spec := keys.Spec{Name: "a", Algorithm: tt.to}
			if created, err := m.Init(ctx, []keys.Spec{spec}); err != nil || len(created) != 0 {
				t.Fatalf("Init over a rotated key = %q, %v", created, err)
			}
		})
	}
}

// TestInitKinds: existing versions satisfy a spec of the same kind
// (randomized: AES-256-GCM or XAES-256-GCM; deterministic: AES-256-SIV)
// and conflict with the other kind, whichever algorithm the spec names.
func TestInitKinds(t *testing.T) {
	gcm, xaes, siv := crypto.AlgorithmAESGCM, crypto.AlgorithmXAESGCM, crypto.AlgorithmAESSIV
	tests := []struct {
		existing, spec crypto.Algorithm
		ok             bool
	}{
		{gcm, xaes, true},
		{xaes, gcm, true},
		{gcm, gcm, true},
		{xaes, xaes, true},
		{siv, siv, true},
		{gcm, siv, false},
		{xaes, siv, false},
		{siv, xaes, false},
		{siv, gcm, false},
	}
	for _, tt := range tests {
		t.Run(tt.existing.String()+"/"+tt.spec.String(), func(t *testing.T) {
			m := newManager(t, keys.Options{Store: openStore(t), Master: newFakeMaster(t, "m1")})
			mustInit(t, m, []keys.Spec{{Name: "a", Algorithm: tt.existing}})
			created, err := m.Init(ctx, []keys.Spec{{Name: "a", Algorithm: tt.spec}, {Name: "b", Algorithm: tt.spec}})
			if tt.ok {
				if err != nil || !slices.Equal(created, []string{"b"}) {
					t.Fatalf("Init = %q, %v; want b created", created, err)
				}
				return
			}
			want := fmt.Sprintf(`data key "a" version 1 exists with algorithm %s, but the configuration needs %s`, tt.existing, tt.spec)
			if err == nil || !strings.Contains(err.Error(), want) || len(created) != 0 {
				t.Fatalf("Init = %q, %v; want nothing created and %q", created, err, want)
			}
		})
	}
}

func TestRotateErrors(t *testing.T) {
	t.Run("unknown key", func(t *testing.T) {
		m := newManager(t, keys.Options{Store: openStore(t), Master: newFakeMaster(t, "m1")})
		_, err := m.Rotate(ctx, "nope")
		if !errors.Is(err, keys.ErrNotFound) || !strings.Contains(err.Error(), `"nope"`) {
			t.Fatalf("Rotate(nope) = %v", err)
		}
	})
	t.Run("concurrent rotation", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "keys.json")
		master := newFakeMaster(t, "m1")
		other := newManager(t, keys.Options{Store: openStoreAt(t, path), Master: master})
		mustInit(t, other, []keys.Spec{{Name: "a", Algorithm: crypto.AlgorithmAESGCM}})
		if _, err := other.Rotate(ctx, "a"); err != nil {
			t.Fatal(err)
		}
		racing := &racingStore{Store: openStoreAt(t, path), name: "a"}
		racing.hide.Store(1) // our read misses the other process's v2
		m := newManager(t, keys.Options{Store: racing, Master: master})
		_, err := m.Rotate(ctx, "a")
		if !errors.Is(err, keystore.ErrExists) || !strings.Contains(err.Error(), `"a"`) || !strings.Contains(err.Error(), "concurrently") {
			t.Fatalf("Rotate = %v; want a concurrent-rotation error wrapping keystore.ErrExists", err)
		}
	})
}

func TestUnknownKeys(t *testing.T) {
	m := newManager(t, keys.Options{Store: openStore(t), Master: newFakeMaster(t, "m1")})
	mustInit(t, m, []keys.Spec{{Name: "a", Algorithm: crypto.AlgorithmAESGCM}})
	k := mustPrimary(t, m, "a")
	ct := encrypt(t, k, "x")
	bogus := slices.Clone(ct)
	bogus[5] = 9 // key version 9

	tests := []struct {
		name    string
		call    func() error
		wantErr string
		is      error
	}{
		{"Primary unknown name", func() error { _, err := m.Primary(ctx, "public.users.email"); return err },
			`data key "public.users.email" not found; run dbproxy keys init`, keys.ErrNotFound},
		{"Version unknown name", func() error { _, err := m.Version(ctx, "b", 1); return err }, `data key "b" not found`, keys.ErrNotFound},
		{"Live unknown name", func() error { _, err := m.Live(ctx, "b"); return err }, `data key "b" not found`, keys.ErrNotFound},
		{"Version unknown version", func() error { _, err := m.Version(ctx, "a", 9); return err }, `data key "a" version 9 not found`, keys.ErrNotFound},
		{"Decrypt unknown version", func() error { _, _, err := m.Decrypt(ctx, "a", nil, bogus); return err }, `data key "a" version 9 not found`, keys.ErrNotFound},
		{"Decrypt under another key", func() error { _, _, err := m.Decrypt(ctx, "b", nil, ct); return err }, `data key "b" not found`, keys.ErrNotFound},
		{"Decrypt short input", func() error { _, _, err := m.Decrypt(ctx, "a", nil, []byte{1, 1}); return err }, `data key "a"`, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.call()
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v; want one containing %q", err, tt.wantErr)
			}
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Fatalf("err = %v; want errors.Is %v", err, tt.is)
			}
		})
	}
}

func TestDecryptRejectsTampering(t *testing.T) {
	m := newManager(t, keys.Options{Store: openStore(t), Master: newFakeMaster(t, "m1")})
	mustInit(t, m, []keys.Spec{{Name: "a", Algorithm: crypto.AlgorithmAESGCM}, {Name: "b", Algorithm: crypto.AlgorithmAESGCM}})
	k := mustPrimary(t, m, "a")
	ct := encrypt(t, k, "secret")
	flipped := slices.Clone(ct)
	flipped[len(flipped)-1] ^= 1
	for name, c := range map[string]struct {
		key string
		ct  []byte
	}{"flipped bit": {"a", flipped}, "other key name": {"b", ct}} {
		t.Run(name, func(t *testing.T) {
			if _, _, err := m.Decrypt(ctx, c.key, nil, c.ct); !errors.Is(err, crypto.ErrDecrypt) {
				t.Fatalf("Decrypt = %v, want crypto.ErrDecrypt", err)
			}
		})
	}
}

func TestSingleflight(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		master, m := gatedManager(t)
		release := sync.OnceFunc(func() { close(master.gate) })
		defer release()
		const n = 50
		got := make([]*crypto.Key, n)
		errs := make([]error, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() { got[i], errs[i] = m.Primary(ctx, "a") })
		}
		synctest.Wait() // every goroutine is now blocked: one in Unwrap, 49 waiting for it
		if c := master.unwraps.Load(); c != 1 {
			t.Fatalf("%d Unwrap calls in flight, want 1", c)
		}
		release()
		wg.Wait()
		for i := range n {
			if errs[i] != nil {
				t.Fatalf("Primary #%d: %v", i, errs[i])
			}
			if got[i] != got[0] {
				t.Fatalf("Primary #%d returned another key instance", i)
			}
		}
		if c := master.unwraps.Load(); c != 1 {
			t.Fatalf("%d Unwrap calls, want 1", c)
		}
	})
}

func TestSingleflightCallerCancel(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		master, m := gatedManager(t)
		cctx, cancel := context.WithCancel(ctx)
		var firstErr, secondErr error
		var wg sync.WaitGroup
		wg.Go(func() { _, firstErr = m.Primary(cctx, "a") })
		synctest.Wait()
		wg.Go(func() { _, secondErr = m.Primary(ctx, "a") })
		synctest.Wait()
		cancel() // the caller that started the unwrap gives up
		synctest.Wait()
		close(master.gate)
		wg.Wait()
		if !errors.Is(firstErr, context.Canceled) {
			t.Fatalf("cancelled caller: %v", firstErr)
		}
		if secondErr != nil {
			t.Fatalf("the other caller failed with the first one's cancellation: %v", secondErr)
		}
		if c := master.unwraps.Load(); c != 1 {
			t.Fatalf("%d Unwrap calls, want 1", c)
		}
	})
}

func TestTTLFailClosed(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const ttl = 10 * time.Minute
		master := newFakeMaster(t, "m1")
		m := newManager(t, keys.Options{Store: openStore(t), Master: master, TTL: ttl})
		mustInit(t, m, []keys.Spec{{Name: "a", Algorithm: crypto.AlgorithmAESGCM}})
		k := mustPrimary(t, m, "a")
		ct := encrypt(t, k, "v")
		master.down.Store(true)

		time.Sleep(ttl - time.Second)
		synctest.Wait()
		if k2, err := m.Primary(ctx, "a"); err != nil || k2 != k {
			t.Fatalf("before TTL: Primary = %v, %v; want the cached key", k2, err)
		}
		mustDecrypt(t, m, "a", ct, "v")
		if _, err := m.Live(ctx, "a"); err != nil {
			t.Fatalf("before TTL: Live: %v", err)
		}

		time.Sleep(time.Second)
		synctest.Wait()
		mustBeDestroyed(t, k, "key held past its TTL")
		calls := map[string]func() error{
			"Primary": func() error {
				k, err := m.Primary(ctx, "a")
				if k != nil {
					t.Error("Primary returned a key with an error")
				}
				return err
			},
			"Version": func() error { _, err := m.Version(ctx, "a", 1); return err },
			"Live":    func() error { _, err := m.Live(ctx, "a"); return err },
			"Decrypt": func() error { _, _, err := m.Decrypt(ctx, "a", nil, ct); return err },
		}
		for name, call := range calls {
			err := call()
			if !errors.Is(err, keys.ErrUnavailable) || !errors.Is(err, kms.ErrUnreachable) {
				t.Fatalf("after TTL, master down: %s = %v; want ErrUnavailable wrapping the provider error", name, err)
			}
			if msg := err.Error(); !strings.Contains(msg, `"a" v1`) || !strings.Contains(msg, "connection refused") {
				t.Fatalf("after TTL: %s error %q does not name the key version and the provider error", name, msg)
			}
		}

		master.down.Store(false)
		k3 := mustPrimary(t, m, "a")
		if k3 == k {
			t.Fatal("got the destroyed key back")
		}
		mustDecrypt(t, m, "a", ct, "v")
	})
}

// TestRotationSeenByOtherProcess: managers share a store; a rotation by
// one is seen by the others within the TTL, and they decrypt the new
// version's ciphertexts at once.
func TestRotationSeenByOtherProcess(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const ttl = 10 * time.Minute
		path := filepath.Join(t.TempDir(), "keys.json")
		master := newFakeMaster(t, "m1")
		reader := newManager(t, keys.Options{Store: openStoreAt(t, path), Master: master, TTL: ttl})
		writer := newManager(t, keys.Options{Store: openStoreAt(t, path), Master: master, TTL: ttl})
		rotator := newManager(t, keys.Options{Store: openStoreAt(t, path), Master: master, TTL: ttl})
		mustInit(t, rotator, []keys.Spec{{Name: "a", Algorithm: crypto.AlgorithmAESGCM}})
		for _, m := range []*keys.Manager{reader, writer} {
			if k, err := m.Primary(ctx, "a"); err != nil || k.Version() != 1 {
				t.Fatalf("Primary = %v, %v", k, err)
			}
		}
		time.Sleep(time.Minute)
		if _, err := rotator.Rotate(ctx, "a"); err != nil {
			t.Fatal(err)
		}
		k2 := mustPrimary(t, rotator, "a")
		mustDecrypt(t, reader, "a", encrypt(t, k2, "new"), "new")

		time.Sleep(ttl - time.Minute)
		synctest.Wait() // let the expiry timers due now run
		k, err := writer.Primary(ctx, "a")
		if err != nil || k.Version() != 2 {
			t.Fatalf("after TTL: Primary = %v, %v; want version 2", k, err)
		}
	})
}

func TestEvictionDestroysKey(t *testing.T) {
	master := newFakeMaster(t, "m1")
	m := newManager(t, keys.Options{Store: openStore(t), Master: master, MaxEntries: 1})
	mustInit(t, m, []keys.Spec{{Name: "a", Algorithm: crypto.AlgorithmAESGCM}, {Name: "b", Algorithm: crypto.AlgorithmAESSIV}})
	ka := mustPrimary(t, m, "a")
	ct := encrypt(t, ka, "held")
	if _, err := m.Primary(ctx, "b"); err != nil { // evicts a
		t.Fatal(err)
	}
	if n := keys.CacheLen(m); n != 1 {
		t.Fatalf("cache holds %d keys, want 1", n)
	}
	mustBeDestroyed(t, ka, "evicted key")
	if _, _, err := ka.Decrypt(nil, ct); !errors.Is(err, crypto.ErrKeyDestroyed) {
		t.Fatalf("evicted key: Decrypt = %v, want ErrKeyDestroyed", err)
	}
	mustDecrypt(t, m, "a", ct, "held")
	if n := master.unwraps.Load(); n != 3 {
		t.Fatalf("%d Unwrap calls, want 3 (a, b, a again)", n)
	}
}

func TestDecryptRetriesAfterEviction(t *testing.T) {
	tests := []struct {
		name      string
		evictions int // how many Decrypt attempts see their key evicted
		wantErr   error
	}{
		{"evicted once", 1, nil},
		{"evicted every time", 1000, crypto.ErrKeyDestroyed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			master := newFakeMaster(t, "m1")
			m := newManager(t, keys.Options{Store: openStore(t), Master: master, MaxEntries: 1})
			mustInit(t, m, []keys.Spec{{Name: "a", Algorithm: crypto.AlgorithmAESGCM}, {Name: "b", Algorithm: crypto.AlgorithmAESGCM}})
			k := mustPrimary(t, m, "a")
			ct := encrypt(t, k, "retry")
			calls := 0
			keys.SetBeforeDecrypt(m, func() {
				calls++
				if calls <= tt.evictions {
					if _, err := m.Primary(ctx, "b"); err != nil { // evicts a (cache of 1)
						t.Error(err)
					}
				}
			})
			pt, _, err := m.Decrypt(ctx, "a", nil, ct)
			if tt.wantErr == nil {
				if err != nil || string(pt) != "retry" {
					t.Fatalf("Decrypt = %q, %v", pt, err)
				}
			} else if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Decrypt = %v, want %v", err, tt.wantErr)
			}
			if calls != 2 {
				t.Fatalf("Decrypt looked the key up %d times, want 2 (one retry)", calls)
			}
		})
	}
}

func TestRewrap(t *testing.T) {
	logger, logs := testLogger(slog.LevelDebug)
	path := filepath.Join(t.TempDir(), "keys.json")
	oldMaster := newFakeMaster(t, "old")
	newMaster := newFakeMaster(t, "new")

	m1 := newManager(t, keys.Options{Store: openStoreAt(t, path), Master: oldMaster, Logger: logger})
	mustInit(t, m1, []keys.Spec{{Name: "a", Algorithm: crypto.AlgorithmAESGCM}, {Name: "b", Algorithm: crypto.AlgorithmAESSIV}})
	if _, err := m1.Rotate(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	cts := map[string][]byte{}
	for _, name := range []string{"a", "b"} {
		live, err := m1.Live(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range live {
			cts[fmt.Sprintf("%s v%d", name, k.Version())] = encrypt(t, k, name)
		}
	}

	// Without the old master key configured, rewrap cannot read the keys.
	lost := newManager(t, keys.Options{Store: openStoreAt(t, path), Master: newMaster, Logger: logger})
	if n, err := lost.Rewrap(ctx); n != 0 || !errors.Is(err, keys.ErrUnavailable) || !strings.Contains(err.Error(), `"old"`) {
		t.Fatalf("Rewrap without the old master key = %d, %v", n, err)
	}

	m2 := newManager(t, keys.Options{Store: openStoreAt(t, path), Master: newMaster, Previous: []kms.MasterKey{oldMaster}, Logger: logger})
	held := mustPrimary(t, m2, "a")
	n, err := m2.Rewrap(ctx)
	if err != nil || n != 3 {
		t.Fatalf("Rewrap = %d, %v; want 3", n, err)
	}
	infos, err := m2.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, info := range infos {
		if info.MasterKeyID != "new" {
			t.Errorf("after Rewrap %s v%d is wrapped by %q", info.Name, info.Version, info.MasterKeyID)
		}
	}
	if n, err := m2.Rewrap(ctx); n != 0 || err != nil {
		t.Fatalf("second Rewrap = %d, %v; want 0", n, err)
	}
	if n, err := m2.Rewrap(ctx, keys.RewrapAll()); n != 3 || err != nil {
		t.Fatalf("Rewrap(RewrapAll) = %d, %v; want 3", n, err)
	}
	if k, err := m2.Primary(ctx, "a"); err != nil || k != held {
		t.Fatalf("Rewrap changed the cached key: %v", err)
	}

	// A manager that only knows the new master key reads all old data.
	m3 := newManager(t, keys.Options{Store: openStoreAt(t, path), Master: newMaster, Logger: logger})
	for label, ct := range cts {
		mustDecrypt(t, m3, strings.Fields(label)[0], ct, strings.Fields(label)[0])
	}
	if oldMaster.unwraps.Load() == 0 || newMaster.wraps.Load() != 6 {
		t.Fatalf("old master unwraps %d, new master wraps %d", oldMaster.unwraps.Load(), newMaster.wraps.Load())
	}
	if !strings.Contains(logs.String(), "rewrapped data key") {
		t.Fatal("rewrap was not logged")
	}
	if oldMaster.leaked(logs.String()) || newMaster.leaked(logs.String()) {
		t.Fatal("key material in the log")
	}
}

func TestListHasNoKeyMaterial(t *testing.T) {
	var check func(path string, typ reflect.Type)
	check = func(path string, typ reflect.Type) {
		switch typ.Kind() {
		case reflect.Slice, reflect.Array, reflect.Pointer, reflect.Interface, reflect.Map, reflect.Chan, reflect.Func, reflect.UnsafePointer, reflect.Uintptr:
			t.Errorf("%s is a %s: KeyInfo must hold plain values only", path, typ)
		case reflect.Struct:
			if typ == reflect.TypeFor[time.Time]() {
				return
			}
			for i := range typ.NumField() {
				f := typ.Field(i)
				check(path+"."+f.Name, f.Type)
			}
		}
	}
	check("KeyInfo", reflect.TypeFor[keys.KeyInfo]())

	master := newFakeMaster(t, "m1")
	m := newManager(t, keys.Options{Store: openStore(t), Master: master})
	mustInit(t, m, []keys.Spec{{Name: "a", Algorithm: crypto.AlgorithmAESSIV}})
	infos, err := m.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if s := fmt.Sprintf("%+v %#v", infos, infos); master.leaked(s) {
		t.Fatalf("List output holds key material: %s", s)
	}
}

func TestGCMLimit(t *testing.T) {
	m, logs := loggingManager(t, slog.LevelInfo)
	mustInit(t, m, []keys.Spec{{Name: "g", Algorithm: crypto.AlgorithmAESGCM}, {Name: "s", Algorithm: crypto.AlgorithmAESSIV}})

	keys.SetEncryptions(m, "g", 1, keys.GCMWarnAt-1)
	if _, err := m.Primary(ctx, "g"); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(logs.String(), "encryption limit") {
		t.Fatalf("warned below 2^31: %s", logs)
	}

	keys.SetEncryptions(m, "g", 1, keys.GCMWarnAt)
	for range 3 {
		if _, err := m.Primary(ctx, "g"); err != nil {
			t.Fatalf("Primary past 2^31: %v", err)
		}
	}
	if got := strings.Count(logs.String(), "encryption limit"); got != 1 || !strings.Contains(logs.String(), "key=g version=1") {
		t.Fatalf("want one limit warning naming the key version, got: %s", logs)
	}

	keys.SetEncryptions(m, "g", 1, keys.GCMLimit)
	_, err := m.Primary(ctx, "g")
	if !errors.Is(err, crypto.ErrKeyExhausted) || !strings.Contains(err.Error(), "dbproxy keys rotate g") {
		t.Fatalf("Primary at the limit = %v; want crypto.ErrKeyExhausted asking to rotate", err)
	}
	if _, err := m.Version(ctx, "g", 1); err != nil {
		t.Fatalf("Version (decryption) at the limit: %v", err)
	}
	if _, err := m.Rotate(ctx, "g"); err != nil {
		t.Fatal(err)
	}
	if k, err := m.Primary(ctx, "g"); err != nil || k.Version() != 2 {
		t.Fatalf("after rotation: Primary = %v, %v", k, err)
	}

	if k, err := m.Primary(ctx, "g"); err != nil || k.Algorithm() != crypto.AlgorithmXAESGCM {
		t.Fatalf("rotation of a legacy AES-256-GCM key gave %v, %v; want XAES-256-GCM", k, err)
	}
	keys.SetEncryptions(m, "g", 2, keys.GCMLimit) // XAES-256-GCM has no per-key limit

	keys.SetEncryptions(m, "s", 1, keys.GCMLimit) // SIV has no nonce limit
	if _, err := m.Primary(ctx, "s"); err != nil {
		t.Fatalf("SIV Primary: %v", err)
	}
	if _, err := m.Primary(ctx, "g"); err != nil {
		t.Fatalf("XAES Primary: %v", err)
	}
	for _, line := range strings.Split(logs.String(), "\n") {
		if strings.Contains(line, "level=WARN") && (strings.Contains(line, "key=g version=2") || strings.Contains(line, "key=s")) {
			t.Fatalf("warned about a key version without a nonce limit: %s", line)
		}
	}
}

// TestLegacyWarning: handing out a legacy AES-256-GCM primary logs one
// warning per Manager and version asking to rotate, however often and
// through however many cache reloads; XAES-256-GCM and AES-256-SIV
// primaries log nothing.
func TestLegacyWarning(t *testing.T) {
	m, logs := loggingManager(t, slog.LevelWarn)
	specs := []keys.Spec{{Name: "g", Algorithm: crypto.AlgorithmAESGCM}, {Name: "x", Algorithm: crypto.AlgorithmXAESGCM}, {Name: "s", Algorithm: crypto.AlgorithmAESSIV}}
	mustInit(t, m, specs)
	for i := range 3 {
		for _, s := range specs {
			if _, err := m.Primary(ctx, s.Name); err != nil {
				t.Fatal(err)
			}
		}
		if i == 1 {
			keys.SetEncryptions(m, "g", 1, 0) // a cache reload of the version
		}
	}
	out := logs.String()
	if got := strings.Count(out, "level=WARN"); got != 1 ||
		!strings.Contains(out, "legacy AES-256-GCM") || !strings.Contains(out, "dbproxy keys rotate") || !strings.Contains(out, "key=g version=1") {
		t.Fatalf("want one warning for g v1 asking to rotate, got:\n%s", out)
	}
	if _, err := m.Rotate(ctx, "g"); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Primary(ctx, "g"); err != nil {
		t.Fatal(err)
	}
	if got := strings.Count(logs.String(), "level=WARN"); got != 1 {
		t.Fatalf("warned after rotating to XAES-256-GCM:\n%s", logs)
	}
}

func TestClose(t *testing.T) {
	m, err := keys.New(keys.Options{Store: openStore(t), Master: newFakeMaster(t, "m1")})
	if err != nil {
		t.Fatal(err)
	}
	mustInit(t, m, []keys.Spec{{Name: "a", Algorithm: crypto.AlgorithmAESGCM}})
	k := mustPrimary(t, m, "a")
	m.Close()
	mustBeDestroyed(t, k, "after Close")
	if _, err := m.Primary(ctx, "a"); !errors.Is(err, keys.ErrClosed) {
		t.Fatalf("after Close: Primary = %v", err)
	}
	if _, err := m.Init(ctx, nil); !errors.Is(err, keys.ErrClosed) {
		t.Fatalf("after Close: Init = %v", err)
	}
	m.Close() // idempotent
}

// TestLocalMasterKey runs the lifecycle against the real local provider.
func TestLocalMasterKey(t *testing.T) {
	newLocal := func() *kms.Local {
		k := make([]byte, 32)
		rand.Read(k)
		l, err := kms.NewLocal(k)
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	path := filepath.Join(t.TempDir(), "keys.json")
	oldMaster, newMaster := newLocal(), newLocal()
	m1 := newManager(t, keys.Options{Store: openStoreAt(t, path), Master: oldMaster})
	mustInit(t, m1, []keys.Spec{{Name: "a", Algorithm: crypto.AlgorithmAESSIV}})
	k := mustPrimary(t, m1, "a")
	ct := encrypt(t, k, "local")
	m2 := newManager(t, keys.Options{Store: openStoreAt(t, path), Master: newMaster, Previous: []kms.MasterKey{oldMaster}})
	if n, err := m2.Rewrap(ctx); n != 1 || err != nil {
		t.Fatalf("Rewrap = %d, %v", n, err)
	}
	m3 := newManager(t, keys.Options{Store: openStoreAt(t, path), Master: newMaster})
	mustDecrypt(t, m3, "a", ct, "local")
}

func BenchmarkPrimary(b *testing.B) {
	m := newManager(b, keys.Options{Store: openStore(b), Master: newFakeMaster(b, "m1"), TTL: time.Hour})
	mustInit(b, m, []keys.Spec{{Name: "public.users.email", Algorithm: crypto.AlgorithmAESGCM}})
	if _, err := m.Primary(ctx, "public.users.email"); err != nil {
		b.Fatal(err)
	}
	b.Run("serial", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := m.Primary(ctx, "public.users.email"); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := m.Primary(ctx, "public.users.email"); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
}

// benchManager returns a Manager with one AES-GCM key "r" and one AES-SIV key
// "d" (two versions), all unwrapped and cached.
func benchManager(b *testing.B) *keys.Manager {
	b.Helper()
	m := newManager(b, keys.Options{Store: openStore(b), Master: newFakeMaster(b, "m1"), TTL: time.Hour})
	mustInit(b, m, []keys.Spec{{Name: "r", Algorithm: crypto.AlgorithmAESGCM}, {Name: "d", Algorithm: crypto.AlgorithmAESSIV}})
	if _, err := m.Rotate(ctx, "d"); err != nil {
		b.Fatal(err)
	}
	if _, err := m.Live(ctx, "d"); err != nil {
		b.Fatal(err)
	}
	if _, err := m.Primary(ctx, "r"); err != nil {
		b.Fatal(err)
	}
	return m
}

// benchSerialParallel runs f serially and under b.RunParallel, handing it
// a scratch buffer of its goroutine.
func benchSerialParallel(b *testing.B, f func(buf []byte) error) {
	b.Run("serial", func(b *testing.B) {
		b.ReportAllocs()
		buf := make([]byte, 0, 256)
		for b.Loop() {
			if err := f(buf); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			buf := make([]byte, 0, 256)
			for pb.Next() {
				if err := f(buf); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
}

func BenchmarkVersion(b *testing.B) {
	m := benchManager(b)
	benchSerialParallel(b, func([]byte) error { _, err := m.Version(ctx, "d", 1); return err })
}

func BenchmarkLive(b *testing.B) {
	m := benchManager(b)
	b.Run("Live", func(b *testing.B) {
		benchSerialParallel(b, func([]byte) error { _, err := m.Live(ctx, "d"); return err })
	})
	b.Run("LiveCount", func(b *testing.B) {
		benchSerialParallel(b, func([]byte) error { _, err := m.LiveCount(ctx, "d"); return err })
	})
	b.Run("AppendLive", func(b *testing.B) {
		pool := sync.Pool{New: func() any { return new([4]*crypto.Key) }}
		benchSerialParallel(b, func([]byte) error {
			ks := pool.Get().(*[4]*crypto.Key)
			_, err := m.AppendLive(ctx, ks[:0], "d")
			pool.Put(ks)
			return err
		})
	})
}

func BenchmarkDecrypt(b *testing.B) {
	m := benchManager(b)
	k := mustPrimary(b, m, "r")
	ct, err := k.Encrypt(nil, make([]byte, 16), value.TypeBytes)
	if err != nil {
		b.Fatal(err)
	}
	benchSerialParallel(b, func(buf []byte) error {
		_, _, err := m.Decrypt(ctx, "r", buf, ct)
		return err
	})
}

// TestLockFreeHitSkipsRemovedEntry: a key removed from the cache without a
// new insertion (TTL expiry, or here a forced removal) is never handed out
// again by the lock-free hit path.
func TestLockFreeHitSkipsRemovedEntry(t *testing.T) {
	master := newFakeMaster(t, "m1")
	m := newManager(t, keys.Options{Store: openStore(t), Master: master})
	mustInit(t, m, []keys.Spec{{Name: "a", Algorithm: crypto.AlgorithmAESSIV}})
	k1 := mustPrimary(t, m, "a")
	for range 3 { // warm the lock-free path
		if k, err := m.Version(ctx, "a", 1); err != nil || k != k1 {
			t.Fatalf("Version = %v, %v; want the cached key", k, err)
		}
	}
	keys.SetEncryptions(m, "a", 1, 0) // drops (and destroys) the cached instance
	mustBeDestroyed(t, k1, "removed key")
	lookups := map[string]func() (*crypto.Key, error){
		"Primary": func() (*crypto.Key, error) { return m.Primary(ctx, "a") },
		"Version": func() (*crypto.Key, error) { return m.Version(ctx, "a", 1) },
		"Live": func() (*crypto.Key, error) {
			ks, err := m.Live(ctx, "a")
			if err != nil {
				return nil, err
			}
			return ks[0], nil
		},
	}
	for name, f := range lookups {
		k, err := f()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if k == k1 {
			t.Fatalf("%s returned the removed key", name)
		}
		if _, err := k.Encrypt(nil, []byte("x"), value.TypeText); err != nil {
			t.Fatalf("%s returned an unusable key: %v", name, err)
		}
	}
	if n := master.unwraps.Load(); n != 2 {
		t.Fatalf("%d Unwrap calls, want 2", n)
	}
}

// TestLRUKeepsRecentlyUsed: keys served by the lock-free path still count
// as used for capacity eviction.
func TestLRUKeepsRecentlyUsed(t *testing.T) {
	master := newFakeMaster(t, "m1")
	m := newManager(t, keys.Options{Store: openStore(t), Master: master, MaxEntries: 2})
	mustInit(t, m, []keys.Spec{{Name: "a", Algorithm: crypto.AlgorithmAESSIV}, {Name: "b", Algorithm: crypto.AlgorithmAESSIV}, {Name: "c", Algorithm: crypto.AlgorithmAESSIV}})
	primary := func(name string) *crypto.Key {
		t.Helper()
		k, err := m.Primary(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	ka := primary("a")
	for range 3 {
		primary("a")
	}
	kb := primary("b") // a is now the least recently used
	for range 3 {
		if primary("a") != ka {
			t.Fatal("a was reloaded")
		}
	}
	primary("c") // must evict b, not a
	mustBeDestroyed(t, kb, "b, the least recently used")
	if _, err := ka.Encrypt(nil, []byte("x"), value.TypeText); err != nil {
		t.Fatalf("a was evicted although used after b: %v", err)
	}
	if primary("a") != ka {
		t.Fatal("a was reloaded")
	}
	if n := keys.CacheLen(m); n != 2 {
		t.Fatalf("cache holds %d keys, want 2", n)
	}
}

// TestConcurrentLookups hammers the cache from several goroutines while
// capacity evictions and TTL expiries happen (run it with -race). Every
// key handed out must work or be destroyed, lookups must not fail
// otherwise, and once the TTL has passed every key handed out is
// destroyed.
func TestConcurrentLookups(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const ttl = 50 * time.Millisecond
		master := newFakeMaster(t, "m1")
		m := newManager(t, keys.Options{Store: openStore(t), Master: master, MaxEntries: 3, TTL: ttl})
		names := []string{"a", "b", "c"}
		var specs []keys.Spec
		for _, n := range names {
			specs = append(specs, keys.Spec{Name: n, Algorithm: crypto.AlgorithmAESSIV})
		}
		mustInit(t, m, specs)
		for _, n := range names {
			if _, err := m.Rotate(ctx, n); err != nil {
				t.Fatal(err)
			}
		}
		cts := map[string][]byte{}
		for _, n := range names {
			k, err := m.Version(ctx, n, 1)
			if err != nil {
				t.Fatal(err)
			}
			cts[n] = encrypt(t, k, n)
		}

		var (
			mu   sync.Mutex
			seen = map[*crypto.Key]bool{}
			wg   sync.WaitGroup
		)
		check := func(k *crypto.Key, err error) {
			if err != nil {
				t.Errorf("lookup: %v", err)
				return
			}
			if _, err := k.Encrypt(nil, []byte("x"), value.TypeText); err != nil && !errors.Is(err, crypto.ErrKeyDestroyed) {
				t.Errorf("Encrypt: %v", err)
			}
			mu.Lock()
			seen[k] = true
			mu.Unlock()
		}
		for g := range 4 {
			wg.Go(func() {
				var buf []*crypto.Key
				for i := range 400 {
					n := names[(g+i)%len(names)]
					switch i % 5 {
					case 0:
						check(m.Primary(ctx, n))
					case 1:
						check(m.Version(ctx, n, 1))
					case 2:
						var err error
						buf, err = m.AppendLive(ctx, buf[:0], n)
						if err != nil || len(buf) != 2 {
							t.Errorf("AppendLive = %d keys, %v", len(buf), err)
							continue
						}
						for _, k := range buf {
							check(k, nil)
						}
					case 3:
						pt, _, err := m.Decrypt(ctx, n, nil, cts[n])
						if err != nil && !errors.Is(err, crypto.ErrKeyDestroyed) {
							t.Errorf("Decrypt: %v", err)
						} else if err == nil && string(pt) != n {
							t.Errorf("Decrypt = %q, want %q", pt, n)
						}
					case 4:
						if c, err := m.LiveCount(ctx, n); err != nil || c != 2 {
							t.Errorf("LiveCount = %d, %v", c, err)
						}
					}
					if i%7 == 0 {
						time.Sleep(time.Millisecond) // let the TTL pass now and then
					}
				}
			})
		}
		wg.Wait()
		if n := keys.CacheLen(m); n > 3 {
			t.Fatalf("cache holds %d keys, more than its capacity 3", n)
		}
		// Quiescent: what the cache hands out now works.
		for _, n := range names {
			k, err := m.Primary(ctx, n)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := k.Encrypt(nil, []byte("x"), value.TypeText); err != nil {
				t.Fatalf("Primary(%q) after the storm: %v", n, err)
			}
		}
		time.Sleep(ttl)
		synctest.Wait()
		for k := range seen {
			if _, err := k.Encrypt(nil, []byte("x"), value.TypeText); !errors.Is(err, crypto.ErrKeyDestroyed) {
				t.Fatalf("%v handed out during the storm still works after the TTL: %v", k, err)
			}
		}
		if len(seen) < 2*len(names)*2 {
			t.Fatalf("only %d key instances seen: the TTL or capacity never evicted anything", len(seen))
		}
	})
}
