package keys_test

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dbproxy/dbproxy/crypto"
	"github.com/dbproxy/dbproxy/crypto/keys"
	"github.com/dbproxy/dbproxy/crypto/keystore"
	"github.com/dbproxy/dbproxy/crypto/kms"
	"github.com/dbproxy/dbproxy/internal/testlog"
	"github.com/dbproxy/dbproxy/value"
)

// fakeMaster is an in-process master key. It wraps with AES-256-GCM bound
// to the KeyRef, so an Unwrap with another ref fails; it counts calls, can
// be made unreachable, can hold Unwrap calls at a gate, and remembers every
// data key it handed out so tests can look for them in logs and errors.
type fakeMaster struct {
	id   string
	aead cipher.AEAD
	down atomic.Bool
	gate chan struct{} // if set, Unwrap waits for it to close

	unwraps, generates, wraps atomic.Int64

	mu        sync.Mutex
	unwrapped []kms.KeyRef
	secrets   [][]byte
}

var _ kms.MasterKey = (*fakeMaster)(nil)

var errFakeDown = fmt.Errorf("fake master key: connection refused: %w", kms.ErrUnreachable)

func newFakeMaster(t testing.TB, id string) *fakeMaster {
	t.Helper()
	k := make([]byte, 32)
	rand.Read(k)
	b, err := aes.NewCipher(k)
	if err != nil {
		t.Fatal(err)
	}
	g, err := cipher.NewGCM(b)
	if err != nil {
		t.Fatal(err)
	}
	return &fakeMaster{id: id, aead: g}
}

func refAD(ref kms.KeyRef) []byte { return []byte(fmt.Sprintf("%s\x00%d", ref.Name, ref.Version)) }

func (f *fakeMaster) ID() string { return f.id }

func (f *fakeMaster) GenerateDataKey(ctx context.Context, ref kms.KeyRef, size int) ([]byte, []byte, error) {
	f.generates.Add(1)
	if f.down.Load() {
		return nil, nil, errFakeDown
	}
	pt := make([]byte, size)
	rand.Read(pt)
	f.mu.Lock()
	f.secrets = append(f.secrets, slices.Clone(pt))
	f.mu.Unlock()
	return pt, f.seal(ref, pt), nil
}

func (f *fakeMaster) seal(ref kms.KeyRef, pt []byte) []byte {
	nonce := make([]byte, f.aead.NonceSize())
	rand.Read(nonce)
	return f.aead.Seal(nonce, nonce, pt, refAD(ref))
}

func (f *fakeMaster) Wrap(ctx context.Context, ref kms.KeyRef, pt []byte) ([]byte, error) {
	f.wraps.Add(1)
	if f.down.Load() {
		return nil, errFakeDown
	}
	return f.seal(ref, pt), nil
}

