// Package netpark lets an idle connection wait for input without a
// goroutine. [Poller.Park] registers a socket; when it becomes readable
// (or is hung up, or fails) the poller calls the wake function once, which
// starts a goroutine to read it. A relay whose both directions are idle
// thus holds no goroutine stack at all, only its state.
//
// It is hand-written on epoll because Go's own netpoller has no callback
// API: the only way to wait on it is a goroutine blocked in Read. The
// poller's own epoll instance is independent of the runtime's registration
// of the same descriptors (which is edge-triggered and keeps working: a
// Read after the wake reads first and only then waits). The poller waits
// on its epoll descriptor through the runtime's netpoller, so it needs no
// thread of its own.
//
// Outside Linux [New] returns an error and callers do not park.
//
// It owns only the poller; it must not import any dbproxy package.
package netpark
