package mysql

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync/atomic"
	"time"

	gomysql "github.com/go-mysql-org/go-mysql/mysql"

	"github.com/dbproxy/dbproxy/proxy"
)

// finalWriteTimeout bounds the last packets written when a session ends.
const finalWriteTimeout = 5 * time.Second

// errWriteTimeout bounds writing the ERR that ends a connection phase.
const errWriteTimeout = time.Second

// errHandled ends a session whose client has already been answered (or
// must not be: a dropped TLS negotiation).
var errHandled = errors.New("handled")

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

// session is one client connection and its upstream connection.
type session struct {
	h   *Handler
	pc  *proxy.Conn
	log *slog.Logger

	rawClient net.Conn // the accepted socket
	client    net.Conn // rawClient, or TLS over it
	clientTLS bool
	cbr       *bufio.Reader // connection-phase reader of client
	deadline  time.Time     // connection-phase deadline of the client's socket

	socks     *proxy.Sockets // closes both sockets from any goroutine
	rawServer net.Conn
	server    net.Conn
	serverTLS bool
	sbr       *bufio.Reader // connection-phase reader of server

	hs      *handshake // the server's greeting (after connectDeferred: the real one)
	greetID uint32     // connection id of the proxy's own greeting; 0: the server's greeting was relayed
	resp    *handshakeResponse
	hr      []byte // the client's HandshakeResponse41, until forwarded
	caps    uint64 // capabilities both legs use
	cseq    uint8  // sequence id the client expects next (connection phase)
	d       uint8  // connection phase: client-leg id = server-leg id + d
	status  uint16 // server status after authentication
	buf     []byte // scratch for connection-phase packets
	out     []byte // connection-phase bytes pending to the client
	adverts uint64 // capabilities offered to the client

	endFns   []func()                    // run when the session ends (cleanup)
	detached bool                        // the relay ends the session on its own goroutines
	relayer  atomic.Pointer[proxy.Relay] // set while relaying
}

func (s *session) serve(ctx context.Context) {
	if err := s.pc.Admission(); err != nil { // over a listener limit
		s.endStartup(fatalf(codeTooManyConnections, stateTooManyConnections, err.Error(), nil))
		return
	}
	stop := context.AfterFunc(ctx, s.hardClose)
	// The end of the session: here, or, once the relay detached the
	// connection, when its last pump ends (see relay).
	defer func() {
		if !s.detached {
			s.cleanup()
		}
	}()
	s.atEnd(func() { stop() })
	s.atEnd(s.closeServer)

	s.deadline = time.Now().Add(s.h.handshakeTimeout())
	_ = s.rawClient.SetDeadline(s.deadline)
	s.cbr = bufio.NewReaderSize(s.client, 1024)
	if s.pc.Draining() {
		s.endStartup(fatalf(codeServerShutdown, stateConnection, "dbproxy is shutting down", nil))
		return
	}
	// With a greeting template the client is greeted by the proxy and the
	// server is dialled only once the client has sent its
	// HandshakeResponse; without one (the listener's first connection)
	// the server is dialled first and its greeting becomes the template.
	tmpl := s.h.greeting.Load()
	if tmpl != nil {
		s.greetID = s.h.ids.reserve()
		s.atEnd(func() { s.h.ids.release(s.greetID) })
		if err := s.greet(tmpl); err != nil {
			s.endStartup(err)
			return
		}
	} else if err := s.connectUpstream(ctx); err != nil {
		s.endStartup(err)
		return
	}
	s.atEnd(func() { clear(s.hr) }) // it holds the auth response until forwarded
	if err := s.readClientResponse(ctx); err != nil {
		s.endStartup(err)
		return
	}
	if tmpl != nil {
		if err := s.connectDeferred(ctx, tmpl); err != nil {
			s.endStartup(err)
			return
		}
	}
	s.log = s.log.With(slog.String("user", s.resp.user), slog.String("database", s.resp.database),
		slog.Uint64("conn_id", uint64(s.hs.connID)))
	if s.greetID != 0 {
		s.log = s.log.With(slog.Uint64("greeting_conn_id", uint64(s.greetID)))
	}
	if err := s.forwardResponse(ctx); err != nil {
		s.endStartup(err)
		return
	}
	if err := s.authenticate(); err != nil {
		s.endStartup(err)
		return
	}
	clear(s.buf)
	s.buf = nil
	_ = s.rawClient.SetDeadline(time.Time{})
	_ = s.rawServer.SetDeadline(time.Time{})

	var hooks *SessionHooks
	if ic := s.h.opts.Interceptor; ic != nil {
		var err error
		hooks, err = ic.NewSession(ctx, s.info())
		if err != nil {
			s.cseq = 0
			s.endStartup(err)
			return
		}
		if hooks != nil && hooks.Close != nil {
			s.atEnd(hooks.Close)
		}
	}
	s.log.LogAttrs(ctx, slog.LevelDebug, "session started",
		slog.Bool("client_tls", s.clientTLS), slog.Bool("upstream_tls", s.serverTLS))
	s.relay(ctx, hooks)
}

