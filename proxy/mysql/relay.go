package mysql

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	gomysql "github.com/go-mysql-org/go-mysql/mysql"

	"github.com/dbproxy/dbproxy/proxy"
	"github.com/dbproxy/dbproxy/proxy/relay"
)

// comQuit returns COM_QUIT, sent to the server when the proxy ends a
// session.
func comQuit() []byte { return []byte{1, 0, 0, 0, gomysql.COM_QUIT} }

// Sentinels that end a pump without an I/O error.
var (
	// errQuit: the client sent COM_QUIT, which was forwarded.
	errQuit = errors.New("client sent COM_QUIT")
	// errClosing: the session was marked closing (drain) before the next
	// command could be forwarded.
	errClosing = errors.New("session closing")
	// errDrained: a response left the session idle during a drain; it was
	// forwarded and the session should end.
	errDrained = proxy.ErrDrained
)

// clientWriteError is a failed write to the client by the client->server
// goroutine (a local reply).
type clientWriteError struct{ err error }

func (e *clientWriteError) Error() string { return "write to client: " + e.err.Error() }
func (e *clientWriteError) Unwrap() error { return e.err }

// cmdFramer is the client->server logic: it classifies each command,
// queues its exchange before the command is forwarded, refuses unknown
// commands and hands hooked ones to SessionHooks.Command.
type cmdFramer struct {
	framing
	q            *queue
	hooks        *SessionHooks
	deprecateEOF bool
	// kill, if set, translates the connection id of a KILL (see
	// connIDs.translateKill); commands that may be one are read whole.
	kill func(payload []byte) []byte

	mode      clientMode
	infileEnd bool      // the current packet ends LOCAL INFILE data
	x         *exchange // the current command's exchange, until end
	pushed    bool      // x was queued (the server->client side owns it)
	refuse    *Error    // reply for a refused command
	seq       uint8     // sequence id of the current packet
	quit      bool
}

// Start classifies a client packet (relay.Framer).
func (f *cmdFramer) Start(hdr []byte, n int, head []byte) (relay.Action, error) {
	seq := hdr[3]
	f.seq = seq
	mode, _, d := f.q.clientState()
	f.mode = mode
	switch mode {
	case modeInfile:
		f.infileEnd = n == 0
		return f.forward(hdr, -d), nil
	case modeAuth:
		return f.forward(hdr, -d), nil
	}
	if n == 0 {
		return 0, malformed("empty command packet")
	}
	cmd := head[0]
	resp := commandResponse(cmd)
	x := f.q.alloc()
	f.x, f.pushed = x, false
	x.nextSeq = seq + 1
	if resp == respInvalid {
		initExchange(x, head, respLocal)
		f.refuse = &Error{Code: codeUnknownCommand, State: stateConnection, Message: "Unknown command"}
		return relay.Drop, nil
	}
	initExchange(x, head, resp)
	x.DeprecateEOF = f.deprecateEOF
	if f.hooks != nil && f.hooks.Command != nil && f.hooks.Commands.Has(cmd) ||
		f.kill != nil && killCandidate(n, head) {
		return relay.Hook, nil
	}
	if resp == respNone {
		if !f.q.open() {
			return 0, errClosing
		}
	} else {
		if !f.q.push(x) {
			f.x = nil
			f.q.recycle(x)
			return 0, errClosing
		}
		f.pushed = true
	}
	f.quit = cmd == gomysql.COM_QUIT
	return f.forward(hdr, 0), nil
}

// Hooked hands a whole command to the hooks (relay.Framer).
func (f *cmdFramer) Hooked(hdr []byte, k int, payload []byte) error {
	return f.hooked(hdr[3], k, payload, &f.w)
}

