package postgres_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"testing"
	"time"

	"github.com/dbproxy/dbproxy/proxy/postgres"
)

// RFC 7677 section 3: user "user", password "pencil".
const (
	rfcNonce       = "rOprNGfwEbeRWgbNEkqO"
	rfcServerFirst = "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
	rfcClientFinal = "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
	rfcServerFinal = "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
)

func TestSCRAMRFC7677(t *testing.T) {
	first, final, err := postgres.SCRAMExchange("pencil", "user", rfcNonce, []byte(rfcServerFirst), []byte(rfcServerFinal))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := string(first), "n,,n=user,r="+rfcNonce; got != want {
		t.Errorf("client-first = %q, want %q", got, want)
	}
	if string(final) != rfcClientFinal {
		t.Errorf("client-final = %q, want %q", final, rfcClientFinal)
	}
}

func TestSCRAMRejects(t *testing.T) {
	cases := []struct {
		name        string
		password    string
		serverFirst string
		serverFinal string
	}{
		{"wrong server signature", "pencil", rfcServerFirst, "v=AAAATRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="},
		{"server signature for another password", "pencil2", rfcServerFirst, rfcServerFinal},
		{"server error", "pencil", rfcServerFirst, "e=invalid-proof"},
		{"nonce not extended", "pencil", "r=rOprNGfwEbeRWgbNEkqO,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096", rfcServerFinal},
		{"foreign nonce", "pencil", "r=XXXXNGfwEbeRWgbNEkqOabc,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096", rfcServerFinal},
		{"zero iterations", "pencil", "r=rOprNGfwEbeRWgbNEkqOabc,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=0", rfcServerFinal},
		{"absurd iterations", "pencil", "r=rOprNGfwEbeRWgbNEkqOabc,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=999999999", rfcServerFinal},
		{"bad salt", "pencil", "r=rOprNGfwEbeRWgbNEkqOabc,s=***,i=4096", rfcServerFinal},
		{"garbage", "pencil", "hello", rfcServerFinal},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := postgres.SCRAMExchange(tc.password, "user", rfcNonce, []byte(tc.serverFirst), []byte(tc.serverFinal))
			if err == nil {
				t.Fatal("accepted")
			}
		})
	}
}

func TestTLSServerEndPoint(t *testing.T) {
	key, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		alg  x509.SignatureAlgorithm
		hash func([]byte) []byte
	}{
		{x509.ECDSAWithSHA256, func(b []byte) []byte { s := sha256.Sum256(b); return s[:] }},
		{x509.ECDSAWithSHA384, func(b []byte) []byte { s := sha512.Sum384(b); return s[:] }},
		{x509.ECDSAWithSHA512, func(b []byte) []byte { s := sha512.Sum512(b); return s[:] }},
	} {
		t.Run(tc.alg.String(), func(t *testing.T) {
			tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "db"},
				NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour), SignatureAlgorithm: tc.alg}
			der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
			if err != nil {
				t.Fatal(err)
			}
			cert, err := x509.ParseCertificate(der)
			if err != nil {
				t.Fatal(err)
			}
			got, err := postgres.TLSServerEndPoint(cert)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != string(tc.hash(der)) {
				t.Fatalf("binding data does not hash the certificate with %v", tc.alg)
			}
		})
	}
}
