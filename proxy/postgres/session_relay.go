package postgres

import (
	"context"
	"errors"
	"io"
	"log/slog"

	"github.com/dbproxy/dbproxy/proxy"
	"github.com/dbproxy/dbproxy/proxy/relay"
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
	var back, front MessageTypes
	var backFn, frontFn MessageFunc
	if hooks != nil {
		back, backFn, front, frontFn = hooks.BackendTypes, hooks.Backend, hooks.FrontendTypes, hooks.Frontend
	}
	// server -> client
	upF := newMsgFramer(s.acct, false, DefaultMaxMessageSize, back, backFn)
	var toClient io.Writer = s.client
	// client -> server
	downF := newMsgFramer(s.acct, true, s.h.opts.MaxMessageSize, front, frontFn)
	if hooks != nil {
		// Frontend hooks may answer the client themselves (Writer.Answer).
		a := &answers{client: relay.NewShared(s.client)}
		toClient, upF.answers, downF.answers = a.client, a, a
		downF.w.answer = downF.answer
	}
	up := newPump(s.Server, toClient, upF, proxy.Buffered(s.sbr))
	down := newPump(s.client, s.Server, downF, proxy.Buffered(s.cbr))
	up.CountReads(s.h.CountFromUpstream)
	down.CountReads(s.h.CountFromClient)
	s.cbr, s.sbr = nil, nil
	// Startup state the relay does not need: an idle session keeps
	// only what it uses.
	s.startup, s.srvParams = nil, nil

	// Hooks announce their waits (blocking.Announce with the session's
	// context: pgcrypt's catalog and search_path reads, key loads), so a
	// session with hooks may run on an event loop too.
	//
	// The server->client pump parks only when no request is outstanding:
	// a busy session waits for its answers in the runtime. The
	// client->server one not with an extended-protocol batch or a COPY
	// half sent.
	r := proxy.NewRelay(s.pc,
		up.Leg(s.runPump, s.RawServer, s.serverTLS, s.acct.Idle, proxy.IsReadDeadline),
		down.Leg(s.runPump, s.rawClient, s.clientTLS, s.acct.Quiet, proxy.IsReadDeadline),
		s.acct.Idle, true)
	s.acct.Notify(r.Busy, r.Idle)

	// A busy session is closed by the server->client pump at its next
	// idle ReadyForQuery.
	s.Relay(ctx, r, s.acct.closeIfIdle, func(i int, _ error) {
		if i == 0 && hooks != nil && hooks.Close != nil {
			// The server side is done: a Frontend hook waiting for the
			// server's answer to something it injected must give up.
			hooks.Close()
		}
	}, func(errs [2]error) {
		s.endRelay(ctx, up, down, upF.lastType, errs[0], errs[1])
	})
}

// endRelay says goodbye to whichever side is still there.
func (s *session) endRelay(ctx context.Context, up, down *relay.Pump, upLast byte, upErr, downErr error) {
	canWriteClient := !up.Broken() && !up.MidMessage()
	canWriteServer := !down.Broken() && !down.MidMessage()
	var toClient error // FATAL for the client, if any
	terminate := canWriteServer

	var mal *proxy.MalformedError
	var hookErr *proxy.HookError
	switch {
	case s.acct.Closing():
		toClient = drainError(s.pc.DrainReason())
	case errors.Is(downErr, errTerminated):
		terminate = false // forwarded already
	case errors.Is(downErr, errAnswerWrite):
		proxy.LogClientGone(ctx, s.log, upErr, downErr)
		canWriteClient = false
	case errors.As(downErr, &mal):
		s.log.LogAttrs(ctx, slog.LevelWarn, "malformed message from client; closing", slog.String("reason", mal.Msg))
		toClient = fatalf(codeProtocolViolation, mal.Msg, nil)
	case errors.As(downErr, &hookErr), errors.As(upErr, &hookErr):
		s.log.LogAttrs(ctx, slog.LevelWarn, "message hook failed; closing", slog.Any("error", hookErr.Err))
		toClient = hookErr.Err
	case proxy.UpstreamFailed(upErr, downErr):
		terminate = false
		// Not lost if the server said why (e.g. 57P01 after pg_terminate_backend).
		if proxy.LogServerEnd(ctx, s.log, upLast == 'E' && !up.MidMessage(), upErr, downErr) {
			toClient = s.upstreamLost(nil)
		}
	default:
		proxy.LogClientGone(ctx, s.log, upErr, downErr)
		canWriteClient = false
	}
	if toClient != nil && canWriteClient {
		_, _ = s.client.Write(appendError(nil, toClient))
	}
	if terminate {
		_, _ = s.Server.Write([]byte{'X', 0, 0, 0, 4})
	}
}

// runPump runs a pump's Run or Step, turning a panic into an error that
// ends only this session.
func (s *session) runPump(run func() error) error { return proxy.RunRecovered(s.log, run) }
