package rules_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/dbproxy/dbproxy/crypto"
	"github.com/dbproxy/dbproxy/crypto/keys"
	"github.com/dbproxy/dbproxy/internal/testkeys"
	"github.com/dbproxy/dbproxy/rules"
	"github.com/dbproxy/dbproxy/value"
)

var _ rules.Keys = (*keys.Manager)(nil)

// fakeKeys holds versions of named keys in memory, oldest first.
type fakeKeys struct {
	versions map[string][]*crypto.Key
	// destroyOnce makes the first key handed out already destroyed.
	destroyOnce bool
}

func newFakeKeys(t testing.TB) *fakeKeys {
	return &fakeKeys{versions: map[string][]*crypto.Key{}}
}

func (f *fakeKeys) add(t testing.TB, name string, alg crypto.Algorithm) *crypto.Key {
	t.Helper()
	k := testkeys.RandomKey(t, name, uint32(len(f.versions[name])+1), alg)
	f.versions[name] = append(f.versions[name], k)
	return k
}

func (f *fakeKeys) hand(k *crypto.Key) *crypto.Key {
	if f.destroyOnce {
		f.destroyOnce = false
		m, _ := crypto.NewRandomKeyMaterial(k.Algorithm())
		d, _ := crypto.NewKey(k.Name(), k.Version(), k.Algorithm(), m)
		d.Destroy()
		return d
	}
	return k
}

func (f *fakeKeys) Primary(_ context.Context, name string) (*crypto.Key, error) {
	v := f.versions[name]
	if len(v) == 0 {
		return nil, fmt.Errorf("data key %q not found", name)
	}
	return f.hand(v[len(v)-1]), nil
}

func (f *fakeKeys) Live(_ context.Context, name string) ([]*crypto.Key, error) {
	v := f.versions[name]
	if len(v) == 0 {
		return nil, fmt.Errorf("data key %q not found", name)
	}
	out := make([]*crypto.Key, 0, len(v))
	for i := len(v) - 1; i >= 0; i-- {
		out = append(out, f.hand(v[i]))
	}
	return out, nil
}

func (f *fakeKeys) Decrypt(_ context.Context, name string, dst, ct []byte) ([]byte, value.Type, error) {
	h, err := crypto.ParseHeader(ct)
	if err != nil {
		return nil, value.TypeUnknown, err
	}
	v := f.versions[name]
	if h.KeyVersion == 0 || int(h.KeyVersion) > len(v) {
		return nil, value.TypeUnknown, fmt.Errorf("data key %q version %d not found", name, h.KeyVersion)
	}
	return v[h.KeyVersion-1].Decrypt(dst, ct)
}

func encSetup(t testing.TB) (*rules.Encryptor, *fakeKeys, *rules.ColumnRule, *rules.ColumnRule, *rules.ColumnRule) {
	t.Helper()
	s := mustNew(t, rules.DialectPostgres, []rules.Spec{
		{Table: "users", Column: "email", Key: "users_email", Mode: rules.ModeDeterministic, Type: value.TypeText},
		{Table: "users", Column: "ssn", Key: "ssn", Mode: rules.ModeRandomized, Type: value.TypeText},
		{Table: "users", Column: "age", Key: "age", Mode: rules.ModeDeterministic, Type: value.TypeInt},
	})
	fk := newFakeKeys(t)
	fk.add(t, "users_email", crypto.AlgorithmAESSIV)
	fk.add(t, "ssn", crypto.AlgorithmXAESGCM)
	fk.add(t, "age", crypto.AlgorithmAESSIV)
	return rules.NewEncryptor(fk), fk,
		s.Column("", "public", "users", "email"), s.Column("", "public", "users", "ssn"), s.Column("", "public", "users", "age")
}

const secret = "alice-secret@example.com"

