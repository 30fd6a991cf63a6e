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
