package postgres

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/dbproxy/dbproxy/proxy"
	"github.com/dbproxy/dbproxy/proxy/relay"
)

// Message framing after startup, both directions:
//
//	byte type || int32 length (including itself, not the type) || body
//
// DefaultMaxMessageSize bounds the body of one client message, as the
// server's own 1 GB limit (PQ_LARGE_MESSAGE_LIMIT) does.
const DefaultMaxMessageSize = 1<<30 - 1

// Sentinels that end a pump without an I/O error.
var (
	// errTerminated: the client sent Terminate ('X'), which was forwarded.
	errTerminated = errors.New("client sent Terminate")
	// errClosing: the session was marked closing (drain) before the next
	// client message could be forwarded.
	errClosing = errors.New("session closing")
)

// msgFramer is the PostgreSQL logic of one direction of a session (a
// relay.Framer): messages of hooked types go to the hook whole, the rest
// are forwarded as raw runs. On the client->server side it counts
// outstanding requests in the accounting before each message is forwarded
// and ends the relay after Terminate; on the server->client side it feeds
// each ReadyForQuery the client will see to the accounting.
//
// A msgFramer is used by its pump's goroutine only.
type msgFramer struct {
	maxBody int
	hooked  MessageTypes
	hook    MessageFunc
	// special: types Skip leaves to Start (hooked types, plus Terminate
	// or ReadyForQuery for the accounting).
	special MessageTypes

	// acct tracks the session's transaction state; nil in unit tests.
	acct       *accounting
	fromClient bool

	w        Writer // hook output; its buffer is the pump's output
	lastType byte   // type of the last message forwarded (or being streamed)
	current  byte   // type of the message being hooked
	stop     error  // returned by End: the pump stops after this message
	// answers, for a session with hooks, lets Frontend hooks answer
	// requests themselves (Writer.Answer).
	answers *answers
}

// newMsgFramer returns the framer of one direction. hook handles the
// given types; nil hooks nothing.
func newMsgFramer(acct *accounting, fromClient bool, maxBody int, types MessageTypes, hook MessageFunc) *msgFramer {
	if hook == nil {
		types = MessageTypes{}
	}
	f := &msgFramer{maxBody: maxBody, hooked: types, hook: hook, special: types, acct: acct, fromClient: fromClient}
	switch {
	case acct != nil && fromClient:
		f.special.Add('X')
	case acct != nil:
		f.special.Add('Z')
	}
	return f
}

// newPump returns a pump of messages from src to dst driven by f.
func newPump(src io.Reader, dst io.Writer, f *msgFramer, leftover []byte) *relay.Pump {
	cfg := relay.Config{HeaderLen: 5, Length: relay.Uint32BE, LenAt: 1, LenSelf: 4,
		MaxFrame: f.maxBody, Invalid: invalid, HeadLen: 1, MaxWhole: f.maxBody}
	p := relay.NewPump(src, dst, f, cfg, &f.w.buf, leftover)
	if f.fromClient {
		// Frontend hooks may flush (the server->client accounting reads
		// the hook output after the hook).
		f.w.flush = p.WriteNow
	}
	return p
}

// bodyLen decodes the body length of a message header (type byte, then a
// length that counts itself); false if it is below 4 or the body exceeds
// maxBody ([invalid] is the error).
func bodyLen(hdr []byte, maxBody int) (int, bool) {
	n := int64(binary.BigEndian.Uint32(hdr[1:5]))
	if n < 4 || n-4 > int64(maxBody) {
		return 0, false
	}
	return int(n - 4), true
}

// invalid is the error for a message header with an impossible length.
func invalid(hdr []byte) error {
	return &proxy.MalformedError{Msg: fmt.Sprintf("invalid message length %d for message type %q",
		int64(binary.BigEndian.Uint32(hdr[1:5])), hdr[0])}
}

