package postgres

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/dbproxy/dbproxy/proxy"
)

// Authentication request codes (AuthenticationXXX messages, type 'R').
const (
	authOK                = 0
	authCleartextPassword = 3
	authMD5Password       = 5
	authGSS               = 7
	authGSSContinue       = 8
	authSSPI              = 9
	authSASL              = 10
	authSASLContinue      = 11
	authSASLFinal         = 12
)

// startupMaxBody bounds a message during startup and authentication.
const startupMaxBody = 1 << 20

// finalWriteTimeout bounds the last messages written when a session ends.
const finalWriteTimeout = 5 * time.Second

// startupErrorTimeout bounds writing the error that ends a startup: the
// handshake deadline may have passed already, and a client that does not
// read must not hold the connection open.
const startupErrorTimeout = time.Second

// errHandled ends a session whose client has already been answered (or must
// not be: cancel requests, dropped TLS negotiations).
var errHandled = errors.New("handled")

// session is one client connection and its upstream connection.
type session struct {
	h   *Handler
	pc  *proxy.Conn
	id  uint64 // the "conn" attribute of the session's logs
	log *slog.Logger

	deadline time.Time // end of the handshake (limits.handshake_timeout)

	rawClient net.Conn // the accepted socket: deadlines and Close
	client    net.Conn // rawClient with raw-syscall I/O, or TLS over that
	clientTLS bool
	cbr       *bufio.Reader // startup-phase reader of client

	socks     *proxy.Sockets // closes both sockets from any goroutine
	server    net.Conn
	rawServer net.Conn
	serverTLS bool
	sbr       *bufio.Reader // startup-phase reader of server

	startup   *startupMessage
	needNPV   bool   // client asked for a newer minor protocol version
	sentNPV   bool   // a NegotiateProtocolVersion went to the client
	buf       []byte // scratch for startup-phase messages
	out       []byte // startup-phase bytes pending to the client
	acct      *accounting
	proxyPID  uint32
	srvParams map[string]string

	endFns   []func()                    // run when the session ends (cleanup)
	detached bool                        // the relay ends the session on its own goroutines
	relayer  atomic.Pointer[proxy.Relay] // set while relaying
}