func TestEncryptorStoreRoundTrip(t *testing.T) {
	ctx := context.Background()
	e, _, email, ssn, _ := encSetup(t)
	for _, col := range []*rules.ColumnRule{email, ssn} {
		t.Run(col.Column, func(t *testing.T) {
			ct, err := e.EncryptForStore(ctx, col, []byte(secret))
			if err != nil {
				t.Fatal(err)
			}
			h, err := crypto.ParseHeader(ct)
			if err != nil {
				t.Fatal(err)
			}
			if h.Algorithm != col.Mode.Algorithm() || h.Type != value.TypeText || h.KeyVersion != 1 {
				t.Fatalf("header = %+v", h)
			}
			if bytes.Contains(ct, []byte(secret)) {
				t.Fatal("ciphertext contains the plaintext")
			}
			pt, err := e.Decrypt(ctx, col, ct)
			if err != nil {
				t.Fatal(err)
			}
			if string(pt) != secret {
				t.Fatalf("round trip = %q", pt)
			}
			pt2, err := e.AppendDecrypt(ctx, []byte("prefix:"), col, ct)
			if err != nil || string(pt2) != "prefix:"+secret {
				t.Fatalf("AppendDecrypt = %q, %v", pt2, err)
			}
		})
	}
	t.Run("deterministic is deterministic, randomized is not", func(t *testing.T) {
		a, _ := e.EncryptForStore(ctx, email, []byte(secret))
		b, _ := e.EncryptForStore(ctx, email, []byte(secret))
		if !bytes.Equal(a, b) {
			t.Error("deterministic store differs")
		}
		c, _ := e.EncryptForStore(ctx, ssn, []byte(secret))
		d, _ := e.EncryptForStore(ctx, ssn, []byte(secret))
		if bytes.Equal(c, d) {
			t.Error("randomized store repeats")
		}
	})
}

func TestEncryptorMatchAfterRotation(t *testing.T) {
	ctx := context.Background()
	e, fk, email, ssn, _ := encSetup(t)
	old, err := e.EncryptForStore(ctx, email, []byte(secret))
	if err != nil {
		t.Fatal(err)
	}
	if n, err := e.LiveVersions(ctx, email); err != nil || n != 1 {
		t.Fatalf("LiveVersions before rotation = %d, %v; want 1", n, err)
	}
	fk.add(t, "users_email", crypto.AlgorithmAESSIV) // keys rotate
	fk.add(t, "users_email", crypto.AlgorithmAESSIV)
	if n, err := e.LiveVersions(ctx, email); err != nil || n != 3 {
		t.Fatalf("LiveVersions after two rotations = %d, %v; want 3", n, err)
	}
	cur, err := e.EncryptForStore(ctx, email, []byte(secret))
	if err != nil {
		t.Fatal(err)
	}
	if h, _ := crypto.ParseHeader(cur); h.KeyVersion != 3 {
		t.Fatalf("store after rotation used version %d, want 3", h.KeyVersion)
	}
	m, err := e.EncryptForMatch(ctx, email, []byte(secret))
	if err != nil {
		t.Fatal(err)
	}
	if len(m) != 3 {
		t.Fatalf("match gave %d ciphertexts, want one per live version (3)", len(m))
	}
	for i, ct := range m {
		h, _ := crypto.ParseHeader(ct)
		if want := uint32(3 - i); h.KeyVersion != want {
			t.Errorf("match[%d] is version %d, want %d (newest first)", i, h.KeyVersion, want)
		}
	}
	if !bytes.Equal(m[0], cur) || !bytes.Equal(m[2], old) {
		t.Error("match ciphertexts do not equal what store wrote under each version")
	}
	// The ciphertexts must not alias each other.
	m[0][len(m[0])-1] ^= 1
	if bytes.Equal(m[1][:len(m[1])-1], m[0][:len(m[0])-1]) {
		t.Error("unexpected aliasing")
	}
	if _, err := e.EncryptForMatch(ctx, ssn, []byte(secret)); !errors.Is(err, rules.ErrRandomizedMatch) {
		t.Errorf("match on randomized column: %v, want ErrRandomizedMatch", err)
	}
}

