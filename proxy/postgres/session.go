package postgres

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/dbproxy/dbproxy/proxy"
)

// startupMaxBody bounds a message during startup and authentication.
const startupMaxBody = 1 << 20

// startupErrorTimeout bounds writing the error that ends a startup: the
// handshake deadline may have passed already, and a client that does not
// read must not hold the connection open.
const startupErrorTimeout = time.Second

// errHandled ends a session whose client has already been answered (or must
// not be: cancel requests, dropped TLS negotiations).
var errHandled = errors.New("handled")

// session is one client connection and its upstream connection. Its
// fields are ordered to pack (an idle session keeps the struct: ten
// thousand of them at a time are usual).
type session struct {
	h   *Handler
	pc  *proxy.Conn
	id  uint64 // the "conn" attribute of the session's logs
	log *slog.Logger

	deadline time.Time // end of the handshake (limits.handshake_timeout)

	rawClient net.Conn      // the accepted socket: deadlines and Close
	client    net.Conn      // rawClient with raw-syscall I/O, or TLS over that
	cbr       *bufio.Reader // startup-phase reader of client

	sbr    *bufio.Reader       // startup-phase reader of server
	upHost *proxy.UpstreamHost // the upstream host the session is on

	startup   *startupMessage
	buf       []byte // scratch for startup-phase messages
	out       []byte // startup-phase bytes pending to the client
	acct      *accounting
	srvParams map[string]string
	proxyPID  uint32

	clientTLS   bool
	serverTLS   bool
	clientHeard bool // startup bytes went to the client since the server was dialled
	moreHosts   bool // upstream hosts are left to try after this one
	// awaitingServer: the server has sent nothing yet; its socket's
	// deadline is its host's share of the time, serverDeadline the
	// startup's (readServer).
	awaitingServer bool
	serverDeadline time.Time
	needNPV        bool // client asked for a newer minor protocol version
	sentNPV        bool // a NegotiateProtocolVersion went to the client

	proxy.SessionLife // server connection, sockets, cleanup, hand-over to the relay
}

func (s *session) serve(ctx context.Context) {
	// The end of the session: here, or, once the relay detached the
	// connection, when its last pump ends (see relay).
	defer s.Begin(ctx, s.pc)()
	s.AtEnd(func() {
		if s.proxyPID != 0 {
			s.h.keys.remove(s.proxyPID)
		}
	})

	s.deadline = time.Now().Add(s.h.HandshakeTimeout)
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
	if err := s.startUpstream(ctx); err != nil {
		s.endStartup(err)
		return
	}
	s.pc.HandshakeDone()
	s.h.Obs.Handshake()
	_ = s.rawClient.SetDeadline(time.Time{})
	_ = s.RawServer.SetDeadline(time.Time{})
	s.buf, s.out = nil, nil // startup scratch, up to 1 MB

	var hooks *SessionHooks
	if ic := s.h.opts.Interceptor; ic != nil {
		var err error
		hooks, err = ic.NewSession(ctx, s.info())
		if err != nil {
			s.endStartup(err)
			_, _ = s.Server.Write([]byte{'X', 0, 0, 0, 4})
			return
		}
		if hooks != nil && hooks.Close != nil {
			hooks.Close = sync.OnceFunc(hooks.Close)
			s.AtEnd(hooks.Close)
		}
	}
	s.log.LogAttrs(ctx, slog.LevelDebug, "session started",
		slog.Bool("client_tls", s.clientTLS), slog.Bool("upstream_tls", s.serverTLS))
	if s.acct.txStatus.Load() == 'I' {
		s.pc.SetState(proxy.StateIdle) // at the server's first ReadyForQuery
	}
	s.relay(ctx, hooks)
}

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
			s.h.HandshakeTimeout), err)
	}
	log := s.limitedLog()
	var pe *Error
	switch {
	case errors.Is(err, errHandled):
		return
	case errors.As(err, &pe):
		s.proxyRefused(pe)
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
	return s.h.LimitLog.With(attrs...)
}

// isTimeout reports whether err is a deadline expiring (a socket's or a
// dial's).
func isTimeout(err error) bool {
	return errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, context.DeadlineExceeded)
}

func (s *session) upstreamLost(err error) error {
	return fatalf(codeConnectionFailure, "dbproxy lost the connection to the database server", err)
}

// readServer reads one message from the server during startup. A host
// that closes or stays silent before its first message is skipped while
// other hosts are left and the client has seen nothing of it.
func (s *session) readServer() (byte, []byte, error) {
	typ, body, buf, err := readMessage(s.sbr, s.buf, startupMaxBody)
	s.buf = buf
	if err != nil {
		if s.awaitingServer && s.moreHosts && !s.clientHeard {
			s.awaitingServer = false
			s.dropServer()
			return 0, nil, &proxy.HostSkipped{Err: fmt.Errorf("no answer to the startup: %w", err)}
		}
		return 0, nil, s.upstreamLost(err)
	}
	if s.awaitingServer {
		s.awaitingServer = false
		_ = s.RawServer.SetDeadline(s.serverDeadline)
	}
	return typ, body, nil
}

// readClient reads one message from the client during authentication.
func (s *session) readClient() (byte, []byte, error) {
	typ, body, buf, err := readMessage(s.cbr, s.buf, startupMaxBody)
	s.buf = buf
	var me *proxy.MalformedError
	if errors.As(err, &me) {
		return 0, nil, fatalf(codeProtocolViolation, me.Msg, nil)
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
	s.clientHeard = s.Server != nil
	return err
}

func (s *session) info() SessionInfo {
	params := make(map[string]string, len(s.startup.params)/2)
	for i := 0; i+1 < len(s.startup.params); i += 2 {
		params[s.startup.params[i]] = s.startup.params[i+1]
	}
	who := proxy.NewPrincipal(s.client, s.h.opts.Name, s.id)
	who.User, who.Database = s.startup.param("user"), s.startup.database()
	return SessionInfo{
		User:          s.startup.param("user"),
		Database:      s.startup.database(),
		StartupParams: params,
		ServerParams:  s.srvParams,
		SessionBase:   proxy.SessionBase{Principal: who, Logger: s.log, Observer: s.h.Obs},
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
	n, ok := bodyLen(hdr, maxBody)
	if !ok {
		return 0, nil, buf, invalid(hdr)
	}
	_, _ = r.Discard(5)
	if cap(buf) < n {
		buf = make([]byte, n)
	}
	body = buf[:n]
	if _, err := io.ReadFull(r, body); err != nil {
		return 0, nil, buf, eofIsUnexpected(err)
	}
	return typ, body, buf, nil
}