func (s *session) serve(ctx context.Context) {
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
	s.atEnd(func() {
		if s.proxyPID != 0 {
			s.h.keys.remove(s.proxyPID)
		}
	})

	s.deadline = time.Now().Add(s.h.handshakeTimeout())
	_ = s.rawClient.SetDeadline(s.deadline)
	if err := s.readClientStartup(ctx); err != nil {
		s.endStartup(err)
		return
	}
	s.log = s.log.With(slog.String("user", s.startup.param("user")), slog.String("database", s.startup.database()))
	if err := s.pc.Admission(); err != nil {
		// Over a listener limit: refused as the server refuses a client
		// past max_connections, before anything is dialled.
		s.endStartup(fatalf(codeTooManyConnections, err.Error(), nil))
		return
	}
	if s.pc.Draining() {
		s.endStartup(fatalf(codeCannotConnectNow, "dbproxy is shutting down", nil))
		return
	}
	if err := s.connectUpstream(ctx, s.deadline); err != nil {
		s.endStartup(err)
		return
	}
	if err := s.authenticate(); err != nil {
		s.endStartup(err)
		return
	}
	if err := s.finishStartup(); err != nil {
		s.endStartup(err)
		return
	}
	s.pc.HandshakeDone()
	_ = s.rawClient.SetDeadline(time.Time{})
	_ = s.rawServer.SetDeadline(time.Time{})
	s.buf, s.out = nil, nil // startup scratch, up to 1 MB

	var hooks *SessionHooks
	if ic := s.h.opts.Interceptor; ic != nil {
		var err error
		hooks, err = ic.NewSession(ctx, s.info())
		if err != nil {
			s.endStartup(err)
			_, _ = s.server.Write([]byte{'X', 0, 0, 0, 4})
			return
		}
		if hooks != nil && hooks.Close != nil {
			hooks.Close = sync.OnceFunc(hooks.Close)
			s.atEnd(hooks.Close)
		}
	}
	s.log.LogAttrs(ctx, slog.LevelDebug, "session started",
		slog.Bool("client_tls", s.clientTLS), slog.Bool("upstream_tls", s.serverTLS))
	if s.acct.txStatus.Load() == 'I' {
		s.pc.SetState(proxy.StateIdle) // at the server's first ReadyForQuery
	}
	s.relay(ctx, hooks)
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

// endStartup reports a startup failure to the client (if it is a wire
// error) and to the log (unless it is routine). Its logs are rate-limited:
// during a database outage every connection fails the same way.
//
// A client whose startup message was read and that is still in its
// startup when limits.handshake_timeout expires gets FATAL 57014, as from
// the server's authentication_timeout, whatever it or the server was
// doing then. Before the startup message the connection is closed without
// a word, as the server does (the client may be in a TLS handshake).
func (s *session) endStartup(err error) {
	if s.startup != nil && isTimeout(err) && !time.Now().Before(s.deadline) {
		err = fatalf(codeQueryCanceled, fmt.Sprintf(
			"canceling authentication due to timeout: dbproxy handshake not completed within limits.handshake_timeout (%s)",
			s.h.handshakeTimeout()), err)
	}
	log := s.limitedLog()
	var pe *Error
	switch {
	case errors.Is(err, errHandled):
		return
	case errors.As(err, &pe):
		if pe.Code != "" && pe.Cause != nil {
			log.LogAttrs(context.Background(), slog.LevelWarn, "connection refused",
				slog.String("sqlstate", pe.Code), slog.String("reason", pe.Message), slog.Any("error", pe.Cause))
		} else {
			log.LogAttrs(context.Background(), slog.LevelDebug, "connection refused",
				slog.String("sqlstate", pe.Code), slog.String("reason", pe.Message))
		}
	case proxy.IsClientGone(err):
		log.LogAttrs(context.Background(), slog.LevelDebug, "client left during startup", slog.Any("error", err))
		return
	default:
		log.LogAttrs(context.Background(), slog.LevelWarn, "startup failed", slog.Any("error", err))
	}
	s.out = appendError(s.out, err)
	_ = s.rawClient.SetWriteDeadline(time.Now().Add(startupErrorTimeout))
	_ = s.flushClient()
}

// limitedLog is the session's logger for startup failures: rate-limited
// per message, with the session's attributes.
func (s *session) limitedLog() *slog.Logger {
	attrs := []any{slog.Uint64("conn", s.id), slog.String("remote", s.rawClient.RemoteAddr().String())}
	if s.startup != nil {
		attrs = append(attrs, slog.String("user", s.startup.param("user")), slog.String("database", s.startup.database()))
	}
	return s.h.limitLog.With(attrs...)
}

// isTimeout reports whether err is a deadline expiring (a socket's or a
// dial's).
func isTimeout(err error) bool {
	return errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, context.DeadlineExceeded)
}

// readClientStartup negotiates encryption and reads the StartupMessage.
func (s *session) readClientStartup(ctx context.Context) error {
	s.cbr = bufio.NewReaderSize(s.client, 512)
	first, err := s.cbr.Peek(1)
	if err != nil {
		return err
	}
	if first[0] == 0x16 { // TLS ClientHello: PostgreSQL 17 direct SSL
		if s.h.opts.TLS == nil {
			s.log.LogAttrs(ctx, slog.LevelDebug, "direct SSL attempted but TLS is not configured")
			return errHandled
		}
		if err := s.startClientTLS(ctx, &proxy.BufferedConn{Conn: s.client, R: s.cbr}, true); err != nil {
			return err
		}
	}
	for {
		code, payload, err := readStartupPacket(s.cbr, s.buf)
		if err != nil {
			var le *startupLengthError
			if errors.As(err, &le) {
				// As the server: close without a message (PostgreSQL only
				// logs it). A Terminate before any startup packet is a
				// client ending a connection it just opened: routine.
				level := slog.LevelInfo
				if le.length == terminateLength {
					level = slog.LevelDebug
				}
				s.log.LogAttrs(ctx, level, "closing a connection whose first packet is not a startup packet",
					slog.Any("error", err))
				return errHandled
			}
			return err
		}
		switch code {
		case sslRequestCode:
			if s.clientTLS {
				return fatalf(codeProtocolViolation, "SSLRequest on an encrypted connection", nil)
			}
			if s.h.opts.TLS == nil {
				if _, err := s.client.Write([]byte{'N'}); err != nil {
					return err
				}
				continue
			}
			if s.cbr.Buffered() > 0 {
				// Bytes sent before the handshake would be read as if they
				// had come through TLS (CVE-2021-23214): refuse.
				s.log.LogAttrs(ctx, slog.LevelWarn, "unencrypted data after SSLRequest; closing")
				return errHandled
			}
			if _, err := s.client.Write([]byte{'S'}); err != nil {
				return err
			}
			if err := s.startClientTLS(ctx, s.client, false); err != nil {
				return err
			}
		case gssEncRequestCode:
			if s.clientTLS {
				return fatalf(codeProtocolViolation, "GSSENCRequest on an encrypted connection", nil)
			}
			if _, err := s.client.Write([]byte{'N'}); err != nil {
				return err
			}
		case cancelRequestCode:
			s.handleCancel(ctx, payload)
			return errHandled
		default:
			if code>>16 != 3 {
				return fatalf(codeFeatureUnsupported, fmt.Sprintf(
					"unsupported frontend protocol %d.%d: server supports 3.0", code>>16, code&0xffff), nil)
			}
			m, err := parseStartupMessage(code, payload)
			if err != nil {
				return fatalf(codeProtocolViolation, err.Error(), nil)
			}
			s.startup = m
			s.needNPV = code&0xffff > 0
			if s.h.opts.RequireTLS && !s.clientTLS {
				return fatalf(codeInvalidAuthSpec, "SSL required: dbproxy accepts only TLS connections", nil)
			}
			return nil
		}
	}
}

