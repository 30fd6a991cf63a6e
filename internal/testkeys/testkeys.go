// Package testkeys gives tests a real key manager: a local master key and a
// file keystore in the test's temporary directory, holding the data keys
// they ask for, and single random key versions for tests that keep their
// own. It owns nothing else; production code must not import it.
package testkeys

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/dbproxy/dbproxy/crypto"
	"github.com/dbproxy/dbproxy/crypto/keys"
	"github.com/dbproxy/dbproxy/crypto/keystore"
	"github.com/dbproxy/dbproxy/crypto/kms"
	"github.com/dbproxy/dbproxy/rules"
)

// Manager returns a keys.Manager over a fresh local master key and file
// keystore (closed when tb ends) with a first version of every data key
// of specs (a name listed twice is created once).
func Manager(tb testing.TB, specs ...keys.Spec) *keys.Manager {
	tb.Helper()
	return ManagerWith(tb, keys.Options{}, specs...)
}

// ManagerWith is Manager with opts (its Store and Master are set here).
func ManagerWith(tb testing.TB, opts keys.Options, specs ...keys.Spec) *keys.Manager {
	tb.Helper()
	return ManagerWrapped(tb, opts, nil, specs...)
}

// ManagerWrapped is ManagerWith with the master key wrapped by wrap (nil:
// as it is): a test's slow or failing key service.
func ManagerWrapped(tb testing.TB, opts keys.Options, wrap func(kms.MasterKey) kms.MasterKey, specs ...keys.Spec) *keys.Manager {
	tb.Helper()
	dir := tb.TempDir()
	mk := filepath.Join(dir, "master.key")
	if _, err := kms.CreateLocalKeyFile(mk); err != nil {
		tb.Fatal(err)
	}
	master, err := kms.LoadLocal(mk)
	if err != nil {
		tb.Fatal(err)
	}
	store, err := keystore.OpenFile(filepath.Join(dir, "keys.json"))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = store.Close() })
	opts.Store, opts.Master = store, kms.MasterKey(master)
	if wrap != nil {
		opts.Master = wrap(opts.Master)
	}
	mgr, err := keys.New(opts)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(mgr.Close)
	seen := map[string]bool{}
	var uniq []keys.Spec
	for _, s := range specs {
		if !seen[s.Name] {
			seen[s.Name] = true
			uniq = append(uniq, s)
		}
	}
	if _, err := mgr.Init(context.Background(), uniq); err != nil {
		tb.Fatal(err)
	}
	return mgr
}

// ForRules returns the keys.Spec of every data key of specs.
func ForRules(specs []rules.Spec) []keys.Spec {
	out := make([]keys.Spec, 0, len(specs))
	for _, s := range specs {
		out = append(out, keys.Spec{Name: s.Key, Algorithm: s.Mode.Algorithm()})
	}
	return out
}

// RandomKey returns version of data key name with fresh random material
// for alg: a key of its own, outside any key manager.
func RandomKey(tb testing.TB, name string, version uint32, alg crypto.Algorithm) *crypto.Key {
	tb.Helper()
	m, err := crypto.NewRandomKeyMaterial(alg)
	if err != nil {
		tb.Fatal(err)
	}
	k, err := crypto.NewKey(name, version, alg, m)
	if err != nil {
		tb.Fatal(err)
	}
	return k
}
