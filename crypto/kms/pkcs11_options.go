package kms

// Wrapping mechanisms of a [PKCS11] master key.
const (
	// CKMAESKeyWrapKWP is CKM_AES_KEY_WRAP_KWP (RFC 5649, PKCS#11 3.0).
	CKMAESKeyWrapKWP uint = 0x210B
	// CKMAESKeyWrapPad is CKM_AES_KEY_WRAP_PAD: RFC 5649 in SoftHSM2,
	// RFC 3394 with PKCS#5 padding in PKCS#11 3.0 and AWS CloudHSM. Never
	// chosen automatically; see PKCS11Options.Mechanism.
	CKMAESKeyWrapPad uint = 0x210A
	// CKMAESGCM is CKM_AES_GCM, used through C_Encrypt and C_Decrypt.
	CKMAESGCM uint = 0x1087
)

// PKCS11Options configures a [PKCS11] master key.
type PKCS11Options struct {
	Module     string // path of the PKCS#11 library
	TokenLabel string // label of the token holding the key
	KeyLabel   string // CKA_LABEL of the AES key
	PIN        string // the user PIN; never logged or shown
	// Mechanism forces a wrapping mechanism ([CKMAESKeyWrapKWP],
	// [CKMAESKeyWrapPad] or [CKMAESGCM]). Zero picks CKM_AES_KEY_WRAP_KWP
	// when the token offers it for wrap and unwrap, else CKM_AES_GCM.
	Mechanism uint
	// Sessions bounds the PKCS#11 sessions kept open; zero means 4.
	Sessions int
}

// PKCS11KeyID is the master key id of the key labelled keyLabel in the
// token labelled tokenLabel: "pkcs11:<token label>/<key label>".
func PKCS11KeyID(tokenLabel, keyLabel string) string {
	return "pkcs11:" + tokenLabel + "/" + keyLabel
}