// startClientTLS runs the server side of a TLS handshake on conn.
func (s *session) startClientTLS(ctx context.Context, conn net.Conn, direct bool) error {
	tconn := tls.Server(conn, s.h.opts.TLS)
	if err := tconn.HandshakeContext(ctx); err != nil {
		s.log.LogAttrs(ctx, slog.LevelDebug, "client TLS handshake failed", slog.Any("error", err))
		return errHandled
	}
	if direct && tconn.ConnectionState().NegotiatedProtocol != ALPN {
		s.log.LogAttrs(ctx, slog.LevelDebug, "direct SSL without ALPN postgresql; closing")
		return errHandled
	}
	s.client = tconn
	s.clientTLS = true
	s.cbr = bufio.NewReaderSize(tconn, 512)
	return nil
}

// handleCancel forwards a CancelRequest for a live session. The client
// gets no answer either way, as from the server.
func (s *session) handleCancel(ctx context.Context, payload []byte) {
	if len(payload) < 8 || len(payload) > 260 {
		return
	}
	t := s.h.keys.lookup(binary.BigEndian.Uint32(payload), payload[4:])
	if t == nil {
		s.log.LogAttrs(ctx, slog.LevelDebug, "cancel request for an unknown session")
		return
	}
	if err := s.h.forwardCancel(ctx, t); err != nil {
		s.log.LogAttrs(ctx, slog.LevelWarn, "forward cancel request", slog.Any("error", err))
	}
}

// connectUpstream dials the server and sends the client's startup
// parameters, as protocol 3.0.
func (s *session) connectUpstream(ctx context.Context, deadline time.Time) error {
	dctx, cancel := context.WithDeadline(ctx, deadline)
	conn, isTLS, err := s.h.dialUpstream(dctx)
	cancel()
	if err != nil {
		return fatalf(codeUnableToConnect, "dbproxy could not connect to the database server", err)
	}
	raw := conn
	if tc, ok := conn.(*tls.Conn); ok {
		raw = tc.NetConn()
	}
	if !s.setServer(raw, conn) {
		_ = conn.Close()
		return errHandled
	}
	s.serverTLS = isTLS
	_ = raw.SetDeadline(deadline)
	s.sbr = bufio.NewReaderSize(conn, 1024)
	if _, err := conn.Write(appendStartupMessage(nil, protocolVersion30, s.startup.params)); err != nil {
		return s.upstreamLost(err)
	}
	return nil
}

func (s *session) upstreamLost(err error) error {
	return fatalf(codeConnectionFailure, "dbproxy lost the connection to the database server", err)
}

// readServer reads one message from the server during startup.
func (s *session) readServer() (byte, []byte, error) {
	typ, body, buf, err := readMessage(s.sbr, s.buf, startupMaxBody)
	s.buf = buf
	if err != nil {
		return 0, nil, s.upstreamLost(err)
	}
	return typ, body, nil
}

// readClient reads one message from the client during authentication.
func (s *session) readClient() (byte, []byte, error) {
	typ, body, buf, err := readMessage(s.cbr, s.buf, startupMaxBody)
	s.buf = buf
	var me *malformedError
	if errors.As(err, &me) {
		return 0, nil, fatalf(codeProtocolViolation, me.msg, nil)
	}
	return typ, body, err
}

