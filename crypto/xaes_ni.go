package crypto

import (
	"crypto/subtle"
	"encoding/binary"
	"errors"
	"slices"
)

// XAES-256-GCM with AES-NI and PCLMULQDQ (aesni_amd64.s), for values up
// to xaesNIMax bytes: the per-message AES-256 key schedule and GCM state
// live on the stack, so a Seal or Open allocates nothing, where
// crypto/aes and crypto/cipher build (and the garbage collector later
// reclaims) about 1.3 KB in two objects per message. It is plain GCM (NIST
// SP 800-38D, 96-bit nonce) one block at a time: the data key's KDF
// blocks, H = AES_Km(0), the tag mask AES_Km(J0), CTR from J0+1, GHASH
// over the associated data, the ciphertext and their bit lengths.
// TestXAESNIMatchesStdlib checks it against the crypto/cipher path on
// random keys, nonces, lengths and associated data, besides the C2SP and
// Tink checks every XAES-256-GCM path runs.

// xaesNIMax is the longest plaintext (or ciphertext without its tag) that
// goes one block at a time: beyond it crypto/cipher's pipelined GCM is
// faster despite its setup.
const xaesNIMax = 512

// errXAESOpen: a payload that does not authenticate (no detail, on
// purpose).
var errXAESOpen = errors.New("xaes-256-gcm: message authentication failed")

// xaesNI is the GCM state of one message under its derived key Km.
type xaesNI struct {
	xk   [240]byte // round keys of Km
	h    [16]byte  // GHASH key AES_Km(0)
	mask [16]byte  // AES_Km(J0), XORed into the tag
	ctr  [16]byte  // J0, then the current counter block
}

// deriveNI sets km to the XAES-256-GCM key of nonce[:12] (see xaesGCM).
func (x *xaesGCM) deriveNI(km *[32]byte, nonce []byte) {
	var m [16]byte
	m[1], m[2] = 0x01, 'X'
	copy(m[4:], nonce[:12])
	subtle.XORBytes(m[:], m[:], x.k1[:])
	aes256Encrypt(x.xk, (*[16]byte)(km[:16]), &m)
	m[1] ^= 0x01 ^ 0x02 // M1 -> M2, still XORed with K1
	aes256Encrypt(x.xk, (*[16]byte)(km[16:]), &m)
	clear(m[:])
}

// init sets up s for the message under nonce (XAESNonceSize bytes).
func (s *xaesNI) init(x *xaesGCM, nonce []byte) {
	var km [32]byte
	x.deriveNI(&km, nonce)
	aes256Expand(&km, &s.xk)
	clear(km[:])
	aes256Encrypt(&s.xk, &s.h, &s.h) // s.h is zero: H = AES_Km(0)
	copy(s.ctr[:12], nonce[12:])
	s.ctr[15] = 1 // J0 = nonce || 0^31 || 1
	aes256Encrypt(&s.xk, &s.mask, &s.ctr)
}

// xorKeyStream XORs src with the CTR key stream into dst (len(dst) ==
// len(src); they may be the same slice but must not overlap otherwise).
func (s *xaesNI) xorKeyStream(dst, src []byte) {
	var ks [16]byte
	for i := 0; i < len(src); i += 16 {
		c := binary.BigEndian.Uint32(s.ctr[12:]) + 1 // inc32
		binary.BigEndian.PutUint32(s.ctr[12:], c)
		aes256Encrypt(&s.xk, &ks, &s.ctr)
		subtle.XORBytes(dst[i:], src[i:], ks[:])
	}
	clear(ks[:])
}

// ghash absorbs data into y, zero-padded to whole blocks.
func (s *xaesNI) ghash(y *[16]byte, data []byte) {
	for len(data) >= 16 {
		subtle.XORBytes(y[:], y[:], data[:16])
		gfmul(y, &s.h)
		data = data[16:]
	}
	if len(data) > 0 {
		var b [16]byte
		copy(b[:], data)
		subtle.XORBytes(y[:], y[:], b[:])
		gfmul(y, &s.h)
	}
}

// tag sets t to the GCM tag of ciphertext ct with associated data ad.
func (s *xaesNI) tag(t *[16]byte, ad, ct []byte) {
	var y, l [16]byte
	s.ghash(&y, ad)
	s.ghash(&y, ct)
	binary.BigEndian.PutUint64(l[:8], uint64(len(ad))*8)
	binary.BigEndian.PutUint64(l[8:], uint64(len(ct))*8)
	s.ghash(&y, l[:])
	subtle.XORBytes(t[:], y[:], s.mask[:])
}

// sealNI is seal for len(plaintext) <= xaesNIMax with x.xk set.
func (x *xaesGCM) sealNI(dst, nonce, plaintext, ad []byte) []byte {
	var s xaesNI
	s.init(x, nonce)
	n := len(dst)
	dst = slices.Grow(dst, len(plaintext)+XAESTagSize)[:n+len(plaintext)+XAESTagSize]
	ct := dst[n : n+len(plaintext)]
	s.xorKeyStream(ct, plaintext)
	s.tag((*[16]byte)(dst[n+len(plaintext):]), ad, ct)
	clear(s.xk[:])
	return dst
}

// openNI is open for len(ciphertext) <= xaesNIMax+XAESTagSize with x.xk
// set. It checks the tag before decrypting anything into dst.
func (x *xaesGCM) openNI(dst, nonce, ciphertext, ad []byte) ([]byte, error) {
	if len(ciphertext) < XAESTagSize {
		return nil, errXAESOpen
	}
	ct, want := ciphertext[:len(ciphertext)-XAESTagSize], ciphertext[len(ciphertext)-XAESTagSize:]
	var s xaesNI
	s.init(x, nonce)
	var t [16]byte
	s.tag(&t, ad, ct)
	if subtle.ConstantTimeCompare(t[:], want) != 1 {
		clear(s.xk[:])
		return nil, errXAESOpen
	}
	n := len(dst)
	dst = slices.Grow(dst, len(ct))[:n+len(ct)]
	s.xorKeyStream(dst[n:], ct)
	clear(s.xk[:])
	return dst, nil
}
