package proxy

import (
	"crypto/sha256"
	"crypto/tls"
	"net"
	"net/netip"
)

// Principal is who is on the other end of one session, as the proxy knows
// it once the client has logged in: the listener it came through, the
// database user and database it logged in as, its address and, when it
// presented one over TLS, its client certificate. The wire packages fill
// it in their SessionInfo; the encryption layers hand it to the field
// cipher of the session (package fieldcrypt), where access policy and
// audit of key use see it.
//
// A Principal is a value: copy it freely. It holds no secret.
type Principal struct {
	// Listener is the name of the listener the client connected to (the
	// handler's Name; "" if it has none).
	Listener string
	// SessionID tells the sessions of one listener apart in the proxy's
	// logs: PostgreSQL the "conn" attribute, MySQL the server's connection
	// id (CONNECTION_ID(), the "conn_id" attribute).
	SessionID uint64
	// User is the database user the client logged in as (MySQL: the user
	// of the last COM_CHANGE_USER, once the encryption layer saw it).
	User string
	// Database is the database named at login; "" if none (MySQL: USE and
	// COM_INIT_DB do not change it).
	Database string
	// Client is the client's address and port; the zero value when the
	// client is not on TCP/IP.
	Client netip.AddrPort
	// CertSubject is the subject of the client's TLS certificate (RFC 2253
	// form), "" when it presented none.
	CertSubject string
	// CertSPKI is the SHA-256 of the client certificate's
	// SubjectPublicKeyInfo (the key pin); zero when it presented none.
	CertSPKI [sha256.Size]byte
}

// NewPrincipal returns the Principal of a session of listener on client,
// the client's connection (the accepted socket, a wrapper of it that keeps
// RemoteAddr, or TLS over it), with id as its SessionID. The caller sets
// User and Database.
func NewPrincipal(client net.Conn, listener string, id uint64) Principal {
	p := Principal{Listener: listener, SessionID: id, Client: addrPort(client.RemoteAddr())}
	if tc, ok := client.(interface{ ConnectionState() tls.ConnectionState }); ok {
		if certs := tc.ConnectionState().PeerCertificates; len(certs) > 0 {
			p.CertSubject = certs[0].Subject.String()
			p.CertSPKI = sha256.Sum256(certs[0].RawSubjectPublicKeyInfo)
		}
	}
	return p
}

// HasCert reports whether the client presented a TLS client certificate.
func (p *Principal) HasCert() bool { return p.CertSPKI != [sha256.Size]byte{} }

// addrPort is a's IP address (an IPv4 address unmapped) and port, the
// zero value if a is not an IP address (a Unix socket).
func addrPort(a net.Addr) netip.AddrPort {
	var ap netip.AddrPort
	switch a := a.(type) {
	case *net.TCPAddr:
		ap = a.AddrPort()
	case nil:
		return ap
	default:
		ap, _ = netip.ParseAddrPort(a.String())
	}
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}
