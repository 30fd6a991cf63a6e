package kms_test

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dbproxy/dbproxy/crypto/kms"
)

func TestCreateLocalKeyFile(t *testing.T) {
	path := newLocalKeyFile(t)
	before := readFile(t, path)
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if perm := fi.Mode().Perm(); perm != 0o600 {
		t.Errorf("mode = %#o, want 0600", perm)
	}
	key, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(before)))
	if err != nil || len(key) != 32 {
		t.Fatalf("file holds %d bytes (err %v), want base64 of 32", len(key), err)
	}

	created, err := kms.CreateLocalKeyFile(path)
	if err != nil || created {
		t.Fatalf("second CreateLocalKeyFile = %v, %v; want false, nil", created, err)
	}
	after := readFile(t, path)
	if !bytes.Equal(before, after) {
		t.Error("second CreateLocalKeyFile changed the key file")
	}
	entries, err := os.ReadDir(filepath.Dir(path))
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 {
		t.Errorf("directory holds %d entries, want only the key file (temporary file left behind?)", len(entries))
	}

	other := newLocalKeyFile(t)
	otherBytes := readFile(t, other)
	if bytes.Equal(before, otherBytes) {
		t.Error("two created key files are identical")
	}
}

func TestLoadLocalRejects(t *testing.T) {
	valid := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{7}, 32)) + "\n"
	tests := []struct {
		name    string
		content string
		mode    os.FileMode
		want    string // substring of the error
	}{
		{"short key", base64.StdEncoding.EncodeToString(make([]byte, 16)), 0o600, "16 bytes"},
		{"long key", base64.StdEncoding.EncodeToString(make([]byte, 33)), 0o600, "33 bytes"},
		{"empty", "", 0o600, "0 bytes"},
		{"not base64", "this is not base64 at all!!", 0o600, "not base64"},
		{"group readable", valid, 0o640, "0640"},
		{"world readable", valid, 0o604, "0604"},
		{"group writable", valid, 0o620, "0620"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			loadLocalFails(t, writeKeyFile(t, tt.content, tt.mode), tt.want)
		})
	}

	t.Run("valid with whitespace", func(t *testing.T) {
		loadLocal(t, writeKeyFile(t, "  "+valid+"\n", 0o600))
	})
	t.Run("missing", func(t *testing.T) {
		if _, err := kms.LoadLocal(filepath.Join(t.TempDir(), "nope")); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("error = %v, want ErrNotExist", err)
		}
	})
}

func TestLocalID(t *testing.T) {
	path := newLocalKeyFile(t)
	a := loadLocal(t, path)
	b := loadLocal(t, path)
	if a.ID() != b.ID() {
		t.Errorf("same key, different ids %q and %q", a.ID(), b.ID())
	}
	if !strings.HasPrefix(a.ID(), "local:") || len(a.ID()) != len("local:")+16 {
		t.Errorf("id %q, want local: and 16 hex digits", a.ID())
	}
	c := loadLocal(t, newLocalKeyFile(t))
	if a.ID() == c.ID() {
		t.Error("different keys share an id")
	}

	// Known answer: all-zero key.
	z, err := kms.NewLocal(make([]byte, 32))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := z.ID(), "local:"+knownZeroKeyID; got != want {
		t.Errorf("zero key id = %q, want %q", got, want)
	}
}

