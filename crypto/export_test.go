package crypto

// XAESSeal and XAESOpen expose the raw XAES-256-GCM primitive to the
// known-answer tests in package crypto_test. They return ciphertext||tag
// (without the nonce), as the C2SP vectors are written.
func XAESSeal(key, nonce, plaintext, ad []byte) ([]byte, error) {
	x, err := newXAESGCM(key)
	if err != nil {
		return nil, err
	}
	return x.seal(nil, nonce, plaintext, ad)
}

func XAESOpen(key, nonce, ciphertext, ad []byte) ([]byte, error) {
	x, err := newXAESGCM(key)
	if err != nil {
		return nil, err
	}
	return x.open(nil, nonce, ciphertext, ad)
}

// SIVSeal and SIVOpen expose the raw AES-SIV-CMAC-512 primitive (one
// associated-data component) to the known-answer tests.
func SIVSeal(key, plaintext, ad []byte) ([]byte, error) {
	s, err := newAESSIV(key, [][]byte{ad})
	if err != nil {
		return nil, err
	}
	return s.seal(nil, 0, plaintext), nil
}

func SIVOpen(key, payload, ad []byte) ([]byte, error) {
	s, err := newAESSIV(key, [][]byte{ad})
	if err != nil {
		return nil, err
	}
	return s.open(nil, 0, payload)
}

// HaveAESNI reports whether XAESSeal and XAESOpen run the AES-NI path
// (for values up to XAESNIMax bytes).
var HaveAESNI = haveAESNI

// XAESNIMax is the longest value the AES-NI path takes.
const XAESNIMax = xaesNIMax

// XAESSealGeneric and XAESOpenGeneric are XAESSeal and XAESOpen on
// crypto/aes and crypto/cipher alone, as without AES-NI.
func XAESSealGeneric(key, nonce, plaintext, ad []byte) ([]byte, error) {
	x, err := newXAESGCMWith(key, false)
	if err != nil {
		return nil, err
	}
	return x.seal(nil, nonce, plaintext, ad)
}

func XAESOpenGeneric(key, nonce, ciphertext, ad []byte) ([]byte, error) {
	x, err := newXAESGCMWith(key, false)
	if err != nil {
		return nil, err
	}
	return x.open(nil, nonce, ciphertext, ad)
}