// toClient queues a message for the client, preceded by our
// NegotiateProtocolVersion if the client asked for a newer minor version
// and the server did not answer that itself.
func (s *session) toClient(typ byte, body []byte) {
	if s.needNPV && !s.sentNPV {
		s.sentNPV = true
		npv := pgproto3.NegotiateProtocolVersion{NewestMinorProtocol: 0}
		s.out, _ = npv.Encode(s.out)
	}
	s.out = append(s.out, typ)
	s.out = binary.BigEndian.AppendUint32(s.out, uint32(len(body)+4))
	s.out = append(s.out, body...)
}

func (s *session) flushClient() error {
	if len(s.out) == 0 {
		return nil
	}
	_, err := s.client.Write(s.out)
	s.out = s.out[:0]
	return err
}

// authenticate runs the authentication exchange; see the package doc.
func (s *session) authenticate() error {
	for {
		typ, body, err := s.readServer()
		if err != nil {
			return err
		}
		switch typ {
		case 'v': // NegotiateProtocolVersion from the server itself
			s.sentNPV = true
			s.toClient(typ, body)
			continue
		case 'E':
			s.toClient(typ, body)
			_ = s.flushClient()
			s.log.LogAttrs(context.Background(), slog.LevelDebug, "server refused the connection")
			return errHandled
		case 'N':
			s.toClient(typ, body)
			continue
		case 'R':
		default:
			return fatalf(codeProtocolViolation, fmt.Sprintf("unexpected message %q from the server during authentication", typ), nil)
		}
		if len(body) < 4 {
			return fatalf(codeProtocolViolation, "invalid authentication request from the server", nil)
		}
		switch code := binary.BigEndian.Uint32(body); code {
		case authOK:
			s.toClient(typ, body)
			return nil
		case authSASLFinal:
			s.toClient(typ, body) // no client response follows
		case authSASL:
			if s.clientTLS {
				if err := s.terminateSCRAM(body); err != nil {
					return err
				}
				continue
			}
			// A plaintext client cannot bind to the server's certificate,
			// and libpq refuses a PLUS offer over a non-SSL connection:
			// offer it the mechanisms without channel binding.
			if err := s.relayAuthStep(typ, withoutPlus(body)); err != nil {
				return err
			}
		case authCleartextPassword:
			if err := s.cleartextAllowed(); err != nil {
				return err
			}
			if err := s.relayAuthStep(typ, body); err != nil {
				return err
			}
		case authMD5Password, authSASLContinue, authGSS, authGSSContinue, authSSPI:
			if err := s.relayAuthStep(typ, body); err != nil {
				return err
			}
		default:
			return fatalf(codeFeatureUnsupported, fmt.Sprintf("authentication method %d is not supported by dbproxy", code), nil)
		}
	}
}

// cleartextAllowed says whether a password may travel in clear from the
// client through the proxy to the server: each leg must be TLS (the
// upstream leg with a verified certificate: under prefer or require a man
// in the middle can pose as the server) or loopback. Otherwise the client
// gets FATAL 28000 naming the setting to change, before it is asked for its
// password.
func (s *session) cleartextAllowed() error {
	if !s.clientTLS && !proxy.IsLoopback(s.rawClient.RemoteAddr()) {
		hint := "connect with sslmode=require or stricter"
		if s.h.opts.TLS == nil {
			hint = "configure tls on the dbproxy listener and connect with sslmode=require or stricter"
		}
		return fatalf(codeInvalidAuthSpec,
			"the server asks for the password in clear text and dbproxy does not send it over a client connection that is neither TLS nor loopback: "+hint,
			errors.New("cleartext password refused: client leg is plaintext and not loopback"))
	}
	if !(s.serverTLS && s.h.opts.UpstreamTLS.Verified()) && !proxy.IsLoopback(s.rawServer.RemoteAddr()) {
		return fatalf(codeInvalidAuthSpec,
			"the server asks for the password in clear text and dbproxy does not send it to a server that is neither on loopback nor reached over verified TLS: set upstream_tls.mode: verify-full (or verify-ca) on the listener, or use scram-sha-256 on the server",
			fmt.Errorf("cleartext password refused: upstream sslmode %s, server not on loopback", s.h.opts.UpstreamTLS.Mode))
	}
	return nil
}

