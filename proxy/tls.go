package proxy

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
)

// modernCipherSuites are the TLS 1.2 suites offered: ECDHE key exchange
// (forward secrecy) with an AEAD. TLS 1.3 suites are not configurable and are
// all fine.
var modernCipherSuites = []uint16{
	tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
	tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
}

// ServerTLSConfig loads a PEM certificate chain and key and returns the
// configuration for the client-facing leg: TLS 1.2 or newer, ECDHE+AEAD
// suites. clientCAFile, if not empty, holds the PEM CAs against which a
// client certificate is verified when the client presents one (the
// session's TLS subject; clients without one are accepted). alpn lists the
// application protocols accepted (PostgreSQL 17 direct SSL requires
// "postgresql"); a client offering only other protocols fails the
// handshake.
func ServerTLSConfig(certFile, keyFile, clientCAFile string, alpn ...string) (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("load TLS certificate %q / key %q: %w", certFile, keyFile, err)
	}
	cfg := &tls.Config{
		Certificates: []tls.Certificate{cert},
		MinVersion:   tls.VersionTLS12,
		CipherSuites: modernCipherSuites,
		NextProtos:   alpn,
	}
	if clientCAFile != "" {
		pem, err := os.ReadFile(clientCAFile)
		if err != nil {
			return nil, fmt.Errorf("load client CAs %q: %w", clientCAFile, err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("load client CAs %q: no PEM certificate in it", clientCAFile)
		}
		cfg.ClientCAs, cfg.ClientAuth = pool, tls.VerifyClientCertIfGiven
	}
	return cfg, nil
}

// SSLMode is the libpq sslmode of a proxy -> database leg. The zero value is
// invalid.
type SSLMode int

const (
	sslModeInvalid SSLMode = iota
	// SSLDisable: plaintext only.
	SSLDisable
	// SSLPrefer: TLS without verification if the server offers it,
	// plaintext otherwise (also when the TLS handshake fails).
	SSLPrefer
	// SSLRequire: TLS, certificate not verified (but see UpstreamTLS.RootCAs).
	SSLRequire
	// SSLVerifyCA: TLS, chain verified against the roots, host not checked.
	SSLVerifyCA
	// SSLVerifyFull: TLS, chain verified and host name checked.
	SSLVerifyFull
)

// ParseSSLMode parses a libpq sslmode name.
func ParseSSLMode(s string) (SSLMode, error) {
	switch s {
	case "disable":
		return SSLDisable, nil
	case "prefer":
		return SSLPrefer, nil
	case "require":
		return SSLRequire, nil
	case "verify-ca":
		return SSLVerifyCA, nil
	case "verify-full":
		return SSLVerifyFull, nil
	}
	return sslModeInvalid, fmt.Errorf("unknown sslmode %q (want disable, prefer, require, verify-ca or verify-full)", s)
}

func (m SSLMode) String() string {
	switch m {
	case SSLDisable:
		return "disable"
	case SSLPrefer:
		return "prefer"
	case SSLRequire:
		return "require"
	case SSLVerifyCA:
		return "verify-ca"
	case SSLVerifyFull:
		return "verify-full"
	}
	return "invalid"
}

// UpstreamTLS configures the proxy -> database leg with libpq sslmode
// semantics.
type UpstreamTLS struct {
	Mode SSLMode
	// RootCAs verifies the server chain for verify-ca and verify-full; nil
	// means the system roots. As in libpq, a root set given with
	// SSLRequire upgrades it to verify-ca.
	RootCAs *x509.CertPool
	// ServerName is sent as SNI and checked by verify-full; normally the
	// host part of the upstream address.
	ServerName string
}

// Verified reports whether the mode authenticates the server's certificate
// (verify-ca, verify-full, or require with a root set, which libpq treats
// as verify-ca). Only then is the leg safe from a man in the middle, and
// safe for a password in clear.
func (u UpstreamTLS) Verified() bool {
	switch u.Mode {
	case SSLVerifyCA, SSLVerifyFull:
		return true
	case SSLRequire:
		return u.RootCAs != nil
	}
	return false
}

// ClientConfig returns the TLS configuration for the database leg, or nil
// for SSLDisable.
func (u UpstreamTLS) ClientConfig() (*tls.Config, error) {
	mode := u.Mode
	if mode == SSLRequire && u.RootCAs != nil {
		mode = SSLVerifyCA
	}
	cfg := &tls.Config{
		MinVersion: tls.VersionTLS12,
		ServerName: u.ServerName,
		RootCAs:    u.RootCAs,
	}
	switch mode {
	case SSLDisable:
		return nil, nil
	case SSLPrefer, SSLRequire:
		cfg.InsecureSkipVerify = true // libpq semantics: encryption without authentication
	case SSLVerifyCA:
		cfg.InsecureSkipVerify = true // chain checked below, host name not
		roots := u.RootCAs
		cfg.VerifyConnection = func(cs tls.ConnectionState) error { return verifyChain(cs, roots) }
	case SSLVerifyFull:
		if u.ServerName == "" {
			return nil, errors.New("sslmode verify-full needs a server name")
		}
	default:
		return nil, fmt.Errorf("invalid sslmode %d", u.Mode)
	}
	return cfg, nil
}

// verifyChain checks the peer's chain against roots without checking the
// host name (verify-ca).
func verifyChain(cs tls.ConnectionState, roots *x509.CertPool) error {
	if len(cs.PeerCertificates) == 0 {
		return errors.New("server sent no certificate")
	}
	inter := x509.NewCertPool()
	for _, c := range cs.PeerCertificates[1:] {
		inter.AddCert(c)
	}
	_, err := cs.PeerCertificates[0].Verify(x509.VerifyOptions{
		Roots:         roots,
		Intermediates: inter,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	})
	if err != nil {
		return fmt.Errorf("verify server certificate chain: %w", err)
	}
	return nil
}

// LoadCertPool reads a PEM file of one or more CA certificates (for example
// the RDS global bundle) into a pool.
func LoadCertPool(file string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("read CA file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("CA file %q: no PEM certificate found", file)
	}
	return pool, nil
}
