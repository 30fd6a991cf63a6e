package proxy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"runtime/debug"
)

// Errors that end one pump of a two-way relay (see [Relay]), shared by the
// wire packages so that they classify the end of a session alike. They are
// built on the cold path only, once per ended pump.

// ErrDrained ends a server->client pump whose response left the session
// idle during a drain: the response was forwarded and the session should
// end.
var ErrDrained = errors.New("session drained")

// WriteError marks a failed write to a pump's destination: the peer that
// pump writes to is gone, or its write deadline passed.
type WriteError struct{ Err error }

func (e *WriteError) Error() string { return "write: " + e.Err.Error() }
func (e *WriteError) Unwrap() error { return e.Err }

// HookError wraps an error returned by a protocol hook that ends the
// session.
type HookError struct{ Err error }

func (e *HookError) Error() string { return "hook: " + e.Err.Error() }
func (e *HookError) Unwrap() error { return e.Err }

// MalformedError is a protocol violation in the stream a pump or a
// handshake reads. Msg describes it without quoting the stream, so it is
// safe to send to the client.
type MalformedError struct{ Msg string }

func (e *MalformedError) Error() string { return e.Msg }

// PanicError is a panic recovered by [RunRecovered].
type PanicError struct{ Value any }

func (e *PanicError) Error() string { return fmt.Sprintf("relay panicked: %v", e.Value) }

// RunRecovered runs one pump of a relay. A panic in run is logged to log,
// with its stack, and returned as a *[PanicError], so that it ends only
// this session.
func RunRecovered(log *slog.Logger, run func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			log.LogAttrs(context.Background(), slog.LevelError, "relay panicked",
				slog.Any("panic", r), slog.String("stack", string(debug.Stack())))
			err = &PanicError{Value: r}
		}
	}()
	return run()
}

// IsReadDeadline reports whether err, returned by a pump, is a read
// deadline expiring: not a write's ([WriteError]), nor one a hook met
// ([HookError]).
func IsReadDeadline(err error) bool {
	var we *WriteError
	var he *HookError
	return errors.Is(err, os.ErrDeadlineExceeded) && !errors.As(err, &we) && !errors.As(err, &he)
}

// UpstreamFailed reports whether a session ended because its server
// connection failed, given what ended its server->client pump (upErr) and
// its client->server pump (downErr): a read error on the server->client
// side other than a deadline (our own interrupt) or [ErrDrained], or a
// write error other than a deadline on the client->server side.
func UpstreamFailed(upErr, downErr error) bool {
	var we *WriteError
	if errors.As(downErr, &we) && !errors.Is(we.Err, os.ErrDeadlineExceeded) {
		return true
	}
	if upErr == nil || errors.As(upErr, &we) || errors.Is(upErr, os.ErrDeadlineExceeded) ||
		errors.Is(upErr, ErrDrained) {
		return false
	}
	return true
}

// LogServerEnd logs the end of a session whose server connection failed
// (see [UpstreamFailed]): at info if the server said why (its last message
// was an error), otherwise as a lost connection at warning. It reports
// whether the connection was lost, which the client must then be told.
func LogServerEnd(ctx context.Context, log *slog.Logger, saidWhy bool, upErr, downErr error) (lost bool) {
	if saidWhy {
		log.LogAttrs(ctx, slog.LevelInfo, "server ended the session")
		return false
	}
	log.LogAttrs(ctx, slog.LevelWarn, "lost the connection to the database server",
		slog.Any("error", FirstReal(upErr, downErr)))
	return true
}

// LogClientGone logs the end of a session whose client went away:
// routine, not logged above debug.
func LogClientGone(ctx context.Context, log *slog.Logger, upErr, downErr error) {
	log.LogAttrs(ctx, slog.LevelDebug, "client disconnected", slog.Any("error", FirstReal(downErr, upErr)))
}

// ClientErrorText is the Error text of a wire package's client-facing
// error: its message, then the cause (for the proxy's log only), if any.
func ClientErrorText(msg string, cause error) string {
	if cause != nil {
		return msg + ": " + cause.Error()
	}
	return msg
}