// withoutPlus returns an AuthenticationSASL body without
// SCRAM-SHA-256-PLUS:
//
//	int32 10 || (cstring mechanism)* || 0
func withoutPlus(body []byte) []byte {
	var req pgproto3.AuthenticationSASL
	if err := req.Decode(body); err != nil {
		return body // relayed as is; the client will judge it
	}
	out := binary.BigEndian.AppendUint32(nil, authSASL)
	for _, m := range req.AuthMechanisms {
		if m != mechSCRAMPlus {
			out = append(out, m...)
			out = append(out, 0)
		}
	}
	return append(out, 0)
}

// relayAuthStep forwards an authentication request to the client and the
// client's response (a 'p' message, never decoded) to the server.
func (s *session) relayAuthStep(typ byte, body []byte) error {
	s.toClient(typ, body)
	if err := s.flushClient(); err != nil {
		return err
	}
	ctyp, cbody, err := s.readClient()
	if err != nil {
		return err
	}
	if ctyp != 'p' {
		if ctyp == 'X' {
			return errHandled
		}
		return fatalf(codeProtocolViolation, fmt.Sprintf("expected password response, got message type %q", ctyp), nil)
	}
	if err := s.writeServerMessage(ctyp, cbody); err != nil {
		return s.upstreamLost(err)
	}
	return nil
}

func (s *session) writeServerMessage(typ byte, body []byte) error {
	msg := make([]byte, 0, 5+len(body))
	msg = append(msg, typ)
	msg = binary.BigEndian.AppendUint32(msg, uint32(len(body)+4))
	msg = append(msg, body...)
	_, err := s.server.Write(msg)
	clear(msg) // may hold a password
	return err
}

// terminateSCRAM completes SCRAM-SHA-256 with the server itself, using the
// cleartext password it asks the (TLS) client for. The server's
// ErrorResponse, if any, goes to the client verbatim.
func (s *session) terminateSCRAM(body []byte) error {
	var req pgproto3.AuthenticationSASL
	if err := req.Decode(body); err != nil {
		return fatalf(codeProtocolViolation, "invalid SASL request from the server", err)
	}
	var hasSCRAM, hasPlus bool
	for _, m := range req.AuthMechanisms {
		hasSCRAM = hasSCRAM || m == mechSCRAM
		hasPlus = hasPlus || m == mechSCRAMPlus
	}
	if !hasSCRAM && !hasPlus {
		return fatalf(codeFeatureUnsupported, "the server offers no SASL mechanism dbproxy supports", nil)
	}
	var cbind []byte
	if hasPlus {
		if tc, ok := s.server.(*tls.Conn); ok {
			if certs := tc.ConnectionState().PeerCertificates; len(certs) > 0 {
				cbind, _ = tlsServerEndPoint(certs[0])
			}
		}
	}
	plus := cbind != nil
	if !plus && !hasSCRAM {
		return fatalf(codeFeatureUnsupported, "the server requires channel binding that dbproxy cannot provide", nil)
	}

	// Ask the client for its password. The client leg is TLS.
	ask := pgproto3.AuthenticationCleartextPassword{}
	askBody, _ := ask.Encode(nil)
	s.toClient(askBody[0], askBody[5:])
	if err := s.flushClient(); err != nil {
		return err
	}
	ctyp, cbody, err := s.readClient()
	if err != nil {
		return err
	}
	if ctyp != 'p' {
		if ctyp == 'X' {
			return errHandled
		}
		return fatalf(codeProtocolViolation, fmt.Sprintf("expected password response, got message type %q", ctyp), nil)
	}
	password, _, ok := cutCString(cbody)
	clear(cbody)
	if !ok {
		return fatalf(codeProtocolViolation, "invalid password message", nil)
	}
	sc, err := newSCRAMClient(password, plus, cbind, s.serverTLS)
	if err != nil {
		return err
	}
	defer sc.clear()

	first := pgproto3.SASLInitialResponse{AuthMechanism: sc.mechanism, Data: sc.clientFirst()}
	if err := s.sendServer(&first); err != nil {
		return err
	}
	cont, err := s.expectSASL(authSASLContinue)
	if err != nil {
		return err
	}
	final, err := sc.clientFinal(cont)
	if err != nil {
		return fatalf(codeInvalidAuthSpec, "dbproxy: SCRAM exchange with the server failed", err)
	}
	if err := s.sendServer(&pgproto3.SASLResponse{Data: final}); err != nil {
		return err
	}
	fin, err := s.expectSASL(authSASLFinal)
	if err != nil {
		return err
	}
	if err := sc.verifyServerFinal(fin); err != nil {
		return fatalf(codeInvalidAuthSpec, "dbproxy: the database server failed SCRAM verification", err)
	}
	s.log.LogAttrs(context.Background(), slog.LevelDebug, "authenticated upstream with SCRAM",
		slog.String("mechanism", sc.mechanism))
	return nil
}

