package crypto

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
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

// refXAES is XAES-256-GCM written from the C2SP text
// (https://c2sp.org/XAES-256-GCM) on crypto/aes and crypto/cipher alone,
// independently of xaes.go: the AES-256-GCM AEAD under the key derived
// from key and nonce[:12], to be used with nonce[12:].
func refXAES(t testing.TB, key, nonce []byte) cipher.AEAD {
	t.Helper()
	b, err := aes.NewCipher(key)
	if err != nil {
		t.Fatal(err)
	}
	var l, k1 [16]byte
	b.Encrypt(l[:], l[:]) // L = AES-256_K(0^128)
	for i := range 15 {   // K1 = L << 1, reduced by 0x87 if L's top bit was set
		k1[i] = l[i]<<1 | l[i+1]>>7
	}
	k1[15] = l[15] << 1
	if l[0]&0x80 != 0 {
		k1[15] ^= 0x87
	}
	km := make([]byte, 32) // AES-256_K(M1 XOR K1) || AES-256_K(M2 XOR K1)
	for i, c := range []byte{1, 2} {
		m := append([]byte{0, c, 'X', 0}, nonce[:12]...)
		for j := range m {
			m[j] ^= k1[j]
		}
		b.Encrypt(km[16*i:], m)
	}
	kb, err := aes.NewCipher(km)
	if err != nil {
		t.Fatal(err)
	}
	g, err := cipher.NewGCM(kb)
	if err != nil {
		t.Fatal(err)
	}
	return g
}

// FuzzXAESNI checks XAES-256-GCM on the path this machine takes (AES-NI
// up to xaesNIMax bytes where available, generic otherwise and beyond)
// against refXAES: the same ciphertext, it opens the reference's, and it
// rejects a flipped bit or shortened associated data. Its seeds run as a
// normal test.
func FuzzXAESNI(f *testing.F) {
	f.Add(make([]byte, 32), make([]byte, 24), []byte("hello"), []byte("ad"), uint16(0))
	f.Add(bytes.Repeat([]byte{0xff}, 32), bytes.Repeat([]byte{0xff}, 24), make([]byte, xaesNIMax), make([]byte, 300), uint16(7))
	f.Add(bytes.Repeat([]byte{0x80}, 32), []byte("ABCDEFGHIJKLMNOPQRSTUVWX"), make([]byte, xaesNIMax+1), []byte{}, uint16(4099))
	f.Add(bytes.Repeat([]byte{0x01}, 32), []byte("ABCDEFGHIJKLMNOPQRSTUVWX"), []byte("XAES-256-GCM"), []byte{}, uint16(100))
	f.Fuzz(func(t *testing.T, key, nonce, pt, ad []byte, flip uint16) {
		if len(key) != 32 || len(nonce) != XAESNonceSize {
			return
		}
		if len(pt) > 600 {
			pt = pt[:600]
		}
		x, err := newXAESGCM(key)
		if err != nil {
			t.Fatal(err)
		}
		want := refXAES(t, key, nonce).Seal(nil, nonce[12:], pt, ad)
		got, err := x.seal(nil, nonce, pt, ad)
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("seal len %d ad %d: %x, %v; want %x", len(pt), len(ad), got, err, want)
		}
		back, err := x.open(nil, nonce, want, ad)
		if err != nil || !bytes.Equal(back, pt) {
			t.Fatalf("open len %d ad %d: %v", len(pt), len(ad), err)
		}
		bad := bytes.Clone(want)
		i := int(flip) % (len(bad) * 8)
		bad[i/8] ^= 1 << (i % 8)
		if out, err := x.open(nil, nonce, bad, ad); err == nil || out != nil {
			t.Fatalf("open len %d accepted bit %d flipped", len(pt), i)
		}
		if len(ad) > 0 {
			if _, err := x.open(nil, nonce, want, ad[:len(ad)-1]); err == nil {
				t.Fatalf("open len %d accepted shortened associated data", len(pt))
			}
		}
	})
}

// TestXAESAllLengths checks every plaintext length from 0 to 600 (both
// sides of xaesNIMax, every partial block) crossed with associated data
// of partial, whole and multi-block lengths against refXAES, both ways.
func TestXAESAllLengths(t *testing.T) {
	key := bytes.Repeat([]byte{0x5a}, 32)
	nonce := []byte("0123456789abcdefghijklmn")
	x, err := newXAESGCM(key)
	if err != nil {
		t.Fatal(err)
	}
	ref := refXAES(t, key, nonce)
	buf := make([]byte, 600)
	for i := range buf {
		buf[i] = byte(i*7 + 3)
	}
	for n := 0; n <= 600; n++ {
		for _, adn := range []int{0, 1, 15, 16, 17, 31, 32, 33, 63, 64, 65, 513} {
			pt, ad := buf[:n], bytes.Repeat([]byte{byte(adn)}, adn)
			want := ref.Seal(nil, nonce[12:], pt, ad)
			got, err := x.seal(nil, nonce, pt, ad)
			if err != nil || !bytes.Equal(got, want) {
				t.Fatalf("len %d ad %d: seal %x, %v; want %x", n, adn, got, err, want)
			}
			if back, err := x.open(nil, nonce, want, ad); err != nil || !bytes.Equal(back, pt) {
				t.Fatalf("len %d ad %d: open %v", n, adn, err)
			}
		}
	}
}

// TestXAESNIFailedOpenLeavesDst checks that an AES-NI open that fails
// authentication returns nil and writes nothing into dst, not even its
// spare capacity (the tag is checked before anything is decrypted;
// crypto/cipher, by contrast, zeroes what it decrypted).
func TestXAESNIFailedOpenLeavesDst(t *testing.T) {
	if !haveAESNI {
		t.Skip("no AES-NI on this machine")
	}
	key := bytes.Repeat([]byte{7}, 32)
	nonce := bytes.Repeat([]byte{8}, XAESNonceSize)
	x, err := newXAESGCMWith(key, true)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []int{0, 1, 31, 32, 33, 100, xaesNIMax} {
		sealed, err := x.seal(nil, nonce, bytes.Repeat([]byte{9}, n), nil)
		if err != nil {
			t.Fatal(err)
		}
		for _, i := range []int{0, len(sealed) - 1} { // first ciphertext (or tag) byte, last tag byte
			bad := bytes.Clone(sealed)
			bad[i] ^= 0x40
			dst := bytes.Repeat([]byte{0xaa}, 3+n+64)[:3]
			out, err := x.open(dst, nonce, bad, nil)
			if err == nil || out != nil {
				t.Fatalf("len %d: open of a tampered payload = %x, %v; want nil, error", n, out, err)
			}
			if full := dst[:cap(dst)]; !bytes.Equal(full, bytes.Repeat([]byte{0xaa}, len(full))) {
				t.Fatalf("len %d: failed open wrote into dst: %x", n, full)
			}
		}
	}
}
