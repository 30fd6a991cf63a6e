package crypto_test

import (
	"crypto/aes"
	"crypto/cipher"
	"strconv"
	"testing"

	"github.com/tink-crypto/tink-go/v2/daead/subtle"

	"github.com/dbproxy/dbproxy/crypto"
	"github.com/dbproxy/dbproxy/value"
)

// Compare:
//
//	RoundTrip/randomized/N     (XAES-256-GCM, 0x03)   vs  RoundTrip/randomized-legacy/N
//	RoundTrip/randomized-legacy/N (AES-256-GCM, 0x01) vs  RawGCM/seal+open/N
//	RoundTrip/deterministic/N  (= Encrypt + Decrypt)  vs  RawSIV/encrypt+decrypt/N
//
// XAES-256-GCM pays a key derivation (two AES blocks) and an AES key
// expansion plus GCM setup per message on top of AES-256-GCM.
//
// All reuse their output buffers, so allocations shown are the primitive's
// own plus ours.

var benchSizes = []int{16, 100, 1024}

var benchModes = []struct {
	name string
	alg  crypto.Algorithm
}{
	{"randomized", crypto.AlgorithmXAESGCM},
	{"randomized-legacy", crypto.AlgorithmAESGCM},
	{"deterministic", crypto.AlgorithmAESSIV},
}

func benchKey(b *testing.B, alg crypto.Algorithm) *crypto.Key {
	return newTestKey(b, "public.users.email", 1, alg, testMaterial(alg, 1))
}

func BenchmarkEncrypt(b *testing.B) {
	for _, m := range benchModes {
		for _, size := range benchSizes {
			b.Run(m.name+"/"+strconv.Itoa(size), func(b *testing.B) {
				k := benchKey(b, m.alg)
				pt := make([]byte, size)
				buf := make([]byte, 0, size+64)
				b.ReportAllocs()
				b.SetBytes(int64(size))
				stop := startCPUTimer(b)
				for b.Loop() {
					var err error
					if buf, err = k.Encrypt(buf[:0], pt, value.TypeBytes); err != nil {
						b.Fatal(err)
					}
				}
				stop()
			})
		}
	}
}

func BenchmarkDecrypt(b *testing.B) {
	for _, m := range benchModes {
		for _, size := range benchSizes {
			b.Run(m.name+"/"+strconv.Itoa(size), func(b *testing.B) {
				k := benchKey(b, m.alg)
				ct, err := k.Encrypt(nil, make([]byte, size), value.TypeBytes)
				if err != nil {
					b.Fatal(err)
				}
				buf := make([]byte, 0, size+64)
				b.ReportAllocs()
				b.SetBytes(int64(size))
				stop := startCPUTimer(b)
				for b.Loop() {
					if buf, _, err = k.Decrypt(buf[:0], ct); err != nil {
						b.Fatal(err)
					}
				}
				stop()
			})
		}
	}
}

// BenchmarkRoundTrip is Encrypt then Decrypt in one op, to compare directly
// with RawGCM/seal+open and RawSIV/encrypt+decrypt under the same noise.
func BenchmarkRoundTrip(b *testing.B) {
	for _, m := range benchModes {
		for _, size := range benchSizes {
			b.Run(m.name+"/"+strconv.Itoa(size), func(b *testing.B) {
				k := benchKey(b, m.alg)
				pt := make([]byte, size)
				ct := make([]byte, 0, size+64)
				out := make([]byte, 0, size+64)
				b.ReportAllocs()
				b.SetBytes(int64(size))
				stop := startCPUTimer(b)
				for b.Loop() {
					var err error
					if ct, err = k.Encrypt(ct[:0], pt, value.TypeBytes); err != nil {
						b.Fatal(err)
					}
					if out, _, err = k.Decrypt(out[:0], ct); err != nil {
						b.Fatal(err)
					}
				}
				stop()
			})
		}
	}
}

// BenchmarkRawGCM is the floor for randomized mode: stdlib AES-256-GCM,
// seal then open, same size. "seal+open" draws a random nonce per seal like
// Key does (cipher.NewGCMWithRandomNonce); "seal+open-fixed-nonce" is plain
// cipher.NewGCM with a constant nonce, the strictest reference.
func BenchmarkRawGCM(b *testing.B) {
	key := testMaterial(crypto.AlgorithmAESGCM, 1)
	block, err := aes.NewCipher(key)
	if err != nil {
		b.Fatal(err)
	}
	random, err := cipher.NewGCMWithRandomNonce(block)
	if err != nil {
		b.Fatal(err)
	}
	fixed, err := cipher.NewGCM(block)
	if err != nil {
		b.Fatal(err)
	}
	ad := make([]byte, 9+len("public.users.email"))
	for _, size := range benchSizes {
		b.Run("seal+open/"+strconv.Itoa(size), func(b *testing.B) {
			pt := make([]byte, size)
			ct := make([]byte, 0, size+64)
			out := make([]byte, 0, size+64)
			b.ReportAllocs()
			b.SetBytes(int64(size))
			stop := startCPUTimer(b)
			for b.Loop() {
				ct = random.Seal(ct[:0], nil, pt, ad)
				if out, err = random.Open(out[:0], nil, ct, ad); err != nil {
					b.Fatal(err)
				}
			}
			stop()
		})
		b.Run("seal+open-fixed-nonce/"+strconv.Itoa(size), func(b *testing.B) {
			pt := make([]byte, size)
			nonce := make([]byte, 12)
			ct := make([]byte, 0, size+64)
			out := make([]byte, 0, size+64)
			b.ReportAllocs()
			b.SetBytes(int64(size))
			stop := startCPUTimer(b)
			for b.Loop() {
				ct = fixed.Seal(ct[:0], nonce, pt, ad)
				if out, err = fixed.Open(out[:0], nonce, ct, ad); err != nil {
					b.Fatal(err)
				}
			}
			stop()
		})
	}
}

// BenchmarkRawSIV is the floor for deterministic mode: Tink's AES-SIV raw
// primitive, which Key wraps.
func BenchmarkRawSIV(b *testing.B) {
	siv, err := subtle.NewAESSIV(testMaterial(crypto.AlgorithmAESSIV, 1))
	if err != nil {
		b.Fatal(err)
	}
	ad := make([]byte, 9+len("public.users.email"))
	for _, size := range benchSizes {
		pt := make([]byte, size)
		ct, err := siv.EncryptDeterministically(pt, ad)
		if err != nil {
			b.Fatal(err)
		}
		b.Run("encrypt/"+strconv.Itoa(size), func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(size))
			stop := startCPUTimer(b)
			for b.Loop() {
				if _, err := siv.EncryptDeterministically(pt, ad); err != nil {
					b.Fatal(err)
				}
			}
			stop()
		})
		b.Run("encrypt+decrypt/"+strconv.Itoa(size), func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(size))
			stop := startCPUTimer(b)
			for b.Loop() {
				ct, err := siv.EncryptDeterministically(pt, ad)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := siv.DecryptDeterministically(ct, ad); err != nil {
					b.Fatal(err)
				}
			}
			stop()
		})
		b.Run("decrypt/"+strconv.Itoa(size), func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(size))
			stop := startCPUTimer(b)
			for b.Loop() {
				if _, err := siv.DecryptDeterministically(ct, ad); err != nil {
					b.Fatal(err)
				}
			}
			stop()
		})
	}
}
