package mysql

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"sync"

	gomysql "github.com/go-mysql-org/go-mysql/mysql"

	"github.com/dbproxy/dbproxy/proxy"
)

// Authentication plugin names the relay treats specially.
const (
	pluginCachingSHA2   = gomysql.AUTH_CACHING_SHA2_PASSWORD
	pluginClearPassword = gomysql.AUTH_CLEAR_PASSWORD
	pluginNative        = gomysql.AUTH_NATIVE_PASSWORD
	pluginSHA256        = gomysql.AUTH_SHA256_PASSWORD
)

// caching_sha2_password AuthMoreData codes.
const (
	sha2RequestPublicKey = 0x02
	sha2FastAuthOK       = gomysql.CACHE_SHA2_FAST_AUTH // 0x03
	sha2FullAuth         = gomysql.CACHE_SHA2_FULL_AUTH // 0x04
)

// authenticate relays the authentication exchange until the server's OK
// (nil) or ERR (relayed verbatim; errHandled). The exchange is
// half-duplex: each server packet except caching_sha2_password's fast-auth
// success and the final OK/ERR is answered by one client packet.
func (s *session) authenticate() error {
	plugin := s.resp.plugin
	if plugin == "" {
		plugin = s.hs.plugin
	}
	if plugin == "" {
		plugin = pluginNative
	}
	scramble := s.hs.scramble
	for {
		seq, p, err := s.readServer()
		if err != nil {
			return err
		}
		if len(p) == 0 {
			return fatalf(codeHandshake, stateConnection, "dbproxy: empty authentication packet from the database server", nil)
		}
		switch p[0] {
		case gomysql.OK_HEADER:
			s.status, _ = okStatus(p)
			s.toClient(seq+s.d, p)
			return s.flushClient()
		case gomysql.ERR_HEADER:
			s.serverRefused(p)
			s.toClient(seq+s.d, p)
			_ = s.flushClient()
			s.log.LogAttrs(context.Background(), slog.LevelDebug, "server refused the login")
			return errHandled
		case gomysql.EOF_HEADER: // AuthSwitchRequest: 0xfe || cstring plugin || data
			if len(p) > 1 {
				name, data, _ := bytes.Cut(p[1:], []byte{0})
				plugin = string(name)
				scramble = bytes.Clone(bytes.TrimSuffix(data, []byte{0}))
			} else {
				plugin = gomysql.AUTH_MYSQL_OLD_PASSWORD
			}
			// The client answers these in clear: mysql_clear_password
			// always, sha256_password when its own leg is TLS.
			if plugin == pluginClearPassword || (plugin == pluginSHA256 && s.clientTLS) {
				if err := s.clearPasswordAllowed(plugin); err != nil {
					return err
				}
			}
		case gomysql.MORE_DATE_HEADER: // AuthMoreData
			if plugin == pluginCachingSHA2 && len(p) == 2 {
				switch p[1] {
				case sha2FastAuthOK:
					s.toClient(seq+s.d, p) // the server's OK follows; no client answer
					continue
				case sha2FullAuth:
					// A TLS client now sends its password in clear; the
					// proxy forwards it in clear (TLS upstream) or
					// encrypted to a key it fetched over the plaintext
					// upstream leg: either way that leg must be safe.
					if s.clientTLS {
						if err := s.clearPasswordAllowed(pluginCachingSHA2); err != nil {
							return err
						}
					}
					if s.clientTLS != s.serverTLS {
						if err := s.bridgeFullAuth(seq, p, scramble); err != nil {
							return err
						}
						continue
					}
					s.log.LogAttrs(context.Background(), slog.LevelDebug, "caching_sha2_password full authentication relayed")
				}
			}
		}
		if err := s.relayStep(seq, p); err != nil {
			return err
		}
	}
}

// relayStep forwards a server authentication packet to the client and the
// client's answer (never decoded) to the server.
func (s *session) relayStep(seq uint8, p []byte) error {
	cseq, cp, err := s.askClient(seq, p)
	if err != nil {
		return err
	}
	return s.writeServer(cseq-s.d, cp)
}

// askClient sends the server's authentication packet p (sequence id seq)
// to the client and reads the client's answer.
func (s *session) askClient(seq uint8, p []byte) (cseq uint8, cp []byte, err error) {
	s.toClient(seq+s.d, p)
	if err := s.flushClient(); err != nil {
		return 0, nil, err
	}
	cseq, cp, err = s.readClient()
	if err != nil {
		return 0, nil, err
	}
	s.cseq = cseq + 1
	return cseq, cp, nil
}

// clearPasswordAllowed says whether the password may travel in clear
// through the proxy for plugin: the client leg must be TLS or loopback and
// the upstream leg loopback or TLS with a verified certificate (verify-ca,
// verify-full; under prefer or require a man in the middle could pose as
// the server, and a public key fetched over a plaintext leg may be his).
// Otherwise the login is refused with ERR 1045 naming the setting to
// change, before the client is asked for its password where the protocol
// allows.
func (s *session) clearPasswordAllowed(plugin string) error {
	if err := s.clientLegAllowsClear(plugin); err != nil {
		return err
	}
	return s.upstreamLegAllowsClear(plugin)
}

