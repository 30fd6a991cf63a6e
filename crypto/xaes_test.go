package crypto_test

import (
	"bytes"
	"crypto/sha3"
	"encoding/hex"
	"math/rand/v2"
	"os"
	"strconv"
	"testing"

	"github.com/tink-crypto/tink-go/v2/aead"
	"github.com/tink-crypto/tink-go/v2/aead/xaesgcm"
	"github.com/tink-crypto/tink-go/v2/insecuresecretdataaccess"
	"github.com/tink-crypto/tink-go/v2/keyset"
	"github.com/tink-crypto/tink-go/v2/secretdata"
	"github.com/tink-crypto/tink-go/v2/tink"

	"github.com/dbproxy/dbproxy/crypto"
	"github.com/dbproxy/dbproxy/value"
)

// TestXAESVectors checks the XAES-256-GCM primitive against the two test
// vectors of https://c2sp.org/XAES-256-GCM, and that any flipped bit of
// the ciphertext, tag, nonce or associated data is rejected.
func TestXAESVectors(t *testing.T) {
	tests := []struct {
		name string
		key  byte
		ad   string
		want string // ciphertext || tag
	}{
		{"no-ad", 0x01, "", "ce546ef63c9cc60765923609b33a9a1974e96e52daf2fcf7075e2271"},
		{"ad", 0x03, "c2sp.org/XAES-256-GCM", "986ec1832593df5443a179437fd083bf3fdb41abd740a21f71eb769d"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			key := bytes.Repeat([]byte{tt.key}, 32)
			nonce := []byte("ABCDEFGHIJKLMNOPQRSTUVWX")
			pt := []byte("XAES-256-GCM")
			ad := []byte(tt.ad)
			ct, err := crypto.XAESSeal(key, nonce, pt, ad)
			if err != nil {
				t.Fatal(err)
			}
			if got := hex.EncodeToString(ct); got != tt.want {
				t.Fatalf("Seal = %s, want %s", got, tt.want)
			}
			back, err := crypto.XAESOpen(key, nonce, ct, ad)
			if err != nil || !bytes.Equal(back, pt) {
				t.Fatalf("Open = %q, %v", back, err)
			}
			flip := func(b []byte, i int) []byte { c := bytes.Clone(b); c[i/8] ^= 1 << (i % 8); return c }
			for i := range len(ct) * 8 {
				if _, err := crypto.XAESOpen(key, nonce, flip(ct, i), ad); err == nil {
					t.Fatalf("Open accepted ciphertext with bit %d flipped", i)
				}
			}
			for i := range len(nonce) * 8 {
				if _, err := crypto.XAESOpen(key, flip(nonce, i), ct, ad); err == nil {
					t.Fatalf("Open accepted nonce with bit %d flipped", i)
				}
			}
			for i := range len(ad) * 8 {
				if _, err := crypto.XAESOpen(key, nonce, ct, flip(ad, i)); err == nil {
					t.Fatalf("Open accepted associated data with bit %d flipped", i)
				}
			}
		})
	}
}

// TestXAESAccumulated runs the accumulated test of c2sp.org/XAES-256-GCM:
// keys, nonces, plaintexts and associated data drawn from one SHAKE-128
// stream, every ciphertext written into another, whose first 32 bytes are
// the expected hash. 10,000 iterations always; the 1,000,000-iteration
// vector (about ten seconds) runs when DBPROXY_XAES_1M=1.
func TestXAESAccumulated(t *testing.T) {
	tests := []struct {
		iterations int
		want       string
	}{
		{10_000, "e6b9edf2df6cec60c8cbd864e2211b597fb69a529160cd040d56c0c210081939"},
		{1_000_000, "2163ae1445985a30b60585ee67daa55674df06901b890593e824b8a7c885ab15"},
	}
	for _, tt := range tests {
		t.Run(strconv.Itoa(tt.iterations), func(t *testing.T) {
			if tt.iterations > 10_000 && os.Getenv("DBPROXY_XAES_1M") != "1" {
				t.Skip("set DBPROXY_XAES_1M=1 to run the 1,000,000-iteration vector")
			}
			s, d := sha3.NewSHAKE128(), sha3.NewSHAKE128()
			read := func(n int) []byte {
				b := make([]byte, n)
				_, _ = s.Read(b)
				return b
			}
			for range tt.iterations {
				key, nonce := read(32), read(24)
				pt := read(int(read(1)[0]))
				ad := read(int(read(1)[0]))
				ct, err := crypto.XAESSeal(key, nonce, pt, ad)
				if err != nil {
					t.Fatal(err)
				}
				back, err := crypto.XAESOpen(key, nonce, ct, ad)
				if err != nil || !bytes.Equal(back, pt) {
					t.Fatalf("Open = %x, %v; want %x", back, err, pt)
				}
				_, _ = d.Write(ct)
			}
			sum := make([]byte, 32)
			_, _ = d.Read(sum)
			if got := hex.EncodeToString(sum); got != tt.want {
				t.Fatalf("accumulated hash = %s, want %s", got, tt.want)
			}
		})
	}
}

