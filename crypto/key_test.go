package crypto_test

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"

	"github.com/tink-crypto/tink-go/v2/daead/subtle"

	"github.com/dbproxy/dbproxy/crypto"
	"github.com/dbproxy/dbproxy/value"
)

var algorithms = []crypto.Algorithm{crypto.AlgorithmAESGCM, crypto.AlgorithmAESSIV, crypto.AlgorithmXAESGCM}

// associatedData builds AD = header || uint16 BE len(name) || name
// (docs/ciphertext.md) independently of the package.
func associatedData(header []byte, name string) []byte {
	ad := append([]byte(nil), header...)
	ad = binary.BigEndian.AppendUint16(ad, uint16(len(name)))
	return append(ad, name...)
}

// allTypes lists every valid plaintext type.
func allTypes() []value.Type {
	var ts []value.Type
	for t := value.Type(1); t.Valid(); t++ {
		ts = append(ts, t)
	}
	return ts
}

// testMaterial returns alg.KeySize() bytes seeded by seed (deterministic,
// distinct per seed).
func testMaterial(alg crypto.Algorithm, seed byte) []byte {
	b := make([]byte, alg.KeySize())
	for i := range b {
		b[i] = seed + byte(i)*7
	}
	return b
}

// encryptText encrypts pt as text under k.
func encryptText(t testing.TB, k *crypto.Key, pt []byte) []byte {
	t.Helper()
	ct, err := k.Encrypt(nil, pt, value.TypeText)
	if err != nil {
		t.Fatal(err)
	}
	return ct
}

func newTestKey(t testing.TB, name string, version uint32, alg crypto.Algorithm, material []byte) *crypto.Key {
	t.Helper()
	k, err := crypto.NewKey(name, version, alg, material)
	if err != nil {
		t.Fatalf("NewKey(%q, %d, %s): %v", name, version, alg, err)
	}
	return k
}

func TestAlgorithm(t *testing.T) {
	// props is what an Algorithm tells about itself.
	type props struct {
		name                                           string
		keySize, overhead                              int
		valid, deterministic, randomized, nonceLimited bool
	}
	tests := []struct {
		alg  crypto.Algorithm
		want props
	}{
		{crypto.AlgorithmAESGCM, props{"AES-256-GCM", 32, 35, true, false, true, true}},
		{crypto.AlgorithmAESSIV, props{"AES-256-SIV", 64, 23, true, true, false, false}},
		{crypto.AlgorithmXAESGCM, props{"XAES-256-GCM", 32, 47, true, false, true, false}},
		{crypto.AlgorithmUnknown, props{"Algorithm(0)", 0, 0, false, false, false, false}},
		{crypto.Algorithm(4), props{"Algorithm(4)", 0, 0, false, false, false, false}},
	}
	for _, tt := range tests {
		t.Run(tt.want.name, func(t *testing.T) {
			a := tt.alg
			got := props{a.String(), a.KeySize(), a.Overhead(), a.Valid(), a.Deterministic(), a.Randomized(), a.NonceLimited()}
			if got != tt.want {
				t.Errorf("String, KeySize, Overhead, Valid, Deterministic, Randomized, NonceLimited = %+v, want %+v", got, tt.want)
			}
			text, err := tt.alg.MarshalText()
			if !tt.want.valid {
				if err == nil {
					t.Errorf("MarshalText() = %q, want error", text)
				}
				return
			}
			if err != nil || string(text) != tt.want.name {
				t.Fatalf("MarshalText() = %q, %v; want %q", text, err, tt.want.name)
			}
			var back crypto.Algorithm
			if err := back.UnmarshalText(text); err != nil || back != tt.alg {
				t.Errorf("UnmarshalText(%q) = %v, %v; want %v", text, back, err, tt.alg)
			}
		})
	}
}

func TestAlgorithmJSON(t *testing.T) {
	type record struct {
		Algorithm crypto.Algorithm `json:"algorithm"`
	}
	for _, alg := range algorithms {
		b, err := json.Marshal(record{alg})
		if err != nil {
			t.Fatalf("marshal %v: %v", alg, err)
		}
		want := `{"algorithm":"` + alg.String() + `"}`
		if string(b) != want {
			t.Errorf("json = %s, want %s", b, want)
		}
		var back record
		if err := json.Unmarshal(b, &back); err != nil || back.Algorithm != alg {
			t.Errorf("unmarshal %s = %v, %v", b, back.Algorithm, err)
		}
	}
	for _, bad := range []string{`{"algorithm":"aes-256-gcm"}`, `{"algorithm":""}`, `{"algorithm":1}`, `{"algorithm":"AES-128-GCM"}`} {
		var r record
		if err := json.Unmarshal([]byte(bad), &r); err == nil {
			t.Errorf("unmarshal %s = %v, want error", bad, r.Algorithm)
		}
	}
	if _, err := json.Marshal(record{}); err == nil {
		t.Error("marshal of the zero Algorithm succeeded, want error")
	}
}

