// Package crypto owns the dbproxy ciphertext format (docs/ciphertext.md) and the
// data-key primitive that produces and reads it.
//
// # Ciphertext format
//
// Every encrypted value is one self-describing byte string:
//
//	offset  size  field
//	0       1     format version = 0x01 (FormatVersion)
//	1       1     algorithm: 0x01 AES-256-GCM (randomized, legacy)
//	                         0x02 AES-256-SIV (deterministic)
//	                         0x03 XAES-256-GCM (randomized)
//	2       4     data key version, uint32 big-endian
//	6       1     plaintext type code (value.Type.Code)
//	7       ...   payload
//
//	AES-256-GCM:  header(7) || nonce(12) || ciphertext || tag(16)   overhead 35
//	AES-256-SIV:  header(7) || SIV(16)   || ciphertext              overhead 23
//	XAES-256-GCM: header(7) || nonce(24) || ciphertext || tag(16)   overhead 47
//
// The overhead is also the minimum length of a ciphertext of the algorithm.
// All algorithms authenticate the associated data
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
// XAES-256-GCM (0x03, https://c2sp.org/XAES-256-GCM) is the randomized
// algorithm of new data key versions. Each encryption draws a 192-bit nonce
// N from crypto/rand; a per-message AES-256 key is derived from the data
// key and N[:12] (NIST SP 800-108r1 counter-mode KDF with AES-CMAC: two AES
// block encryptions), and the value is sealed with AES-256-GCM under that
// key with N[12:] as its 96-bit nonce. Why this one:
//   - AES-256-GCM with random 96-bit nonces is safe for 2^32 messages per
//     key (NIST SP 800-38D §8.3). That total is shared by every proxy,
//     restart and replica that ever uses the key version, and none of them
//     can count it, so an in-process counter is no limit at all.
//     XAES-256-GCM's per-message keys make a collision of both the derived
//     key and the GCM nonce a 192-bit birthday event: about 2^80 messages
//     per data key version before the probability reaches 2^-32, which is
//     no practical limit, so nothing is counted for it.
//   - It is built from AES only (AES-NI, FIPS-approved components), needs
//     no new dependency, and its ciphertext is an ordinary AES-256-GCM
//     ciphertext under a derivable key.
//   - The cost is 12 more bytes per value and, per message, two AES blocks,
//     an AES key expansion and a GCM setup, with their allocations (about
//     2 µs per encrypt+decrypt, against 0.2-0.6 µs for AES-256-GCM; see
//     BenchmarkRoundTrip). AES-GCM-SIV or XChaCha20-Poly1305 were not
//     chosen: the first still has a per-key limit under random nonces, the
//     second is not AES (no FIPS-approved path, other hardware profile).
//
// It is implemented in xaes.go on crypto/aes and crypto/cipher, and, on
// amd64 with AES-NI, for values up to 512 bytes, on AES-NI and PCLMULQDQ
// directly (xaes_ni.go, aesni_amd64.s) so that the per-message key
// schedule and GCM state stay on the stack; it is written here because no
// maintained module offers it as a raw primitive: the standard library's
// is internal, filippo.io/xaes256gcm is not on the module proxy this
// project uses, and Tink's X-AES-GCM is only reachable through a keyset
// and allocates its own output. The C2SP vectors (the two short ones and
// the 10,000-iteration accumulated one; the 1,000,000-iteration one with
// DBPROXY_XAES_1M=1) and a cross-check against Tink's X-AES-GCM pin it.
//
// The AES-NI path is chosen once, at start-up, by CPU feature detection
// (golang.org/x/sys/cpu): it needs AES-NI, PCLMULQDQ and SSSE3, and
// without any of them every value takes the generic path. Building with
// `-tags purego` leaves the assembly out and forces the generic path.
// x/sys/cpu honours GODEBUG as the standard library does, so running with
// GODEBUG=cpu.aes=off (or cpu.pclmulqdq=off, cpu.ssse3=off) also selects
// the generic path, as it makes crypto/aes use its generic code.
//
// AES-256-GCM (0x01) is legacy: key versions created before 0x03 existed
// keep it for life, and their ciphertexts stay readable. It is the
// standard library's cipher.NewGCMWithRandomNonce: a 96-bit nonce from
// crypto/rand per encryption, so a version must not encrypt more than 2^32
// values in total. Key.Encryptions counts this Key's own encryptions and
// Encrypt refuses past GCMEncryptionLimit, but that count is per process
// and so only a lower bound; the key manager warns about such versions and
// the remedy is `dbproxy keys rotate`, which gives an XAES-256-GCM version.
//
// One data key version is one algorithm: its key material is used with no
// other, so the 32 bytes of an AES-256-GCM version never meet XAES-256-GCM.
// A ciphertext whose algorithm differs from its Key's fails with
// ErrKeyMismatch before any cryptography.
//
// AES-256-SIV is RFC 5297 AES-SIV-CMAC with a 64-byte key (32 bytes for
// S2V/CMAC, 32 for CTR), under our own header instead of Tink's 5-byte
// keyset prefix. It is deterministic: equal plaintexts of the same type
// under the same key name and version encrypt to equal bytes, which is
// what makes equality queries work and also what leaks equality and
// frequency. The primitive is written here (siv.go) rather than taken from
// Tink's daead/subtle.AESSIV, which rebuilds its CTR cipher and allocates
// about 1 KB on every call: both key schedules, the CMAC subkeys and the
// part of S2V that depends only on the associated data are computed once
// per key. It produces Tink's bytes exactly; it is pinned by Wycheproof's
// AES-SIV-CMAC-512 vectors, by a cross-check against Tink on random inputs
// of every length up to 300 bytes, and by the golden ciphertexts.
//
// # Key material in memory
//
// NewKey does not retain the material it is given; callers zero their copy
// right after it returns. Be honest about what remains:
//   - Go's crypto/aes keeps an expanded key schedule inside its cipher.Block,
//     which cannot be zeroed from outside the standard library. An AES-256
//     key is recoverable from its schedule, so for as long as a Key's
//     ciphers are reachable the key is in memory.
//   - AES-256-SIV keeps the two expanded schedules (S2V and CTR), the CMAC
//     subkeys and, per plaintext type, the S2V value of the associated data;
//     none of these is the key itself, but the schedules reveal it, as
//     above.
//
// XAES-256-GCM keeps the schedule of the data key (for the KDF) and the
// CMAC subkey K1 = 2·AES_K(0), which does not reveal K; the per-message key
// is zeroed after its cipher is built. On the AES-NI path that cipher's
// whole state (schedule, GHASH key H, tag mask AES_Km(J0), GHASH
// accumulator and the key-stream and derivation blocks) is on the stack
// and zeroed before the Seal or Open returns, whether it succeeds or not,
// and the assembly clears the vector registers it used before returning.
// That does not cover copies: when the runtime grows a goroutine's stack
// it moves the stack and frees the old one without zeroing it. Otherwise
// the per-message cipher becomes garbage after one Seal or Open.
//
// Key.Destroy drops the only reference to these (an atomic pointer), so
// Encrypt and Decrypt fail with ErrKeyDestroyed and the garbage collector
// can reclaim the memory; it does not overwrite it. Key.String, GoString
// and LogValue show name, version and algorithm only.
//
// # Concurrency and allocation
//
// A Key is immutable apart from its (AES-256-GCM only) counter and may be shared by any number
// of goroutines. The associated data for every plaintext type is computed
// once in NewKey, so AES-256-GCM Encrypt and Decrypt allocate nothing when
// dst has room; so does XAES-256-GCM on the AES-NI path (values up to 512
// bytes on amd64 with AES-NI), and otherwise it allocates two objects per
// call (the AES and GCM state under the derived key); AES-256-SIV
// allocates nothing (but the standard library's CTR state for values of
// 128 bytes or more). The KDF and CMAC/CTR scratch blocks of both are
// pooled (sync.Pool) and cleared before they go back.
//
// # Boundaries
//
// This package holds the ciphertext format and the data-key primitive; key
// providers (kms/), keystores (keystore/) and the key cache (keys/) live in
// sub-packages that build on it. It must not import proxy/... or config,
// and must not log: it takes no logger and returns errors instead.
package crypto
