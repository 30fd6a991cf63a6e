package crypto

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"sync/atomic"
	"unicode/utf8"

	"github.com/dbproxy/dbproxy/value"
)

// MaxKeyNameLen is the longest data key name in bytes: the associated data
// stores its length as a uint16.
const MaxKeyNameLen = math.MaxUint16

// GCMEncryptionLimit is the number of encryptions one legacy AES-256-GCM
// data key version may perform (NIST SP 800-38D §8.3 for random 96-bit
// nonces). Only this process's own encryptions can be counted
// (Key.Encryptions), so the count is a lower bound: Encrypt refuses
// (ErrKeyExhausted) once this Key alone has reached the limit, and the
// remedy is to rotate, which gives an XAES-256-GCM version that has no such
// limit. It does not apply to XAES-256-GCM or AES-256-SIV.
const GCMEncryptionLimit = 1 << 32

// ErrKeyExhausted is wrapped by Encrypt once an AES-256-GCM Key has
// performed GCMEncryptionLimit encryptions: rotate the data key.
var ErrKeyExhausted = errors.New("data key reached its randomized encryption limit; rotate it")

// Key is one unwrapped version of one named data key, ready to encrypt and
// decrypt. It is safe for concurrent use by multiple goroutines, including
// a concurrent Destroy.
//
// A Key never holds the raw material it was built from: NewKey builds the
// ciphers and forgets it (see "Key material in memory" in the package doc).
// Its String, GoString and LogValue show only name, version and algorithm.
type Key struct {
	name    string
	version uint32
	alg     Algorithm

	// ads holds the associated data for every plaintext type, back to back:
	// entry t-1 is header(t) || uint16 BE len(name) || name. Bytes 0..6 of
	// an entry are also the header Encrypt writes. Not secret; immutable.
	ads   []byte
	adLen int

	encryptions atomic.Uint64
	ciphers     atomic.Pointer[keyCiphers] // nil after Destroy
}

// keyCiphers is what Destroy drops.
type keyCiphers struct {
	gcm  cipher.AEAD // AlgorithmAESGCM: nonce(12) || ct || tag(16)
	siv  *aesSIV     // AlgorithmAESSIV: SIV(16) || ct
	xaes *xaesGCM    // AlgorithmXAESGCM: nonce(24) || ct || tag(16)
}

// NewKey builds the Key for version version of data key name. material must
// be exactly alg.KeySize() bytes; NewKey does not retain it, so the caller
// may (and should) zero its copy as soon as NewKey returns. name must be
// non-empty valid UTF-8 of at most MaxKeyNameLen bytes: it is bound into
// every ciphertext as associated data.
func NewKey(name string, version uint32, alg Algorithm, material []byte) (*Key, error) {
	switch {
	case name == "":
		return nil, errors.New("new data key: empty key name")
	case len(name) > MaxKeyNameLen:
		return nil, fmt.Errorf("new data key: name is %d bytes, longer than %d", len(name), MaxKeyNameLen)
	case !utf8.ValidString(name):
		return nil, fmt.Errorf("new data key %q: name is not valid UTF-8", name)
	case !alg.Valid():
		return nil, fmt.Errorf("new data key %q version %d: invalid algorithm %d", name, version, byte(alg))
	case len(material) != alg.KeySize():
		return nil, fmt.Errorf("new data key %q version %d: %s needs a %d-byte key, got %d bytes",
			name, version, alg, alg.KeySize(), len(material))
	}

	k := &Key{name: name, version: version, alg: alg}
	k.buildAssociatedData()
	c := new(keyCiphers)
	switch alg {
	case AlgorithmAESGCM:
		// aes.NewCipher copies the key into its expanded schedule.
		block, err := aes.NewCipher(material)
		if err != nil {
			return nil, fmt.Errorf("new data key %q version %d: %w", name, version, err)
		}
		c.gcm, err = cipher.NewGCMWithRandomNonce(block)
		if err != nil {
			return nil, fmt.Errorf("new data key %q version %d: %w", name, version, err)
		}
	case AlgorithmAESSIV:
		siv, err := newAESSIV(material, k.adList())
		if err != nil {
			return nil, fmt.Errorf("new data key %q version %d: %w", name, version, err)
		}
		c.siv = siv
	case AlgorithmXAESGCM:
		x, err := newXAESGCM(material)
		if err != nil {
			return nil, fmt.Errorf("new data key %q version %d: %w", name, version, err)
		}
		c.xaes = x
	}

	k.ciphers.Store(c)
	return k, nil
}

// adList returns the associated data of each plaintext type, in type
// code order (views of k.ads).
func (k *Key) adList() [][]byte {
	l := make([][]byte, len(k.ads)/k.adLen)
	for i := range l {
		l[i] = k.ads[i*k.adLen : (i+1)*k.adLen : (i+1)*k.adLen]
	}
	return l
}