func TestLocalWrapUnwrap(t *testing.T) {
	ctx := context.Background()
	mk := loadLocal(t, newLocalKeyFile(t))
	other := loadLocal(t, newLocalKeyFile(t))

	ref := kms.KeyRef{Name: "public.users.email", Version: 3}
	plain, wrapped, err := mk.GenerateDataKey(ctx, ref, 64)
	if err != nil {
		t.Fatal(err)
	}
	if len(plain) != 64 {
		t.Fatalf("data key is %d bytes, want 64", len(plain))
	}
	if len(wrapped) != 1+12+64+16 || wrapped[0] != 0x01 {
		t.Fatalf("wrapped is %d bytes starting %#x, want 93 starting 0x01", len(wrapped), wrapped[0])
	}
	if bytes.Contains(wrapped, plain[:16]) {
		t.Fatal("wrapped bytes contain the data key")
	}
	mustUnwrapTo(t, mk, ref, wrapped, plain)

	rewrapped, err := mk.Wrap(ctx, ref, plain)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(rewrapped, wrapped) {
		t.Error("two wraps of one key are identical (nonce reuse?)")
	}
	if got, err := mk.Unwrap(ctx, ref, rewrapped); err != nil || !bytes.Equal(got, plain) {
		t.Errorf("unwrap of Wrap output = %v", err)
	}

	tamper := func(i int) []byte {
		b := bytes.Clone(wrapped)
		b[i] ^= 0x01
		return b
	}
	failures := []struct {
		name    string
		mk      kms.MasterKey
		ref     kms.KeyRef
		wrapped []byte
	}{
		{"other name", mk, kms.KeyRef{Name: "public.users.ssn", Version: 3}, wrapped},
		{"other version", mk, kms.KeyRef{Name: ref.Name, Version: 4}, wrapped},
		{"name/version boundary", mk, kms.KeyRef{Name: "public.users.email\x003", Version: 0}, wrapped},
		{"other master key", other, ref, wrapped},
		{"flipped format byte", mk, ref, tamper(0)},
		{"flipped nonce", mk, ref, tamper(5)},
		{"flipped ciphertext", mk, ref, tamper(20)},
		{"flipped tag", mk, ref, tamper(len(wrapped) - 1)},
		{"truncated", mk, ref, wrapped[:len(wrapped)-1]},
		{"too short", mk, ref, wrapped[:20]},
		{"empty", mk, ref, nil},
	}
	for _, tt := range failures {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.mk.Unwrap(ctx, tt.ref, tt.wrapped)
			if !errors.Is(err, kms.ErrUnwrap) {
				t.Fatalf("Unwrap = %x, %v; want ErrUnwrap", got, err)
			}
			if !strings.Contains(err.Error(), tt.mk.ID()) || !strings.Contains(err.Error(), tt.ref.String()) {
				t.Errorf("error %q does not name the master key and the data key", err)
			}
		})
	}
}

func TestLocalClose(t *testing.T) {
	ctx := context.Background()
	mk, err := kms.NewLocal(bytes.Repeat([]byte{1}, 32))
	if err != nil {
		t.Fatal(err)
	}
	ref := kms.KeyRef{Name: "k", Version: 1}
	_, wrapped, err := mk.GenerateDataKey(ctx, ref, 32)
	if err != nil {
		t.Fatal(err)
	}
	id := mk.ID()
	if err := mk.Close(); err != nil {
		t.Fatal(err)
	}
	if err := mk.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := mk.Unwrap(ctx, ref, wrapped); !errors.Is(err, kms.ErrClosed) {
		t.Errorf("Unwrap after Close = %v, want ErrClosed", err)
	}
	if _, err := mk.Wrap(ctx, ref, make([]byte, 32)); !errors.Is(err, kms.ErrClosed) {
		t.Errorf("Wrap after Close = %v, want ErrClosed", err)
	}
	if _, _, err := mk.GenerateDataKey(ctx, ref, 32); !errors.Is(err, kms.ErrClosed) {
		t.Errorf("GenerateDataKey after Close = %v, want ErrClosed", err)
	}
	if mk.ID() != id {
		t.Error("ID changed after Close")
	}
}

