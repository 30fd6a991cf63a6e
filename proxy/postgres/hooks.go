package postgres

import (
	"encoding/binary"
	"errors"

	"github.com/dbproxy/dbproxy/proxy"
)

// MessageTypes is a set of message type bytes.
type MessageTypes = proxy.ByteSet

// MessageFunc handles one complete message of a type it asked for. body is
// the message without its type byte and length, and aliases the relay's read
// buffer: it is valid only during the call. The func writes whatever should
// be forwarded in place of the message to w — the message unchanged
// (w.Forward), a rewritten one, several, or nothing. A returned error ends the
// session; an *Error is sent to the client as is.
type MessageFunc func(typ byte, body []byte, w *Writer) error

// SessionHooks intercept the messages of one session. The Frontend func runs
// on the client->server side and the Backend func on the server->client
// side, concurrently: state they share must be synchronized by them.
// Messages of other types are forwarded as raw bytes without being decoded.
//
// Each side runs on a goroutine of its own or, with plain TCP legs, on an
// event loop that many sessions share. So a hook must not wait (for I/O,
// for the other side, for a lock held across I/O) without calling
// blocking.Announce, with the context the Interceptor got, just before: on
// a loop that moves the hook's side off it while it waits. Close must not
// wait at all.
type SessionHooks struct {
	// FrontendTypes selects the client->server messages handed to Frontend
	// (for example 'Q', 'P', 'B', 'D', 'd').
	FrontendTypes MessageTypes
	Frontend      MessageFunc
	// BackendTypes selects the server->client messages handed to Backend
	// (for example 'T', 'D', 't', 'd').
	BackendTypes MessageTypes
	Backend      MessageFunc
	// Close, if set, is called once when the session ends: as soon as the
	// server->client side has stopped (so that a Frontend hook waiting for
	// the server gives up), at the latest when the session is over.
	Close func()
}

// SessionInfo describes an authenticated session to an [Interceptor].
type SessionInfo struct {
	User     string
	Database string
	// StartupParams are the client's startup parameters (user, database,
	// application_name, options, ...).
	StartupParams map[string]string
	// ServerParams are the ParameterStatus values the server reported during
	// startup (server_version, client_encoding, DateStyle, ...). Later
	// changes arrive as 'S' messages.
	ServerParams map[string]string
	proxy.SessionBase
}

// Interceptor is the hook point of the layer above the relay (the
// encryption layer). A nil Interceptor costs nothing: every message is
// forwarded as raw bytes. An error from NewSession ends the session with
// a FATAL ErrorResponse.
type Interceptor = proxy.Interceptor[SessionInfo, SessionHooks]

// Writer collects what a [MessageFunc] forwards. Messages written to it go
// out in order with the surrounding untouched messages, in the same write.
type Writer struct {
	buf []byte
	// flush writes buf to the destination now (set by the client->server
	// pump only).
	flush func([]byte) error
	// answer replies to the client (client->server pump of a session with
	// hooks only).
	answer func(msgs []byte) (bool, error)
}

// errNoFlush: Flush in a server->client hook.
var errNoFlush = errors.New("postgres: Writer.Flush is only available to Frontend hooks")

// Flush sends what the Writer holds (and the untouched messages before the
// current one) upstream at once, instead of after the hook returns. A
// Frontend hook uses it before it waits for the server's answer to a
// message it injected. Backend hooks cannot flush.
func (w *Writer) Flush() error {
	if w.flush == nil {
		return errNoFlush
	}
	if len(w.buf) == 0 {
		return nil
	}
	err := w.flush(w.buf)
	w.buf = w.buf[:0]
	return err
}

// Answer answers the request being handled, a Query or FunctionCall, on
// the proxy's behalf instead of forwarding it: msgs (whole server
// messages, such as an ErrorResponse) go to the client at once, followed
// by a ReadyForQuery. It does so only when that cannot reorder or change
// what the client sees: every earlier request answered and its answer
// written, no extended-protocol batch pending, and no transaction block
// open (an error inside one aborts the server's transaction, which only
// the server can do). Otherwise it reports false and does nothing: the
// hook forwards something the server answers instead. Frontend hooks only.
func (w *Writer) Answer(msgs []byte) (bool, error) {
	if w.answer == nil {
		return false, nil
	}
	return w.answer(msgs)
}

// Forward appends a message unchanged.
func (w *Writer) Forward(typ byte, body []byte) {
	w.buf = append(w.buf, typ)
	w.buf = binary.BigEndian.AppendUint32(w.buf, uint32(len(body)+4))
	w.buf = append(w.buf, body...)
}

// Send appends an encoded message, such as a *pgproto3.DataRow.
func (w *Writer) Send(msg interface{ Encode([]byte) ([]byte, error) }) error {
	out, err := msg.Encode(w.buf)
	if err != nil {
		return err
	}
	w.buf = out
	return nil
}

// Write appends raw bytes, which must be whole messages.
func (w *Writer) Write(p []byte) (int, error) {
	w.buf = append(w.buf, p...)
	return len(p), nil
}

// Bytes returns the messages collected so far (not yet flushed).
func (w *Writer) Bytes() []byte { return w.buf }

// Len returns the number of bytes collected so far.
func (w *Writer) Len() int { return len(w.buf) }

// Reset drops what the Writer collected and keeps its buffer, for a
// caller that reuses one Writer for many messages.
func (w *Writer) Reset() { w.buf = w.buf[:0] }
