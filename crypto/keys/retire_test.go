package keys_test

import (
	"errors"
	"testing"

	"github.com/dbproxy/dbproxy/crypto"
	"github.com/dbproxy/dbproxy/crypto/keys"
	"github.com/dbproxy/dbproxy/crypto/keystore"
)

// TestRetire: the primary version cannot be retired; an older one is
// removed from the keystore, its ciphertexts no longer decrypt, and those
// of the primary still do.
func TestRetire(t *testing.T) {
	store := openStore(t)
	m := newManager(t, keys.Options{Store: store, Master: newFakeMaster(t, "m1")})
	const name = "public.users.ssn"
	if _, err := m.Init(ctx, []keys.Spec{{Name: name, Algorithm: crypto.AlgorithmXAESGCM}}); err != nil {
		t.Fatal(err)
	}
	k1, err := m.Primary(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	old := encrypt(t, k1, "under version 1")
	if err := m.Retire(ctx, name, 1); !errors.Is(err, keys.ErrPrimary) {
		t.Fatalf("retire of the only version: %v, want ErrPrimary", err)
	}
	if _, err := m.Rotate(ctx, name); err != nil {
		t.Fatal(err)
	}
	if v, err := m.PrimaryVersion(ctx, name); err != nil || v != 2 {
		t.Fatalf("PrimaryVersion = %d, %v; want 2", v, err)
	}
	if err := m.Retire(ctx, name, 2); !errors.Is(err, keys.ErrPrimary) {
		t.Fatalf("retire of the primary: %v, want ErrPrimary", err)
	}
	if err := m.Retire(ctx, name, 1); err != nil {
		t.Fatal(err)
	}
	if err := m.Retire(ctx, name, 1); !errors.Is(err, keystore.ErrNotFound) {
		t.Fatalf("second retire: %v, want ErrNotFound", err)
	}
	recs, err := store.Get(ctx, name)
	if err != nil || len(recs) != 1 || recs[0].Version != 2 {
		t.Fatalf("keystore after retire: %+v %v", recs, err)
	}
	if _, _, err := m.Decrypt(ctx, name, nil, old); err == nil {
		t.Fatal("a ciphertext of the retired version still decrypts")
	}
	k2, err := m.Primary(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	mustDecrypt(t, m, name, encrypt(t, k2, "under version 2"), "under version 2")
}
