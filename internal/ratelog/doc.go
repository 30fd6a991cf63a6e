// Package ratelog owns a [log/slog.Handler] wrapper that rate-limits
// records per message, so that a burst of identical events (connections
// refused during a database outage, a flood of stalled handshakes) costs a
// bounded number of log lines.
//
// Records with the same level and message share one token bucket: the
// first Burst pass at once, then at most one per Interval. What is held
// back is counted, and every Report period a summary record — "suppressed
// similar log messages" with the message and the count — goes to the
// wrapped handler. Attributes do not make records distinct: a refused
// connection from another address is the same message.
//
// The wrapper keeps one bucket per distinct message, so it is meant for
// the constant messages of the code, not for text built from input.
// It starts no goroutine; the summary runs on a timer armed only while
// records are being held back.
//
// It must not import any dbproxy package.
package ratelog
