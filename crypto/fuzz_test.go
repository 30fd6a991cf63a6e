package crypto_test

import (
	"bytes"
	"errors"
	"testing"

	"github.com/dbproxy/dbproxy/crypto"
	"github.com/dbproxy/dbproxy/value"
)

// fuzzKeys are the keys FuzzDecrypt decrypts with. The committed corpus in
// testdata/fuzz/FuzzDecrypt holds ciphertexts made with exactly these keys,
// so changing them makes those seeds uninteresting (not wrong).
func fuzzKeys(t testing.TB) []*crypto.Key {
	return []*crypto.Key{
		newTestKey(t, "fuzz.key", 1, crypto.AlgorithmAESGCM, testMaterial(crypto.AlgorithmAESGCM, 1)),
		newTestKey(t, "fuzz.key", 1, crypto.AlgorithmAESSIV, testMaterial(crypto.AlgorithmAESSIV, 1)),
		newTestKey(t, "fuzz.key", 1, crypto.AlgorithmXAESGCM, testMaterial(crypto.AlgorithmXAESGCM, 1)),
	}
}

// FuzzDecrypt feeds arbitrary bytes to ParseHeader, IsCiphertext and Decrypt
// under every algorithm. None may panic; they must agree with each other;
// a successful Decrypt must be consistent with the header and, for SIV,
// re-encrypt to the same bytes.
func FuzzDecrypt(f *testing.F) {
	keys := fuzzKeys(f)
	for _, k := range keys {
		for _, typ := range []value.Type{value.TypeText, value.TypeBigint, value.TypeJSON} {
			for _, pt := range [][]byte{nil, []byte("x"), []byte("0123456789abcdef0123")} {
				ct, err := k.Encrypt(nil, pt, typ)
				if err != nil {
					f.Fatal(err)
				}
				f.Add(ct)
			}
		}
	}
	f.Add([]byte{})
	f.Add([]byte{0x01, 0x02, 0, 0, 0, 1, 1})

	f.Fuzz(func(t *testing.T, data []byte) {
		orig := bytes.Clone(data)
		h, headerErr := crypto.ParseHeader(data)
		if crypto.IsCiphertext(data) != (headerErr == nil) {
			t.Fatalf("IsCiphertext = %v but ParseHeader error = %v", crypto.IsCiphertext(data), headerErr)
		}
		if headerErr != nil && !errors.Is(headerErr, crypto.ErrMalformed) {
			t.Fatalf("ParseHeader error %v does not wrap ErrMalformed", headerErr)
		}
		for _, k := range keys {
			pt, typ, err := k.Decrypt(nil, data)
			if !bytes.Equal(data, orig) {
				t.Fatalf("Decrypt modified its input")
			}
			if err != nil {
				if pt != nil || typ != value.TypeUnknown {
					t.Fatalf("Decrypt returned %x, %v with error %v", pt, typ, err)
				}
				if headerErr != nil && !errors.Is(err, crypto.ErrMalformed) {
					t.Fatalf("ParseHeader failed (%v) but Decrypt error %v is not ErrMalformed", headerErr, err)
				}
				if headerErr == nil && !errors.Is(err, crypto.ErrKeyMismatch) && !errors.Is(err, crypto.ErrDecrypt) {
					t.Fatalf("well-formed header, but Decrypt error %v is neither ErrKeyMismatch nor ErrDecrypt", err)
				}
				continue
			}
			if headerErr != nil {
				t.Fatalf("Decrypt succeeded but ParseHeader failed: %v", headerErr)
			}
			if h.Algorithm != k.Algorithm() || h.KeyVersion != k.Version() || h.Type != typ {
				t.Fatalf("Decrypt succeeded with header %+v under %v, type %v", h, k, typ)
			}
			if len(pt) != len(data)-k.Algorithm().Overhead() {
				t.Fatalf("plaintext length %d for ciphertext length %d", len(pt), len(data))
			}
			if k.Algorithm().Deterministic() {
				again, err := k.Encrypt(nil, pt, typ)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(again, data) {
					t.Fatalf("re-encryption differs:\n%x\n%x", again, data)
				}
			}
		}
	})
}
