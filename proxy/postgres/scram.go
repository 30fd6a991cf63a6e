package postgres

import (
	"bytes"
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"hash"
	"net"
	"strconv"

	"golang.org/x/text/secure/precis"
)

// SCRAM-SHA-256 client (RFC 5802, RFC 7677), used when the proxy terminates
// authentication. With channel binding (SCRAM-SHA-256-PLUS) the binding is
// tls-server-end-point (RFC 5929) to the upstream server's certificate.
//
//	client-first  = gs2-header "n=," "r=" cnonce
//	server-first  = "r=" cnonce snonce ",s=" salt ",i=" iterations
//	client-final  = "c=" b64(gs2-header || cbind-data) ",r=" nonce ",p=" b64(proof)
//	server-final  = "v=" b64(server-signature) | "e=" error
const (
	mechSCRAM     = "SCRAM-SHA-256"
	mechSCRAMPlus = "SCRAM-SHA-256-PLUS"

	maxSCRAMIterations = 10_000_000
)

type scramClient struct {
	mechanism string
	gs2Header string
	cbindData []byte
	password  string
	user      string // "" as libpq sends: the server uses the startup user
	nonce     string

	clientFirstBare string
	serverFirst     string
	saltedPassword  []byte
	authMessage     string
}

// newSCRAMClient prepares a login. cbindData is the tls-server-end-point
// hash of the upstream certificate, or nil without channel binding; plus
// selects SCRAM-SHA-256-PLUS (cbindData must then be set). upstreamTLS says
// whether the upstream leg is TLS at all, which decides between the GS2
// flags 'n' and 'y' when not binding.
func newSCRAMClient(password string, plus bool, cbindData []byte, upstreamTLS bool) (*scramClient, error) {
	raw := make([]byte, 18)
	if _, err := rand.Read(raw); err != nil {
		return nil, err
	}
	sc := &scramClient{
		mechanism: mechSCRAM,
		gs2Header: "n,,",
		password:  saslPrep(password),
		nonce:     base64.RawStdEncoding.EncodeToString(raw),
	}
	switch {
	case plus:
		if len(cbindData) == 0 {
			return nil, errors.New("SCRAM-SHA-256-PLUS without channel binding data")
		}
		sc.mechanism = mechSCRAMPlus
		sc.gs2Header = "p=tls-server-end-point,,"
		sc.cbindData = cbindData
	case upstreamTLS:
		// We could bind but the server did not offer PLUS.
		sc.gs2Header = "y,,"
	}
	return sc, nil
}

// saslPrep normalizes a password as PostgreSQL does, falling back to the
// raw bytes when SASLprep rejects it (PostgreSQL accepts such passwords).
func saslPrep(password string) string {
	p, err := precis.OpaqueString.String(password)
	if err != nil {
		return password
	}
	return p
}

// clientFirst returns the SASLInitialResponse data.
func (sc *scramClient) clientFirst() []byte {
	sc.clientFirstBare = "n=" + sc.user + ",r=" + sc.nonce
	return []byte(sc.gs2Header + sc.clientFirstBare)
}

// clientFinal consumes the server-first message and returns the
// client-final message.
func (sc *scramClient) clientFinal(serverFirst []byte) ([]byte, error) {
	sc.serverFirst = string(serverFirst)
	attrs, err := parseSCRAMAttrs(serverFirst)
	if err != nil {
		return nil, err
	}
	nonce, salt64, iter := attrs['r'], attrs['s'], attrs['i']
	if len(nonce) <= len(sc.nonce) || nonce[:len(sc.nonce)] != sc.nonce {
		return nil, errors.New("SCRAM: server nonce does not extend the client nonce")
	}
	salt, err := base64.StdEncoding.DecodeString(salt64)
	if err != nil || len(salt) == 0 {
		return nil, errors.New("SCRAM: invalid salt")
	}
	iterations, err := strconv.Atoi(iter)
	if err != nil || iterations < 1 || iterations > maxSCRAMIterations {
		return nil, fmt.Errorf("SCRAM: invalid iteration count %q", iter)
	}
	sc.saltedPassword, err = pbkdf2.Key(sha256.New, sc.password, salt, iterations, sha256.Size)
	if err != nil {
		return nil, fmt.Errorf("SCRAM: derive key: %w", err)
	}
	cbind := base64.StdEncoding.EncodeToString(append([]byte(sc.gs2Header), sc.cbindData...))
	withoutProof := "c=" + cbind + ",r=" + nonce
	sc.authMessage = sc.clientFirstBare + "," + sc.serverFirst + "," + withoutProof

	clientKey := hmacSHA256(sc.saltedPassword, "Client Key")
	storedKey := sha256.Sum256(clientKey)
	sig := hmacSHA256(storedKey[:], sc.authMessage)
	for i := range sig {
		sig[i] ^= clientKey[i]
	}
	return []byte(withoutProof + ",p=" + base64.StdEncoding.EncodeToString(sig)), nil
}