func TestEncryptorRefuses(t *testing.T) {
	ctx := context.Background()
	e, fk, email, ssn, age := encSetup(t)
	emailCT, _ := e.EncryptForStore(ctx, email, []byte(secret))
	ssnCT, _ := e.EncryptForStore(ctx, ssn, []byte(secret))
	fortyTwo, _ := value.AppendCanonicalText(nil, value.TypeInt, []byte("42"))
	ageCT, _ := e.EncryptForStore(ctx, age, fortyTwo)

	// A column whose key has the wrong algorithm.
	wrongSet := mustNew(t, rules.DialectPostgres, []rules.Spec{
		{Table: "t", Column: "c", Key: "gcm_for_det", Mode: rules.ModeDeterministic, Type: value.TypeText},
		{Table: "t", Column: "x", Key: "xaes_for_det", Mode: rules.ModeDeterministic, Type: value.TypeText},
		{Table: "t", Column: "r", Key: "siv_for_rnd", Mode: rules.ModeRandomized, Type: value.TypeText},
	})
	wrong := wrongSet.Column("", "public", "t", "c")
	wrongX := wrongSet.Column("", "public", "t", "x")
	wrongR := wrongSet.Column("", "public", "t", "r")
	fk.add(t, "gcm_for_det", crypto.AlgorithmAESGCM)
	fk.add(t, "xaes_for_det", crypto.AlgorithmXAESGCM)
	fk.add(t, "siv_for_rnd", crypto.AlgorithmAESSIV)

	// Same key name and algorithm as email, but the column claims another type.
	typeSet := mustNew(t, rules.DialectPostgres, []rules.Spec{{Table: "t", Column: "c", Key: "users_email", Mode: rules.ModeDeterministic, Type: value.TypeBytes}})
	bytesCol := typeSet.Column("", "public", "t", "c")

	tests := []struct {
		name string
		run  func() error
		is   error
		want string
	}{
		{"store with wrong algorithm", func() error { _, err := e.EncryptForStore(ctx, wrong, []byte(secret)); return err }, rules.ErrAlgorithm, "AES-256-GCM"},
		{"match with wrong algorithm", func() error { _, err := e.EncryptForMatch(ctx, wrong, []byte(secret)); return err }, rules.ErrAlgorithm, "deterministic"},
		{"store with xaes key on deterministic column", func() error { _, err := e.EncryptForStore(ctx, wrongX, []byte(secret)); return err }, rules.ErrAlgorithm, "XAES-256-GCM"},
		{"match with xaes key", func() error { _, err := e.EncryptForMatch(ctx, wrongX, []byte(secret)); return err }, rules.ErrAlgorithm, "XAES-256-GCM"},
		{"store with siv key on randomized column", func() error { _, err := e.EncryptForStore(ctx, wrongR, []byte(secret)); return err }, rules.ErrAlgorithm, "AES-256-SIV"},
		{"store non-canonical", func() error { _, err := e.EncryptForStore(ctx, age, []byte("42")); return err }, value.ErrCorrupt, "age"},
		{"match non-canonical", func() error { _, err := e.EncryptForMatch(ctx, age, []byte{1}); return err }, value.ErrCorrupt, "age"},
		{"store unknown key", func() error {
			s := mustNew(t, rules.DialectPostgres, []rules.Spec{{Table: "t", Column: "c", Key: "missing", Mode: rules.ModeRandomized, Type: value.TypeText}})
			_, err := e.EncryptForStore(ctx, s.Column("", "public", "t", "c"), []byte(secret))
			return err
		}, nil, "missing"},
		{"decrypt randomized ciphertext as deterministic column", func() error { _, err := e.Decrypt(ctx, email, ssnCT); return err }, rules.ErrAlgorithm, "public.users.email"},
		{"decrypt deterministic ciphertext as randomized column", func() error { _, err := e.Decrypt(ctx, ssn, emailCT); return err }, rules.ErrAlgorithm, "public.users.ssn"},
		{"decrypt other type", func() error { _, err := e.Decrypt(ctx, bytesCol, emailCT); return err }, rules.ErrWrongType, "text"},
		{"decrypt int as text column", func() error { _, err := e.Decrypt(ctx, email, ageCT); return err }, rules.ErrWrongType, "int"},
		{"decrypt with other key", func() error { _, err := e.Decrypt(ctx, age, append(emailCT[:6:6], byte(value.TypeInt))); return err }, nil, "age"},
		{"decrypt tampered", func() error {
			ct := bytes.Clone(emailCT)
			ct[len(ct)-1] ^= 1
			_, err := e.Decrypt(ctx, email, ct)
			return err
		}, crypto.ErrDecrypt, "public.users.email"},
		{"decrypt garbage", func() error { _, err := e.Decrypt(ctx, email, []byte(secret)); return err }, crypto.ErrMalformed, "public.users.email"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.run()
			if err == nil {
				t.Fatal("succeeded")
			}
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Errorf("error %v does not wrap %v", err, tt.is)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not mention %q", err, tt.want)
			}
			if strings.Contains(err.Error(), secret) {
				t.Errorf("error contains the value: %q", err)
			}
		})
	}
}

