package postgres

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/dbproxy/dbproxy/internal/rawio"
	"github.com/dbproxy/dbproxy/proxy"
)

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
		if err := s.startClientTLS(ctx, s.cbr, true); err != nil {
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
			if err := s.sslRequest(ctx); err != nil {
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
			return s.startupMessage(code, payload)
		}
	}
}

// sslRequest answers an SSLRequest: 'N' without TLS configured, else 'S'
// and the TLS handshake.
func (s *session) sslRequest(ctx context.Context) error {
	if s.clientTLS {
		return fatalf(codeProtocolViolation, "SSLRequest on an encrypted connection", nil)
	}
	if s.h.opts.TLS == nil {
		_, err := s.client.Write([]byte{'N'})
		return err
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
	return s.startClientTLS(ctx, nil, false)
}

// startupMessage takes the client's StartupMessage (protocol 3.x).
func (s *session) startupMessage(code uint32, payload []byte) error {
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

// startClientTLS runs the server side of a TLS handshake on the client's
// socket, whose first bytes pre may hold already (nil: none). The
// connection knows when it holds no input of its own, so that the relay
// can park it like a plain socket (rawio.TLSConn).
func (s *session) startClientTLS(ctx context.Context, pre *bufio.Reader, direct bool) error {
	tconn := rawio.TLSServer(s.client, pre, s.h.opts.TLS)
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

// connectUpstream dials host, one of left hosts still to try, and sends
// the client's startup parameters, as protocol 3.0. A host that cannot be
// reached is skipped ([proxy.HostSkipped]).
func (s *session) connectUpstream(ctx context.Context, deadline time.Time, host *proxy.UpstreamHost, left int) error {
	dctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	hctx, hcancel := s.h.Up.HostContext(dctx, left)
	conn, isTLS, err := s.h.dialHost(hctx, host, "")
	hcancel()
	if err != nil {
		return &proxy.HostSkipped{Err: err}
	}
	s.upHost = host
	raw := conn
	if tc, ok := conn.(*rawio.TLSConn); ok {
		raw = tc.NetConn()
	}
	if !s.SetServer(raw, conn) {
		_ = conn.Close()
		return errHandled
	}
	s.serverTLS = isTLS
	// Until the server's first message, a host that accepted the
	// connection but does not answer (a hung old writer, a balancer
	// without a backend) gets only its share of the time when hosts are
	// left, as for the dial (readServer).
	first := deadline
	if left > 1 {
		hctx, hcancel := s.h.Up.HostContext(dctx, left)
		if d, ok := hctx.Deadline(); ok && d.Before(first) {
			first = d
		}
		hcancel()
	}
	s.awaitingServer, s.serverDeadline = true, deadline
	_ = raw.SetDeadline(first)
	s.sbr = bufio.NewReaderSize(conn, 1024)
	if _, err := conn.Write(appendStartupMessage(nil, protocolVersion30, s.startup.params)); err != nil {
		return s.upstreamLost(err)
	}
	return nil
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
			t := &cancelTarget{host: s.upHost, addr: s.RawServer.RemoteAddr().String(),
				upstreamPID: k.ProcessID, upstreamSecret: k.SecretKey}
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
			if err := s.checkWritable(); err != nil {
				return err
			}
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