func TestNewKeyRejects(t *testing.T) {
	tests := []struct {
		name     string
		keyName  string
		alg      crypto.Algorithm
		material []byte
		wantErr  string
	}{
		{"gcm short key", "k", crypto.AlgorithmAESGCM, make([]byte, 31), "32-byte key"},
		{"gcm long key", "k", crypto.AlgorithmAESGCM, make([]byte, 64), "32-byte key"},
		{"gcm 16-byte key", "k", crypto.AlgorithmAESGCM, make([]byte, 16), "32-byte key"},
		{"siv 32-byte key", "k", crypto.AlgorithmAESSIV, make([]byte, 32), "64-byte key"},
		{"siv 65-byte key", "k", crypto.AlgorithmAESSIV, make([]byte, 65), "64-byte key"},
		{"nil material", "k", crypto.AlgorithmAESSIV, nil, "64-byte key"},
		{"unknown algorithm", "k", crypto.AlgorithmUnknown, make([]byte, 32), "invalid algorithm"},
		{"algorithm 4", "k", crypto.Algorithm(4), make([]byte, 32), "invalid algorithm"},
		{"empty name", "", crypto.AlgorithmAESGCM, make([]byte, 32), "empty key name"},
		{"name too long", strings.Repeat("n", crypto.MaxKeyNameLen+1), crypto.AlgorithmAESGCM, make([]byte, 32), "longer than"},
		{"name not utf-8", "users\xff", crypto.AlgorithmAESGCM, make([]byte, 32), "UTF-8"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k, err := crypto.NewKey(tt.keyName, 1, tt.alg, tt.material)
			if err == nil {
				t.Fatalf("NewKey = %v, want error", k)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("error %q does not mention %q", err, tt.wantErr)
			}
		})
	}
	// The longest name is accepted and round-trips.
	long := strings.Repeat("n", crypto.MaxKeyNameLen)
	k := newTestKey(t, long, 1, crypto.AlgorithmAESSIV, testMaterial(crypto.AlgorithmAESSIV, 1))
	ct := encryptText(t, k, []byte("x"))
	if pt, _, err := k.Decrypt(nil, ct); err != nil || string(pt) != "x" {
		t.Fatalf("Decrypt = %q, %v", pt, err)
	}
}

func TestKeyAccessors(t *testing.T) {
	k := newTestKey(t, "public.users.email", 42, crypto.AlgorithmAESSIV, testMaterial(crypto.AlgorithmAESSIV, 1))
	if k.Name() != "public.users.email" || k.Version() != 42 || k.Algorithm() != crypto.AlgorithmAESSIV {
		t.Errorf("accessors = %q %d %v", k.Name(), k.Version(), k.Algorithm())
	}
}

// NewKey must not keep the caller's buffer: zeroing it afterwards must not
// change what the key does.
func TestNewKeyDoesNotRetainMaterial(t *testing.T) {
	for _, alg := range algorithms {
		t.Run(alg.String(), func(t *testing.T) {
			material := testMaterial(alg, 9)
			reference := newTestKey(t, "k", 1, alg, bytes.Clone(material))
			k := newTestKey(t, "k", 1, alg, material)
			clear(material)

			pt := []byte("survives zeroing")
			ct := encryptText(t, k, pt)
			if got, _, err := reference.Decrypt(nil, ct); err != nil || !bytes.Equal(got, pt) {
				t.Fatalf("reference.Decrypt = %q, %v; the key changed when its material was zeroed", got, err)
			}
			if alg == crypto.AlgorithmAESSIV {
				want, _ := reference.Encrypt(nil, pt, value.TypeText)
				if !bytes.Equal(ct, want) {
					t.Fatalf("ciphertext changed after zeroing material")
				}
			}
		})
	}
}