func (f *fakeMaster) Unwrap(ctx context.Context, ref kms.KeyRef, wrapped []byte) ([]byte, error) {
	f.unwraps.Add(1)
	f.mu.Lock()
	f.unwrapped = append(f.unwrapped, ref)
	f.mu.Unlock()
	if f.gate != nil {
		select {
		case <-f.gate:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	if f.down.Load() {
		return nil, errFakeDown
	}
	n := f.aead.NonceSize()
	if len(wrapped) < n {
		return nil, kms.ErrUnwrap
	}
	pt, err := f.aead.Open(nil, wrapped[:n], wrapped[n:], refAD(ref))
	if err != nil {
		return nil, fmt.Errorf("fake master key %q, data key %s: %w", f.id, ref, kms.ErrUnwrap)
	}
	return pt, nil
}

func (f *fakeMaster) refs() []kms.KeyRef {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.unwrapped)
}

// leaked reports whether any data key this master generated occurs in s
// (raw, hex or base64).
func (f *fakeMaster) leaked(s string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, k := range f.secrets {
		for _, enc := range []string{string(k), hex.EncodeToString(k), base64.StdEncoding.EncodeToString(k), base64.RawURLEncoding.EncodeToString(k)} {
			if strings.Contains(s, enc) {
				return true
			}
		}
		if strings.Contains(s, fmt.Sprint(k)) {
			return true
		}
	}
	return false
}

func openStore(t testing.TB) keystore.Store {
	t.Helper()
	return openStoreAt(t, filepath.Join(t.TempDir(), "keys.json"))
}

func openStoreAt(t testing.TB, path string) keystore.Store {
	t.Helper()
	s, err := keystore.OpenFile(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func newManager(t testing.TB, opts keys.Options) *keys.Manager {
	t.Helper()
	if opts.TTL == 0 {
		opts.TTL = time.Minute
	}
	m, err := keys.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Close)
	return m
}

var ctx = context.Background()

func encrypt(t testing.TB, k *crypto.Key, pt string) []byte {
	t.Helper()
	ct, err := k.Encrypt(nil, []byte(pt), value.TypeText)
	if err != nil {
		t.Fatalf("encrypt with %q v%d: %v", k.Name(), k.Version(), err)
	}
	return ct
}

func mustDecrypt(t testing.TB, m *keys.Manager, name string, ct []byte, want string) {
	t.Helper()
	pt, typ, err := m.Decrypt(ctx, name, nil, ct)
	if err != nil {
		t.Fatalf("Decrypt(%q): %v", name, err)
	}
	if string(pt) != want || typ != value.TypeText {
		t.Fatalf("Decrypt(%q) = %q, %v; want %q, text", name, pt, typ, want)
	}
}

// mustInit creates the data keys of specs and fails the test if it cannot.
func mustInit(t testing.TB, m *keys.Manager, specs []keys.Spec) {
	t.Helper()
	if _, err := m.Init(ctx, specs); err != nil {
		t.Fatal(err)
	}
}

// mustPrimary returns the primary version of data key name and fails the
// test if there is none.
func mustPrimary(t testing.TB, m *keys.Manager, name string) *crypto.Key {
	t.Helper()
	k, err := m.Primary(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func versions(ks []*crypto.Key) []uint32 {
	var out []uint32
	for _, k := range ks {
		out = append(out, k.Version())
	}
	return out
}

// racingStore hides the first version(s) of a key from Get until hide
// reads have happened, as if another process created them between our read
// and our write.
type racingStore struct {
	keystore.Store
	name string
	hide atomic.Int32
}

func (s *racingStore) Get(ctx context.Context, name string) ([]keystore.Record, error) {
	recs, err := s.Store.Get(ctx, name)
	if name == s.name && len(recs) > 0 && s.hide.Add(-1) >= 0 {
		recs = recs[:len(recs)-1]
	}
	return recs, err
}

// gatedManager returns a manager with data key "a" whose master key holds
// every Unwrap until the test closes master.gate.
func gatedManager(t *testing.T) (*fakeMaster, *keys.Manager) {
	t.Helper()
	master := newFakeMaster(t, "m1")
	m := newManager(t, keys.Options{Store: openStore(t), Master: master})
	mustInit(t, m, []keys.Spec{{Name: "a", Algorithm: crypto.AlgorithmAESGCM}})
	master.gate = make(chan struct{})
	return master, m
}

// testLogger is a logger whose lines at level and above are kept in logs.
func testLogger(level slog.Level) (logger *slog.Logger, logs *testlog.Buffer) {
	logs = &testlog.Buffer{}
	return slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: level})), logs
}

// loggingManager returns a manager over a fresh store and master key whose
// log lines at level and above are collected in logs.
func loggingManager(t *testing.T, level slog.Level) (m *keys.Manager, logs *testlog.Buffer) {
	t.Helper()
	logger, logs := testLogger(level)
	m = newManager(t, keys.Options{Store: openStore(t), Master: newFakeMaster(t, "m1"), Logger: logger})
	return m, logs
}

// getCounter counts keystore reads of one name.
type getCounter struct {
	keystore.Store
	gets atomic.Int64
}

func (s *getCounter) Get(ctx context.Context, name string) ([]keystore.Record, error) {
	s.gets.Add(1)
	return s.Store.Get(ctx, name)
}

// mustBeDestroyed fails the test unless k, a key the test held on to,
// refuses to encrypt because its material was destroyed; what says which
// key it is.
func mustBeDestroyed(t testing.TB, k *crypto.Key, what string) {
	t.Helper()
	if _, err := k.Encrypt(nil, []byte("x"), value.TypeText); !errors.Is(err, crypto.ErrKeyDestroyed) {
		t.Fatalf("%s: Encrypt = %v, want ErrKeyDestroyed", what, err)
	}
}
