package crypto

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/subtle"
	"errors"
	"sync"
)

// xaesGCM is XAES-256-GCM as specified at https://c2sp.org/XAES-256-GCM:
// AES-256-GCM under a per-message key derived from the 256-bit key K and
// the first 12 bytes of a 24-byte nonce N, with the last 12 bytes of N as
// the GCM nonce:
//
//	L  = AES-256_K(0^128)
//	K1 = L << 1, XOR 0x87 into the last byte if the top bit of L was set
//	M1 = 0x00 || 0x01 || 'X' || 0x00 || N[:12]
//	M2 = 0x00 || 0x02 || 'X' || 0x00 || N[:12]
//	Km = AES-256_K(M1 XOR K1) || AES-256_K(M2 XOR K1)
//	ciphertext = AES-256-GCM(Km, N[12:], plaintext, ad)   (tag 16 bytes)
//
// That is NIST SP 800-108r1 counter-mode KDF with AES-CMAC (one-block
// messages, so CMAC is one AES call with K1). It is built here on crypto/aes
// and crypto/cipher because no maintained Go module offers it as a raw
// primitive we can call: the standard library's implementation is internal
// (crypto/internal/fips140/aes/gcm), filippo.io/xaes256gcm is not available
// from the module proxy this project uses, and Tink's aead/xaesgcm is only
// reachable through a keyset handle and returns freshly allocated
// ciphertexts with its own layout checks. The tests check this code against
// the C2SP vectors (short and accumulated) and against Tink's X-AES-GCM.
//
// An xaesGCM holds the expanded schedule of K (which is the key, see
// "Key material in memory") and K1, which is derived from K but does not
// reveal it. It is immutable and safe for concurrent use.
//
// With AES-NI (haveAESNI) the schedule is xk and values up to xaesNIMax
// bytes take the allocation-free path of xaes_ni.go; otherwise it is
// block, and every message builds its AES and GCM state with crypto/aes
// and crypto/cipher.
type xaesGCM struct {
	block cipher.Block // K's schedule without AES-NI
	xk    *[240]byte   // K's schedule with AES-NI
	k1    [aes.BlockSize]byte
}

// XAES-256-GCM sizes.
const (
	// XAESNonceSize is the random nonce that starts an XAES-256-GCM
	// payload: 12 bytes feed the key derivation, 12 are the GCM nonce.
	XAESNonceSize = 24
	// XAESTagSize is the authentication tag that ends an XAES-256-GCM
	// payload (the GCM tag under the derived key).
	XAESTagSize = 16
)

// newXAESGCM returns XAES-256-GCM under the 32-byte key. It does not keep
// key (the schedule is a copy).
func newXAESGCM(key []byte) (*xaesGCM, error) { return newXAESGCMWith(key, haveAESNI) }

// newXAESGCMWith is newXAESGCM with the AES-NI path or without it (ni
// requires haveAESNI; the tests compare the two paths).
func newXAESGCMWith(key []byte, ni bool) (*xaesGCM, error) {
	if len(key) != 32 {
		return nil, errors.New("xaes-256-gcm: key is not 32 bytes")
	}
	x := &xaesGCM{}
	var l [aes.BlockSize]byte
	if ni {
		x.xk = new([240]byte)
		aes256Expand((*[32]byte)(key), x.xk)
		var b [32]byte
		aes256Encrypt2(x.xk, &b, &b)
		copy(l[:], b[:16])
		clear(b[:])
	} else {
		block, err := aes.NewCipher(key)
		if err != nil {
			return nil, err
		}
		x.block = block
		block.Encrypt(l[:], l[:])
	}
	dbl(&x.k1, &l) // K1 = L·x in GF(2^128)
	clear(l[:])
	return x, nil
}

// xaesScratch holds the KDF blocks of one message. They reach the key's
// cipher.Block through an interface call, so they would live on the heap;
// they come from xaesScratches instead, and go back zeroed.
type xaesScratch struct {
	m  [aes.BlockSize]byte // M1 or M2, XORed with K1
	km [32]byte            // the derived key
}

var xaesScratches = sync.Pool{New: func() any { return new(xaesScratch) }}

// putXAESScratch clears s (M XOR K1 depends on the key) and recycles it.
func putXAESScratch(s *xaesScratch) {
	*s = xaesScratch{}
	xaesScratches.Put(s)
}

// aead returns AES-256-GCM under the key derived from nonce[:12]. The
// derived key is zeroed before returning; its schedule lives in the result,
// which the caller drops after one Seal or Open.
func (x *xaesGCM) aead(nonce []byte) (cipher.AEAD, error) {
	if x.xk != nil {
		var km [32]byte
		x.deriveNI(&km, nonce)
		block, err := aes.NewCipher(km[:])
		clear(km[:])
		if err != nil {
			return nil, err
		}
		return cipher.NewGCM(block)
	}
	s := xaesScratches.Get().(*xaesScratch)
	defer putXAESScratch(s)
	s.m[1], s.m[2] = 0x01, 'X'
	copy(s.m[4:], nonce[:12])
	subtle.XORBytes(s.m[:], s.m[:], x.k1[:])
	x.block.Encrypt(s.km[:16], s.m[:])
	s.m[1] ^= 0x01 ^ 0x02 // M1 -> M2, still XORed with K1
	x.block.Encrypt(s.km[16:], s.m[:])
	block, err := aes.NewCipher(s.km[:])
	clear(s.km[:])
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

// seal appends nonce[12:]-sealed plaintext and its tag to dst (not the
// nonce itself). nonce must be XAESNonceSize bytes.
func (x *xaesGCM) seal(dst, nonce, plaintext, ad []byte) ([]byte, error) {
	if x.xk != nil && len(plaintext) <= xaesNIMax {
		return x.sealNI(dst, nonce, plaintext, ad), nil
	}
	g, err := x.aead(nonce)
	if err != nil {
		return nil, err
	}
	return g.Seal(dst, nonce[12:], plaintext, ad), nil
}

// open authenticates and decrypts ciphertext||tag sealed under nonce and
// appends the plaintext to dst.
func (x *xaesGCM) open(dst, nonce, ciphertext, ad []byte) ([]byte, error) {
	if x.xk != nil && len(ciphertext) <= xaesNIMax+XAESTagSize {
		return x.openNI(dst, nonce, ciphertext, ad)
	}
	g, err := x.aead(nonce)
	if err != nil {
		return nil, err
	}
	return g.Open(dst, nonce[12:], ciphertext, ad)
}