func (s *session) info() SessionInfo {
	return SessionInfo{
		User:          s.resp.user,
		Database:      s.resp.database,
		ConnectionID:  s.hs.connID,
		ServerVersion: s.hs.serverVersion,
		Capabilities:  s.caps,
		Charset:       s.resp.charset,
		Logger:        s.log,
	}
}

// hardClose closes both sockets; it runs when the connection's context is
// cancelled (server Close, or Shutdown timing out). Parked sockets are
// woken first: a socket must not be closed while parked.
func (s *session) hardClose() {
	if r := s.relayer.Load(); r != nil {
		r.KickAll()
	}
	s.socks.HardClose()
}

// atEnd adds f to the functions run, last added first, when the session
// ends.
func (s *session) atEnd(f func()) { s.endFns = append(s.endFns, f) }

// cleanup runs the atEnd functions.
func (s *session) cleanup() {
	for i := len(s.endFns) - 1; i >= 0; i-- {
		s.endFns[i]()
	}
	s.endFns = nil
}

// setServer records the upstream socket (raw) and the connection the
// session talks over (raw, or TLS over it). It reports false if the session
// was hard-closed meanwhile.
func (s *session) setServer(raw, conn net.Conn) bool {
	if !s.socks.SetServer(raw) {
		return false
	}
	s.rawServer, s.server = raw, conn
	return true
}

func (s *session) closeServer() { s.socks.CloseServer() }

// endStartup reports a connection-phase failure to the client (if it is a
// wire error) and to the log (unless it is routine), rate-limited.
func (s *session) endStartup(err error) {
	log := s.limitedLog()
	var me *Error
	var mal *malformedError
	switch {
	case errors.Is(err, errHandled):
		return
	case errors.As(err, &me):
		level := slog.LevelDebug
		if me.Cause != nil {
			level = slog.LevelWarn
		}
		log.LogAttrs(context.Background(), level, "connection refused",
			slog.Int("code", int(me.Code)), slog.String("reason", me.Message), slog.Any("error", me.Cause))
	case errors.As(err, &mal):
		log.LogAttrs(context.Background(), slog.LevelWarn, "malformed packet during the connection phase",
			slog.String("reason", mal.msg))
	case errors.Is(err, os.ErrDeadlineExceeded):
		// The client stalled: tell it why before closing.
		s.log.LogAttrs(context.Background(), slog.LevelDebug, "handshake timed out")
		err = fatalf(codeHandshake, stateConnection,
			"Bad handshake: dbproxy: handshake not completed within limits.handshake_timeout", nil)
	case proxy.IsClientGone(err):
		log.LogAttrs(context.Background(), slog.LevelDebug, "client left during the connection phase", slog.Any("error", err))
		return
	default:
		log.LogAttrs(context.Background(), slog.LevelWarn, "connection phase failed", slog.Any("error", err))
	}
	s.out = appendErr(s.out, s.cseq, err)
	// The handshake deadline may have passed: a fresh, short one for the
	// ERR.
	_ = s.rawClient.SetWriteDeadline(time.Now().Add(errWriteTimeout))
	_ = s.flushClient()
}

func (s *session) upstreamLost(err error) error {
	return fatalf(codeServerLost, stateGeneral, "dbproxy lost the connection to the database server", err)
}

