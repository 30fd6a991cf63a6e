package kms_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/miekg/pkcs11"

	"github.com/dbproxy/dbproxy/crypto/kms"
	"github.com/dbproxy/dbproxy/internal/testenv"
)

// softHSMOptions starts a throwaway SoftHSM2 token and returns options
// for a master key labelled "dbproxy-master" in it (not yet created).
func softHSMOptions(t *testing.T) (*testenv.SoftHSM, kms.PKCS11Options) {
	t.Helper()
	h := testenv.StartSoftHSM(t)
	return h, kms.PKCS11Options{Module: h.Module, TokenLabel: h.TokenLabel, KeyLabel: "dbproxy-master", PIN: h.PIN}
}

// openPKCS11 opens the master key of opts, closed when the test ends.
func openPKCS11(t *testing.T, opts kms.PKCS11Options) *kms.PKCS11 {
	t.Helper()
	k, err := kms.OpenPKCS11(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { k.Close() })
	return k
}

// createPKCS11Key creates the master key of opts and fails unless it was
// created.
func createPKCS11Key(t *testing.T, opts kms.PKCS11Options) {
	t.Helper()
	created, err := kms.CreatePKCS11Key(context.Background(), opts)
	if err != nil || !created {
		t.Fatalf("CreatePKCS11Key = %v, %v; want true, nil", created, err)
	}
}

func TestPKCS11RoundTrip(t *testing.T) {
	_, opts := softHSMOptions(t)
	createPKCS11Key(t, opts)
	if created, err := kms.CreatePKCS11Key(context.Background(), opts); err != nil || created {
		t.Fatalf("second CreatePKCS11Key = %v, %v; want false, nil", created, err)
	}
	ctx := context.Background()
	ref := kms.KeyRef{Name: "public.users.ssn", Version: 3}

	padOpts := opts
	padOpts.Mechanism = kms.CKMAESKeyWrapPad // RFC 5649 in SoftHSM2, which lacks CKM_AES_KEY_WRAP_KWP
	for _, tc := range []struct {
		name string
		opts kms.PKCS11Options
		mech uint
	}{
		{"auto picks GCM on SoftHSM2", opts, kms.CKMAESGCM},
		{"key wrap", padOpts, kms.CKMAESKeyWrapPad},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k := openPKCS11(t, tc.opts)
			if k.ID() != "pkcs11:dbproxy/dbproxy-master" {
				t.Errorf("ID = %q", k.ID())
			}
			if k.Mechanism() != tc.mech {
				t.Fatalf("Mechanism = %#x, want %#x", k.Mechanism(), tc.mech)
			}
			for _, size := range []int{32, 64, 5} {
				pt, wrapped, err := k.GenerateDataKey(ctx, ref, size)
				if err != nil {
					t.Fatal(err)
				}
				if len(pt) != size || bytes.Contains(wrapped, pt) {
					t.Fatalf("GenerateDataKey(%d): %d-byte key, or key visible in the wrapping", size, len(pt))
				}
				mustUnwrapTo(t, k, ref, wrapped, pt)
				w2, err := k.Wrap(ctx, ref, pt)
				if err != nil {
					t.Fatal(err)
				}
				if bytes.Equal(w2, wrapped) && tc.mech == kms.CKMAESGCM {
					t.Error("two GCM wraps of one key are equal: the IV is not random")
				}
				mustUnwrapTo(t, k, ref, w2, pt)
				mustNotUnwrap(t, k, kms.KeyRef{Name: ref.Name, Version: 4}, wrapped)
				mustNotUnwrap(t, k, kms.KeyRef{Name: "public.users.email", Version: 3}, wrapped)
				for i := range wrapped {
					bad := bytes.Clone(wrapped)
					bad[i] ^= 0x01
					if tc.mech != kms.CKMAESGCM && i >= 1 && i <= 4 {
						// The recorded mechanism: another one is refused by
						// the token (not offered) or does not authenticate.
						if _, err := k.Unwrap(ctx, ref, bad); err == nil {
							t.Fatalf("Unwrap with byte %d changed succeeded", i)
						}
						continue
					}
					mustNotUnwrap(t, k, ref, bad)
				}
				mustNotUnwrap(t, k, ref, wrapped[:len(wrapped)-1])
			}
		})
	}

	// The mechanism is recorded in each wrapping: a key opened with
	// either mechanism unwraps both.
	gcm, pad := openPKCS11(t, opts), openPKCS11(t, padOpts)
	pt, byPad, err := pad.GenerateDataKey(ctx, ref, 32)
	if err != nil {
		t.Fatal(err)
	}
	mustUnwrapTo(t, gcm, ref, byPad, pt)
	byGCM, err := gcm.Wrap(ctx, ref, pt)
	if err != nil {
		t.Fatal(err)
	}
	mustUnwrapTo(t, pad, ref, byGCM, pt)

	gcm.Close()
	if _, err := gcm.Unwrap(ctx, ref, byGCM); !errors.Is(err, kms.ErrClosed) {
		t.Errorf("Unwrap after Close = %v, want ErrClosed", err)
	}
	mustUnwrapTo(t, pad, ref, byGCM, pt) // the other user of the module still works
}