// Skip walks the whole messages buffered (relay.Skipper): the hot path.
// Messages of types nobody watches are passed after the accounting;
// hooked ones go to the hook from the read buffer, their output and the
// raw runs between them appended to the pump's output (the hook Writer).
func (f *msgFramer) Skip(p *relay.Pump) error {
	b := p.Unread()
	i, run := 0, 0 // b[:i] is consumed; b[run:i] is a raw run not yet in f.w
	hooked := false
	var err error
	for len(b)-i >= 5 {
		typ := b[i]
		n, ok := bodyLen(b[i:], f.maxBody)
		if !ok || len(b)-i < 5+n {
			break // the pump reports an invalid length (Config.Invalid)
		}
		if !f.special.Has(typ) {
			if f.fromClient && f.acct != nil && !f.acct.frontend(typ) {
				err = errClosing
				break
			}
			f.lastType = typ
			i += 5 + n
			continue
		}
		act := relay.Hook
		if f.fromClient || !f.hooked.Has(typ) {
			if act, err = f.classify(typ, n, b[i+5:i+5+min(n, 1)]); err != nil {
				break
			}
		}
		if act == relay.Hook {
			if !hooked {
				hooked = true
				p.Cut()
			}
			f.w.buf = append(f.w.buf, b[run:i]...)
			err = f.hookInto(typ, b[i+5:i+5+n])
			run = i + 5 + n
		}
		i += 5 + n
		if err != nil {
			break
		}
		if f.stop != nil {
			err = f.End()
			break
		}
	}
	if hooked {
		p.Replace(run)
	}
	p.Pass(i - run)
	return err
}

// Start classifies a message (relay.Framer).
func (f *msgFramer) Start(hdr []byte, n int, head []byte) (relay.Action, error) {
	return f.classify(hdr[0], n, head)
}

// classify decides what happens to a message of type typ and body length
// n whose body starts with head (at least min(n, 1) bytes).
func (f *msgFramer) classify(typ byte, n int, head []byte) (relay.Action, error) {
	if f.fromClient && f.acct != nil {
		if typ == 'X' {
			if n != 0 {
				return 0, &proxy.MalformedError{Msg: "invalid Terminate message length"}
			}
			f.lastType = typ
			f.stop = errTerminated
			return relay.Forward, nil
		}
		if !f.acct.frontend(typ) {
			return 0, errClosing
		}
	}
	if f.hooked.Has(typ) {
		return relay.Hook, nil
	}
	f.lastType = typ
	if typ == 'Z' && !f.fromClient && f.acct != nil && n == 1 && f.ready(head[0]) {
		f.stop = proxy.ErrDrained
	}
	return relay.Forward, nil
}

// Continue is never called: a message is one frame (relay.Framer).
func (f *msgFramer) Continue([]byte) {}

// Hooked hands a whole message to the hook (relay.Framer).
func (f *msgFramer) Hooked(hdr []byte, _ int, body []byte) error {
	return f.hookInto(hdr[0], body)
}

// hookInto runs the hook on a message; its output is appended to f.w.
func (f *msgFramer) hookInto(typ byte, body []byte) error {
	hookStart := len(f.w.buf)
	f.current = typ
	if err := f.hook(typ, body, &f.w); err != nil {
		if we := (*proxy.WriteError)(nil); errors.As(err, &we) {
			return we // a Writer.Flush failed: the upstream is gone
		}
		return &proxy.HookError{Err: err}
	}
	f.lastType = typ
	// A hook may forward, drop or synthesize ReadyForQuery: account for
	// the ones the client will actually see. (Only Frontend hooks flush.)
	if !f.fromClient && f.acct != nil && f.readyInHookOutput(f.w.buf[hookStart:]) {
		f.stop = proxy.ErrDrained
	}
	return nil
}

// End ends the relay after Terminate, or after a ReadyForQuery that left
// the session idle during a drain (relay.Framer).
func (f *msgFramer) End() error {
	err := f.stop
	f.stop = nil
	return err
}

// ready feeds a ReadyForQuery the client will see to the accounting (see
// accounting.readyForQuery).
func (f *msgFramer) ready(status byte) bool {
	if f.answers != nil {
		f.answers.readyAccounted()
	}
	return f.acct.readyForQuery(status)
}

// Written is called after each write (relay.Framer).
func (f *msgFramer) Written() error {
	if f.answers != nil && !f.fromClient {
		f.answers.written()
	}
	return nil
}

// readyInHookOutput walks the messages a hook wrote and feeds each
// ReadyForQuery to the accounting. It reports whether the session became
// idle during a drain (then the pump stops after emitting).
func (f *msgFramer) readyInHookOutput(out []byte) bool {
	drained := false
	for len(out) >= 5 {
		n := int(binary.BigEndian.Uint32(out[1:5]))
		if n < 4 || 1+n > len(out) {
			return drained
		}
		if out[0] == 'Z' && n == 5 && f.ready(out[5]) {
			drained = true
		}
		out = out[1+n:]
	}
	return drained
}
