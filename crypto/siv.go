package crypto

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/subtle"
	"errors"
	"sync"
)

// aesSIV is AES-SIV-CMAC with a 64-byte key (RFC 5297: S2V over
// AES-256-CMAC with the first half, AES-256-CTR with the second) for one
// data key, specialised to how this package uses it: exactly one
// associated-data component, one of a fixed set (one per plaintext type).
//
// It is written here rather than taken from Tink's daead/subtle.AESSIV,
// which computes the same function (the two are cross-checked in the
// tests), because Tink expands the CTR key schedule again and allocates
// about 1 KB in seven objects on every call; on the proxy's hot path
// (every deterministic lookup and every decrypted cell) that was most of
// the cost of the cryptography. Here both key schedules and the CMAC
// subkeys are built once, and so is the part of S2V that depends only on
// the associated data:
//
//	D = dbl(CMAC(0^128)) xor CMAC(AD)
//
// so that each call runs the plaintext's CMAC and CTR blocks only, without
// allocating (the scratch blocks handed to cipher.Block are pooled). It is
// verified against Wycheproof's AES-SIV-CMAC-512 vectors and against
// Tink on random inputs (kat_test.go, siv_test.go).
type aesSIV struct {
	mac, ctr cipher.Block
	k1, k2   [aes.BlockSize]byte // CMAC subkeys of mac
	// d[i], dd[i]: D and dbl(D) for the associated data ads[i].
	d, dd [][aes.BlockSize]byte
}

// sivScratch holds the blocks of one call that reach a cipher.Block
// through an interface, and so would live on the heap: they come from
// sivScratches.
type sivScratch struct {
	x  [aes.BlockSize]byte // CMAC state, then the SIV
	q  [aes.BlockSize]byte // CTR counter
	ks [aes.BlockSize]byte // CTR key stream block
}

// sivScratches recycles the scratch of each call: a fresh one would be an
// allocation per value on the proxy's hot path. A scratch goes back with
// its key stream block cleared (the other blocks are the SIV and the
// counter, which the ciphertext carries anyway).
var sivScratches = sync.Pool{New: func() any { return new(sivScratch) }}

func getSIVScratch() *sivScratch { return sivScratches.Get().(*sivScratch) }

func putSIVScratch(sc *sivScratch) {
	clear(sc.ks[:])
	sivScratches.Put(sc)
}

// errSIVOpen: a payload that does not authenticate (no detail, on purpose).
var errSIVOpen = errors.New("aes-siv: message authentication failed")

// sivCTRMin is the length from which CTR runs through the standard
// library's stream (its setup costs more than a few blocks by hand).
const sivCTRMin = 128

// newAESSIV builds the cipher for a 64-byte key and the associated data
// of each plaintext type. It does not retain key.
func newAESSIV(key []byte, ads [][]byte) (*aesSIV, error) {
	if len(key) != 64 {
		return nil, errors.New("aes-siv: key is not 64 bytes")
	}
	mac, err := aes.NewCipher(key[:32])
	if err != nil {
		return nil, err
	}
	ctr, err := aes.NewCipher(key[32:])
	if err != nil {
		return nil, err
	}
	s := &aesSIV{mac: mac, ctr: ctr}
	var l [aes.BlockSize]byte
	mac.Encrypt(l[:], l[:])
	dbl(&s.k1, &l)
	dbl(&s.k2, &s.k1)
	clear(l[:])
	var d0 [aes.BlockSize]byte
	zero := s.cmac(d0[:]) // CMAC of the all-zero block, not of the empty string
	dbl(&d0, &zero)
	s.d = make([][aes.BlockSize]byte, len(ads))
	s.dd = make([][aes.BlockSize]byte, len(ads))
	for i, ad := range ads {
		m := s.cmac(ad)
		subtle.XORBytes(s.d[i][:], d0[:], m[:])
		dbl(&s.dd[i], &s.d[i])
	}
	return s, nil
}

// dbl sets dst to src·x in GF(2^128) (RFC 5297 "dbl", RFC 4493 subkey
// generation): a left shift by one bit, reduced by 0x87 when the top bit
// falls off. Branch-free, as src may be secret.
func dbl(dst, src *[aes.BlockSize]byte) {
	msb := src[0] >> 7
	for i := 0; i < aes.BlockSize-1; i++ {
		dst[i] = src[i]<<1 | src[i+1]>>7
	}
	dst[aes.BlockSize-1] = src[aes.BlockSize-1]<<1 ^ (0x87 & -msb)
}