// buildAssociatedData fills k.ads with one entry per valid plaintext type
// (docs/ciphertext.md): version, algorithm, key version, type code, uint16 BE name
// length, name.
func (k *Key) buildAssociatedData() {
	n := 0
	for value.Type(n + 1).Valid() {
		n++
	}
	k.adLen = HeaderSize + 2 + len(k.name)
	k.ads = make([]byte, n*k.adLen)
	for i := range n {
		ad := k.ads[i*k.adLen : (i+1)*k.adLen]
		ad[0] = FormatVersion
		ad[1] = byte(k.alg)
		binary.BigEndian.PutUint32(ad[2:6], k.version)
		ad[6] = value.Type(i + 1).Code()
		binary.BigEndian.PutUint16(ad[HeaderSize:HeaderSize+2], uint16(len(k.name)))
		copy(ad[HeaderSize+2:], k.name)
	}
}

// associatedData returns the associated data for plaintext type t (its
// first HeaderSize bytes are the header), or nil if t is not a valid type.
// The result has no spare capacity, so appending to it cannot clobber the
// next entry.
func (k *Key) associatedData(t value.Type) []byte {
	if !t.Valid() {
		return nil
	}
	i := int(t.Code()) - 1
	if (i+1)*k.adLen > len(k.ads) {
		return nil
	}
	return k.ads[i*k.adLen : (i+1)*k.adLen : (i+1)*k.adLen]
}

// Name is the data key name bound into every ciphertext.
func (k *Key) Name() string { return k.name }

// Version is the data key version written into every ciphertext header.
func (k *Key) Version() uint32 { return k.version }

// Algorithm is the algorithm this key encrypts with.
func (k *Key) Algorithm() Algorithm { return k.alg }

// Encryptions is how many legacy AES-256-GCM encryptions this Key has
// performed since NewKey. It is always 0 for the other algorithms, which
// have no per-key message limit (Algorithm.NonceLimited). Compare it to
// GCMEncryptionLimit. The count lives in this Key only: it starts again at
// 0 when the key is unwrapped again, and other processes using the same
// key version add to the real total unseen.
func (k *Key) Encryptions() uint64 { return k.encryptions.Load() }

// Encrypt encrypts plaintext, whose type is t, and appends the ciphertext
// (header || payload, docs/ciphertext.md) to dst, returning the extended slice.
// When dst has room for the plaintext plus k.Algorithm().Overhead() bytes,
// AES-256-GCM allocates nothing, XAES-256-GCM nothing up to 512 bytes on
// amd64 with AES-NI and otherwise the AES and GCM state of the message's
// derived key (two objects, about 1.3 KB, whatever the size), and
// AES-256-SIV nothing below 128 bytes (from there, the
// standard library's CTR state). The scratch blocks both hand to the
// standard library's AES are pooled, and cleared before reuse.
// dst must not overlap plaintext. On error it returns nil.
//
// The randomized algorithms draw a fresh random nonce from crypto/rand for
// every call (96 bits for AES-256-GCM, 192 for XAES-256-GCM), so equal
// plaintexts give different ciphertexts. AES-256-SIV is deterministic:
// equal (plaintext, t, key name, key version) give equal ciphertexts.
func (k *Key) Encrypt(dst, plaintext []byte, t value.Type) ([]byte, error) {
	c := k.ciphers.Load()
	if c == nil {
		return nil, ErrKeyDestroyed
	}
	ad := k.associatedData(t)
	if ad == nil {
		return nil, fmt.Errorf("encrypt with data key %q version %d: invalid plaintext type %d", k.name, k.version, byte(t))
	}
	switch k.alg {
	case AlgorithmAESGCM:
		if k.encryptions.Add(1) > GCMEncryptionLimit {
			return nil, fmt.Errorf("encrypt with data key %q version %d: %w", k.name, k.version, ErrKeyExhausted)
		}
		dst = slices.Grow(dst, HeaderSize+GCMNonceSize+len(plaintext)+GCMTagSize)
		dst = append(dst, ad[:HeaderSize]...)
		return c.gcm.Seal(dst, nil, plaintext, ad), nil
	case AlgorithmXAESGCM:
		dst = slices.Grow(dst, HeaderSize+XAESNonceSize+len(plaintext)+XAESTagSize)
		dst = append(dst, ad[:HeaderSize]...)
		n := len(dst)
		dst = dst[:n+XAESNonceSize]
		// crypto/rand.Read never returns an error (it crashes the
		// program if the kernel cannot supply randomness).
		_, _ = rand.Read(dst[n:])
		out, err := c.xaes.seal(dst, dst[n:], plaintext, ad)
		if err != nil {
			return nil, fmt.Errorf("encrypt with data key %q version %d: %w", k.name, k.version, err)
		}
		return out, nil
	case AlgorithmAESSIV:
		dst = slices.Grow(dst, HeaderSize+SIVSize+len(plaintext))
		dst = append(dst, ad[:HeaderSize]...)
		return c.siv.seal(dst, int(t.Code())-1, plaintext), nil
	default:
		// NewKey admits only valid algorithms.
		panic("BUG: crypto.Key with invalid algorithm " + k.alg.String())
	}
}