// verifyServerFinal checks the server's signature: a server that does not
// know the password (or a man in the middle) cannot produce it.
func (sc *scramClient) verifyServerFinal(serverFinal []byte) error {
	attrs, err := parseSCRAMAttrs(serverFinal)
	if err != nil {
		return err
	}
	if e, ok := attrs['e']; ok {
		return fmt.Errorf("SCRAM: server error %q", e)
	}
	got, err := base64.StdEncoding.DecodeString(attrs['v'])
	if err != nil {
		return errors.New("SCRAM: invalid server signature encoding")
	}
	serverKey := hmacSHA256(sc.saltedPassword, "Server Key")
	if !hmac.Equal(got, hmacSHA256(serverKey, sc.authMessage)) {
		return errors.New("SCRAM: server signature mismatch")
	}
	return nil
}

// clear drops the password material.
func (sc *scramClient) clear() {
	clear(sc.saltedPassword)
	sc.password = ""
}

func hmacSHA256(key []byte, msg string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(msg))
	return m.Sum(nil)
}

// parseSCRAMAttrs splits "a=x,b=y" into a map by attribute letter.
func parseSCRAMAttrs(msg []byte) (map[byte]string, error) {
	attrs := make(map[byte]string, 4)
	for part := range bytes.SplitSeq(msg, []byte(",")) {
		if len(part) < 2 || part[1] != '=' {
			return nil, errors.New("SCRAM: malformed server message")
		}
		attrs[part[0]] = string(part[2:])
	}
	return attrs, nil
}

// serverChannelBinding returns the tls-server-end-point channel binding
// data of the server connection conn, nil if conn is not TLS or the binding
// cannot be computed.
func serverChannelBinding(conn net.Conn) []byte {
	tc, ok := conn.(interface{ ConnectionState() tls.ConnectionState })
	if !ok {
		return nil
	}
	certs := tc.ConnectionState().PeerCertificates
	if len(certs) == 0 {
		return nil
	}
	cbind, _ := tlsServerEndPoint(certs[0])
	return cbind
}

// tlsServerEndPoint returns the tls-server-end-point channel binding data
// for cert (RFC 5929 section 4.1): its DER hashed with the hash of its
// signature algorithm, SHA-256 for MD5 and SHA-1.
func tlsServerEndPoint(cert *x509.Certificate) ([]byte, error) {
	var h hash.Hash
	switch cert.SignatureAlgorithm {
	case x509.MD5WithRSA, x509.SHA1WithRSA, x509.ECDSAWithSHA1, x509.DSAWithSHA1,
		x509.SHA256WithRSA, x509.SHA256WithRSAPSS, x509.ECDSAWithSHA256, x509.DSAWithSHA256:
		h = sha256.New()
	case x509.SHA384WithRSA, x509.SHA384WithRSAPSS, x509.ECDSAWithSHA384:
		h = sha512.New384()
	case x509.SHA512WithRSA, x509.SHA512WithRSAPSS, x509.ECDSAWithSHA512:
		h = sha512.New()
	default:
		return nil, fmt.Errorf("no channel binding hash for signature algorithm %v", cert.SignatureAlgorithm)
	}
	h.Write(cert.Raw)
	return h.Sum(nil), nil
}
