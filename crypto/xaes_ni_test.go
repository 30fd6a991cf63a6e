package crypto

import (
	"bytes"
	"strings"
	"testing"
)

// xaesPaths returns XAES-256-GCM under key on each path this machine has:
// generic (crypto/cipher) always, AES-NI with haveAESNI.
func xaesPaths(t *testing.T, key []byte) map[string]*xaesGCM {
	t.Helper()
	paths := map[string]*xaesGCM{}
	for _, ni := range []bool{false, true} {
		if ni && !haveAESNI {
			continue
		}
		x, err := newXAESGCMWith(key, ni)
		if err != nil {
			t.Fatal(err)
		}
		paths[map[bool]string{false: "generic", true: "aes-ni"}[ni]] = x
	}
	return paths
}

// panicMessage runs f and returns what it panicked with ("" if nothing).
func panicMessage(f func()) (msg string) {
	defer func() {
		if r := recover(); r != nil {
			msg, _ = r.(string)
			if msg == "" {
				msg = "non-string panic"
			}
		}
	}()
	f()
	return ""
}

// TestXAESOverlap checks that both paths panic, as crypto/cipher does,
// when the output overlaps the input other than exactly (ahead of it or
// behind it) or overlaps the associated data, and that both work in
// place.
func TestXAESOverlap(t *testing.T) {
	key := bytes.Repeat([]byte{1}, 32)
	nonce := bytes.Repeat([]byte{2}, XAESNonceSize)
	pt := bytes.Repeat([]byte("abcdefgh"), 12) // 96 bytes: several 32-byte chunks
	for name, x := range xaesPaths(t, key) {
		sealed, err := x.seal(nil, nonce, pt, nil)
		if err != nil {
			t.Fatal(err)
		}
		bad := map[string]func(){
			"seal output after input": func() {
				buf := make([]byte, 256)
				copy(buf, pt)
				_, _ = x.seal(buf[:40], nonce, buf[:len(pt)], nil)
			},
			"seal output before input": func() {
				buf := make([]byte, 256)
				copy(buf[32:], pt)
				_, _ = x.seal(buf[:0], nonce, buf[32:32+len(pt)], nil)
			},
			"seal output over ad": func() {
				buf := make([]byte, 256)
				_, _ = x.seal(buf[:0], nonce, pt, buf[50:60])
			},
			"open output after input": func() {
				buf := make([]byte, 256)
				copy(buf, sealed)
				_, _ = x.open(buf[:40], nonce, buf[:len(sealed)], nil)
			},
			"open output before input": func() {
				buf := make([]byte, 256)
				copy(buf[32:], sealed)
				_, _ = x.open(buf[:0], nonce, buf[32:32+len(sealed)], nil)
			},
		}
		for what, f := range bad {
			if msg := panicMessage(f); !strings.HasPrefix(msg, "crypto/cipher: invalid buffer overlap") {
				t.Errorf("%s: %s: panic %q, want an invalid buffer overlap", name, what, msg)
			}
		}

		buf := make([]byte, len(pt), len(pt)+XAESTagSize)
		copy(buf, pt)
		inPlace, err := x.seal(buf[:0], nonce, buf, []byte("ad"))
		if err != nil || &inPlace[0] != &buf[0] {
			t.Fatalf("%s: in-place seal: %v, or not in place", name, err)
		}
		want, _ := x.seal(nil, nonce, pt, []byte("ad"))
		if !bytes.Equal(inPlace, want) {
			t.Fatalf("%s: in-place seal %x, want %x", name, inPlace, want)
		}
		back, err := x.open(inPlace[:0], nonce, inPlace, []byte("ad"))
		if err != nil || !bytes.Equal(back, pt) || &back[0] != &buf[0] {
			t.Fatalf("%s: in-place open = %q, %v", name, back, err)
		}
	}
}
