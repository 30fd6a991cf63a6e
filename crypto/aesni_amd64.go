//go:build !purego

package crypto

import "golang.org/x/sys/cpu"

// haveAESNI: this CPU has the instructions of aesni_amd64.s (AES-NI,
// PCLMULQDQ, and PSHUFB from SSSE3). Set once at start-up.
var haveAESNI = cpu.X86.HasAES && cpu.X86.HasPCLMULQDQ && cpu.X86.HasSSSE3

// aes256Expand writes the 15 round keys of AES-256 under key to xk.
//
//go:noescape
func aes256Expand(key *[32]byte, xk *[240]byte)

// aes256Encrypt2 encrypts two blocks at once (interleaved, so about as
// fast as one) under the round keys xk; dst and src may be the same.
//
//go:noescape
func aes256Encrypt2(xk *[240]byte, dst, src *[32]byte)

// gfmul sets y to y·h in GCM's GF(2^128) (both in GCM's byte order).
//
//go:noescape
func gfmul(y, h *[16]byte)