// connectUpstream dials the server, reads its handshake and offers it to
// the client with the capabilities masked; the handshake becomes the
// greeting template.
func (s *session) connectUpstream(ctx context.Context) error {
	seq, hs, err := s.dialServer(ctx)
	if err != nil {
		return err
	}
	if hs == nil {
		return errHandled
	}
	s.hs = hs
	s.adverts = advertisedCaps(hs.caps, s.h.opts.TLS != nil, s.h.opts.HideCapabilities)
	s.out, s.cseq = appendPacket(s.out, seq, hs.appendWithCaps(nil, s.adverts))
	return s.flushClient()
}

// dialServer dials the server and reads its handshake, which it offers to
// the handler as greeting template. A server that answers with an ERR
// ("Too many connections", "Host is blocked") has its ERR relayed to the
// client with the sequence id the client expects (hs nil).
func (s *session) dialServer(ctx context.Context) (uint8, *handshake, error) {
	conn, err := s.h.dial(ctx)
	if err != nil {
		return 0, nil, fatalf(codeConnectHost, stateGeneral, "dbproxy could not connect to the database server", err)
	}
	if !s.setServer(conn, conn) {
		_ = conn.Close()
		return 0, nil, errHandled
	}
	// The server's leg has its own deadline: never earlier than the
	// client's, and a full handshake timeout from now when the client has
	// used part of its own already.
	deadline := time.Now().Add(s.h.handshakeTimeout())
	if s.deadline.After(deadline) {
		deadline = s.deadline
	}
	_ = conn.SetDeadline(deadline)
	s.sbr = bufio.NewReaderSize(conn, 1024)
	seq, p, err := s.readServer()
	if err != nil {
		return 0, nil, err
	}
	if len(p) > 0 && p[0] == gomysql.ERR_HEADER {
		// "Too many connections", "Host is blocked": the server's words.
		if s.greetID != 0 {
			seq = s.cseq // the answer to the client's HandshakeResponse
		}
		s.toClient(seq, p)
		_ = s.flushClient()
		return 0, nil, nil
	}
	hs, err := parseHandshake(bytes.Clone(p))
	if err != nil {
		return 0, nil, fatalf(codeHandshake, stateConnection, "dbproxy: invalid handshake from the database server", err)
	}
	if hs.caps&capProtocol41 == 0 {
		return 0, nil, fatalf(codeHandshake, stateConnection, "dbproxy: the database server does not speak protocol 4.1", nil)
	}
	s.h.learnGreeting(hs)
	return seq, hs, nil
}

// greet sends the client the proxy's own greeting built on the template
// tmpl: its fields, a fresh scramble and the connection id s.greetID.
func (s *session) greet(tmpl *handshake) error {
	hs, err := tmpl.instantiate(s.greetID)
	if err != nil {
		return fatalf(codeUnknown, stateGeneral, "dbproxy: internal error", err)
	}
	s.hs = hs
	s.adverts = advertisedCaps(hs.caps, s.h.opts.TLS != nil, s.h.opts.HideCapabilities)
	s.out, s.cseq = appendPacket(s.out, 0, hs.appendWithCaps(nil, s.adverts))
	return s.flushClient()
}