func TestRoundTrip(t *testing.T) {
	sizes := []int{0, 1, 16, 100, 1024, 1 << 20}
	for _, alg := range algorithms {
		k := newTestKey(t, "public.users.email", 3, alg, testMaterial(alg, 1))
		for _, typ := range allTypes() {
			for _, size := range sizes {
				t.Run(fmt.Sprintf("%s/%s/%d", alg, typ, size), func(t *testing.T) {
					pt := make([]byte, size)
					for i := range pt {
						pt[i] = byte(i*31 + int(typ))
					}
					ct, err := k.Encrypt(nil, pt, typ)
					if err != nil {
						t.Fatalf("Encrypt: %v", err)
					}
					if len(ct) != size+alg.Overhead() {
						t.Errorf("len(ct) = %d, want %d", len(ct), size+alg.Overhead())
					}
					if size >= 16 && bytes.Contains(ct, pt[:16]) {
						t.Errorf("ciphertext contains the plaintext")
					}
					got, gotType, err := k.Decrypt(nil, ct)
					if err != nil {
						t.Fatalf("Decrypt: %v", err)
					}
					if gotType != typ {
						t.Errorf("type = %v, want %v", gotType, typ)
					}
					if !bytes.Equal(got, pt) {
						t.Errorf("plaintext mismatch (len %d, want %d)", len(got), len(pt))
					}
				})
			}
		}
	}
}

func TestEncryptRejectsInvalidType(t *testing.T) {
	for _, alg := range algorithms {
		k := newTestKey(t, "k", 1, alg, testMaterial(alg, 1))
		for _, typ := range []value.Type{value.TypeUnknown, value.Type(len(allTypes()) + 1), value.Type(255)} {
			if ct, err := k.Encrypt(nil, []byte("x"), typ); err == nil {
				t.Errorf("%s: Encrypt(type %d) = %x, want error", alg, byte(typ), ct)
			}
		}
	}
}

// Encrypt and Decrypt append to dst and leave its prefix alone.
func TestAppendsToDst(t *testing.T) {
	for _, alg := range algorithms {
		t.Run(alg.String(), func(t *testing.T) {
			k := newTestKey(t, "k", 1, alg, testMaterial(alg, 1))
			prefix := []byte("prefix:")
			ct, err := k.Encrypt(bytes.Clone(prefix), []byte("hello"), value.TypeText)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.HasPrefix(ct, prefix) {
				t.Fatalf("Encrypt lost the dst prefix")
			}
			ct = ct[len(prefix):]
			if len(ct) != 5+alg.Overhead() {
				t.Fatalf("len = %d", len(ct))
			}
			pt, _, err := k.Decrypt(bytes.Clone(prefix), ct)
			if err != nil || string(pt) != "prefix:hello" {
				t.Fatalf("Decrypt = %q, %v", pt, err)
			}
			// Reusing a buffer with enough capacity.
			buf := make([]byte, 0, 64)
			pt, _, err = k.Decrypt(buf, ct)
			if err != nil || string(pt) != "hello" {
				t.Fatalf("Decrypt into buffer = %q, %v", pt, err)
			}
			if &pt[0] != &buf[:1][0] {
				t.Errorf("Decrypt did not reuse dst's capacity")
			}
		})
	}
}

// The header is exactly docs/ciphertext.md, and the payload is exactly the raw
// primitive's output over AD = header || uint16 BE len(name) || name, built
// here independently of the package.
func TestHeaderLayoutAndAssociatedData(t *testing.T) {
	const name = "public.users.email"
	const version = 0x01020304
	pt := []byte("alice@example.com")
	for _, alg := range algorithms {
		t.Run(alg.String(), func(t *testing.T) {
			material := testMaterial(alg, 5)
			k := newTestKey(t, name, version, alg, bytes.Clone(material))
			ct := encryptText(t, k, pt)
			wantHeader := []byte{0x01, byte(alg), 0x01, 0x02, 0x03, 0x04, byte(value.TypeText)}
			for i, b := range wantHeader {
				if ct[i] != b {
					t.Errorf("header byte %d = 0x%02x, want 0x%02x", i, ct[i], b)
				}
			}
			ad := associatedData(ct[:crypto.HeaderSize], name)
			wantAD := append(bytes.Clone(wantHeader), 0x00, byte(len(name)))
			wantAD = append(wantAD, name...)
			if !bytes.Equal(ad, wantAD) {
				t.Fatalf("AD construction mismatch")
			}
			payload := ct[crypto.HeaderSize:]
			switch alg {
			case crypto.AlgorithmAESGCM:
				block, err := aes.NewCipher(material)
				if err != nil {
					t.Fatal(err)
				}
				gcm, err := cipher.NewGCM(block)
				if err != nil {
					t.Fatal(err)
				}
				if len(payload) != 12+len(pt)+16 {
					t.Fatalf("payload len = %d, want nonce(12)+%d+tag(16)", len(payload), len(pt))
				}
				got, err := gcm.Open(nil, payload[:12], payload[12:], ad)
				if err != nil || !bytes.Equal(got, pt) {
					t.Fatalf("stdlib GCM open of payload with spec AD = %q, %v", got, err)
				}
			case crypto.AlgorithmAESSIV:
				siv, err := subtle.NewAESSIV(material)
				if err != nil {
					t.Fatal(err)
				}
				want, err := siv.EncryptDeterministically(pt, ad)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(payload, want) {
					t.Fatalf("payload = %x, want Tink AES-SIV output %x", payload, want)
				}
			case crypto.AlgorithmXAESGCM:
				if len(payload) != 24+len(pt)+16 {
					t.Fatalf("payload len = %d, want nonce(24)+%d+tag(16)", len(payload), len(pt))
				}
				got, err := tinkXAES(t, material).Decrypt(payload, ad)
				if err != nil || !bytes.Equal(got, pt) {
					t.Fatalf("Tink X-AES-GCM decrypt of payload with spec AD = %q, %v", got, err)
				}
			default:
				t.Fatalf("no independent check for %s", alg)
			}
		})
	}
}

