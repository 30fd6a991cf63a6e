package keys_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/dbproxy/dbproxy/crypto"
	"github.com/dbproxy/dbproxy/crypto/keys"
	"github.com/dbproxy/dbproxy/crypto/keystore"
	"github.com/dbproxy/dbproxy/crypto/kms"
)

// The TTL is the longest an unwrapped key is used: after it, the key is
// unwrapped again from the keystore as it is now, with the master key as it
// is now (the local provider re-reads its file). These tests run the real
// file keystore and local master key file under a fake clock.

// localSetup creates a master key file and a keystore with data key "a"
// under dir, and a manager over them with the given TTL.
func localSetup(t *testing.T, ttl time.Duration, store keystore.Store) (m *keys.Manager, masterPath string) {
	t.Helper()
	dir := t.TempDir()
	masterPath = filepath.Join(dir, "master.key")
	if _, err := kms.CreateLocalKeyFile(masterPath); err != nil {
		t.Fatal(err)
	}
	master, err := kms.OpenLocalFile(masterPath)
	if err != nil {
		t.Fatal(err)
	}
	m = newManager(t, keys.Options{Store: store, Master: master, TTL: ttl})
	mustInit(t, m, []keys.Spec{{Name: "a", Algorithm: crypto.AlgorithmXAESGCM}})
	return m, masterPath
}

// TestTTLRereadsMasterKeyFile: a removed master key file fails every call
// needing an unwrap within the TTL (not before: the cached key works till
// then), with an error naming the file; restoring the file works at once.
func TestTTLRereadsMasterKeyFile(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const ttl = time.Minute
		m, masterPath := localSetup(t, ttl, openStore(t))
		k := mustPrimary(t, m, "a")
		ct := encrypt(t, k, "v")
		saved, err := os.ReadFile(masterPath)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.Remove(masterPath); err != nil {
			t.Fatal(err)
		}

		time.Sleep(ttl - time.Second)
		synctest.Wait()
		if k2, err := m.Primary(ctx, "a"); err != nil || k2 != k {
			t.Fatalf("before the TTL: Primary = %v, %v; want the cached key", k2, err)
		}

		time.Sleep(time.Second)
		synctest.Wait()
		for name, call := range map[string]func() error{
			"Primary": func() error { _, err := m.Primary(ctx, "a"); return err },
			"Decrypt": func() error { _, _, err := m.Decrypt(ctx, "a", nil, ct); return err },
			"Live":    func() error { _, err := m.Live(ctx, "a"); return err },
		} {
			err := call()
			if !errors.Is(err, keys.ErrUnavailable) || !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("after the TTL without the master key file: %s = %v; want ErrUnavailable wrapping ErrNotExist", name, err)
			}
			if !strings.Contains(err.Error(), masterPath) {
				t.Fatalf("%s error %q does not name the master key file", name, err)
			}
		}
		mustBeDestroyed(t, k, "key held past its TTL")

		if err := os.WriteFile(masterPath, saved, 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := m.Primary(ctx, "a"); err != nil {
			t.Fatalf("master key file restored: Primary: %v", err)
		}
		mustDecrypt(t, m, "a", ct, "v")
	})
}

// refreshList makes m read the versions of "a" from the keystore now.
func refreshList(t *testing.T, m *keys.Manager) {
	t.Helper()
	if _, err := m.Version(ctx, "a", 99); !errors.Is(err, keys.ErrNotFound) {
		t.Fatalf("Version 99 = %v; want ErrNotFound", err)
	}
}

// TestTTLMasterKeyFileReplaced: a master key file that now holds another
// key is refused with an error saying so.
func TestTTLMasterKeyFileReplaced(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const ttl = time.Minute
		m, masterPath := localSetup(t, ttl, openStore(t))
		if _, err := m.Primary(ctx, "a"); err != nil {
			t.Fatal(err)
		}
		if err := os.Remove(masterPath); err != nil {
			t.Fatal(err)
		}
		if _, err := kms.CreateLocalKeyFile(masterPath); err != nil {
			t.Fatal(err)
		}
		time.Sleep(ttl)
		synctest.Wait()
		_, err := m.Primary(ctx, "a")
		if !errors.Is(err, keys.ErrUnavailable) || !strings.Contains(err.Error(), "now holds master key") {
			t.Fatalf("Primary with a replaced master key file = %v; want ErrUnavailable saying the file holds another key", err)
		}
	})
}