func mustNotUnwrap(t *testing.T, k kms.MasterKey, ref kms.KeyRef, wrapped []byte) {
	t.Helper()
	pt, err := k.Unwrap(context.Background(), ref, wrapped)
	if !errors.Is(err, kms.ErrUnwrap) {
		t.Fatalf("Unwrap of a bad wrapping = %d bytes, %v; want ErrUnwrap", len(pt), err)
	}
}

// Sessions are pooled: many goroutines share two sessions.
func TestPKCS11Concurrent(t *testing.T) {
	_, opts := softHSMOptions(t)
	createPKCS11Key(t, opts)
	opts.Sessions = 2
	k := openPKCS11(t, opts)
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for g := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ref := kms.KeyRef{Name: fmt.Sprintf("k%d", g), Version: 1}
			for range 20 {
				pt, w, err := k.GenerateDataKey(context.Background(), ref, 32)
				if err == nil {
					var got []byte
					got, err = k.Unwrap(context.Background(), ref, w)
					if err == nil && !bytes.Equal(got, pt) {
						err = errors.New("unwrapped another key")
					}
				}
				if err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestPKCS11OpenErrors(t *testing.T) {
	h, opts := softHSMOptions(t)
	ctx := context.Background()

	_, err := kms.OpenPKCS11(ctx, opts)
	wantErr(t, "key missing", err, `no secret key labelled "dbproxy-master" (key_label)`, h.PIN)

	createPKCS11Key(t, opts)
	bad := opts
	bad.Module = "/nonexistent/libpkcs11.so"
	_, err = kms.OpenPKCS11(ctx, bad)
	wantErr(t, "module", err, `pkcs11 module "/nonexistent/libpkcs11.so" cannot be loaded`, h.PIN)

	bad = opts
	bad.TokenLabel = "other"
	_, err = kms.OpenPKCS11(ctx, bad)
	wantErr(t, "token", err, `no token labelled "other" (token_label); tokens present: ["dbproxy"]`, h.PIN)

	bad = opts
	bad.PIN = "wrong-" + h.PIN
	_, err = kms.OpenPKCS11(ctx, bad)
	wantErr(t, "PIN", err, "wrong PIN (pin_env or pin_file)", bad.PIN)

	bad = opts
	bad.PIN = ""
	_, err = kms.OpenPKCS11(ctx, bad)
	wantErr(t, "empty PIN", err, "the PIN is empty", h.PIN)

	bad = opts
	bad.Mechanism = kms.CKMAESKeyWrapKWP
	_, err = kms.OpenPKCS11(ctx, bad)
	wantErr(t, "mechanism", err, "mechanism unsupported", h.PIN)

	// The right settings still work after all of these.
	k := openPKCS11(t, opts)
	if _, _, err := k.GenerateDataKey(ctx, kms.KeyRef{Name: "a", Version: 1}, 32); err != nil {
		t.Fatal(err)
	}
}

func wantErr(t *testing.T, what string, err error, want, pin string) {
	t.Helper()
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("%s: error %v, want one containing %q", what, err, want)
	}
	if err != nil && strings.Contains(err.Error(), pin) {
		t.Errorf("%s: error shows the PIN: %v", what, err)
	}
}

// The key CreatePKCS11Key makes cannot leave the token, and a key that
// could is refused.
func TestPKCS11KeyAttributes(t *testing.T) {
	h, opts := softHSMOptions(t)
	createPKCS11Key(t, opts)

	p := pkcs11.New(h.Module)
	if p == nil {
		t.Fatal("load module")
	}
	if err := p.Initialize(); err != nil {
		t.Fatal(err)
	}
	defer func() { p.Finalize(); p.Destroy() }()
	s := loginSession(t, p, h)
	key := findOne(t, p, s, opts.KeyLabel)
	attrs, err := p.GetAttributeValue(s, key, []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_TOKEN, nil), pkcs11.NewAttribute(pkcs11.CKA_SENSITIVE, nil),
		pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, nil), pkcs11.NewAttribute(pkcs11.CKA_PRIVATE, nil),
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []bool{true, true, false, true}
	for i, a := range attrs {
		if got := len(a.Value) == 1 && a.Value[0] != 0; got != want[i] {
			t.Errorf("attribute %#x = %v, want %v", a.Type, got, want[i])
		}
	}
	if _, err := p.GetAttributeValue(s, key, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_VALUE, nil)}); !errors.Is(err, pkcs11.Error(pkcs11.CKR_ATTRIBUTE_SENSITIVE)) {
		t.Errorf("reading CKA_VALUE: %v, want CKR_ATTRIBUTE_SENSITIVE", err)
	}

	if _, err := p.GenerateKey(s, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_AES_KEY_GEN, nil)}, []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_SECRET_KEY), pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_AES),
		pkcs11.NewAttribute(pkcs11.CKA_VALUE_LEN, 32), pkcs11.NewAttribute(pkcs11.CKA_LABEL, "leaky"),
		pkcs11.NewAttribute(pkcs11.CKA_TOKEN, true), pkcs11.NewAttribute(pkcs11.CKA_SENSITIVE, false),
		pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, true), pkcs11.NewAttribute(pkcs11.CKA_ENCRYPT, true),
		pkcs11.NewAttribute(pkcs11.CKA_DECRYPT, true),
	}); err != nil {
		t.Fatal(err)
	}
	leaky := opts
	leaky.KeyLabel = "leaky"
	_, err = kms.OpenPKCS11(context.Background(), leaky)
	wantErr(t, "extractable key", err, `key "leaky" (key_label) in token "dbproxy" can leave the token`, h.PIN)
}

