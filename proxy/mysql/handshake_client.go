package mysql

import (
	"bufio"
	"bytes"
	"context"
	"log/slog"

	gomysql "github.com/go-mysql-org/go-mysql/mysql"

	"github.com/dbproxy/dbproxy/internal/rawio"
	"github.com/dbproxy/dbproxy/proxy"
)

// connectionPhase greets the client (from the greeting template, or with
// the server's own handshake), reads its HandshakeResponse, connects the
// server if that was deferred, forwards the response and relays the
// authentication exchange.
func (s *session) connectionPhase(ctx context.Context) error {
	// With a greeting template the client is greeted by the proxy and the
	// server is dialled only once the client has sent its
	// HandshakeResponse; without one (the listener's first connection)
	// the server is dialled first and its greeting becomes the template.
	tmpl := s.h.greeting.Load()
	if tmpl != nil {
		s.greetID = s.h.ids.reserve()
		s.AtEnd(func() { s.h.ids.release(s.greetID) })
		if err := s.greet(tmpl); err != nil {
			return err
		}
	} else if err := s.connectUpstream(ctx); err != nil {
		return err
	}
	s.AtEnd(func() { clear(s.hr) }) // it holds the auth response until forwarded
	if err := s.readClientResponse(ctx); err != nil {
		return err
	}
	if tmpl != nil {
		if err := s.connectDeferred(ctx, tmpl); err != nil {
			return err
		}
	}
	s.log = s.log.With(slog.String("user", s.resp.user), slog.String("database", s.resp.database),
		slog.Uint64("conn_id", uint64(s.hs.connID)))
	if s.greetID != 0 {
		s.log = s.log.With(slog.Uint64("greeting_conn_id", uint64(s.greetID)))
	}
	if err := s.forwardResponse(ctx); err != nil {
		return err
	}
	return s.authenticate()
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

// dialServer dials the server (see firstPacket) and reads its handshake,
// which it offers to the handler as greeting template. A server that
// answers with an ERR ("Too many connections", "Host is blocked") has its
// ERR relayed to the client with the sequence id the client expects (hs
// nil).
func (s *session) dialServer(ctx context.Context) (uint8, *handshake, error) {
	seq, p, err := s.firstPacket(ctx)
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
	s.h.ids.bind(s.greetID, real.connID, s.serverKey())
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
		tconn := rawio.TLSServer(s.client, s.cbr, s.h.opts.TLS)
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
	if s.h.Up.UsesTLS() {
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
		if _, err := s.Server.Write(pkt); err != nil {
			return s.upstreamLost(err)
		}
		tctx, cancel := context.WithTimeout(ctx, s.h.Up.ConnectTimeout())
		// Through a record reader, so that the relay can park the idle
		// leg (rawio.TLSConn).
		tconn := rawio.TLSClient(s.RawServer, s.upHost.TLS())
		err := tconn.HandshakeContext(tctx)
		cancel()
		if err != nil {
			return fatalf(codeSSLConnection, stateGeneral, "dbproxy: TLS handshake with the database server failed", err)
		}
		if !s.SetServer(s.RawServer, tconn) {
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
	_, err := s.Server.Write(pkt)
	clear(pkt) // holds the auth response
	if err != nil {
		return s.upstreamLost(err)
	}
	s.d = clientSeq - serverSeq
	return nil
}
