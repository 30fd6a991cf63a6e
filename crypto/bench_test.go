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

// benchSized runs the benchmark name/size: setup prepares one op, which
// handles size bytes an iteration; the CPU time of the loop is reported.
func benchSized(b *testing.B, name string, size int, setup func(b *testing.B) func() error) {
	b.Run(name+"/"+strconv.Itoa(size), func(b *testing.B) {
		op := setup(b)
		b.ReportAllocs()
		b.SetBytes(int64(size))
		stop := startCPUTimer(b)
		for b.Loop() {
			if err := op(); err != nil {
				b.Fatal(err)
			}
		}
		stop()
	})
}

// benchKeyModes runs an op from setup for each mode and size, with a fresh
// key of the mode's algorithm.
func benchKeyModes(b *testing.B, setup func(b *testing.B, k *crypto.Key, size int) func() error) {
	for _, m := range benchModes {
		for _, size := range benchSizes {
			benchSized(b, m.name, size, func(b *testing.B) func() error {
				return setup(b, benchKey(b, m.alg), size)
			})
		}
	}
}

func BenchmarkEncrypt(b *testing.B) {
	benchKeyModes(b, func(b *testing.B, k *crypto.Key, size int) func() error {
		pt := make([]byte, size)
		buf := make([]byte, 0, size+64)
		return func() (err error) {
			buf, err = k.Encrypt(buf[:0], pt, value.TypeBytes)
			return err
		}
	})
}

func BenchmarkDecrypt(b *testing.B) {
	benchKeyModes(b, func(b *testing.B, k *crypto.Key, size int) func() error {
		ct, err := k.Encrypt(nil, make([]byte, size), value.TypeBytes)
		if err != nil {
			b.Fatal(err)
		}
		buf := make([]byte, 0, size+64)
		return func() (err error) {
			buf, _, err = k.Decrypt(buf[:0], ct)
			return err
		}
	})
}

// BenchmarkRoundTrip is Encrypt then Decrypt in one op, to compare directly
// with RawGCM/seal+open and RawSIV/encrypt+decrypt under the same noise.
func BenchmarkRoundTrip(b *testing.B) {
	benchKeyModes(b, func(b *testing.B, k *crypto.Key, size int) func() error {
		pt := make([]byte, size)
		ct := make([]byte, 0, size+64)
		out := make([]byte, 0, size+64)
		return func() (err error) {
			if ct, err = k.Encrypt(ct[:0], pt, value.TypeBytes); err != nil {
				return err
			}
			out, _, err = k.Decrypt(out[:0], ct)
			return err
		}
	})
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
	sealOpen := func(aead cipher.AEAD, nonce []byte, size int) func(*testing.B) func() error {
		return func(*testing.B) func() error {
			pt := make([]byte, size)
			ct := make([]byte, 0, size+64)
			out := make([]byte, 0, size+64)
			return func() (err error) {
				ct = aead.Seal(ct[:0], nonce, pt, ad)
				out, err = aead.Open(out[:0], nonce, ct, ad)
				return err
			}
		}
	}
	for _, size := range benchSizes {
		benchSized(b, "seal+open", size, sealOpen(random, nil, size))
		benchSized(b, "seal+open-fixed-nonce", size, sealOpen(fixed, make([]byte, 12), size))
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
		ops := []struct {
			name string
			op   func() error
		}{
			{"encrypt", func() error {
				_, err := siv.EncryptDeterministically(pt, ad)
				return err
			}},
			{"encrypt+decrypt", func() error {
				ct, err := siv.EncryptDeterministically(pt, ad)
				if err != nil {
					return err
				}
				_, err = siv.DecryptDeterministically(ct, ad)
				return err
			}},
			{"decrypt", func() error {
				_, err := siv.DecryptDeterministically(ct, ad)
				return err
			}},
		}
		for _, o := range ops {
			benchSized(b, o.name, size, func(*testing.B) func() error { return o.op })
		}
	}
}