func TestParseHeader(t *testing.T) {
	for _, alg := range algorithms {
		k := newTestKey(t, "k", 77, alg, testMaterial(alg, 1))
		ct, err := k.Encrypt(nil, nil, value.TypeUUID)
		if err != nil {
			t.Fatal(err)
		}
		h, err := crypto.ParseHeader(ct)
		if err != nil {
			t.Fatalf("%s: ParseHeader: %v", alg, err)
		}
		want := crypto.Header{Algorithm: alg, KeyVersion: 77, Type: value.TypeUUID}
		if h != want {
			t.Errorf("%s: ParseHeader = %+v, want %+v", alg, h, want)
		}
		if !crypto.IsCiphertext(ct) {
			t.Errorf("%s: IsCiphertext(valid) = false", alg)
		}
		// Minimum-length boundary: one byte less is malformed.
		if crypto.IsCiphertext(ct[:len(ct)-1]) {
			t.Errorf("%s: IsCiphertext(short by one) = true", alg)
		}
		if _, err := crypto.ParseHeader(ct[:len(ct)-1]); !errors.Is(err, crypto.ErrMalformed) {
			t.Errorf("%s: ParseHeader(short by one) = %v, want ErrMalformed", alg, err)
		}
	}
	for _, b := range [][]byte{nil, {}, []byte("hello world, this is plain text"), bytes.Repeat([]byte{0}, 64)} {
		if crypto.IsCiphertext(b) {
			t.Errorf("IsCiphertext(%q) = true", b)
		}
		if _, err := crypto.ParseHeader(b); !errors.Is(err, crypto.ErrMalformed) {
			t.Errorf("ParseHeader(%q) = %v, want ErrMalformed", b, err)
		}
	}
	if n := testing.AllocsPerRun(100, func() { crypto.IsCiphertext([]byte("not a ciphertext at all........")) }); n != 0 {
		t.Errorf("IsCiphertext allocates %v times", n)
	}
}

