package proxy

import (
	"context"
	"log/slog"
)

// Interceptor is the hook point a wire package offers the layer above its
// relay (the encryption layer), with the package's own session description
// (Info) and hooks (Hooks). A handler without one forwards every message
// as raw bytes, at no cost.
type Interceptor[Info, Hooks any] interface {
	// NewSession is called once per session, after authentication and
	// before the first query, from the session's goroutine. nil hooks
	// relay the session untouched; an error ends the session with the
	// protocol's error message.
	NewSession(ctx context.Context, info Info) (*Hooks, error)
}

// SessionBase is what both wire protocols tell an [Interceptor] of every
// session, whatever else their session description holds.
type SessionBase struct {
	// Principal is who the session is: listener, user, database, client
	// address and certificate.
	Principal Principal
	// Logger carries the connection's attributes.
	Logger *slog.Logger
	// Observer counts the listener's statements (never nil).
	Observer Observer
}