func TestEncryptorRetriesDestroyedKey(t *testing.T) {
	ctx := context.Background()
	e, fk, email, ssn, _ := encSetup(t)
	for _, col := range []*rules.ColumnRule{email, ssn} {
		fk.destroyOnce = true
		if _, err := e.EncryptForStore(ctx, col, []byte(secret)); err != nil {
			t.Errorf("store %s with a key evicted once: %v", col, err)
		}
	}
	fk.destroyOnce = true
	if m, err := e.EncryptForMatch(ctx, email, []byte(secret)); err != nil || len(m) != 1 {
		t.Errorf("match with a key evicted once: %d, %v", len(m), err)
	}
}

func BenchmarkEncryptor(b *testing.B) {
	ctx := context.Background()
	e, _, email, ssn, _ := encSetup(b)
	pt := []byte(secret)
	buf := make([]byte, 0, 256)
	b.Run("store/randomized", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_, _ = e.AppendStore(ctx, buf[:0], ssn, pt)
		}
	})
	b.Run("store/deterministic", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_, _ = e.AppendStore(ctx, buf[:0], email, pt)
		}
	})
	b.Run("match/1version", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_, _ = e.EncryptForMatch(ctx, email, pt)
		}
	})
	ct, _ := e.EncryptForStore(ctx, ssn, pt)
	b.Run("decrypt/randomized", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_, _ = e.AppendDecrypt(ctx, buf[:0], ssn, ct)
		}
	})
}

func TestEncryptorAppendMatch(t *testing.T) {
	ctx := context.Background()
	e, fk, email, ssn, _ := encSetup(t)
	fk.add(t, "users_email", crypto.AlgorithmAESSIV)
	want, err := e.EncryptForMatch(ctx, email, []byte(secret))
	if err != nil || len(want) != 2 {
		t.Fatalf("EncryptForMatch = %d, %v", len(want), err)
	}
	buf := []byte("prefix")
	cts := [][]byte{[]byte("first")}
	buf, cts, err = e.AppendMatch(ctx, buf, cts, email, []byte(secret))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(buf, []byte("prefix")) || len(cts) != 3 || string(cts[0]) != "first" {
		t.Fatalf("AppendMatch did not append: buf %q, %d cts", buf[:6], len(cts))
	}
	for i, ct := range cts[1:] {
		if !bytes.Equal(ct, want[i]) {
			t.Errorf("ciphertext %d differs from EncryptForMatch's", i)
		}
		if cap(ct) != len(ct) {
			t.Errorf("ciphertext %d has spare capacity", i)
		}
	}
	if _, _, err := e.AppendMatch(ctx, buf, cts, ssn, []byte(secret)); !errors.Is(err, rules.ErrRandomizedMatch) {
		t.Errorf("AppendMatch on randomized column: %v", err)
	}
	fk.destroyOnce = true
	if _, cts, err := e.AppendMatch(ctx, buf[:0], cts[:0], email, []byte(secret)); err != nil || len(cts) != 2 || !bytes.Equal(cts[0], want[0]) {
		t.Errorf("AppendMatch with a key evicted once: %d, %v", len(cts), err)
	}
}