// Header-level problems get distinct, descriptive errors that are not
// ErrDecrypt.
func TestDecryptHeaderErrors(t *testing.T) {
	gcmKey := newTestKey(t, "k", 5, crypto.AlgorithmAESGCM, testMaterial(crypto.AlgorithmAESGCM, 1))
	sivKey := newTestKey(t, "k", 5, crypto.AlgorithmAESSIV, testMaterial(crypto.AlgorithmAESSIV, 1))
	// The same 32 bytes as gcmKey: one key version is one algorithm, and a
	// ciphertext of the other randomized algorithm is refused by header.
	xaesKey := newTestKey(t, "k", 5, crypto.AlgorithmXAESGCM, testMaterial(crypto.AlgorithmXAESGCM, 1))
	sivCT, err := sivKey.Encrypt(nil, []byte("some value"), value.TypeText)
	if err != nil {
		t.Fatal(err)
	}
	with := func(i int, b byte) []byte {
		c := bytes.Clone(sivCT)
		c[i] = b
		return c
	}
	tests := []struct {
		name    string
		key     *crypto.Key
		ct      []byte
		wantIs  error
		wantMsg string
	}{
		{"empty", sivKey, nil, crypto.ErrMalformed, "shorter than the 7-byte header"},
		{"header only", sivKey, sivCT[:7], crypto.ErrMalformed, "shorter than the 23-byte minimum"},
		{"gcm too short", gcmKey, append([]byte{1, 1, 0, 0, 0, 5, 1}, make([]byte, 27)...), crypto.ErrMalformed, "35-byte minimum"},
		{"xaes too short", xaesKey, append([]byte{1, 3, 0, 0, 0, 5, 1}, make([]byte, 39)...), crypto.ErrMalformed, "47-byte minimum of an XAES-256-GCM"},
		{"gcm ciphertext under an xaes key", xaesKey, append([]byte{1, 1, 0, 0, 0, 5, 1}, make([]byte, 40)...), crypto.ErrKeyMismatch, "ciphertext is AES-256-GCM, key is XAES-256-GCM"},
		{"xaes ciphertext under a gcm key", gcmKey, append([]byte{1, 3, 0, 0, 0, 5, 1}, make([]byte, 40)...), crypto.ErrKeyMismatch, "ciphertext is XAES-256-GCM, key is AES-256-GCM"},
		{"format version 0", sivKey, with(0, 0x00), crypto.ErrMalformed, "unsupported format version 0x00"},
		{"format version 2", sivKey, with(0, 0x02), crypto.ErrMalformed, "unsupported format version 0x02"},
		{"algorithm 0", sivKey, with(1, 0x00), crypto.ErrMalformed, "unknown algorithm 0x00"},
		{"algorithm 9", sivKey, with(1, 0x09), crypto.ErrMalformed, "unknown algorithm 0x09"},
		{"type code 0", sivKey, with(6, 0), crypto.ErrMalformed, "unknown plaintext type code 0"},
		{"type code 200", sivKey, with(6, 200), crypto.ErrMalformed, "unknown plaintext type code 200"},
		{"algorithm mismatch", gcmKey, append(bytes.Clone(sivCT), make([]byte, 16)...), crypto.ErrKeyMismatch, "ciphertext is AES-256-SIV, key is AES-256-GCM"},
		{"key version mismatch", sivKey, with(5, 6), crypto.ErrKeyMismatch, "for key version 6"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pt, typ, err := tt.key.Decrypt(nil, tt.ct)
			if err == nil {
				t.Fatalf("Decrypt = %q, %v, nil; want error", pt, typ)
			}
			if pt != nil || typ != value.TypeUnknown {
				t.Errorf("Decrypt returned %q, %v with an error", pt, typ)
			}
			if !errors.Is(err, tt.wantIs) {
				t.Errorf("error %q is not %v", err, tt.wantIs)
			}
			if errors.Is(err, crypto.ErrDecrypt) {
				t.Errorf("header problem %q reported as ErrDecrypt", err)
			}
			if !strings.Contains(err.Error(), tt.wantMsg) {
				t.Errorf("error %q does not say %q", err, tt.wantMsg)
			}
		})
	}
}

func TestAuthenticationFailures(t *testing.T) {
	for _, alg := range algorithms {
		t.Run(alg.String(), func(t *testing.T) {
			material := testMaterial(alg, 1)
			k := newTestKey(t, "public.users.email", 1, alg, material)
			ct := encryptText(t, k, []byte("secret value"))
			cases := map[string]*crypto.Key{
				"same material, other name":      newTestKey(t, "public.users.phone", 1, alg, material),
				"same material, name prefix":     newTestKey(t, "public.users.emai", 1, alg, material),
				"same name, other material":      newTestKey(t, "public.users.email", 1, alg, testMaterial(alg, 2)),
				"same material, name with extra": newTestKey(t, "public.users.email2", 1, alg, material),
			}
			for name, other := range cases {
				pt, _, err := other.Decrypt(nil, ct)
				if !errors.Is(err, crypto.ErrDecrypt) {
					t.Errorf("%s: Decrypt = %q, %v; want ErrDecrypt", name, pt, err)
				}
				if err != nil && strings.Contains(err.Error(), "secret") {
					t.Errorf("%s: error leaks plaintext: %v", name, err)
				}
			}
			// Appending a byte breaks authentication too.
			if _, _, err := k.Decrypt(nil, append(bytes.Clone(ct), 0)); !errors.Is(err, crypto.ErrDecrypt) {
				t.Errorf("appended byte: %v, want ErrDecrypt", err)
			}
		})
	}
}

