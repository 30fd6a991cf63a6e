package crypto

// This file fixes the public API of package crypto so that other packages
// can be written against it. The implementation lives in the other files.

import (
	"errors"

	"github.com/dbproxy/dbproxy/value"
)

// Algorithm is the ciphertext algorithm byte (docs/ciphertext.md, offset 1).
// The zero value is invalid.
type Algorithm byte

const (
	AlgorithmUnknown Algorithm = 0
	AlgorithmAESGCM  Algorithm = 1 // randomized, legacy: AES-256-GCM, random 96-bit nonce
	AlgorithmAESSIV  Algorithm = 2 // deterministic: AES-256-SIV (RFC 5297)
	AlgorithmXAESGCM Algorithm = 3 // randomized: XAES-256-GCM, random 192-bit nonce
)

// FormatVersion is byte 0 of every ciphertext.
const FormatVersion = 0x01

// HeaderSize is the fixed header length: version, algorithm, key version
// (uint32 BE), plaintext type code.
const HeaderSize = 7

// ErrDecrypt is the single error returned for any ciphertext that fails to
// authenticate (wrong key, wrong key name, flipped bit). It never says why.
var ErrDecrypt = errors.New("decryption failed")

// ErrKeyDestroyed is returned by a Key used after Destroy.
var ErrKeyDestroyed = errors.New("data key was evicted; fetch it again")

// Header is the parsed fixed header of a ciphertext.
type Header struct {
	Algorithm  Algorithm
	KeyVersion uint32
	Type       value.Type
}
