package proxy

import (
	"context"
	"net"
	"sync/atomic"
	"time"
)

// SessionLife is the life of a proxied session, the same in both wire
// protocols: its two sockets ([Sockets]), the functions run when it ends
// (last added first), and the hand-over to a [Relay], which ends the
// session on its own goroutines once the connection is detached. A
// protocol's session embeds it; the serving goroutine calls Begin first
// and defers the function Begin returns.
type SessionLife struct {
	// RawServer is the upstream socket (deadlines, Close) and Server the
	// connection the session talks over (RawServer, or TLS over it); both
	// are nil until SetServer.
	RawServer, Server net.Conn

	socks    *Sockets
	endFns   []func()
	detached bool                  // the relay ends the session on its own goroutines
	relay    atomic.Pointer[Relay] // set while relaying
}

// Begin starts the session of the accepted connection c, whose
// [Handler.ServeConn] got ctx. A cancelled ctx (server Close, or Shutdown
// timing out) closes both sockets at once. The function returned ends the
// session, unless a relay took it over ([SessionLife.Relay]).
func (l *SessionLife) Begin(ctx context.Context, c *Conn) (end func()) {
	l.socks = NewSockets(c.NetConn())
	l.AtEnd(c.AfterCancel(ctx, l.hardClose))
	l.AtEnd(l.socks.CloseServer)
	return func() {
		if !l.detached {
			l.End()
		}
	}
}

// hardClose closes both sockets; parked ones are woken first: a socket
// must not be closed while parked.
func (l *SessionLife) hardClose() {
	if r := l.relay.Load(); r != nil {
		r.KickAll()
	}
	l.socks.HardClose()
}

// AtEnd adds f to the functions run, last added first, when the session
// ends.
func (l *SessionLife) AtEnd(f func()) { l.endFns = append(l.endFns, f) }

// End runs the AtEnd functions.
func (l *SessionLife) End() {
	for i := len(l.endFns) - 1; i >= 0; i-- {
		l.endFns[i]()
	}
	l.endFns = nil
}

// SetServer records the upstream socket raw (see [Sockets.SetServer]) and
// the connection conn the session talks over (raw, or TLS over it). It
// reports false, and the caller must close raw, if the session was
// hard-closed meanwhile.
func (l *SessionLife) SetServer(raw, conn net.Conn) bool {
	if !l.socks.SetServer(raw) {
		return false
	}
	l.RawServer, l.Server = raw, conn
	return true
}

// Relay hands the session over to r and starts it (see [Relay.Start]).
// A drain closes the session at once if closeIfIdle marks it closing
// (idle at that moment); a busy one is closed by its protocol once it
// becomes idle. The session ends when both legs have, their buffers
// released; finish, unless the session was closed hard, says goodbye to
// whichever side is still there, under a fresh deadline of
// FinalWriteTimeout on both sockets.
func (l *SessionLife) Relay(ctx context.Context, r *Relay, closeIfIdle func() bool,
	onLegEnd func(i int, err error), finish func(errs [2]error)) {
	r.c.OnDrain(func() {
		if closeIfIdle() {
			r.Stop(0)
			r.Stop(1)
		}
	})
	l.AtEnd(r.legs[0].Release)
	l.AtEnd(r.legs[1].Release)
	l.relay.Store(r)
	l.detached = true
	// The relay runs on goroutines of its own and the serving goroutine
	// returns: its stack, grown by the handshake (TLS, SCRAM, the
	// encryption layer's setup), is freed, not kept by a leg that waits
	// for the client for hours (one that cannot park: a TLS leg whose
	// crypto/tls still holds input). Detaching
	// first keeps the server from closing the connection meanwhile.
	r.c.Detach()
	go r.Start(ctx, onLegEnd, func(errs [2]error) {
		defer l.End()
		if ctx.Err() != nil {
			return // closed hard: sockets are gone
		}
		l.socks.SetDeadline(time.Now().Add(FinalWriteTimeout))
		finish(errs)
	})
}