// Every single-bit flip anywhere in a ciphertext is rejected: in the header
// by the header checks or by authentication, in the payload by
// authentication (exactly ErrDecrypt).
func TestEveryBitFlipFails(t *testing.T) {
	for _, alg := range algorithms {
		t.Run(alg.String(), func(t *testing.T) {
			k := newTestKey(t, "k", 1, alg, testMaterial(alg, 1))
			ct := encryptText(t, k, []byte("0123456789"))
			for i := range len(ct) * 8 {
				c := bytes.Clone(ct)
				c[i/8] ^= 1 << (i % 8)
				pt, _, err := k.Decrypt(nil, c)
				if err == nil {
					t.Fatalf("bit %d flipped: Decrypt succeeded with %q", i, pt)
				}
				if i/8 >= crypto.HeaderSize && !errors.Is(err, crypto.ErrDecrypt) {
					t.Errorf("payload bit %d flipped: %v, want ErrDecrypt", i, err)
				}
				// A flipped type code that names another valid type passes
				// the header checks and must then fail authentication.
				if i/8 == 6 && crypto.IsCiphertext(c) && !errors.Is(err, crypto.ErrDecrypt) {
					t.Errorf("type bit %d flipped: %v, want ErrDecrypt", i, err)
				}
			}
		})
	}
}

func TestEveryTruncationFails(t *testing.T) {
	for _, alg := range algorithms {
		t.Run(alg.String(), func(t *testing.T) {
			k := newTestKey(t, "k", 1, alg, testMaterial(alg, 1))
			ct := encryptText(t, k, []byte("a value of some length"))
			for n := range len(ct) {
				pt, _, err := k.Decrypt(nil, ct[:n])
				if err == nil {
					t.Fatalf("truncated to %d: Decrypt succeeded with %q", n, pt)
				}
				if n < alg.Overhead() && !errors.Is(err, crypto.ErrMalformed) {
					t.Errorf("truncated to %d: %v, want ErrMalformed", n, err)
				}
				if n >= alg.Overhead() && !errors.Is(err, crypto.ErrDecrypt) {
					t.Errorf("truncated to %d: %v, want ErrDecrypt", n, err)
				}
			}
		})
	}
}

func TestDeterministic(t *testing.T) {
	k := newTestKey(t, "k", 1, crypto.AlgorithmAESSIV, testMaterial(crypto.AlgorithmAESSIV, 1))
	pt := []byte{0, 0, 0, 0, 0, 0, 0, 42}
	a, err := k.Encrypt(nil, pt, value.TypeBigint)
	if err != nil {
		t.Fatal(err)
	}
	b, err := k.Encrypt(nil, pt, value.TypeBigint)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a, b) {
		t.Errorf("same input gave different ciphertexts:\n%x\n%x", a, b)
	}
	other, err := k.Encrypt(nil, pt, value.TypeTimestamp)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(a[crypto.HeaderSize:], other[crypto.HeaderSize:]) {
		t.Errorf("different type codes gave the same payload")
	}
	otherVersion := newTestKey(t, "k", 2, crypto.AlgorithmAESSIV, testMaterial(crypto.AlgorithmAESSIV, 1))
	v2, err := otherVersion.Encrypt(nil, pt, value.TypeBigint)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(a[crypto.HeaderSize:], v2[crypto.HeaderSize:]) {
		t.Errorf("different key versions gave the same payload")
	}
	if k.Encryptions() != 0 {
		t.Errorf("SIV Encryptions() = %d, want 0", k.Encryptions())
	}
}

// Randomized algorithms give a fresh nonce per encryption. Only legacy
// AES-256-GCM counts its encryptions: XAES-256-GCM has no per-key limit.
func TestRandomized(t *testing.T) {
	tests := []struct {
		alg         crypto.Algorithm
		nonceSize   int
		encryptions uint64
	}{
		{crypto.AlgorithmAESGCM, crypto.GCMNonceSize, 100},
		{crypto.AlgorithmXAESGCM, crypto.XAESNonceSize, 0},
	}
	for _, tt := range tests {
		t.Run(tt.alg.String(), func(t *testing.T) {
			k := newTestKey(t, "k", 1, tt.alg, testMaterial(tt.alg, 1))
			pt := []byte("same input")
			seen := map[string]bool{}
			nonces := map[string]bool{}
			for range 100 {
				ct := encryptText(t, k, pt)
				if seen[string(ct)] {
					t.Fatalf("randomized encryption repeated a ciphertext")
				}
				seen[string(ct)] = true
				nonces[string(ct[crypto.HeaderSize:crypto.HeaderSize+tt.nonceSize])] = true
			}
			if len(nonces) != 100 {
				t.Errorf("%d distinct nonces in 100 encryptions", len(nonces))
			}
			if got := k.Encryptions(); got != tt.encryptions {
				t.Errorf("Encryptions() = %d, want %d", got, tt.encryptions)
			}
		})
	}
}