// tinkXAES returns Tink's X-AES-GCM (12-byte salt, no prefix) under key:
// the same construction as XAES-256-GCM, written by other people, whose
// ciphertext salt(12) || iv(12) || ct || tag(16) is exactly our payload.
func tinkXAES(t *testing.T, key []byte) tink.AEAD {
	t.Helper()
	params, err := xaesgcm.NewParameters(xaesgcm.VariantNoPrefix, 12)
	if err != nil {
		t.Fatal(err)
	}
	k, err := xaesgcm.NewKey(secretdata.NewBytesFromData(key, insecuresecretdataaccess.Token{}), 0, params)
	if err != nil {
		t.Fatal(err)
	}
	km := keyset.NewManager()
	id, err := km.AddKey(k)
	if err != nil {
		t.Fatal(err)
	}
	if err := km.SetPrimary(id); err != nil {
		t.Fatal(err)
	}
	h, err := km.Handle()
	if err != nil {
		t.Fatal(err)
	}
	a, err := aead.New(h)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// TestXAESInteropTink checks Key's XAES-256-GCM payloads against Tink's
// independent X-AES-GCM implementation, both ways, for several lengths.
func TestXAESInteropTink(t *testing.T) {
	material := testMaterial(crypto.AlgorithmXAESGCM, 9)
	k := newTestKey(t, "public.users.ssn", 3, crypto.AlgorithmXAESGCM, material)
	tk := tinkXAES(t, material)
	for _, n := range []int{0, 1, 15, 16, 17, 100, 1024} {
		pt := bytes.Repeat([]byte{byte(n)}, n)
		ct, err := k.Encrypt(nil, pt, value.TypeBytes)
		if err != nil {
			t.Fatal(err)
		}
		if len(ct) != n+crypto.AlgorithmXAESGCM.Overhead() {
			t.Fatalf("len %d: ciphertext is %d bytes, want %d", n, len(ct), n+47)
		}
		ad := associatedData(ct[:crypto.HeaderSize], k.Name())
		got, err := tk.Decrypt(ct[crypto.HeaderSize:], ad)
		if err != nil || !bytes.Equal(got, pt) {
			t.Fatalf("len %d: Tink cannot decrypt our payload: %v", n, err)
		}
		payload, err := tk.Encrypt(pt, ad)
		if err != nil {
			t.Fatal(err)
		}
		ours, typ, err := k.Decrypt(nil, append(bytes.Clone(ct[:crypto.HeaderSize]), payload...))
		if err != nil || typ != value.TypeBytes || !bytes.Equal(ours, pt) {
			t.Fatalf("len %d: we cannot decrypt Tink's payload: %v", n, err)
		}
	}
}

// TestXAESNIMatchesGeneric checks the AES-NI path (xaes_ni.go) against the
// crypto/cipher one on random keys, nonces, associated data and lengths
// on both sides of the hand-over at XAESNIMax, both ways, and that the
// AES-NI path rejects any flipped bit of what it opens.
func TestXAESNIMatchesGeneric(t *testing.T) {
	if !crypto.HaveAESNI {
		t.Skip("no AES-NI on this machine: only the generic path runs")
	}
	r := rand.New(rand.NewPCG(1, 2))
	fill := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(r.Uint32())
		}
		return b
	}
	lengths := []int{0, 1, 15, 16, 17, 31, 32, 33, 100, 255, 256, crypto.XAESNIMax - 1, crypto.XAESNIMax,
		crypto.XAESNIMax + 1, 1024, 1500}
	for range 200 {
		lengths = append(lengths, r.IntN(crypto.XAESNIMax+64))
	}
	for _, n := range lengths {
		key, nonce, pt, ad := fill(32), fill(crypto.XAESNonceSize), fill(n), fill(r.IntN(80))
		ni, err := crypto.XAESSeal(key, nonce, pt, ad)
		if err != nil {
			t.Fatal(err)
		}
		gen, err := crypto.XAESSealGeneric(key, nonce, pt, ad)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(ni, gen) {
			t.Fatalf("len %d, ad %d: AES-NI seal %x, generic %x", n, len(ad), ni, gen)
		}
		if back, err := crypto.XAESOpen(key, nonce, gen, ad); err != nil || !bytes.Equal(back, pt) {
			t.Fatalf("len %d: AES-NI open of the generic ciphertext: %v", n, err)
		}
		if back, err := crypto.XAESOpenGeneric(key, nonce, ni, ad); err != nil || !bytes.Equal(back, pt) {
			t.Fatalf("len %d: generic open of the AES-NI ciphertext: %v", n, err)
		}
		i := r.IntN(len(ni) * 8)
		bad := bytes.Clone(ni)
		bad[i/8] ^= 1 << (i % 8)
		if _, err := crypto.XAESOpen(key, nonce, bad, ad); err == nil {
			t.Fatalf("len %d: AES-NI open accepted bit %d flipped", n, i)
		}
		if _, err := crypto.XAESOpen(key, nonce, ni[:len(ni)-1], ad); err == nil {
			t.Fatalf("len %d: AES-NI open accepted a truncated tag", n)
		}
	}
}
