package crypto

import (
	"crypto/subtle"
	"encoding/binary"
	"errors"
	"slices"
	"unsafe"
)

// XAES-256-GCM with AES-NI and PCLMULQDQ (aesni_amd64.s), for values up
// to xaesNIMax bytes: the per-message AES-256 key schedule and GCM state
// live on the stack, so a Seal or Open allocates nothing, where
// crypto/aes and crypto/cipher build (and the garbage collector later
// reclaims) about 1.3 KB in two objects per message. It is plain GCM (NIST
// SP 800-38D, 96-bit nonce) two AES blocks at a time: the data key's two
// KDF blocks, H = AES_Km(0) with the tag mask AES_Km(J0), CTR from J0+1;
// GHASH, one block at a time, over the associated data, the ciphertext
// and their bit lengths. The tag is checked before anything is decrypted.
// TestXAESNIMatchesGeneric checks it against the crypto/cipher path on
// random keys, nonces, lengths and associated data, FuzzXAESNI and
// TestXAESAllLengths against a reference written from the C2SP text,
// besides the C2SP and Tink checks every XAES-256-GCM path runs.

// xaesNIMax is the longest plaintext (or ciphertext without its tag) that
// takes this path: beyond it crypto/cipher's pipelined GCM is about as
// fast despite its setup.
const xaesNIMax = 512

// errXAESOpen: a payload that does not authenticate (no detail, on
// purpose).
var errXAESOpen = errors.New("xaes-256-gcm: message authentication failed")

// xaesNI is the GCM state of one message under its derived key Km. It
// lives on the caller's stack and is zeroed (wipe) before sealNI or openNI
// returns, whichever way.
type xaesNI struct {
	xk   [240]byte // round keys of Km
	h    [16]byte  // GHASH key AES_Km(0)
	mask [16]byte  // AES_Km(J0), XORed into the tag
	ctr  [16]byte  // J0, then the current counter block
	y    [16]byte  // GHASH accumulator
}

// wipe zeroes s.
func (s *xaesNI) wipe() { *s = xaesNI{} }

// deriveNI sets km to the XAES-256-GCM key of nonce[:12] (see xaesGCM):
// M1 and M2, XORed with K1, encrypted together.
func (x *xaesGCM) deriveNI(km *[32]byte, nonce []byte) {
	var m [32]byte
	m[1], m[2] = 0x01, 'X'
	copy(m[4:16], nonce[:12])
	xor16((*[16]byte)(m[:16]), &x.k1)
	copy(m[16:], m[:16])
	m[17] ^= 0x01 ^ 0x02 // M1 -> M2
	aes256Encrypt2(x.xk, km, &m)
	clear(m[:])
}

// init sets up s for the message under nonce (XAESNonceSize bytes).
func (s *xaesNI) init(x *xaesGCM, nonce []byte) {
	var km [32]byte
	x.deriveNI(&km, nonce)
	aes256Expand(&km, &s.xk)
	clear(km[:])
	copy(s.ctr[:12], nonce[12:])
	s.ctr[15] = 1  // J0 = nonce || 0^31 || 1
	var b [32]byte // 0^128 || J0 -> H || AES_Km(J0)
	copy(b[16:], s.ctr[:])
	aes256Encrypt2(&s.xk, &b, &b)
	copy(s.h[:], b[:16])
	copy(s.mask[:], b[16:])
	clear(b[:])
}

// xorKeyStream XORs src with the CTR key stream into dst (len(dst) ==
// len(src); they may be the same slice but must not overlap otherwise:
// checkOverlap),
// two counter blocks at a time.
func (s *xaesNI) xorKeyStream(dst, src []byte) {
	var ks [32]byte
	for i := 0; i < len(src); i += 32 {
		c := binary.BigEndian.Uint32(s.ctr[12:]) // inc32, twice
		copy(ks[:12], s.ctr[:12])
		binary.BigEndian.PutUint32(ks[12:], c+1)
		copy(ks[16:28], s.ctr[:12])
		binary.BigEndian.PutUint32(ks[28:], c+2)
		binary.BigEndian.PutUint32(s.ctr[12:], c+2)
		aes256Encrypt2(&s.xk, &ks, &ks)
		subtle.XORBytes(dst[i:], src[i:], ks[:])
	}
	clear(ks[:])
}