// connectDeferred continues a connection greeted by the proxy once the
// client's HandshakeResponse is in: it dials the server and checks that
// what the client selected from the template greeting holds for the real
// one. Unless the client's auth response does not depend on the scramble,
// the response is rewritten (see rescramble) so that the server asks the
// client, in an AuthSwitchRequest relayed by authenticate, to answer the
// server's own scramble.
func (s *session) connectDeferred(ctx context.Context, tmpl *handshake) error {
	switchAuth := !scrambleFree(s.resp, s.clientTLS)
	if switchAuth && s.resp.caps&capPluginAuth == 0 {
		// It cannot take an AuthSwitchRequest, and its answer was computed
		// on the proxy's scramble: what a server says to a client that
		// does not support the plugin it asks for.
		return fatalf(gomysql.ER_NOT_SUPPORTED_AUTH_MODE, "08004",
			"Client does not support authentication protocol requested by server; consider upgrading MySQL client (dbproxy needs CLIENT_PLUGIN_AUTH)", nil)
	}
	_, real, err := s.dialServer(ctx)
	if err != nil {
		return err
	}
	if real == nil {
		return errHandled
	}
	if why := greetingMismatch(tmpl, real, s.resp.caps,
		advertisedCaps(real.caps, s.h.opts.TLS != nil, s.h.opts.HideCapabilities)); why != "" {
		s.log.LogAttrs(ctx, slog.LevelWarn, "the database server's greeting no longer matches the one this client answered; connection refused, template updated",
			slog.String("differs_in", why))
		return fatalf(codeServerLost, stateConnection,
			"dbproxy: the database server changed (greeting "+why+") during this connection's handshake; reconnect", nil)
	}
	s.h.ids.bind(s.greetID, real.connID)
	s.hs = real
	if switchAuth {
		s.hr = rescramble(s.hr, s.resp)
		s.resp.authLen = 0
		s.resp.plugin = rescramblePlugin
	}
	return nil
}

// readClientResponse reads the client's SSLRequest (upgrading to TLS) and
// HandshakeResponse41.
func (s *session) readClientResponse(ctx context.Context) error {
	seq, p, err := s.readClient()
	if err != nil {
		return err
	}
	s.cseq = seq + 1
	if len(p) < 4 {
		return fatalf(codeHandshake, stateConnection, "Bad handshake", nil)
	}
	caps := clientCaps(p, s.hs.mariaDB)
	if caps&capProtocol41 == 0 || len(p) < sslRequestLen {
		return fatalf(codeHandshake, stateConnection, "Bad handshake: dbproxy requires a client supporting protocol 4.1", nil)
	}
	if caps&capSSL != 0 {
		if s.h.opts.TLS == nil || len(p) != sslRequestLen {
			return fatalf(codeHandshake, stateConnection, "Bad handshake: TLS was not offered", nil)
		}
		// The client does not wait for an answer: its ClientHello may be
		// buffered already. Everything after the SSLRequest goes through
		// the TLS layer, so nothing unencrypted can be smuggled in.
		tconn := tls.Server(&proxy.BufferedConn{Conn: s.rawClient, R: s.cbr}, s.h.opts.TLS)
		if err := tconn.HandshakeContext(ctx); err != nil {
			s.log.LogAttrs(ctx, slog.LevelDebug, "client TLS handshake failed", slog.Any("error", err))
			return errHandled
		}
		s.client, s.clientTLS = tconn, true
		s.cbr = bufio.NewReaderSize(tconn, 1024)
		if seq, p, err = s.readClient(); err != nil {
			return err
		}
		s.cseq = seq + 1
		if len(p) < sslRequestLen {
			return fatalf(codeHandshake, stateConnection, "Bad handshake", nil)
		}
	} else if s.h.opts.RequireTLS {
		return fatalf(codeSecureTransport, stateGeneral,
			"Connections using insecure transport are prohibited: dbproxy requires TLS", nil)
	}
	// Flags the client sets that were not offered (mysql2 sets
	// CLIENT_QUERY_ATTRIBUTES whatever the server says) are ignored, as the
	// server ignores them: the response is read with them masked off and
	// forwardResponse forwards them masked, so neither the server nor the
	// relay (nor an Interceptor, through SessionInfo.Capabilities) uses
	// them.
	resp, err := parseHandshakeResponse(p, s.hs.mariaDB, s.adverts)
	if err != nil {
		return err
	}
	s.resp = resp
	s.hr = bytes.Clone(p) // forwarded after upstream TLS
	clear(p)
	return nil
}

