//go:build !amd64 || purego

package crypto

// haveAESNI is false off amd64 (and with purego): XAES-256-GCM runs on crypto/aes and
// crypto/cipher alone (xaes.go).
const haveAESNI = false

func aes256Expand(*[32]byte, *[240]byte)              { panic("BUG: aes256Expand without AES-NI") }
func aes256Encrypt2(*[240]byte, *[32]byte, *[32]byte) { panic("BUG: aes256Encrypt2 without AES-NI") }
func gfmul(*[16]byte, *[16]byte)                      { panic("BUG: gfmul without PCLMULQDQ") }