// ghash absorbs data into y, zero-padded to whole blocks.
func (s *xaesNI) ghash(y *[16]byte, data []byte) {
	for len(data) >= 16 {
		xor16(y, (*[16]byte)(data))
		gfmul(y, &s.h)
		data = data[16:]
	}
	if len(data) > 0 {
		var b [16]byte
		copy(b[:], data)
		xor16(y, &b)
		gfmul(y, &s.h)
	}
}

// xor16 XORs b into a (inline, where subtle.XORBytes is a call with
// overlap checks: it shows on 16-byte blocks).
func xor16(a, b *[16]byte) {
	binary.LittleEndian.PutUint64(a[:8], binary.LittleEndian.Uint64(a[:8])^binary.LittleEndian.Uint64(b[:8]))
	binary.LittleEndian.PutUint64(a[8:], binary.LittleEndian.Uint64(a[8:])^binary.LittleEndian.Uint64(b[8:]))
}

// tag sets t to the GCM tag of ciphertext ct with associated data ad.
func (s *xaesNI) tag(t *[16]byte, ad, ct []byte) {
	var l [16]byte
	s.y = [16]byte{}
	s.ghash(&s.y, ad)
	s.ghash(&s.y, ct)
	binary.BigEndian.PutUint64(l[:8], uint64(len(ad))*8)
	binary.BigEndian.PutUint64(l[8:], uint64(len(ct))*8)
	s.ghash(&s.y, l[:])
	xor16(&s.y, &s.mask)
	*t = s.y
}

// sealNI is seal for len(plaintext) <= xaesNIMax with x.xk set.
func (x *xaesGCM) sealNI(dst, nonce, plaintext, ad []byte) []byte {
	n := len(dst)
	dst = slices.Grow(dst, len(plaintext)+XAESTagSize)[:n+len(plaintext)+XAESTagSize]
	checkOverlap(dst[n:], plaintext, ad)
	var s xaesNI
	defer s.wipe()
	s.init(x, nonce)
	ct := dst[n : n+len(plaintext)]
	s.xorKeyStream(ct, plaintext)
	s.tag((*[16]byte)(dst[n+len(plaintext):]), ad, ct)
	return dst
}

// openNI is open for len(ciphertext) <= xaesNIMax+XAESTagSize with x.xk
// set. It checks the tag before decrypting anything into dst.
func (x *xaesGCM) openNI(dst, nonce, ciphertext, ad []byte) ([]byte, error) {
	if len(ciphertext) < XAESTagSize {
		return nil, errXAESOpen
	}
	ct, want := ciphertext[:len(ciphertext)-XAESTagSize], ciphertext[len(ciphertext)-XAESTagSize:]
	n := len(dst)
	out := slices.Grow(dst, len(ct))[:n+len(ct)]
	checkOverlap(out[n:], ciphertext, ad)
	var s xaesNI
	defer s.wipe()
	s.init(x, nonce)
	var t [16]byte // the expected tag: a valid forgery while it differs from want
	s.tag(&t, ad, ct)
	ok := subtle.ConstantTimeCompare(t[:], want) == 1
	clear(t[:])
	if !ok {
		return nil, errXAESOpen
	}
	s.xorKeyStream(out[n:], ct)
	return out, nil
}

// checkOverlap panics as crypto/cipher's GCM does when out, the part of
// dst that Seal or Open writes, shares memory with their input in other
// than the same place (xorKeyStream works 32 bytes at a time, so an out
// that starts inside the input would silently corrupt it) or with the
// associated data at all (Seal reads it after writing out).
func checkOverlap(out, in, ad []byte) {
	if len(out) > 0 && len(in) > 0 && &out[0] != &in[0] && anyOverlap(out, in) {
		panic("crypto/cipher: invalid buffer overlap of output and input")
	}
	if anyOverlap(out, ad) {
		panic("crypto/cipher: invalid buffer overlap of output and additional data")
	}
}

// anyOverlap reports whether x and y share memory at any index (as
// crypto/internal/alias.AnyOverlap; memory beyond the lengths is ignored).
func anyOverlap(x, y []byte) bool {
	return len(x) > 0 && len(y) > 0 &&
		uintptr(unsafe.Pointer(&x[0])) <= uintptr(unsafe.Pointer(&y[len(y)-1])) &&
		uintptr(unsafe.Pointer(&y[0])) <= uintptr(unsafe.Pointer(&x[len(x)-1]))
}