func (s *session) sendServer(msg interface{ Encode([]byte) ([]byte, error) }) error {
	b, err := msg.Encode(nil)
	if err != nil {
		return fmt.Errorf("encode: %w", err)
	}
	_, err = s.server.Write(b)
	clear(b)
	if err != nil {
		return s.upstreamLost(err)
	}
	return nil
}

// expectSASL reads the next SASL step from the server. An ErrorResponse is
// relayed to the client (wrong password: 28P01) and ends the session.
func (s *session) expectSASL(code uint32) ([]byte, error) {
	for {
		typ, body, err := s.readServer()
		if err != nil {
			return nil, err
		}
		switch typ {
		case 'E':
			s.toClient(typ, body)
			_ = s.flushClient()
			return nil, errHandled
		case 'N':
			s.toClient(typ, body)
			continue
		case 'R':
			if len(body) >= 4 && binary.BigEndian.Uint32(body) == code {
				return body[4:], nil
			}
		}
		return nil, fatalf(codeProtocolViolation, fmt.Sprintf("unexpected message %q from the server during SASL", typ), nil)
	}
}

// finishStartup relays the server's startup messages up to ReadyForQuery,
// replacing its BackendKeyData with a proxy-issued key.
func (s *session) finishStartup() error {
	s.srvParams = make(map[string]string)
	for {
		typ, body, err := s.readServer()
		if err != nil {
			return err
		}
		switch typ {
		case 'S':
			if name, rest, ok := cutCString(body); ok {
				if value, _, ok := cutCString(rest); ok {
					s.srvParams[name] = value
				}
			}
		case 'K':
			var k pgproto3.BackendKeyData
			if err := k.Decode(body); err != nil {
				return fatalf(codeProtocolViolation, "invalid BackendKeyData from the server", err)
			}
			t := &cancelTarget{upstreamAddr: s.h.opts.Upstream, upstreamPID: k.ProcessID, upstreamSecret: k.SecretKey}
			pid, err := s.h.keys.register(t)
			if err != nil {
				return err
			}
			s.proxyPID = pid
			body = binary.BigEndian.AppendUint32(nil, pid)
			body = append(body, t.secret[:]...)
		case 'E':
			s.toClient(typ, body)
			_ = s.flushClient()
			return errHandled
		case 'Z':
			s.acct = newAccounting(s.pc)
			if len(body) == 1 {
				s.acct.txStatus.Store(uint32(body[0]))
			}
			s.toClient(typ, body)
			return s.flushClient()
		}
		s.toClient(typ, body)
	}
}

func (s *session) info() SessionInfo {
	params := make(map[string]string, len(s.startup.params)/2)
	for i := 0; i+1 < len(s.startup.params); i += 2 {
		params[s.startup.params[i]] = s.startup.params[i+1]
	}
	return SessionInfo{
		User:          s.startup.param("user"),
		Database:      s.startup.database(),
		StartupParams: params,
		ServerParams:  s.srvParams,
		Logger:        s.log,
	}
}

// readMessage reads one typed message from r into buf, which it grows as
// needed and returns.
func readMessage(r *bufio.Reader, buf []byte, maxBody int) (typ byte, body, nbuf []byte, err error) {
	hdr, err := r.Peek(5)
	if err != nil {
		if len(hdr) > 0 {
			err = eofIsUnexpected(err)
		}
		return 0, nil, buf, err
	}
	typ = hdr[0]
	n := int64(binary.BigEndian.Uint32(hdr[1:5]))
	if n < 4 || n-4 > int64(maxBody) {
		return 0, nil, buf, &malformedError{msg: fmt.Sprintf("invalid message length %d for message type %q", n, typ)}
	}
	_, _ = r.Discard(5)
	if cap(buf) < int(n-4) {
		buf = make([]byte, n-4)
	}
	body = buf[:n-4]
	if _, err := io.ReadFull(r, body); err != nil {
		return 0, nil, buf, eofIsUnexpected(err)
	}
	return typ, body, buf, nil
}