// forwardResponse negotiates TLS upstream (per sslmode and the server's
// CLIENT_SSL) and sends the client's HandshakeResponse41 with its
// capabilities adjusted.
func (s *session) forwardResponse(ctx context.Context) error {
	p := s.hr
	defer func() { clear(p); s.hr = nil }()
	fwd := clientCaps(p, s.hs.mariaDB) & s.adverts &^ capSSL
	useTLS := false
	if s.h.upstreamTLS != nil {
		switch {
		case s.hs.caps&capSSL != 0:
			useTLS = true
		case s.h.opts.UpstreamTLS.Mode != proxy.SSLPrefer:
			return fatalf(codeSSLConnection, stateGeneral,
				"dbproxy: the database server does not support TLS, but the upstream sslmode requires it", nil)
		}
	}
	clientSeq := s.cseq - 1
	serverSeq := uint8(1)
	if useTLS {
		req := bytes.Clone(p[:sslRequestLen])
		setClientCaps(req, fwd|capSSL, s.hs.mariaDB)
		pkt, _ := appendPacket(nil, serverSeq, req)
		if _, err := s.server.Write(pkt); err != nil {
			return s.upstreamLost(err)
		}
		tctx, cancel := context.WithTimeout(ctx, s.h.connectTimeout())
		tconn := tls.Client(s.rawServer, s.h.upstreamTLS)
		err := tconn.HandshakeContext(tctx)
		cancel()
		if err != nil {
			return fatalf(codeSSLConnection, stateGeneral, "dbproxy: TLS handshake with the database server failed", err)
		}
		if !s.setServer(s.rawServer, tconn) {
			return errHandled
		}
		s.serverTLS = true
		s.sbr = bufio.NewReaderSize(tconn, 1024)
		serverSeq = 2
		fwd |= capSSL
	}
	// A client whose first answer is its password in clear
	// (mysql_clear_password, or sha256_password over TLS) has sent it
	// already; it goes no further over an unsafe leg.
	if plugin := s.resp.plugin; s.resp.authLen > 1 &&
		(plugin == pluginClearPassword || (plugin == pluginSHA256 && s.clientTLS)) {
		if err := s.clearPasswordAllowed(plugin); err != nil {
			return err
		}
	}
	setClientCaps(p, fwd, s.hs.mariaDB)
	s.caps = fwd &^ capSSL
	pkt, _ := appendPacket(nil, serverSeq, p)
	_, err := s.server.Write(pkt)
	clear(pkt) // holds the auth response
	if err != nil {
		return s.upstreamLost(err)
	}
	s.d = clientSeq - serverSeq
	return nil
}

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
	s.toClient(seq+s.d, p)
	if err := s.flushClient(); err != nil {
		return err
	}
	cseq, cp, err := s.readClient()
	if err != nil {
		return err
	}
	s.cseq = cseq + 1
	return s.writeServer(cseq-s.d, cp)
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
	if !(s.serverTLS && s.h.opts.UpstreamTLS.Verified()) && !proxy.IsLoopback(s.rawServer.RemoteAddr()) {
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
	s.toClient(seq+s.d, p)
	if err := s.flushClient(); err != nil {
		return err
	}
	cseq, cp, err := s.readClient()
	if err != nil {
		return err
	}
	s.cseq = cseq + 1
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

// readServer reads one packet from the server during the connection phase.
func (s *session) readServer() (uint8, []byte, error) {
	seq, p, buf, err := readPacket(s.sbr, s.buf, startupMaxPayload)
	s.buf = buf
	if err != nil {
		var mal *malformedError
		if errors.As(err, &mal) {
			return 0, nil, fatalf(codeHandshake, stateConnection, "dbproxy: invalid packet from the database server", err)
		}
		return 0, nil, s.upstreamLost(err)
	}
	return seq, p, nil
}

// readClient reads one packet from the client during the connection phase.
func (s *session) readClient() (uint8, []byte, error) {
	seq, p, buf, err := readPacket(s.cbr, s.buf, startupMaxPayload)
	s.buf = buf
	return seq, p, err
}

func (s *session) writeServer(seq uint8, p []byte) error {
	pkt, _ := appendPacket(nil, seq, p)
	_, err := s.server.Write(pkt)
	clear(pkt) // may hold a password
	clear(p)
	if err != nil {
		return s.upstreamLost(err)
	}
	return nil
}

// toClient queues a packet for the client.
func (s *session) toClient(seq uint8, p []byte) {
	s.out, s.cseq = appendPacket(s.out, seq, p)
}

func (s *session) flushClient() error {
	if len(s.out) == 0 {
		return nil
	}
	_, err := s.client.Write(s.out)
	clear(s.out)
	s.out = s.out[:0]
	return err
}
