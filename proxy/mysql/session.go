package mysql

import (
	"bufio"
	"context"
	"errors"
	"log/slog"
	"net"
	"os"
	"time"

	"github.com/dbproxy/dbproxy/proxy"
)

// errWriteTimeout bounds writing the ERR that ends a connection phase.
const errWriteTimeout = time.Second

// errHandled ends a session whose client has already been answered (or
// must not be: a dropped TLS negotiation).
var errHandled = errors.New("handled")

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

	serverTLS bool
	upHost    *proxy.UpstreamHost // the upstream host the session is on
	sbr       *bufio.Reader       // connection-phase reader of server

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

	proxy.SessionLife // server connection, sockets, cleanup, hand-over to the relay
}

func (s *session) serve(ctx context.Context) {
	if err := s.pc.Admission(); err != nil { // over a listener limit
		s.endStartup(fatalf(codeTooManyConnections, stateTooManyConnections, err.Error(), nil))
		return
	}
	// The end of the session: here, or, once the relay detached the
	// connection, when its last pump ends (see relay).
	defer s.Begin(ctx, s.pc)()

	s.deadline = time.Now().Add(s.h.HandshakeTimeout)
	_ = s.rawClient.SetDeadline(s.deadline)
	s.cbr = bufio.NewReaderSize(s.client, 1024)
	if s.pc.Draining() {
		s.endStartup(fatalf(codeServerShutdown, stateConnection, "dbproxy is shutting down", nil))
		return
	}
	if err := s.connectionPhase(ctx); err != nil {
		s.endStartup(err)
		return
	}
	s.h.Obs.Handshake()
	clear(s.buf)
	// Connection-phase scratch and the bytes that went to the client: an
	// idle session need not keep them (the greeting may be the listener's
	// template for the next sessions: it stays).
	s.buf, s.out = nil, nil
	_ = s.rawClient.SetDeadline(time.Time{})
	_ = s.RawServer.SetDeadline(time.Time{})

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
			s.AtEnd(hooks.Close)
		}
	}
	s.log.LogAttrs(ctx, slog.LevelDebug, "session started",
		slog.Bool("client_tls", s.clientTLS), slog.Bool("upstream_tls", s.serverTLS))
	s.relay(ctx, hooks)
}

func (s *session) info() SessionInfo {
	who := proxy.NewPrincipal(s.client, s.h.opts.Name, uint64(s.hs.connID))
	who.User, who.Database = s.resp.user, s.resp.database
	return SessionInfo{
		User:          s.resp.user,
		Database:      s.resp.database,
		ConnectionID:  s.hs.connID,
		ServerVersion: s.hs.serverVersion,
		Capabilities:  s.caps,
		Charset:       s.resp.charset,
		SessionBase:   proxy.SessionBase{Principal: who, Logger: s.log, Observer: s.h.Obs},
	}
}

// endStartup reports a connection-phase failure to the client (if it is a
// wire error) and to the log (unless it is routine), rate-limited.
func (s *session) endStartup(err error) {
	log := s.limitedLog()
	var me *Error
	var mal *proxy.MalformedError
	switch {
	case errors.Is(err, errHandled):
		return
	case errors.As(err, &me):
		s.proxyRefused(me)
		level := slog.LevelDebug
		if me.Cause != nil {
			level = slog.LevelWarn
		}
		log.LogAttrs(context.Background(), level, "connection refused",
			slog.Int("code", int(me.Code)), slog.String("reason", me.Message), slog.Any("error", me.Cause))
	case errors.As(err, &mal):
		log.LogAttrs(context.Background(), slog.LevelWarn, "malformed packet during the connection phase",
			slog.String("reason", mal.Msg))
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

// readServer reads one packet from the server during the connection phase.
func (s *session) readServer() (uint8, []byte, error) {
	seq, p, buf, err := readPacket(s.sbr, s.buf, startupMaxPayload)
	s.buf = buf
	if err != nil {
		var mal *proxy.MalformedError
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
	_, err := s.Server.Write(pkt)
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
