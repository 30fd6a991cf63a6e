package proxy

import (
	"log/slog"
	"time"

	"github.com/dbproxy/dbproxy/internal/ratelog"
)

// ListenerLogs returns the logger of a listener named name (l, or one
// that discards, with the name as an attribute) and its rate-limited twin
// for connection-phase failures, which come in floods during an outage.
func ListenerLogs(l *slog.Logger, name string) (log, limited *slog.Logger) {
	if l == nil {
		l = slog.New(slog.DiscardHandler)
	}
	if name != "" {
		l = l.With(slog.String("listener", name))
	}
	return l, slog.New(ratelog.New(l.Handler(), ratelog.Options{}))
}

// PositiveOr returns d if it is positive, def otherwise.
func PositiveOr(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}