func loginSession(t *testing.T, p *pkcs11.Ctx, h *testenv.SoftHSM) pkcs11.SessionHandle {
	t.Helper()
	slots, err := p.GetSlotList(true)
	if err != nil || len(slots) == 0 {
		t.Fatalf("slots: %v, %v", slots, err)
	}
	s, err := p.OpenSession(slots[0], pkcs11.CKF_SERIAL_SESSION|pkcs11.CKF_RW_SESSION)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Login(s, pkcs11.CKU_USER, h.PIN); err != nil && !errors.Is(err, pkcs11.Error(pkcs11.CKR_USER_ALREADY_LOGGED_IN)) {
		t.Fatal(err)
	}
	return s
}

func findOne(t *testing.T, p *pkcs11.Ctx, s pkcs11.SessionHandle, label string) pkcs11.ObjectHandle {
	t.Helper()
	if err := p.FindObjectsInit(s, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_LABEL, label)}); err != nil {
		t.Fatal(err)
	}
	found, _, err := p.FindObjects(s, 2)
	p.FindObjectsFinal(s)
	if err != nil || len(found) != 1 {
		t.Fatalf("find %q: %d objects, %v", label, len(found), err)
	}
	return found[0]
}

// Login state belongs to the token and the process: when something logs
// the process out, the next operation logs in again and succeeds.
func TestPKCS11LogsInAgain(t *testing.T) {
	h, _, k, pt, wrapped := keyWrappedInHSM(t)
	p, s := sideSession(t, h)
	if err := p.Logout(s); err != nil {
		t.Fatal(err)
	}
	p.CloseSession(s)

	mustUnwrapTo(t, k, refA, wrapped, pt)
}