// clientLegAllowsClear is the client half of clearPasswordAllowed.
func (s *session) clientLegAllowsClear(plugin string) error {
	if !s.clientTLS && !proxy.IsLoopback(s.rawClient.RemoteAddr()) {
		hint := "connect with TLS (ssl-mode=REQUIRED or stricter)"
		if s.h.opts.TLS == nil {
			hint = "configure tls on the dbproxy listener and connect with TLS"
		}
		return fatalf(codeAccessDenied, stateAccessDenied,
			"dbproxy does not take a password in clear ("+plugin+") over a client connection that is neither TLS nor loopback: "+hint,
			errors.New("cleartext password refused: client leg is plaintext and not loopback"))
	}
	return nil
}

// upstreamLegAllowsClear is the upstream half of clearPasswordAllowed.
func (s *session) upstreamLegAllowsClear(plugin string) error {
	if !(s.serverTLS && s.h.opts.UpstreamTLS.Verified()) && !proxy.IsLoopback(s.RawServer.RemoteAddr()) {
		return fatalf(codeAccessDenied, stateAccessDenied,
			"dbproxy does not send a password in clear ("+plugin+") to a database server that is neither on loopback nor reached over verified TLS: set upstream_tls.mode: verify-full (or verify-ca) on the listener",
			fmt.Errorf("cleartext password refused: upstream sslmode %s, server not on loopback", s.h.opts.UpstreamTLS.Mode))
	}
	return nil
}

// authRefusal ends a session whose COM_CHANGE_USER would have sent a
// password in clear over an unsafe leg.
type authRefusal struct {
	err *Error
	seq uint8 // sequence id of the ERR that replaces the server's packet
}

func (e *authRefusal) Error() string { return e.err.Error() }

// changeUserAuthCheck applies clearPasswordAllowed to the authentication
// exchange of COM_CHANGE_USER, which is otherwise relayed as is: a switch
// to mysql_clear_password (or sha256_password, for a TLS client) and
// caching_sha2_password full authentication of a TLS client are refused,
// before the client answers, unless both legs are safe. head holds the
// first bytes of the packet: a plugin name cut short there that starts
// like mysql_clear_password counts as it (fail closed).
func (s *session) changeUserAuthCheck(n int, head []byte) error {
	var plugin string
	switch {
	case len(head) > 0 && head[0] == gomysql.EOF_HEADER: // AuthSwitchRequest
		name := head[1:]
		if i := bytes.IndexByte(name, 0); i >= 0 {
			name = name[:i]
		}
		switch string(name) {
		case pluginClearPassword:
			plugin = pluginClearPassword
		case pluginSHA256:
			if s.clientTLS {
				plugin = pluginSHA256
			}
		}
	case n == 2 && len(head) == 2 && head[0] == gomysql.MORE_DATE_HEADER && head[1] == sha2FullAuth && s.clientTLS:
		plugin = pluginCachingSHA2
	}
	if plugin == "" {
		return nil
	}
	if err := s.clearPasswordAllowed(plugin); err != nil {
		var me *Error
		if errors.As(err, &me) {
			return &authRefusal{err: me}
		}
		return err
	}
	return nil
}