// TestEncryptorManagerConcurrent runs the Encryptor over a real key manager
// from several goroutines (run it with -race): results of concurrent
// calls, which share pooled key lists, must not mix.
func TestEncryptorManagerConcurrent(t *testing.T) {
	ctx := context.Background()
	specs := []rules.Spec{
		{Table: "t", Column: "a", Key: "ka", Mode: rules.ModeDeterministic, Type: value.TypeText},
		{Table: "t", Column: "b", Key: "kb", Mode: rules.ModeDeterministic, Type: value.TypeText},
		{Table: "t", Column: "r", Key: "kr", Mode: rules.ModeRandomized, Type: value.TypeText},
	}
	s := mustNew(t, rules.DialectPostgres, specs)
	m := testkeys.Manager(t, testkeys.ForRules(specs)...)
	if _, err := m.Rotate(ctx, "kb"); err != nil {
		t.Fatal(err)
	}
	e := rules.NewEncryptor(m)
	cols := []*rules.ColumnRule{s.Column("", "public", "t", "a"), s.Column("", "public", "t", "b")}
	rnd := s.Column("", "public", "t", "r")
	want := map[*rules.ColumnRule][][]byte{}
	for _, c := range cols {
		cts, err := e.EncryptForMatch(ctx, c, []byte(c.Column))
		if err != nil {
			t.Fatal(err)
		}
		want[c] = cts
	}
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			var buf []byte
			var cts [][]byte
			for i := range 300 {
				c := cols[(g+i)%2]
				var err error
				buf, cts, err = e.AppendMatch(ctx, buf[:0], cts[:0], c, []byte(c.Column))
				if err != nil {
					t.Error(err)
					return
				}
				if len(cts) != len(want[c]) {
					t.Errorf("%s: %d ciphertexts, want %d", c, len(cts), len(want[c]))
					return
				}
				for j := range cts {
					if !bytes.Equal(cts[j], want[c][j]) {
						t.Errorf("%s: ciphertext %d differs", c, j)
						return
					}
				}
				if n, err := e.LiveVersions(ctx, c); err != nil || n != len(want[c]) {
					t.Errorf("LiveVersions(%s) = %d, %v", c, n, err)
				}
				ct, err := e.AppendStore(ctx, nil, rnd, []byte("v"))
				if err != nil {
					t.Error(err)
					return
				}
				if pt, err := e.Decrypt(ctx, rnd, ct); err != nil || string(pt) != "v" {
					t.Errorf("Decrypt = %q, %v", pt, err)
				}
			}
		})
	}
	wg.Wait()
}