// Decrypt authenticates and decrypts ciphertext, appends the plaintext to
// dst and returns it with the plaintext type from the header. dst must not
// overlap ciphertext; even when Decrypt fails, dst's spare capacity may
// have been overwritten. On error it returns nil and TypeUnknown.
//
// Errors:
//   - wrapping ErrMalformed: too short, unknown format version, algorithm or
//     type code (public header fields only);
//   - wrapping ErrKeyMismatch: the header names another algorithm or key
//     version than this Key's (use ParseHeader to pick the Key);
//   - wrapping ErrDecrypt: authentication failed — wrong key material, wrong
//     key name, or any modified byte. It never says which;
//   - ErrKeyDestroyed after Destroy.
func (k *Key) Decrypt(dst, ciphertext []byte) ([]byte, value.Type, error) {
	c := k.ciphers.Load()
	if c == nil {
		return nil, value.TypeUnknown, ErrKeyDestroyed
	}
	h, p := parseHeader(ciphertext)
	if p != headerOK {
		return nil, value.TypeUnknown, fmt.Errorf("decrypt with data key %q version %d: %w",
			k.name, k.version, headerError(p, ciphertext))
	}
	if h.Algorithm != k.alg {
		return nil, value.TypeUnknown, fmt.Errorf("decrypt with data key %q version %d: %w: ciphertext is %s, key is %s",
			k.name, k.version, ErrKeyMismatch, h.Algorithm, k.alg)
	}
	if h.KeyVersion != k.version {
		return nil, value.TypeUnknown, fmt.Errorf("decrypt with data key %q version %d: %w: ciphertext is for key version %d",
			k.name, k.version, ErrKeyMismatch, h.KeyVersion)
	}
	// Every header field now equals this Key's, so the precomputed
	// associated data starts with exactly ciphertext[:HeaderSize].
	ad := k.associatedData(h.Type)
	if ad == nil {
		// parseHeader accepted the type, so it has an entry.
		panic("BUG: no associated data for valid type " + h.Type.String())
	}
	payload := ciphertext[HeaderSize:]
	switch k.alg {
	case AlgorithmAESGCM:
		out, err := c.gcm.Open(dst, nil, payload, ad)
		if err != nil {
			return nil, value.TypeUnknown, fmt.Errorf("decrypt with data key %q version %d: %w", k.name, k.version, ErrDecrypt)
		}
		return out, h.Type, nil
	case AlgorithmXAESGCM:
		out, err := c.xaes.open(dst, payload[:XAESNonceSize], payload[XAESNonceSize:], ad)
		if err != nil {
			return nil, value.TypeUnknown, fmt.Errorf("decrypt with data key %q version %d: %w", k.name, k.version, ErrDecrypt)
		}
		return out, h.Type, nil
	case AlgorithmAESSIV:
		out, err := c.siv.open(dst, int(h.Type.Code())-1, payload)
		if err != nil {
			return nil, value.TypeUnknown, fmt.Errorf("decrypt with data key %q version %d: %w", k.name, k.version, ErrDecrypt)
		}
		return out, h.Type, nil
	default:
		panic("BUG: crypto.Key with invalid algorithm " + k.alg.String())
	}
}

// Destroy drops this Key's ciphers so their memory can be reclaimed; after
// it, Encrypt and Decrypt return ErrKeyDestroyed. Calls already in progress
// finish normally. Name, Version, Algorithm and Encryptions keep working.
// Destroy is idempotent. It does not (cannot) zero the AES key schedules:
// see "Key material in memory" in the package doc.
func (k *Key) Destroy() { k.ciphers.Store(nil) }

// String identifies the key without revealing it, e.g.
// `crypto.Key{name="users_email" version=3 algorithm=AES-256-SIV}`.
func (k *Key) String() string {
	return fmt.Sprintf("crypto.Key{name=%q version=%d algorithm=%s}", k.name, k.version, k.alg)
}

// GoString makes %#v print the same as String, never the cipher state.
func (k *Key) GoString() string { return k.String() }

// LogValue logs a Key as a group of name, version and algorithm.
func (k *Key) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("name", k.name),
		slog.Uint64("version", uint64(k.version)),
		slog.String("algorithm", k.alg.String()),
	)
}

// NewRandomKeyMaterial returns alg.KeySize() bytes from crypto/rand, for a
// new data key version. The caller wraps it and zeroes it after NewKey.
func NewRandomKeyMaterial(alg Algorithm) ([]byte, error) {
	if !alg.Valid() {
		return nil, fmt.Errorf("new key material: invalid algorithm %d", byte(alg))
	}
	b := make([]byte, alg.KeySize())
	if _, err := rand.Read(b); err != nil {
		return nil, fmt.Errorf("new key material: %w", err)
	}
	return b, nil
}

var _ slog.LogValuer = (*Key)(nil)
var _ fmt.Stringer = (*Key)(nil)
var _ fmt.GoStringer = (*Key)(nil)
