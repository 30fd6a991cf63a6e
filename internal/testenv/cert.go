package testenv

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// GenerateCert writes a fresh CA and a leaf certificate signed by it into
// dir, as ca.pem, cert.pem and key.pem (PKCS#8, mode 0600), and returns
// their paths. Keys are ECDSA P-256. Each host becomes an IP or DNS
// subject alternative name; with no hosts the leaf is for "localhost" and
// 127.0.0.1. The leaf is valid for both server and client authentication,
// from an hour ago for 30 days. Existing files of those names are replaced.
func GenerateCert(t testing.TB, dir string, hosts ...string) (caFile, certFile, keyFile string) {
	t.Helper()
	caFile, certFile, keyFile, err := generateCert(dir, hosts...)
	if err != nil {
		t.Fatalf("testenv: generate certificate: %v", err)
	}
	return caFile, certFile, keyFile
}

func generateCert(dir string, hosts ...string) (caFile, certFile, keyFile string, err error) {
	if len(hosts) == 0 {
		hosts = []string{"localhost", "127.0.0.1"}
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "dbproxy testenv CA " + randomHex(4)},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(30 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	caKey, caDER, err := newCert(caTmpl, nil, nil)
	if err != nil {
		return "", "", "", fmt.Errorf("CA: %w", err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return "", "", "", fmt.Errorf("parse CA certificate: %w", err)
	}

	leafTmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: hosts[0]},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(30 * 24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			leafTmpl.IPAddresses = append(leafTmpl.IPAddresses, ip)
		} else {
			leafTmpl.DNSNames = append(leafTmpl.DNSNames, h)
		}
	}
	leafKey, leafDER, err := newCert(leafTmpl, ca, caKey)
	if err != nil {
		return "", "", "", fmt.Errorf("leaf: %w", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(leafKey)
	if err != nil {
		return "", "", "", fmt.Errorf("marshal leaf key: %w", err)
	}

	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", "", "", fmt.Errorf("create %s: %w", dir, err)
	}
	caFile = filepath.Join(dir, "ca.pem")
	certFile = filepath.Join(dir, "cert.pem")
	keyFile = filepath.Join(dir, "key.pem")
	writes := []struct {
		path  string
		block *pem.Block
		mode  os.FileMode
	}{
		{caFile, &pem.Block{Type: "CERTIFICATE", Bytes: caDER}, 0o644},
		{certFile, &pem.Block{Type: "CERTIFICATE", Bytes: leafDER}, 0o644},
		{keyFile, &pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}, 0o600},
	}
	for _, w := range writes {
		_ = os.Remove(w.path) // so the mode below applies
		if err := os.WriteFile(w.path, pem.EncodeToMemory(w.block), w.mode); err != nil {
			return "", "", "", fmt.Errorf("write %s: %w", w.path, err)
		}
	}
	return caFile, certFile, keyFile, nil
}

// newCert makes a P-256 key and a certificate of tmpl for it, signed by
// parent with parentKey, or self-signed when parent is nil.
func newCert(tmpl, parent *x509.Certificate, parentKey *ecdsa.PrivateKey) (*ecdsa.PrivateKey, []byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("key: %w", err)
	}
	if parent == nil {
		parent, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		return nil, nil, fmt.Errorf("certificate: %w", err)
	}
	return key, der, nil
}

func serial() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	return n.Add(n, big.NewInt(1))
}
