package crypto

import (
	"fmt"
	"strconv"
)

// Payload sizes of the algorithms (docs/ciphertext.md); XAESNonceSize and
// XAESTagSize are in xaes.go.
const (
	// GCMNonceSize is the random nonce that starts an AES-256-GCM payload.
	GCMNonceSize = 12
	// GCMTagSize is the authentication tag that ends an AES-256-GCM payload.
	GCMTagSize = 16
	// SIVSize is the synthetic IV that starts an AES-256-SIV payload.
	SIVSize = 16
)

// Text names of the algorithms, as written in the keystore and in logs.
const (
	algorithmNameGCM  = "AES-256-GCM"
	algorithmNameSIV  = "AES-256-SIV"
	algorithmNameXAES = "XAES-256-GCM"
)

// Valid reports whether a is one of the defined algorithms.
func (a Algorithm) Valid() bool {
	return a == AlgorithmAESGCM || a == AlgorithmAESSIV || a == AlgorithmXAESGCM
}

// Deterministic reports whether equal plaintexts encrypt to equal
// ciphertexts under a (true for AES-256-SIV only).
func (a Algorithm) Deterministic() bool { return a == AlgorithmAESSIV }

// Randomized reports whether a draws a random nonce per encryption, so that
// equal plaintexts encrypt to different ciphertexts: AES-256-GCM (legacy)
// and XAES-256-GCM.
func (a Algorithm) Randomized() bool { return a == AlgorithmAESGCM || a == AlgorithmXAESGCM }

// NonceLimited reports whether a key version of algorithm a may perform
// only a bounded number of encryptions (GCMEncryptionLimit): true for
// AES-256-GCM, whose 96-bit random nonces collide with non-negligible
// probability past 2^32 messages. XAES-256-GCM has no such per-key limit
// (see the package doc), and AES-256-SIV uses no nonce.
func (a Algorithm) NonceLimited() bool { return a == AlgorithmAESGCM }

// KeySize is the data key length in bytes: 32 for AES-256-GCM and
// XAES-256-GCM, 64 for AES-256-SIV (two AES-256 keys, one for S2V/CMAC and
// one for CTR), and 0 for an invalid algorithm.
func (a Algorithm) KeySize() int {
	switch a {
	case AlgorithmAESGCM, AlgorithmXAESGCM:
		return 32
	case AlgorithmAESSIV:
		return 64
	default:
		return 0
	}
}

// Overhead is how many bytes a ciphertext adds to its plaintext, header
// included, which is also the shortest valid ciphertext: 35 for AES-256-GCM
// (7+12+16), 23 for AES-256-SIV (7+16), 47 for XAES-256-GCM (7+24+16), and
// 0 for an invalid algorithm. Use it to size database columns.
func (a Algorithm) Overhead() int {
	switch a {
	case AlgorithmAESGCM:
		return HeaderSize + GCMNonceSize + GCMTagSize
	case AlgorithmAESSIV:
		return HeaderSize + SIVSize
	case AlgorithmXAESGCM:
		return HeaderSize + XAESNonceSize + XAESTagSize
	default:
		return 0
	}
}

// String returns "AES-256-GCM", "AES-256-SIV", "XAES-256-GCM", or
// "Algorithm(N)" for an invalid value.
func (a Algorithm) String() string {
	switch a {
	case AlgorithmAESGCM:
		return algorithmNameGCM
	case AlgorithmAESSIV:
		return algorithmNameSIV
	case AlgorithmXAESGCM:
		return algorithmNameXAES
	default:
		return "Algorithm(" + strconv.Itoa(int(a)) + ")"
	}
}

// MarshalText encodes a valid algorithm as its name, so JSON shows
// "AES-256-GCM" rather than a number. An invalid algorithm is an error: a
// record nobody filled in must not be written.
func (a Algorithm) MarshalText() ([]byte, error) {
	if !a.Valid() {
		return nil, fmt.Errorf("marshal algorithm: invalid algorithm %d", byte(a))
	}
	return []byte(a.String()), nil
}

// UnmarshalText accepts exactly the names String returns for valid
// algorithms.
func (a *Algorithm) UnmarshalText(text []byte) error {
	switch string(text) {
	case algorithmNameGCM:
		*a = AlgorithmAESGCM
	case algorithmNameSIV:
		*a = AlgorithmAESSIV
	case algorithmNameXAES:
		*a = AlgorithmXAESGCM
	default:
		return fmt.Errorf("unmarshal algorithm: unknown algorithm %q (want %q, %q or %q)",
			text, algorithmNameXAES, algorithmNameGCM, algorithmNameSIV)
	}
	return nil
}