// TestTTLRereadsKeystore: a removed keystore fails the calls needing a key
// within the TTL (the wrapped key is read again on every unwrap), and the
// restored keystore works again.
func TestTTLRereadsKeystore(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const ttl = time.Minute
		path := filepath.Join(t.TempDir(), "keys.json")
		m, _ := localSetup(t, ttl, openStoreAt(t, path))
		k := mustPrimary(t, m, "a")
		ct := encrypt(t, k, "v")
		saved, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		// Half a TTL later the list of versions is read again (here: a
		// ciphertext naming an unknown version), so it is still fresh
		// when the key expires; only then is the keystore removed.
		time.Sleep(ttl / 2)
		refreshList(t, m)
		if err := os.Remove(path); err != nil {
			t.Fatal(err)
		}
		if _, err := m.Version(ctx, "a", 1); err != nil {
			t.Fatalf("before the TTL: Version: %v", err)
		}

		time.Sleep(ttl / 2)
		synctest.Wait()
		for name, call := range map[string]func() error{
			"Primary": func() error { _, err := m.Primary(ctx, "a"); return err },
			"Decrypt": func() error { _, _, err := m.Decrypt(ctx, "a", nil, ct); return err },
		} {
			if err := call(); !errors.Is(err, keys.ErrNotFound) {
				t.Fatalf("after the TTL without the keystore: %s = %v; want ErrNotFound", name, err)
			}
		}

		if err := os.WriteFile(path, saved, 0o600); err != nil {
			t.Fatal(err)
		}
		time.Sleep(keys.MinRefresh) // an unknown name is read again at most once per MinRefresh
		if _, err := m.Primary(ctx, "a"); err != nil {
			t.Fatalf("keystore restored: Primary: %v", err)
		}
		mustDecrypt(t, m, "a", ct, "v")
	})
}

// TestTTLRereadUsesCurrentRecord: after the TTL the key is unwrapped from
// the record in the keystore now, so a version rewrapped under another
// master key by another process fails in a manager without that key,
// though its cached list of versions still had the old wrapping.
func TestTTLRereadUsesCurrentRecord(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const ttl = time.Minute
		path := filepath.Join(t.TempDir(), "keys.json")
		m1 := newFakeMaster(t, "m1")
		m2 := newFakeMaster(t, "m2")
		reader := newManager(t, keys.Options{Store: openStoreAt(t, path), Master: m1, TTL: ttl})
		mustInit(t, reader, []keys.Spec{{Name: "a", Algorithm: crypto.AlgorithmXAESGCM}})
		if _, err := reader.Primary(ctx, "a"); err != nil {
			t.Fatal(err)
		}
		time.Sleep(ttl / 2)
		refreshList(t, reader) // fresh until after the key expires
		rewrapper := newManager(t, keys.Options{Store: openStoreAt(t, path), Master: m2, Previous: []kms.MasterKey{m1}, TTL: ttl})
		if n, err := rewrapper.Rewrap(ctx); n != 1 || err != nil {
			t.Fatalf("Rewrap = %d, %v", n, err)
		}
		time.Sleep(ttl / 2)
		synctest.Wait()
		_, err := reader.Primary(ctx, "a")
		if !errors.Is(err, keys.ErrUnavailable) || !strings.Contains(err.Error(), `"m2"`) {
			t.Fatalf("Primary after the TTL = %v; want ErrUnavailable naming master key m2, which now wraps the key", err)
		}
	})
}