// bridgeFullAuth completes caching_sha2_password full authentication when
// exactly one leg is TLS, where relaying would fail: the client sends its
// password in clear when its own leg is TLS, and the server accepts a clear
// password only over TLS (otherwise it wants it RSA-encrypted).
//
//   - TLS client, plaintext upstream: the proxy takes the client's
//     cleartext password, fetches the server's RSA public key and sends
//     the password encrypted to it, as a client would.
//   - plaintext client, TLS upstream: when the client asks for the public
//     key, the proxy sends its own; it decrypts the client's answer and
//     sends the password inside the upstream TLS session.
//
// Anything else the client sends is relayed as is.
func (s *session) bridgeFullAuth(seq uint8, p, scramble []byte) error {
	cseq, cp, err := s.askClient(seq, p)
	if err != nil {
		return err
	}
	if len(cp) == 1 && cp[0] == sha2RequestPublicKey {
		if !s.clientTLS {
			// The proxy would decrypt the password and send it in clear
			// inside the upstream TLS session (the client leg carries it
			// RSA-encrypted).
			if err := s.upstreamLegAllowsClear(pluginCachingSHA2); err != nil {
				return err
			}
			s.log.LogAttrs(context.Background(), slog.LevelDebug,
				"caching_sha2_password full authentication bridged with the proxy's RSA key")
			return s.bridgeToTLSServer(seq, cseq, scramble)
		}
		s.log.LogAttrs(context.Background(), slog.LevelDebug, "caching_sha2_password full authentication relayed")
		return s.writeServer(cseq-s.d, cp) // let the server's key answer
	}
	if !s.clientTLS {
		s.log.LogAttrs(context.Background(), slog.LevelDebug,
			"caching_sha2_password full authentication relayed (encrypted to a key the client holds)")
		return s.writeServer(cseq-s.d, cp)
	}
	s.log.LogAttrs(context.Background(), slog.LevelDebug,
		"caching_sha2_password full authentication bridged to the server's RSA key")
	// TLS client, plaintext server: cp is the password, NUL-terminated.
	password := bytes.Clone(cp)
	defer clear(password)
	clear(cp)
	if err := s.writeServer(seq+1, []byte{sha2RequestPublicKey}); err != nil {
		return err
	}
	kseq, kp, err := s.readServer()
	if err != nil {
		return err
	}
	if len(kp) > 0 && kp[0] == gomysql.ERR_HEADER {
		s.serverRefused(kp)
		s.toClient(s.cseq, kp)
		_ = s.flushClient()
		return errHandled
	}
	if len(kp) < 2 || kp[0] != gomysql.MORE_DATE_HEADER {
		return fatalf(codeHandshake, stateConnection, "dbproxy: unexpected answer to a public key request from the database server", nil)
	}
	pub, err := parseRSAPublicKey(kp[1:])
	if err != nil {
		return fatalf(codeHandshake, stateConnection, "dbproxy: invalid RSA public key from the database server", err)
	}
	enc, err := encryptPassword(password, scramble, pub)
	if err != nil {
		return fatalf(codeHandshake, stateConnection, "dbproxy: could not encrypt the password for the database server", err)
	}
	if err := s.writeServer(kseq+1, enc); err != nil {
		return err
	}
	s.d = cseq - (kseq + 1)
	return nil
}

// bridgeToTLSServer answers a plaintext client's public key request with
// the proxy's key, decrypts the password it sends and forwards it in clear
// inside the upstream TLS session.
func (s *session) bridgeToTLSServer(seq, cseq uint8, scramble []byte) error {
	key, keyPEM, err := s.h.rsa.get()
	if err != nil {
		return fatalf(codeUnknown, stateGeneral, "dbproxy: internal error", err)
	}
	s.toClient(cseq+1, append([]byte{gomysql.MORE_DATE_HEADER}, keyPEM...))
	if err := s.flushClient(); err != nil {
		return err
	}
	eseq, enc, err := s.readClient()
	if err != nil {
		return err
	}
	s.cseq = eseq + 1
	plain, err := rsa.DecryptOAEP(sha1.New(), nil, key, enc, nil)
	if err != nil || len(scramble) == 0 {
		return fatalf(codeAccessDenied, stateAccessDenied, "dbproxy could not decrypt the password", nil)
	}
	defer clear(plain)
	for i := range plain {
		plain[i] ^= scramble[i%len(scramble)]
	}
	if err := s.writeServer(seq+1, plain); err != nil {
		return err
	}
	s.d = eseq - (seq + 1)
	return nil
}

// encryptPassword encrypts password (NUL-terminated) XOR scramble with
// RSA-OAEP(SHA-1), as caching_sha2_password clients do.
func encryptPassword(password, scramble []byte, pub *rsa.PublicKey) ([]byte, error) {
	if len(scramble) == 0 {
		return nil, errors.New("empty scramble")
	}
	plain := bytes.Clone(password)
	if len(plain) == 0 || plain[len(plain)-1] != 0 {
		plain = append(plain, 0)
	}
	defer clear(plain)
	for i := range plain {
		plain[i] ^= scramble[i%len(scramble)]
	}
	return rsa.EncryptOAEP(sha1.New(), rand.Reader, pub, plain, nil)
}

func parseRSAPublicKey(p []byte) (*rsa.PublicKey, error) {
	block, _ := pem.Decode(p)
	if block == nil {
		return nil, errors.New("no PEM block")
	}
	k, err := x509.ParsePKIXPublicKey(block.Bytes)
	if err != nil {
		rk, err2 := x509.ParsePKCS1PublicKey(block.Bytes)
		if err2 != nil {
			return nil, err
		}
		return rk, nil
	}
	pub, ok := k.(*rsa.PublicKey)
	if !ok {
		return nil, errors.New("not an RSA key")
	}
	return pub, nil
}

// rsaKey is the proxy's own RSA key pair, generated on first use. It lets
// a plaintext client complete caching_sha2_password full authentication
// with a TLS upstream: the client encrypts its password to this key and the
// proxy sends it to the server inside TLS.
type rsaKey struct {
	once sync.Once
	key  *rsa.PrivateKey
	pem  []byte
	err  error
}

func (k *rsaKey) get() (*rsa.PrivateKey, []byte, error) {
	k.once.Do(func() {
		key, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			k.err = fmt.Errorf("generate RSA key: %w", err)
			return
		}
		der, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
		if err != nil {
			k.err = fmt.Errorf("marshal RSA public key: %w", err)
			return
		}
		k.key = key
		k.pem = pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	})
	return k.key, k.pem, k.err
}
