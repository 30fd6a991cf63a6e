package proxy_test

import (
	"crypto/tls"
	"crypto/x509"
	"net"
	"os"
	"path/filepath"
	"testing"

	"github.com/dbproxy/dbproxy/internal/testenv"
	"github.com/dbproxy/dbproxy/proxy"
)

// handshake runs a TLS handshake between a server with cfgS and a client
// with cfgC over loopback TCP (buffered, unlike net.Pipe: both sides may
// write at once) and returns the client's error.
func handshake(t *testing.T, cfgS, cfgC *tls.Config) error {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	b, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	a, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	srvErr := make(chan error, 1)
	go func() {
		s := tls.Server(a, cfgS)
		err := s.Handshake()
		if err != nil {
			a.Close()
		}
		srvErr <- err
	}()
	c := tls.Client(b, cfgC)
	err = c.Handshake()
	if err != nil {
		b.Close()
	}
	// Under TLS 1.3 the client is done before the server has checked its
	// certificate: the server's verdict counts too.
	if serr := <-srvErr; err == nil {
		err = serr
	}
	return err
}

func TestUpstreamTLSModes(t *testing.T) {
	dir := t.TempDir()
	ca, cert, key := testenv.GenerateCert(t, dir, "localhost", "127.0.0.1")
	srvCfg, err := proxy.ServerTLSConfig(cert, key, "")
	if err != nil {
		t.Fatal(err)
	}
	otherCA, _, _ := testenv.GenerateCert(t, t.TempDir(), "localhost")

	// An RDS-style bundle: many unrelated CAs around the right one.
	var bundle []byte
	for i := range 31 {
		c := ca
		if i != 15 {
			c, _, _ = testenv.GenerateCert(t, t.TempDir(), "x")
		}
		pem, err := os.ReadFile(c)
		if err != nil {
			t.Fatal(err)
		}
		bundle = append(bundle, pem...)
	}
	bundleFile := filepath.Join(dir, "bundle.pem")
	if err := os.WriteFile(bundleFile, bundle, 0o600); err != nil {
		t.Fatal(err)
	}

	pool := func(file string) *proxy.UpstreamTLS {
		p, err := proxy.LoadCertPool(file)
		if err != nil {
			t.Fatal(err)
		}
		return &proxy.UpstreamTLS{RootCAs: p}
	}
	cases := []struct {
		name   string
		mode   proxy.SSLMode
		roots  *proxy.UpstreamTLS
		server string
		ok     bool
	}{
		{"prefer ignores the certificate", proxy.SSLPrefer, nil, "anything", true},
		{"require ignores the certificate", proxy.SSLRequire, nil, "anything", true},
		{"require with a CA file verifies the chain", proxy.SSLRequire, pool(otherCA), "localhost", false},
		{"verify-ca right CA, any name", proxy.SSLVerifyCA, pool(ca), "db.example.com", true},
		{"verify-ca wrong CA", proxy.SSLVerifyCA, pool(otherCA), "localhost", false},
		{"verify-full right CA and name", proxy.SSLVerifyFull, pool(ca), "localhost", true},
		{"verify-full IP name", proxy.SSLVerifyFull, pool(ca), "127.0.0.1", true},
		{"verify-full wrong name", proxy.SSLVerifyFull, pool(ca), "db.example.com", false},
		{"verify-full wrong CA", proxy.SSLVerifyFull, pool(otherCA), "localhost", false},
		{"verify-full with a 31-certificate bundle", proxy.SSLVerifyFull, pool(bundleFile), "localhost", true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			u := proxy.UpstreamTLS{Mode: tc.mode, ServerName: tc.server}
			if tc.roots != nil {
				u.RootCAs = tc.roots.RootCAs
			}
			cfg, err := u.ClientConfig()
			if err != nil {
				t.Fatal(err)
			}
			err = handshake(t, srvCfg, cfg)
			if (err == nil) != tc.ok {
				t.Fatalf("handshake error %v, want ok=%t", err, tc.ok)
			}
		})
	}
}