// TestTTLMissCoalesced: many concurrent lookups of an expired key make
// one keystore read and one unwrap.
func TestTTLMissCoalesced(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const ttl = time.Minute
		store := &getCounter{Store: openStore(t)}
		master := newFakeMaster(t, "m1")
		m := newManager(t, keys.Options{Store: store, Master: master, TTL: ttl})
		mustInit(t, m, []keys.Spec{{Name: "a", Algorithm: crypto.AlgorithmXAESGCM}})
		if _, err := m.Primary(ctx, "a"); err != nil {
			t.Fatal(err)
		}
		// Hits read nothing.
		gets, unwraps := store.gets.Load(), master.unwraps.Load()
		for range 100 {
			if _, err := m.Primary(ctx, "a"); err != nil {
				t.Fatal(err)
			}
		}
		if g, u := store.gets.Load()-gets, master.unwraps.Load()-unwraps; g != 0 || u != 0 {
			t.Fatalf("100 cache hits made %d keystore reads and %d unwraps; want 0", g, u)
		}

		time.Sleep(ttl)
		synctest.Wait()
		master.gate = make(chan struct{})
		release := sync.OnceFunc(func() { close(master.gate) })
		defer release()
		gets, unwraps = store.gets.Load(), master.unwraps.Load()
		const n = 50
		errs := make([]error, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() { _, errs[i] = m.Primary(ctx, "a") })
		}
		synctest.Wait() // one in Unwrap, the others waiting for it
		release()
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Fatalf("Primary #%d: %v", i, err)
			}
		}
		// The expired list of versions is read once, and the unwrap's
		// keystore read shares it or makes one more.
		if g, u := store.gets.Load()-gets, master.unwraps.Load()-unwraps; g > 2 || u != 1 {
			t.Fatalf("%d concurrent lookups after the TTL made %d keystore reads and %d unwraps; want at most 2 and 1", n, g, u)
		}
	})
}

// TestTTLRefreshAhead: a key used in the last tenth of its TTL is
// unwrapped again in the background, so the lookups at and after its TTL
// find a fresh key and never wait for the key service; a key not used
// then expires at its TTL as before; a refresh that fails leaves the key
// to expire at its TTL (fail closed), and a snapshot sees the refreshed
// key.
func TestTTLRefreshAhead(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const ttl = 10 * time.Minute // refreshed from 9 minutes on
		master := newFakeMaster(t, "m1")
		m := newManager(t, keys.Options{Store: openStore(t), Master: master, TTL: ttl})
		mustInit(t, m, []keys.Spec{
			{Name: "a", Algorithm: crypto.AlgorithmXAESGCM},
			{Name: "b", Algorithm: crypto.AlgorithmXAESGCM},
			{Name: "c", Algorithm: crypto.AlgorithmXAESGCM},
		})
		ka, kb, kc := mustPrimary(t, m, "a"), mustPrimary(t, m, "b"), mustPrimary(t, m, "c")
		snap, err := m.PrimarySnapshot(ctx, "a")
		if err != nil {
			t.Fatal(err)
		}
		unwraps := master.unwraps.Load()

		time.Sleep(ttl - refreshLead/2) // 9.5 minutes: a and c are used, b not
		synctest.Wait()
		if snap.Current() {
			t.Fatal("a snapshot stayed current once its key was due for a refresh")
		}
		if k := mustPrimary(t, m, "a"); k != ka {
			t.Fatal("the lookup that starts a refresh did not get the cached key")
		}
		synctest.Wait() // the refresh of a
		if u := master.unwraps.Load() - unwraps; u != 1 {
			t.Fatalf("%d unwraps after a due key's use, want 1 (its background refresh)", u)
		}
		mustBeDestroyed(t, ka, "the key a refresh replaced")
		ka2 := mustPrimary(t, m, "a")
		if ka2 == ka {
			t.Fatal("the refreshed key is the old one")
		}
		snap2, err := m.PrimarySnapshot(ctx, "a")
		if err != nil || snap2.Keys()[0] != ka2 {
			t.Fatalf("snapshot after the refresh: %v, %v", snap2, err)
		}
		master.down.Store(true)
		if k := mustPrimary(t, m, "c"); k != kc {
			t.Fatal("c: the lookup that starts a refresh did not get the cached key")
		}
		synctest.Wait() // c's refresh fails

		time.Sleep(refreshLead) // past the first TTL
		synctest.Wait()
		if k := mustPrimary(t, m, "a"); k != ka2 {
			t.Fatal("a: the refreshed key was not the one used after the first TTL")
		}
		mustBeDestroyed(t, kb, "b, not used near its TTL")
		mustBeDestroyed(t, kc, "c, whose refresh failed")
		if _, err := m.Primary(ctx, "c"); !errors.Is(err, keys.ErrUnavailable) {
			t.Fatalf("c after its TTL with the master down: %v, want ErrUnavailable", err)
		}
		master.down.Store(false)
		if k := mustPrimary(t, m, "b"); k == kb {
			t.Fatal("b: got the destroyed key back")
		}
	})
}

// refreshLead is how long before its TTL a 10-minute key is refreshed.
const refreshLead = time.Minute