// TestEncryptorLegacyRandomizedKey: a randomized column whose key has a
// legacy AES-256-GCM version keeps writing under it until a rotation adds
// an XAES-256-GCM version; from then on new values are XAES-256-GCM (47
// bytes of overhead), and values of both versions decrypt.
func TestEncryptorLegacyRandomizedKey(t *testing.T) {
	ctx := context.Background()
	s := mustNew(t, rules.DialectPostgres, []rules.Spec{{Table: "users", Column: "ssn", Key: "ssn", Mode: rules.ModeRandomized, Type: value.TypeText}})
	col := s.Column("", "public", "users", "ssn")
	fk := newFakeKeys(t)
	fk.add(t, "ssn", crypto.AlgorithmAESGCM)
	e := rules.NewEncryptor(fk)

	legacy, err := e.EncryptForStore(ctx, col, []byte(secret))
	if err != nil {
		t.Fatal(err)
	}
	if h, _ := crypto.ParseHeader(legacy); h.Algorithm != crypto.AlgorithmAESGCM || h.KeyVersion != 1 || len(legacy) != len(secret)+35 {
		t.Fatalf("legacy ciphertext: %+v, %d bytes; want AES-256-GCM v1, %d bytes", h, len(legacy), len(secret)+35)
	}
	fk.add(t, "ssn", crypto.AlgorithmXAESGCM) // keys rotate
	cur, err := e.EncryptForStore(ctx, col, []byte(secret))
	if err != nil {
		t.Fatal(err)
	}
	if h, _ := crypto.ParseHeader(cur); h.Algorithm != crypto.AlgorithmXAESGCM || h.KeyVersion != 2 || len(cur) != len(secret)+47 {
		t.Fatalf("ciphertext after rotation: %+v, %d bytes; want XAES-256-GCM v2, %d bytes", h, len(cur), len(secret)+47)
	}
	for _, ct := range [][]byte{legacy, cur} {
		pt, err := e.Decrypt(ctx, col, ct)
		if err != nil || string(pt) != secret {
			t.Fatalf("Decrypt(0x%02x) = %q, %v", ct[1], pt, err)
		}
	}
	if _, err := e.EncryptForMatch(ctx, col, []byte(secret)); !errors.Is(err, rules.ErrRandomizedMatch) {
		t.Fatalf("match on randomized column: %v", err)
	}
}

func TestModeAccepts(t *testing.T) {
	gcm, siv, xaes := crypto.AlgorithmAESGCM, crypto.AlgorithmAESSIV, crypto.AlgorithmXAESGCM
	tests := []struct {
		mode rules.Mode
		alg  crypto.Algorithm
		want bool
	}{
		{rules.ModeRandomized, xaes, true},
		{rules.ModeRandomized, gcm, true},
		{rules.ModeRandomized, siv, false},
		{rules.ModeRandomized, crypto.AlgorithmUnknown, false},
		{rules.ModeDeterministic, siv, true},
		{rules.ModeDeterministic, gcm, false},
		{rules.ModeDeterministic, xaes, false},
		{rules.ModeUnknown, xaes, false},
		{rules.ModeUnknown, siv, false},
	}
	for _, tt := range tests {
		if got := tt.mode.Accepts(tt.alg); got != tt.want {
			t.Errorf("%s.Accepts(%s) = %v, want %v", tt.mode, tt.alg, got, tt.want)
		}
	}
	if rules.ModeRandomized.Algorithm() != xaes || rules.ModeDeterministic.Algorithm() != siv {
		t.Errorf("new keys: randomized %s, deterministic %s; want XAES-256-GCM, AES-256-SIV",
			rules.ModeRandomized.Algorithm(), rules.ModeDeterministic.Algorithm())
	}
	for _, a := range []crypto.Algorithm{gcm, xaes} {
		if a.Overhead() > rules.ModeRandomized.Algorithm().Overhead() {
			t.Errorf("%s overhead %d exceeds the randomized mode's %d", a, a.Overhead(), rules.ModeRandomized.Algorithm().Overhead())
		}
	}
}

var snapSpecs = []rules.Spec{
	{Table: "users", Column: "email", Key: "users_email", Mode: rules.ModeDeterministic, Type: value.TypeText},
	{Table: "users", Column: "ssn", Key: "ssn", Mode: rules.ModeRandomized, Type: value.TypeText},
}

