package proxy_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/dbproxy/dbproxy/proxy"
)

// selfSigned returns a certificate for cn, valid for both TLS ends.
func selfSigned(t *testing.T, cn string) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: cn, Organization: []string{"dbproxy test"}},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}
}

// TestNewPrincipal: the client's address (IPv4 unmapped) over plain TCP,
// and its certificate's subject and key pin over TLS.
func TestNewPrincipal(t *testing.T) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	serverCert, clientCert := selfSigned(t, "proxy"), selfSigned(t, "app-7")
	accepted := make(chan net.Conn, 2)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted <- c
		}
	}()

	plain, err := net.Dial("tcp4", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	srv := <-accepted
	defer srv.Close()
	p := proxy.NewPrincipal(srv, "main", 42)
	want := netip.MustParseAddrPort(plain.LocalAddr().String())
	if p.Client != want || p.Listener != "main" || p.SessionID != 42 || p.HasCert() || p.CertSubject != "" {
		t.Fatalf("plain TCP: %+v, want client %v and no certificate", p, want)
	}

	raw, err := net.Dial("tcp4", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(serverCert.Leaf)
	client := tls.Client(raw, &tls.Config{RootCAs: pool, ServerName: "127.0.0.1", Certificates: []tls.Certificate{clientCert}})
	defer client.Close()
	go func() { _ = client.Handshake() }()
	srvTLS := tls.Server(<-accepted, &tls.Config{Certificates: []tls.Certificate{serverCert}, ClientAuth: tls.RequireAnyClientCert})
	defer srvTLS.Close()
	if err := srvTLS.Handshake(); err != nil {
		t.Fatal(err)
	}
	p = proxy.NewPrincipal(srvTLS, "main", 43)
	pin := sha256.Sum256(clientCert.Leaf.RawSubjectPublicKeyInfo)
	if p.Client != netip.MustParseAddrPort(raw.LocalAddr().String()) || !p.HasCert() || p.CertSPKI != pin ||
		p.CertSubject != "CN=app-7,O=dbproxy test" {
		t.Fatalf("TLS: %+v, want the client certificate's subject and pin", p)
	}
}
