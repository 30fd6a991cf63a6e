// Package crypto owns the dbproxy ciphertext format (CONTRACT §3) and the
// data-key primitive that produces and reads it.
//
// # Ciphertext format
//
// Every encrypted value is one self-describing byte string:
//
//	offset  size  field
//	0       1     format version = 0x01 (FormatVersion)
//	1       1     algorithm: 0x01 AES-256-GCM (randomized), 0x02 AES-256-SIV (deterministic)
//	2       4     data key version, uint32 big-endian
//	6       1     plaintext type code (value.Type.Code)
//	7       ...   payload
//
//	AES-256-GCM: header(7) || nonce(12) || ciphertext || tag(16)   overhead 35
//	AES-256-SIV: header(7) || SIV(16)   || ciphertext              overhead 23
//
// Both algorithms authenticate the associated data
//
//	AD = header(7) || uint16 BE len(name) || name (UTF-8)
//
// where name is the data key name (not the table name). So a modified
// header, a ciphertext copied into a column that uses another key, or a key
// with the same material but another name all fail to decrypt.
// The header itself is public and is checked before any cryptography
// (ParseHeader, IsCiphertext), so a caller can pick the key version to
// decrypt with; header-level problems get descriptive errors wrapping
// ErrMalformed or ErrKeyMismatch. An authentication failure always wraps
// ErrDecrypt and says nothing beyond the key name and version used.
//
// # Primitives
//
// AES-256-GCM is the standard library's cipher.NewGCMWithRandomNonce: a
// 96-bit nonce from crypto/rand per encryption, so a Key must not encrypt
// more than 2^32 values (NIST SP 800-38D). Key.Encryptions counts them for
// the key manager, and Encrypt refuses past GCMEncryptionLimit.
//
// AES-256-SIV is RFC 5297 AES-SIV-CMAC with a 64-byte key (32 bytes for
// S2V/CMAC, 32 for CTR), from Tink's raw primitive
// github.com/tink-crypto/tink-go/v2/daead/subtle.AESSIV, under our own
// header instead of Tink's 5-byte keyset prefix. It is deterministic: equal
// plaintexts of the same type under the same key name and version encrypt
// to equal bytes, which is what makes equality queries work and also what
// leaks equality and frequency. S2V is never hand-rolled here.
//
// # Key material in memory
//
// NewKey does not retain the material it is given; callers zero their copy
// right after it returns. Be honest about what remains:
//   - Go's crypto/aes keeps an expanded key schedule inside its cipher.Block,
//     which cannot be zeroed from outside the standard library. An AES-256
//     key is recoverable from its schedule, so for as long as a Key's
//     ciphers are reachable the key is in memory.
//   - Tink's AESSIV keeps the 64 bytes it was given (NewKey hands it a
//     private copy) and re-derives the CTR cipher from them on every call.
//
// Key.Destroy drops the only reference to these (an atomic pointer), so
// Encrypt and Decrypt fail with ErrKeyDestroyed and the garbage collector
// can reclaim the memory; it does not overwrite it. Key.String, GoString
// and LogValue show name, version and algorithm only.
//
// # Concurrency and allocation
//
// A Key is immutable apart from its counter and may be shared by any number
// of goroutines. The associated data for every plaintext type is computed
// once in NewKey, so AES-256-GCM Encrypt and Decrypt allocate nothing when
// dst has room; AES-256-SIV allocates inside Tink.
//
// # Boundaries
//
// This package holds the ciphertext format and the data-key primitive; key
// providers (kms/), keystores (keystore/) and the key cache (keys/) live in
// sub-packages that build on it. It must not import proxy/... or config,
// and must not log: it takes no logger and returns errors instead.
package crypto