func (f *cmdFramer) hooked(seq uint8, k int, payload []byte, w *Writer) error {
	x := f.x
	before := len(w.buf)
	w.reset(seq)
	if f.kill != nil && killCandidate(len(payload), payload) {
		payload = f.kill(payload)
	}
	var err error
	if f.hooks != nil && f.hooks.Command != nil && f.hooks.Commands.Has(x.Command) {
		err = f.hooks.Command(&x.Exchange, payload, w)
	} else {
		w.Packet(payload)
	}
	if err != nil {
		w.buf = w.buf[:before]
		var me *Error
		if !errors.As(err, &me) || me.Fatal {
			return &proxy.HookError{Err: err}
		}
		if x.resp != respNone {
			f.refuse = me
			x.nextSeq = seq + uint8(k)
		}
		return nil
	}
	if w.n == 0 && x.resp != respNone {
		return &proxy.HookError{Err: fmt.Errorf("BUG: command hook for command %#x forwarded nothing", x.Command)}
	}
	x.d = uint8(k - w.n)
	x.nextSeq = seq + uint8(k)
	// Read before push: once queued, x belongs to the server->client
	// goroutine, which may complete and reset it at any time.
	quit := x.Command == gomysql.COM_QUIT
	if x.resp != respNone {
		if !f.q.push(x) {
			w.buf = w.buf[:before]
			f.x = nil
			f.q.recycle(x)
			return errClosing
		}
		f.pushed = true
	}
	f.quit = quit
	return nil
}

// End finishes a client packet (relay.Framer).
func (f *cmdFramer) End() error {
	if f.mode == modeInfile && f.infileEnd {
		f.q.endInfile()
	}
	x := f.x
	f.x = nil
	if x != nil && !f.pushed {
		if me := f.refuse; me != nil {
			f.refuse = nil
			ok, err := f.q.reply(x, appendErr(nil, x.nextSeq, me))
			if err != nil {
				return &clientWriteError{err: err}
			}
			if !ok {
				return errClosing
			}
		} else {
			f.q.recycle(x)
		}
	}
	if f.quit {
		return errQuit
	}
	return nil
}

// Written is called after each write to the server (relay.Framer).
func (f *cmdFramer) Written() error { return nil }

// respFramer is the server->client logic: it follows each response with
// the exchange's state machine, hands watched packets to
// SessionHooks.Result and completes exchanges.
type respFramer struct {
	framing
	q            *queue
	hooks        *SessionHooks
	deprecateEOF bool

	// authCheck, if set, sees the first bytes of each server packet of a
	// COM_CHANGE_USER authentication exchange (other than OK and ERR); an
	// error ends the session with it.
	authCheck func(n int, head []byte) error

	x       *exchange // the exchange being answered; nil between responses
	pi      packetInfo
	lastERR bool   // the last packet started was an ERR
	lastOut uint8  // sequence id of the last packet sent to the client
	sent    bool   // a packet of the current exchange went to the client
	pre     []byte // local replies to send before the current packet
	// out takes the local replies ahead of a server packet (the pump).
	out interface{ Insert([]byte) }
}

// Start classifies a server packet (relay.Framer).
func (f *respFramer) Start(hdr []byte, n int, head []byte) (relay.Action, error) {
	seq := hdr[3]
	f.lastERR = n > 0 && head[0] == gomysql.ERR_HEADER
	if f.x == nil {
		f.x, f.pre = f.q.next(f.pre[:0])
		f.sent = false
		if len(f.pre) > 0 {
			f.out.Insert(f.pre) // local replies go before this packet
		}
	}
	x := f.x
	if x == nil {
		// Outside a response the server sends only an ERR before it closes
		// the connection (shutdown, idle timeout). Anything else means the
		// relay lost track of the protocol: stop rather than guess.
		if !f.lastERR {
			return 0, malformed("packet from the server outside a response")
		}
		f.pi = packetInfo{}
		f.lastOut = seq
		return f.forward(hdr, 0), nil
	}
	pi, err := x.step(n, head, f.deprecateEOF)
	if err != nil {
		return 0, err
	}
	if x.resp == respAuth && pi.kind == KindOther && f.authCheck != nil {
		if err := f.authCheck(n, head); err != nil {
			var ar *authRefusal
			if errors.As(err, &ar) {
				ar.seq = seq + x.d // the ERR takes this packet's place
			}
			return 0, err
		}
	}
	f.pi = pi
	x.started = true
	if pi.hasStatus {
		f.q.inTrans.Store(pi.status&gomysql.SERVER_STATUS_IN_TRANS != 0)
	}
	if pi.kind == KindInfileRequest && !x.discard {
		f.q.setInfile(x) // before the request reaches the client
	}
	if x.discard {
		return relay.Drop, nil
	}
	if f.hooks != nil && x.Watch && f.hooks.Result != nil && f.hooks.Results.Has(pi.kind) &&
		pi.kind != KindInfileRequest && pi.kind != KindOther {
		return relay.Hook, nil
	}
	f.lastOut, f.sent = seq+x.d, true
	return f.forward(hdr, x.d), nil
}