// cmac is AES-CMAC (RFC 4493) of m under mac, for the values computed
// once in newAESSIV.
func (s *aesSIV) cmac(m []byte) [aes.BlockSize]byte {
	var x [aes.BlockSize]byte
	for len(m) > aes.BlockSize {
		subtle.XORBytes(x[:], x[:], m[:aes.BlockSize])
		s.mac.Encrypt(x[:], x[:])
		m = m[aes.BlockSize:]
	}
	s.lastBlock(&x, m)
	return x
}

// lastBlock runs CMAC's final block m (1 to 16 bytes, or 0 for an empty
// message) on the state x.
func (s *aesSIV) lastBlock(x *[aes.BlockSize]byte, m []byte) {
	subtle.XORBytes(x[:], x[:], m)
	if len(m) == aes.BlockSize {
		subtle.XORBytes(x[:], x[:], s.k1[:])
	} else {
		x[len(m)] ^= 0x80
		subtle.XORBytes(x[:], x[:], s.k2[:])
	}
	s.mac.Encrypt(x[:], x[:])
}

// s2v leaves S2V(AD_i, p) in sc.x: CMAC(p xorend D) when p has a block or
// more, else CMAC(dbl(D) xor pad(p)).
func (s *aesSIV) s2v(sc *sivScratch, i int, p []byte) {
	x := &sc.x
	clear(x[:])
	n := len(p)
	if n < aes.BlockSize {
		var t [aes.BlockSize]byte
		copy(t[:], p)
		t[n] = 0x80
		subtle.XORBytes(x[:], s.dd[i][:], t[:])
		subtle.XORBytes(x[:], x[:], s.k1[:]) // one complete block
		s.mac.Encrypt(x[:], x[:])
		return
	}
	// The blocks before the last 16 bytes' block go from p as they are.
	tail := n - aes.BlockSize // D is XORed into p[tail:]
	off := 0
	for ; off+aes.BlockSize <= tail; off += aes.BlockSize {
		subtle.XORBytes(x[:], x[:], p[off:off+aes.BlockSize])
		s.mac.Encrypt(x[:], x[:])
	}
	// What is left, 16 to 31 bytes, holds the xorend.
	var t [2 * aes.BlockSize]byte
	m := copy(t[:], p[off:])
	subtle.XORBytes(t[tail-off:m], t[tail-off:m], s.d[i][:])
	rest := t[:m]
	if m > aes.BlockSize {
		subtle.XORBytes(x[:], x[:], rest[:aes.BlockSize])
		s.mac.Encrypt(x[:], x[:])
		rest = rest[aes.BlockSize:]
	}
	s.lastBlock(x, rest)
}

// xorKeyStream XORs src with the CTR key stream of the SIV v into dst
// (same length; they may be the same slice).
func (s *aesSIV) xorKeyStream(sc *sivScratch, v []byte, dst, src []byte) {
	q := &sc.q
	copy(q[:], v)
	q[8] &= 0x7f // RFC 5297: clear bits 31 and 63 of the counter
	q[12] &= 0x7f
	if len(src) >= sivCTRMin {
		cipher.NewCTR(s.ctr, q[:]).XORKeyStream(dst, src)
		return
	}
	for len(src) > 0 {
		s.ctr.Encrypt(sc.ks[:], q[:])
		k := subtle.XORBytes(dst, src, sc.ks[:])
		dst, src = dst[k:], src[k:]
		for j := aes.BlockSize - 1; j >= 0; j-- { // 128-bit big-endian increment
			q[j]++
			if q[j] != 0 {
				break
			}
		}
	}
}

// seal appends SIV || ciphertext of p under associated data i to dst.
func (s *aesSIV) seal(dst []byte, i int, p []byte) []byte {
	sc := getSIVScratch()
	defer putSIVScratch(sc)
	s.s2v(sc, i, p)
	dst = append(dst, sc.x[:]...)
	n := len(dst)
	dst = append(dst, make([]byte, len(p))...)
	s.xorKeyStream(sc, sc.x[:], dst[n:], p)
	return dst
}

// open authenticates SIV || ciphertext under associated data i and
// appends the plaintext to dst. On failure the bytes it wrote to dst's
// spare capacity are zeroed.
func (s *aesSIV) open(dst []byte, i int, payload []byte) ([]byte, error) {
	if len(payload) < aes.BlockSize {
		return nil, errSIVOpen
	}
	v, ct := payload[:aes.BlockSize], payload[aes.BlockSize:]
	sc := getSIVScratch()
	defer putSIVScratch(sc)
	n := len(dst)
	dst = append(dst, make([]byte, len(ct))...)
	pt := dst[n:]
	s.xorKeyStream(sc, v, pt, ct)
	s.s2v(sc, i, pt)
	if subtle.ConstantTimeCompare(sc.x[:], v) != 1 {
		clear(pt)
		return nil, errSIVOpen
	}
	return dst, nil
}
