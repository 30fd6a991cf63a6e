package postgres

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/dbproxy/dbproxy/proxy"
)

// relay runs the two pumps until the session ends, then says goodbye to
// whichever side is still there.
//
// The pumps run under a proxy.Relay on the detached connection: once the
// session has had no request outstanding for proxy.ParkDelay, each pump
// reading a plain TCP socket parks it on the server's poller at a message
// boundary and its goroutine returns; input starts a fresh goroutine that
// goes on from the pump's state. An idle session thus holds no goroutine.
// Whichever pump ends last ends the session.
func (s *session) relay(ctx context.Context, hooks *SessionHooks) {
	// server -> client
	up := newPump(s.server, s.client, proxy.Buffered(s.sbr))
	up.acct = s.acct
	var ready MessageTypes
	ready.Add('Z')
	// client -> server
	down := newPump(s.client, s.server, proxy.Buffered(s.cbr))
	down.fromClient = true
	down.allowFlush()
	down.acct = s.acct
	down.maxBody = s.h.opts.MaxMessageSize
	if hooks != nil {
		up.setHooks(hooks.BackendTypes, hooks.Backend, ready)
		down.setHooks(hooks.FrontendTypes, hooks.Frontend, MessageTypes{})
	} else {
		up.full = ready
	}
	s.cbr, s.sbr = nil, nil
	// Startup state the relay does not need: an idle session keeps
	// only what it uses.
	s.startup, s.srvParams = nil, nil

	idleNow := func() bool { return s.acct.word.Load() == 0 }
	r := proxy.NewRelay(s.pc, proxy.RelayLeg{
		Run: func() error { return s.runPump(up) }, Conn: s.rawServer, Parkable: !s.serverTLS,
		AtRest: up.atRest, Release: up.release, IsReadDeadline: proxy.IsReadDeadline,
		// The server->client pump parks only when no request is
		// outstanding: a busy session waits for its answers in the runtime.
		MayPark: idleNow,
	}, proxy.RelayLeg{
		Run: func() error { return s.runPump(down) }, Conn: s.rawClient, Parkable: !s.clientTLS,
		AtRest: down.atRest, Release: down.release, IsReadDeadline: proxy.IsReadDeadline,
		// Not with an extended-protocol batch or a COPY half sent.
		MayPark: func() bool { return s.acct.word.Load()&(partialBit|closingBit) == 0 },
	}, idleNow, finalWriteTimeout)
	s.acct.onBusy, s.acct.onIdle = r.Busy, r.Idle
	s.relayer.Store(r)
	s.detached = true

	// A drain closes the session when it is idle at that moment; a busy one
	// is closed by the server->client pump at its next idle ReadyForQuery.
	s.pc.OnDrain(func() {
		if s.acct.closeIfIdle() {
			r.Stop(0)
			r.Stop(1)
		}
	})
	r.Start(ctx, func(i int, _ error) {
		if i == 0 && hooks != nil && hooks.Close != nil {
			// The server side is done: a Frontend hook waiting for the
			// server's answer to something it injected must give up.
			hooks.Close()
		}
	}, func(errs [2]error) {
		defer s.cleanup()
		defer up.release()
		defer down.release()
		s.endRelay(ctx, up, down, errs[0], errs[1])
	})
}

// endRelay says goodbye to whichever side is still there.
func (s *session) endRelay(ctx context.Context, up, down *pump, upErr, downErr error) {
	if ctx.Err() != nil {
		return // closed hard: sockets are gone
	}
	_ = s.rawClient.SetDeadline(time.Now().Add(finalWriteTimeout))
	_ = s.rawServer.SetDeadline(time.Now().Add(finalWriteTimeout))
	canWriteClient := !up.dstBroken && !up.midMessage()
	canWriteServer := !down.dstBroken && !down.midMessage()
	var toClient error // FATAL for the client, if any
	terminate := canWriteServer

	var mal *proxy.MalformedError
	var hookErr *proxy.HookError
	switch {
	case s.acct.closing():
		toClient = drainError(s.pc.DrainReason())
	case errors.Is(downErr, errTerminated):
		terminate = false // forwarded already
	case errors.As(downErr, &mal):
		s.log.LogAttrs(ctx, slog.LevelWarn, "malformed message from client; closing", slog.String("reason", mal.Msg))
		toClient = fatalf(codeProtocolViolation, mal.Msg, nil)
	case errors.As(downErr, &hookErr), errors.As(upErr, &hookErr):
		s.log.LogAttrs(ctx, slog.LevelWarn, "message hook failed; closing", slog.Any("error", hookErr.Err))
		toClient = hookErr.Err
	case proxy.UpstreamFailed(upErr, downErr):
		terminate = false
		if up.lastType == 'E' && !up.midMessage() {
			// The server said why (e.g. 57P01 after pg_terminate_backend).
			s.log.LogAttrs(ctx, slog.LevelInfo, "server ended the session")
		} else {
			s.log.LogAttrs(ctx, slog.LevelWarn, "lost the connection to the database server",
				slog.Any("error", proxy.FirstReal(upErr, downErr)))
			toClient = s.upstreamLost(nil)
		}
	default:
		// Client gone: routine, not logged above debug.
		s.log.LogAttrs(ctx, slog.LevelDebug, "client disconnected", slog.Any("error", proxy.FirstReal(downErr, upErr)))
		canWriteClient = false
	}
	if toClient != nil && canWriteClient {
		_, _ = s.client.Write(appendError(nil, toClient))
	}
	if terminate {
		_, _ = s.server.Write([]byte{'X', 0, 0, 0, 4})
	}
}

// runPump runs p, turning a panic into an error that ends only this
// session.
func (s *session) runPump(p *pump) error { return proxy.RunRecovered(s.log, p.run) }