// Hooked hands a whole watched packet to the hooks (relay.Framer).
func (f *respFramer) Hooked(hdr []byte, k int, payload []byte) error {
	x, w := f.x, &f.w
	before := len(w.buf)
	w.reset(hdr[3] + x.d)
	if err := f.hooks.Result(&x.Exchange, f.pi.kind, payload, w); err != nil {
		return f.refuseRest(x, w, before, hdr[3]+x.d, err)
	}
	if w.n > 0 {
		f.lastOut, f.sent = w.seq-1, true
	}
	if w.n != k {
		f.q.setDelta(x, x.d+uint8(w.n-k))
	}
	return nil
}

// refuseRest handles a result hook's error: a non-fatal *Error replaces
// the hook's output and the rest of the response (the ERR takes sequence
// id seq); any other ends the session.
func (f *respFramer) refuseRest(x *exchange, w *Writer, before int, seq uint8, err error) error {
	var me *Error
	if !errors.As(err, &me) || me.Fatal {
		return &proxy.HookError{Err: err}
	}
	w.buf = w.buf[:before]
	w.reset(seq)
	w.buf = appendErr(w.buf, w.seq, me)
	w.seq++
	f.lastOut, f.sent = w.seq-1, true
	x.discard = true
	return nil
}

// End finishes a server packet (relay.Framer).
func (f *respFramer) End() error {
	if f.x == nil || !f.pi.done {
		return nil
	}
	f.x = nil
	f.q.complete()
	return nil
}

// Written is called after each write to the client (relay.Framer).
func (f *respFramer) Written() error { return f.q.written() }

// relay runs the two pumps until the session ends, then says goodbye to
// whichever side is still there.
func (s *session) relay(ctx context.Context, hooks *SessionHooks) {
	q := newQueue(s.pc, s.client)
	q.inTrans.Store(s.status&gomysql.SERVER_STATUS_IN_TRANS != 0)
	deprecateEOF := s.caps&capDeprecateEOF != 0
	rf := &respFramer{q: q, hooks: hooks, deprecateEOF: deprecateEOF, authCheck: s.changeUserAuthCheck}
	srv := s.serverKey()
	cf := &cmdFramer{q: q, hooks: hooks, deprecateEOF: deprecateEOF,
		kill: func(p []byte) []byte { return s.h.ids.translateKill(p, srv) }}
	up := newPump(s.Server, q.client, rf, responseHeadLen, s.h.opts.MaxPacketSize, proxy.Buffered(s.sbr))
	down := newPump(s.client, s.Server, cf, commandHeadLen, s.h.opts.MaxPacketSize, proxy.Buffered(s.cbr))
	rf.out = up
	up.CountReads(s.h.CountFromUpstream)
	down.CountReads(s.h.CountFromClient)
	s.cbr, s.sbr = nil, nil

	// Hooks announce their waits (blocking.Announce with the session's
	// context: catalog reads, key loads), so a session with hooks may run
	// on an event loop too.
	//
	// The pumps run under a proxy.Relay on the detached connection: once
	// nothing has been in flight for proxy.ParkDelay, each pump reading a
	// plain TCP socket (or a client TLS one holding no input) parks it on the server's poller between packets and
	// its goroutine returns; input starts a fresh goroutine that goes on
	// from the pump's state. A busy session's server->client pump waits
	// for its answers in the runtime; the client->server one parks only
	// between commands.
	r := proxy.NewRelay(s.pc,
		up.Leg(s.runPump, s.RawServer, s.serverTLS, q.idle, isReadDeadline),
		down.Leg(s.runPump, s.rawClient, s.clientTLS, q.commandMode, isReadDeadline),
		q.idle, true)
	q.ex.Notify(r.Busy, r.Idle)

	if !q.inTrans.Load() {
		s.pc.SetState(proxy.StateIdle)
	}
	// A busy session is closed by the server->client pump once it
	// becomes idle.
	s.Relay(ctx, r, q.closeIfIdle, nil, func(errs [2]error) {
		s.finish(ctx, q, up, down, rf, cf, errs[0], errs[1])
	})
}