func TestDestroy(t *testing.T) {
	for _, alg := range algorithms {
		t.Run(alg.String(), func(t *testing.T) {
			k := newTestKey(t, "k", 1, alg, testMaterial(alg, 1))
			ct := encryptText(t, k, []byte("v"))
			k.Destroy()
			k.Destroy() // idempotent
			if out, err := k.Encrypt(nil, []byte("v"), value.TypeText); !errors.Is(err, crypto.ErrKeyDestroyed) || out != nil {
				t.Errorf("Encrypt after Destroy = %x, %v; want ErrKeyDestroyed", out, err)
			}
			if pt, _, err := k.Decrypt(nil, ct); !errors.Is(err, crypto.ErrKeyDestroyed) || pt != nil {
				t.Errorf("Decrypt after Destroy = %q, %v; want ErrKeyDestroyed", pt, err)
			}
			if k.Name() != "k" || k.Version() != 1 || k.Algorithm() != alg {
				t.Errorf("accessors changed after Destroy")
			}
		})
	}
}

// Concurrent use, including a Destroy in the middle, never yields anything
// but a correct result or ErrKeyDestroyed. Run with -race.
func TestConcurrentUseAndDestroy(t *testing.T) {
	for _, alg := range algorithms {
		t.Run(alg.String(), func(t *testing.T) {
			k := newTestKey(t, "k", 1, alg, testMaterial(alg, 1))
			var wg, warmedUp sync.WaitGroup
			errs := make(chan error, 8)
			warmedUp.Add(8)
			for g := range 8 {
				wg.Go(func() {
					pt := []byte(fmt.Sprintf("goroutine %d", g))
					for i := range 200 {
						if i == 1 {
							warmedUp.Done()
						}
						ct, err := k.Encrypt(nil, pt, value.TypeText)
						if errors.Is(err, crypto.ErrKeyDestroyed) {
							return
						}
						if err != nil {
							errs <- err
							return
						}
						got, _, err := k.Decrypt(nil, ct)
						if errors.Is(err, crypto.ErrKeyDestroyed) {
							return
						}
						if err != nil || !bytes.Equal(got, pt) {
							errs <- fmt.Errorf("round trip = %q, %v", got, err)
							return
						}
					}
				})
			}
			warmedUp.Wait() // every goroutine has done one full round trip
			k.Destroy()
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Error(err)
			}
		})
	}
}

// Nothing that prints or logs a Key shows its material.
func TestKeyNeverPrintsMaterial(t *testing.T) {
	for _, alg := range algorithms {
		t.Run(alg.String(), func(t *testing.T) {
			material := testMaterial(alg, 0xA0)
			k := newTestKey(t, "public.users.ssn", 4, alg, bytes.Clone(material))

			var logged bytes.Buffer
			logger := slog.New(slog.NewTextHandler(&logged, nil))
			logger.Info("loaded", "key", k)
			var jsonLogged bytes.Buffer
			slog.New(slog.NewJSONHandler(&jsonLogged, nil)).Info("loaded", "key", k)

			outputs := map[string]string{
				"String":   k.String(),
				"%v":       fmt.Sprintf("%v", k),
				"%+v":      fmt.Sprintf("%+v", k),
				"%#v":      fmt.Sprintf("%#v", k),
				"%s":       fmt.Sprintf("%s", k), //lint:ignore S1025 the test checks what fmt prints
				"slog":     logged.String(),
				"slogjson": jsonLogged.String(),
			}
			forbidden := []string{
				hex.EncodeToString(material[:8]),
				strings.ToUpper(hex.EncodeToString(material[:8])),
				string(material[:8]),
				fmt.Sprint(material[:8]),
			}
			for how, out := range outputs {
				if !strings.Contains(out, "public.users.ssn") || !strings.Contains(out, alg.String()) {
					t.Errorf("%s output %q lacks name or algorithm", how, out)
				}
				for _, f := range forbidden {
					if strings.Contains(out, f) {
						t.Errorf("%s output %q contains key material", how, out)
					}
				}
			}
			if !strings.Contains(logged.String(), "key.name=public.users.ssn key.version=4 key.algorithm="+alg.String()) {
				t.Errorf("slog text = %q", logged.String())
			}
		})
	}
}

func TestNewRandomKeyMaterial(t *testing.T) {
	for _, alg := range algorithms {
		a, err := crypto.NewRandomKeyMaterial(alg)
		if err != nil {
			t.Fatal(err)
		}
		b, err := crypto.NewRandomKeyMaterial(alg)
		if err != nil {
			t.Fatal(err)
		}
		if len(a) != alg.KeySize() || len(b) != alg.KeySize() {
			t.Errorf("%s: lengths %d, %d; want %d", alg, len(a), len(b), alg.KeySize())
		}
		if bytes.Equal(a, b) {
			t.Errorf("%s: two random keys are equal", alg)
		}
		if _, err := crypto.NewKey("k", 1, alg, a); err != nil {
			t.Errorf("%s: NewKey(random material): %v", alg, err)
		}
	}
	if m, err := crypto.NewRandomKeyMaterial(crypto.AlgorithmUnknown); err == nil {
		t.Errorf("NewRandomKeyMaterial(unknown) = %x, want error", m)
	}
}

