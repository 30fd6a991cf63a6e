package postgres

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"runtime/debug"
	"time"

	"github.com/dbproxy/dbproxy/proxy"
)

// aLongTimeAgo is a deadline in the past: setting it interrupts a blocked
// Read without closing the connection.
var aLongTimeAgo = time.Unix(1, 0)

// relay runs the two pumps until the session ends, then says goodbye to
// whichever side is still there.
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
	defer up.release()
	defer down.release()

	// A drain closes the session when it is idle at that moment; a busy one
	// is closed by the server->client pump at its next idle ReadyForQuery.
	s.pc.OnDrain(func() {
		if s.acct.closeIfIdle() {
			_ = s.rawClient.SetReadDeadline(aLongTimeAgo)
			_ = s.rawServer.SetReadDeadline(aLongTimeAgo)
		}
	})

	upDone := make(chan error, 1)
	go func() {
		err := s.runPump(up)
		if hooks != nil && hooks.Close != nil {
			// The server side is done: a Frontend hook waiting for the
			// server's answer to something it injected must give up.
			hooks.Close()
		}
		// Stop the client->server pump: its reads and, bounded, its writes.
		_ = s.rawClient.SetReadDeadline(aLongTimeAgo)
		_ = s.rawServer.SetWriteDeadline(time.Now().Add(finalWriteTimeout))
		upDone <- err
	}()
	downErr := s.runPump(down)
	_ = s.rawServer.SetReadDeadline(aLongTimeAgo)
	_ = s.rawClient.SetWriteDeadline(time.Now().Add(finalWriteTimeout))
	upErr := <-upDone

	if ctx.Err() != nil {
		return // closed hard: sockets are gone
	}
	_ = s.rawClient.SetDeadline(time.Now().Add(finalWriteTimeout))
	_ = s.rawServer.SetDeadline(time.Now().Add(finalWriteTimeout))
	canWriteClient := !up.dstBroken && !up.midMessage()
	canWriteServer := !down.dstBroken && !down.midMessage()
	var toClient error // FATAL for the client, if any
	terminate := canWriteServer

	var mal *malformedError
	var hookErr *hookError
	switch {
	case s.acct.closing():
		toClient = drainError(s.pc.DrainReason())
	case errors.Is(downErr, errTerminated):
		terminate = false // forwarded already
	case errors.As(downErr, &mal):
		s.log.LogAttrs(ctx, slog.LevelWarn, "malformed message from client; closing", slog.String("reason", mal.msg))
		toClient = fatalf(codeProtocolViolation, mal.msg, nil)
	case errors.As(downErr, &hookErr), errors.As(upErr, &hookErr):
		s.log.LogAttrs(ctx, slog.LevelWarn, "message hook failed; closing", slog.Any("error", hookErr.err))
		toClient = hookErr.err
	case upstreamFailed(upErr, downErr):
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

// hookError wraps an error returned by a MessageFunc.
type hookError struct{ err error }

func (e *hookError) Error() string { return "message hook: " + e.err.Error() }
func (e *hookError) Unwrap() error { return e.err }

// runPump runs p, turning a panic into an error that ends only this
// session.
func (s *session) runPump(p *pump) (err error) {
	defer func() {
		if r := recover(); r != nil {
			s.log.LogAttrs(context.Background(), slog.LevelError, "relay panicked",
				slog.Any("panic", r), slog.String("stack", string(debug.Stack())))
			err = fmt.Errorf("relay panicked: %v", r)
		}
	}()
	return p.run()
}

// upstreamFailed reports whether the session ended because the server
// connection failed: a read error (other than our own interrupt) on the
// server->client side, or a write error on the client->server side.
func upstreamFailed(upErr, downErr error) bool {
	var we *writeError
	if errors.As(downErr, &we) && !errors.Is(we.err, os.ErrDeadlineExceeded) {
		return true
	}
	if upErr == nil || errors.As(upErr, &we) || errors.Is(upErr, os.ErrDeadlineExceeded) ||
		errors.Is(upErr, errDrained) {
		return false
	}
	return true
}