// A key deleted from the token fails unwrapping as refused, naming the
// key label.
func TestPKCS11KeyDeleted(t *testing.T) {
	h, opts, k, _, wrapped := keyWrappedInHSM(t)
	p, s := sideSession(t, h)
	if err := p.DestroyObject(s, findOne(t, p, s, opts.KeyLabel)); err != nil {
		t.Fatal(err)
	}
	p.CloseSession(s)

	_, err := k.Unwrap(context.Background(), refA, wrapped)
	if !errors.Is(err, kms.ErrDenied) || !strings.Contains(err.Error(), `no secret key labelled "dbproxy-master" (key_label)`) {
		t.Fatalf("Unwrap with the key deleted = %v; want ErrDenied naming key_label", err)
	}
}

// sideSession opens a logged-in session on a second handle of the library
// that a master key of the test already uses. The handle is not finalised
// (that would end the master key's use of the library too), only unloaded
// when the test ends.
func sideSession(t *testing.T, h *testenv.SoftHSM) (*pkcs11.Ctx, pkcs11.SessionHandle) {
	t.Helper()
	p := pkcs11.New(h.Module)
	if p == nil {
		t.Fatal("load module")
	}
	if err := p.Initialize(); err != nil && !errors.Is(err, pkcs11.Error(pkcs11.CKR_CRYPTOKI_ALREADY_INITIALIZED)) {
		t.Fatal(err)
	}
	t.Cleanup(p.Destroy)
	return p, loginSession(t, p, h)
}

var refA = kms.KeyRef{Name: "a", Version: 1}

// keyWrappedInHSM starts a token, creates and opens its master key, and
// returns a data key for refA with its wrapping.
func keyWrappedInHSM(t *testing.T) (h *testenv.SoftHSM, opts kms.PKCS11Options, k *kms.PKCS11, pt, wrapped []byte) {
	t.Helper()
	h, opts = softHSMOptions(t)
	createPKCS11Key(t, opts)
	k = openPKCS11(t, opts)
	pt, wrapped, err := k.GenerateDataKey(context.Background(), refA, 32)
	if err != nil {
		t.Fatal(err)
	}
	return h, opts, k, pt, wrapped
}

// BenchmarkPKCS11Unwrap measures one unwrap of a 32-byte data key inside
// SoftHSM2, per mechanism, from GOMAXPROCS goroutines sharing the session
// pool.
func BenchmarkPKCS11Unwrap(b *testing.B) {
	h := testenv.StartSoftHSM(b)
	for _, mech := range []uint{kms.CKMAESGCM, kms.CKMAESKeyWrapPad} {
		opts := kms.PKCS11Options{Module: h.Module, TokenLabel: h.TokenLabel, KeyLabel: fmt.Sprintf("bench-%#x", mech), PIN: h.PIN, Mechanism: mech}
		if _, err := kms.CreatePKCS11Key(context.Background(), opts); err != nil {
			b.Fatal(err)
		}
		k, err := kms.OpenPKCS11(context.Background(), opts)
		if err != nil {
			b.Fatal(err)
		}
		_, wrapped, err := k.GenerateDataKey(context.Background(), refA, 32)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(fmt.Sprintf("mech=%#x", mech), func(b *testing.B) {
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := k.Unwrap(context.Background(), refA, wrapped); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
		k.Close()
	}
}

// Two master keys on one library, named by a symlink and by its target:
// closing one does not finalise the library under the other.
func TestPKCS11SharedModule(t *testing.T) {
	_, opts, k, pt, wrapped := keyWrappedInHSM(t)
	real, err := filepath.EvalSymlinks(opts.Module)
	if err != nil {
		t.Fatal(err)
	}
	if real == opts.Module {
		link := filepath.Join(t.TempDir(), "libpkcs11.so")
		if err := os.Symlink(real, link); err != nil {
			t.Fatal(err)
		}
		real = link
	}
	other := opts
	other.Module = real
	k2, err := kms.OpenPKCS11(context.Background(), other)
	if err != nil {
		t.Fatal(err)
	}
	mustUnwrapTo(t, k2, refA, wrapped, pt)
	k2.Close()
	mustUnwrapTo(t, k, refA, wrapped, pt)
}