func TestLocalBadSizes(t *testing.T) {
	ctx := context.Background()
	mk := newLocal(t, make([]byte, 32))
	ref := kms.KeyRef{Name: "k", Version: 1}
	for _, size := range []int{-1, 0, 1025} {
		if _, _, err := mk.GenerateDataKey(ctx, ref, size); err == nil {
			t.Errorf("GenerateDataKey(%d) succeeded", size)
		}
	}
	if _, err := mk.Wrap(ctx, ref, nil); err == nil {
		t.Error("Wrap(nil) succeeded")
	}
	if _, err := kms.NewLocal(make([]byte, 31)); err == nil {
		t.Error("NewLocal accepted a 31-byte key")
	}
}

const knownZeroKeyID = "47987588c038f615" // hex(SHA-256("dbproxy master key id" || 32 zero bytes)[:8])

// TestLocalWrapFormat builds a wrapped key by hand from the documented
// layout and associated data, so the on-disk format cannot drift silently.
func TestLocalWrapFormat(t *testing.T) {
	master := bytes.Repeat([]byte{0x42}, 32)
	mk := newLocal(t, master)
	block, err := aes.NewCipher(master)
	if err != nil {
		t.Fatal(err)
	}
	gcm, err := cipher.NewGCM(block)
	if err != nil {
		t.Fatal(err)
	}
	dataKey := bytes.Repeat([]byte{0x99}, 32)
	nonce := bytes.Repeat([]byte{0x07}, 12)
	ad := []byte("dbproxy/local-wrap/v1\x00orders.total\x004294967295")
	wrapped := append([]byte{0x01}, nonce...)
	wrapped = gcm.Seal(wrapped, nonce, dataKey, ad)

	got, err := mk.Unwrap(context.Background(), kms.KeyRef{Name: "orders.total", Version: 4294967295}, wrapped)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, dataKey) {
		t.Error("unwrapped a different key")
	}
}

// TestLocalFile: every operation reads the file again, so a removed file
// fails (naming it), a restored one works, and a file holding another key
// is refused.
func TestLocalFile(t *testing.T) {
	ctx := context.Background()
	if _, err := kms.OpenLocalFile(filepath.Join(t.TempDir(), "nope.key")); !errors.Is(err, os.ErrNotExist) || !strings.Contains(err.Error(), "nope.key") {
		t.Fatalf("OpenLocalFile of a missing file = %v; want ErrNotExist naming it", err)
	}
	path := newLocalKeyFile(t)
	lf, err := kms.OpenLocalFile(path)
	if err != nil {
		t.Fatal(err)
	}
	l := loadLocal(t, path)
	if lf.ID() != l.ID() {
		t.Fatalf("ID = %s, want %s", lf.ID(), l.ID())
	}
	ref := kms.KeyRef{Name: "a", Version: 1}
	pt, wrapped, err := lf.GenerateDataKey(ctx, ref, 32)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := l.Unwrap(ctx, ref, wrapped); err != nil || !bytes.Equal(got, pt) {
		t.Fatalf("Local.Unwrap of a LocalFile wrapping = %v", err)
	}

	saved := readFile(t, path)
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if _, err := lf.Unwrap(ctx, ref, wrapped); !errors.Is(err, os.ErrNotExist) || !strings.Contains(err.Error(), path) {
		t.Fatalf("Unwrap without the file = %v; want ErrNotExist naming %s", err, path)
	}
	if _, err := lf.Wrap(ctx, ref, pt); err == nil {
		t.Fatal("Wrap without the file succeeded")
	}
	if err := os.WriteFile(path, saved, 0o600); err != nil {
		t.Fatal(err)
	}
	if got, err := lf.Unwrap(ctx, ref, wrapped); err != nil || !bytes.Equal(got, pt) {
		t.Fatalf("Unwrap with the file restored = %v", err)
	}

	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if _, err := kms.CreateLocalKeyFile(path); err != nil {
		t.Fatal(err)
	}
	if _, err := lf.Unwrap(ctx, ref, wrapped); !errors.Is(err, kms.ErrDenied) || !strings.Contains(err.Error(), "now holds master key") {
		t.Fatalf("Unwrap with another key in the file = %v; want ErrDenied saying so", err)
	}
}