func TestGCMAllocatesNothingWithRoom(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are not meaningful under -race")
	}
	k := newTestKey(t, "k", 1, crypto.AlgorithmAESGCM, testMaterial(crypto.AlgorithmAESGCM, 1))
	pt := make([]byte, 100)
	ctBuf := make([]byte, 0, 256)
	ptBuf := make([]byte, 0, 256)
	ct, _ := k.Encrypt(nil, pt, value.TypeBytes)
	if n := testing.AllocsPerRun(100, func() { _, _ = k.Encrypt(ctBuf[:0], pt, value.TypeBytes) }); n != 0 {
		t.Errorf("Encrypt allocates %v times with room in dst", n)
	}
	if n := testing.AllocsPerRun(100, func() { _, _, _ = k.Decrypt(ptBuf[:0], ct) }); n != 0 {
		t.Errorf("Decrypt allocates %v times with room in dst", n)
	}
	if n := testing.AllocsPerRun(100, func() { _, _ = k.Encrypt(nil, pt, value.TypeBytes) }); n != 1 {
		t.Errorf("Encrypt(nil dst) allocates %v times, want 1 (the output)", n)
	}
}

// XAES-256-GCM sets up AES and GCM under a derived key per message. With
// AES-NI, values up to XAESNIMax bytes keep that state on the stack and
// allocate nothing; longer ones (and all of them without AES-NI) make
// xaesAllocs allocations, independent of the value's size: aes.NewCipher
// and cipher.NewGCM under the derived key (the KDF scratch is pooled).
const xaesAllocs = 2

// xaesAllocsFor is the allocations of an XAES-256-GCM Encrypt or Decrypt
// of a size-byte value with room in dst.
func xaesAllocsFor(size int) float64 {
	if crypto.HaveAESNI && size <= crypto.XAESNIMax {
		return 0
	}
	return xaesAllocs
}

// TestSIVAllocatesNothing: AES-256-SIV of a value shorter than the
// standard library's CTR threshold allocates nothing with room in dst (its
// scratch blocks are pooled).
func TestSIVAllocatesNothing(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are not meaningful under -race")
	}
	k := newTestKey(t, "k", 1, crypto.AlgorithmAESSIV, testMaterial(crypto.AlgorithmAESSIV, 1))
	for _, size := range []int{0, 16, 100} {
		pt := make([]byte, size)
		ctBuf := make([]byte, 0, size+64)
		ptBuf := make([]byte, 0, size+64)
		ct, _ := k.Encrypt(nil, pt, value.TypeBytes)
		if n := testing.AllocsPerRun(100, func() { _, _ = k.Encrypt(ctBuf[:0], pt, value.TypeBytes) }); n != 0 {
			t.Errorf("size %d: Encrypt allocates %v times with room in dst", size, n)
		}
		if n := testing.AllocsPerRun(100, func() { _, _, _ = k.Decrypt(ptBuf[:0], ct) }); n != 0 {
			t.Errorf("size %d: Decrypt allocates %v times with room in dst", size, n)
		}
	}
}

func TestXAESAllocations(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are not meaningful under -race")
	}
	k := newTestKey(t, "k", 1, crypto.AlgorithmXAESGCM, testMaterial(crypto.AlgorithmXAESGCM, 1))
	for _, size := range []int{16, 1024} {
		pt := make([]byte, size)
		ctBuf := make([]byte, 0, size+64)
		ptBuf := make([]byte, 0, size+64)
		ct, _ := k.Encrypt(nil, pt, value.TypeBytes)
		want := xaesAllocsFor(size)
		if n := testing.AllocsPerRun(100, func() { _, _ = k.Encrypt(ctBuf[:0], pt, value.TypeBytes) }); n > want {
			t.Errorf("size %d: Encrypt allocates %v times with room in dst, want at most %v", size, n, want)
		}
		if n := testing.AllocsPerRun(100, func() { _, _, _ = k.Decrypt(ptBuf[:0], ct) }); n > want {
			t.Errorf("size %d: Decrypt allocates %v times with room in dst, want at most %v", size, n, want)
		}
	}
}