// TestEncryptorManagerRotation: with a key manager, whose lookups the
// Encryptor keeps per column, a rotation in this process is visible to
// the very next value: lookups match both versions, stores use the new
// one, and values of every version decrypt.
func TestEncryptorManagerRotation(t *testing.T) {
	ctx := context.Background()
	s := mustNew(t, rules.DialectPostgres, snapSpecs)
	email, ssn := s.Column("", "public", "users", "email"), s.Column("", "public", "users", "ssn")
	m := testkeys.Manager(t, testkeys.ForRules(snapSpecs)...)
	e := rules.NewEncryptor(m)

	var ssnCts [][]byte
	for round := 1; round <= 3; round++ {
		for range 3 { // hits after the first
			cts, err := e.EncryptForMatch(ctx, email, []byte(secret))
			if err != nil || len(cts) != round {
				t.Fatalf("round %d: match gave %d ciphertexts, %v; want %d", round, len(cts), err, round)
			}
			for i, ct := range cts {
				if h, _ := crypto.ParseHeader(ct); h.KeyVersion != uint32(round-i) {
					t.Fatalf("round %d: match[%d] is version %d", round, i, h.KeyVersion)
				}
			}
			if n, err := e.LiveVersions(ctx, email); err != nil || n != round {
				t.Fatalf("round %d: LiveVersions = %d, %v", round, n, err)
			}
			for _, col := range []*rules.ColumnRule{email, ssn} {
				ct, err := e.EncryptForStore(ctx, col, []byte(secret))
				if err != nil {
					t.Fatal(err)
				}
				if h, _ := crypto.ParseHeader(ct); h.KeyVersion != uint32(round) {
					t.Fatalf("round %d: %s stored under version %d", round, col, h.KeyVersion)
				}
				if col == ssn {
					ssnCts = append(ssnCts, ct)
				}
			}
			for _, ct := range ssnCts {
				if pt, err := e.Decrypt(ctx, ssn, ct); err != nil || string(pt) != secret {
					t.Fatalf("round %d: decrypt = %q, %v", round, pt, err)
				}
			}
		}
		for _, k := range []string{"users_email", "ssn"} {
			if _, err := m.Rotate(ctx, k); err != nil {
				t.Fatal(err)
			}
		}
	}
	m.Close()
	if _, err := e.EncryptForMatch(ctx, email, []byte(secret)); err == nil {
		t.Fatal("match after the key manager closed succeeded")
	}
	if ct, err := e.EncryptForStore(ctx, ssn, []byte(secret)); err == nil || ct != nil {
		t.Fatalf("store after the key manager closed = %x, %v", ct, err)
	}
	if _, err := e.Decrypt(ctx, ssn, ssnCts[0]); !errors.Is(err, keys.ErrClosed) {
		t.Fatalf("decrypt after the key manager closed: %v, want ErrClosed", err)
	}
}

// TestEncryptorManagerEvictions: a key cache of one entry, which every
// other value evicts (destroying the key a column's snapshot holds):
// every value still encrypts and decrypts, under the right keys.
func TestEncryptorManagerEvictions(t *testing.T) {
	ctx := context.Background()
	s := mustNew(t, rules.DialectPostgres, snapSpecs)
	email, ssn := s.Column("", "public", "users", "email"), s.Column("", "public", "users", "ssn")
	m := testkeys.ManagerWith(t, keys.Options{MaxEntries: 1}, testkeys.ForRules(snapSpecs)...)
	e := rules.NewEncryptor(m)
	want, err := e.EncryptForMatch(ctx, email, []byte(secret))
	if err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		ct, err := e.EncryptForStore(ctx, ssn, []byte(secret))
		if err != nil {
			t.Fatalf("%d: store: %v", i, err)
		}
		got, err := e.EncryptForMatch(ctx, email, []byte(secret))
		if err != nil || len(got) != 1 || !bytes.Equal(got[0], want[0]) {
			t.Fatalf("%d: match = %x, %v", i, got, err)
		}
		if pt, err := e.Decrypt(ctx, ssn, ct); err != nil || string(pt) != secret {
			t.Fatalf("%d: decrypt = %q, %v", i, pt, err)
		}
	}
}