// isReadDeadline reports whether err is a read deadline expiring (not a
// write's, nor one a hook met).
func isReadDeadline(err error) bool {
	var cwe *clientWriteError
	return proxy.IsReadDeadline(err) && !errors.As(err, &cwe)
}

// finish ends a session after both pumps stopped: it tells the client why,
// if it is waiting for something and the reason is ours, and sends the
// server COM_QUIT unless the server is gone or already got one.
func (s *session) finish(ctx context.Context, q *queue, up, down *relay.Pump, rf *respFramer, cf *cmdFramer, upErr, downErr error) {
	canWriteClient := !up.Broken() && !up.MidMessage() && !errors.As(downErr, new(*clientWriteError))
	canWriteServer := !down.Broken() && !down.MidMessage()
	x := q.current()
	// The sequence id the client expects next if it waits for a response.
	nextSeq := uint8(0)
	if x != nil {
		nextSeq = x.nextSeq
		if rf.x == x && rf.sent {
			nextSeq = rf.lastOut + 1
		}
	}
	var toClient error
	quit := canWriteServer

	var mal *proxy.MalformedError
	var hookErr *proxy.HookError
	var refusal *authRefusal
	switch {
	case errors.As(upErr, &refusal):
		s.log.LogAttrs(ctx, slog.LevelWarn, "COM_CHANGE_USER refused",
			slog.String("reason", refusal.err.Message), slog.Any("error", refusal.err.Cause))
		toClient = refusal.err
		nextSeq = refusal.seq
	case q.isClosing() && !errors.Is(downErr, errQuit):
		toClient = drainError(s.pc.DrainReason())
		nextSeq = 0 // unsolicited, between commands
		if errors.Is(downErr, errClosing) {
			nextSeq = cf.seq + 1 // the answer to a command that was not forwarded
		}
	case errors.Is(downErr, errQuit):
		quit = false // forwarded already
		canWriteClient = false
	case errors.As(downErr, &mal):
		s.log.LogAttrs(ctx, slog.LevelWarn, "malformed packet from client; closing", slog.String("reason", mal.Msg))
		toClient = downErr
		nextSeq = cf.seq + 1
	case errors.As(downErr, &hookErr), errors.As(upErr, &hookErr):
		s.log.LogAttrs(ctx, slog.LevelWarn, "hook failed; closing", slog.Any("error", hookErr.Err))
		toClient = hookErr.Err
		if errors.As(downErr, &hookErr) {
			nextSeq = cf.seq + 1
		}
	case errors.Is(downErr, relay.ErrTooLarge), errors.Is(upErr, relay.ErrTooLarge):
		s.log.LogAttrs(ctx, slog.LevelWarn, "packet larger than the limit; closing")
		toClient = fatalf(codePacketTooLarge, stateConnection, "dbproxy: packet larger than the proxy's limit", nil)
	case errors.As(upErr, &mal):
		s.log.LogAttrs(ctx, slog.LevelWarn, "malformed packet from the database server; closing",
			slog.String("reason", mal.Msg))
		toClient = fatalf(codeServerLost, stateGeneral, "dbproxy: malformed packet from the database server", nil)
	case proxy.UpstreamFailed(upErr, downErr):
		quit = false
		switch {
		case x == nil:
			// Idle: close the client as the server closed us.
			s.log.LogAttrs(ctx, slog.LevelDebug, "server closed the session", slog.Any("error", proxy.FirstReal(upErr, downErr)))
		case proxy.LogServerEnd(ctx, s.log, rf.lastERR && !up.MidMessage(), upErr, downErr):
			// Lost: the server did not say why (as with 1927 after KILL
			// CONNECTION).
			toClient = s.upstreamLost(nil)
		}
	default:
		proxy.LogClientGone(ctx, s.log, upErr, downErr)
		canWriteClient = false
	}
	if toClient != nil && canWriteClient {
		_, _ = q.client.Write(appendErr(nil, nextSeq, toClient))
	}
	if quit {
		_, _ = s.Server.Write(comQuit())
	}
}

// runPump runs a pump's Run or Step, turning a panic into an error that
// ends only this session; the client is told of it as of a failed hook.
func (s *session) runPump(run func() error) error {
	err := proxy.RunRecovered(s.log, run)
	if pe, ok := err.(*proxy.PanicError); ok {
		return &proxy.HookError{Err: pe}
	}
	return err
}