func TestUpstreamTLSConfigErrors(t *testing.T) {
	if cfg, err := (proxy.UpstreamTLS{Mode: proxy.SSLDisable}).ClientConfig(); cfg != nil || err != nil {
		t.Fatalf("disable: %v %v, want nil config", cfg, err)
	}
	if _, err := (proxy.UpstreamTLS{}).ClientConfig(); err == nil {
		t.Fatal("zero mode accepted")
	}
	if _, err := (proxy.UpstreamTLS{Mode: proxy.SSLVerifyFull}).ClientConfig(); err == nil {
		t.Fatal("verify-full without a server name accepted")
	}
	for _, m := range []string{"disable", "prefer", "require", "verify-ca", "verify-full"} {
		mode, err := proxy.ParseSSLMode(m)
		if err != nil || mode.String() != m {
			t.Fatalf("ParseSSLMode(%q) = %v, %v", m, mode, err)
		}
	}
	if _, err := proxy.ParseSSLMode("allow"); err == nil {
		t.Fatal("unknown mode accepted")
	}
	if _, err := proxy.LoadCertPool(filepath.Join(t.TempDir(), "missing.pem")); err == nil {
		t.Fatal("missing CA file accepted")
	}
	empty := filepath.Join(t.TempDir(), "empty.pem")
	if err := os.WriteFile(empty, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := proxy.LoadCertPool(empty); err == nil {
		t.Fatal("CA file without certificates accepted")
	}
}

func TestServerTLSConfig(t *testing.T) {
	dir := t.TempDir()
	ca, cert, key := testenv.GenerateCert(t, dir, "localhost")
	srv, err := proxy.ServerTLSConfig(cert, key, "", "postgresql")
	if err != nil {
		t.Fatal(err)
	}
	roots, err := proxy.LoadCertPool(ca)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		cfg  *tls.Config
		ok   bool
	}{
		{"TLS 1.3 with ALPN", &tls.Config{RootCAs: roots, ServerName: "localhost", NextProtos: []string{"postgresql"}}, true},
		{"TLS 1.2 without ALPN", &tls.Config{RootCAs: roots, ServerName: "localhost", MaxVersion: tls.VersionTLS12}, true},
		{"TLS 1.1 refused", &tls.Config{RootCAs: roots, ServerName: "localhost", MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS11}, false},
		{"CBC suite refused", &tls.Config{RootCAs: roots, ServerName: "localhost", MaxVersion: tls.VersionTLS12,
			CipherSuites: []uint16{tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA, tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA}}, false},
		{"foreign ALPN refused", &tls.Config{RootCAs: roots, ServerName: "localhost", NextProtos: []string{"http/1.1"}}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if err := handshake(t, srv, tc.cfg); (err == nil) != tc.ok {
				t.Fatalf("handshake: %v, want ok=%t", err, tc.ok)
			}
		})
	}
	if _, err := proxy.ServerTLSConfig(filepath.Join(dir, "nope.crt"), key, ""); err == nil {
		t.Fatal("missing certificate accepted")
	}
}

// TestUpstreamTLSVerified: only modes that authenticate the server count as
// verified (a password may travel in clear only over those).
func TestUpstreamTLSVerified(t *testing.T) {
	pool := x509.NewCertPool()
	for _, tc := range []struct {
		u    proxy.UpstreamTLS
		want bool
	}{
		{proxy.UpstreamTLS{Mode: proxy.SSLDisable}, false},
		{proxy.UpstreamTLS{Mode: proxy.SSLPrefer}, false},
		{proxy.UpstreamTLS{Mode: proxy.SSLPrefer, RootCAs: pool}, false},
		{proxy.UpstreamTLS{Mode: proxy.SSLRequire}, false},
		{proxy.UpstreamTLS{Mode: proxy.SSLRequire, RootCAs: pool}, true},
		{proxy.UpstreamTLS{Mode: proxy.SSLVerifyCA}, true},
		{proxy.UpstreamTLS{Mode: proxy.SSLVerifyFull}, true},
		{proxy.UpstreamTLS{}, false},
	} {
		if got := tc.u.Verified(); got != tc.want {
			t.Errorf("%s (roots %t): Verified %t, want %t", tc.u.Mode, tc.u.RootCAs != nil, got, tc.want)
		}
	}
}

// TestServerTLSClientCA: with client CAs, a client certificate they signed
// is verified, a client without one is still accepted, and one signed by
// another CA is refused.
func TestServerTLSClientCA(t *testing.T) {
	dir, other := t.TempDir(), t.TempDir()
	ca, cert, key := testenv.GenerateCert(t, dir, "localhost")
	_, otherCert, otherKey := testenv.GenerateCert(t, other, "intruder")
	srv, err := proxy.ServerTLSConfig(cert, key, ca)
	if err != nil {
		t.Fatal(err)
	}
	roots, err := proxy.LoadCertPool(ca)
	if err != nil {
		t.Fatal(err)
	}
	mine, err := tls.LoadX509KeyPair(cert, key)
	if err != nil {
		t.Fatal(err)
	}
	theirs, err := tls.LoadX509KeyPair(otherCert, otherKey)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		cert *tls.Certificate
		ok   bool
	}{{"signed by the client CA", &mine, true}, {"no certificate", &tls.Certificate{}, true},
		{"signed by another CA", &theirs, false}} {
		t.Run(tc.name, func(t *testing.T) {
			// Sent whatever CAs the server names (Go's client would
			// otherwise hold back a certificate they did not sign).
			send := func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return tc.cert, nil }
			err := handshake(t, srv, &tls.Config{RootCAs: roots, ServerName: "localhost", GetClientCertificate: send})
			if (err == nil) != tc.ok {
				t.Fatalf("handshake: %v, want ok=%t", err, tc.ok)
			}
		})
	}
	if _, err := proxy.ServerTLSConfig(cert, key, key); err == nil {
		t.Fatal("a client CA file without certificates accepted")
	}
}
