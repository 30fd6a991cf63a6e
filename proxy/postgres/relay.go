package postgres

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/dbproxy/dbproxy/internal/bufpool"
	"github.com/dbproxy/dbproxy/internal/rawio"
	"github.com/dbproxy/dbproxy/proxy"
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

// pump relays messages from src to dst. It reads as much as is available
// into buf, walks the message headers in it and writes every run of
// untouched messages straight from buf in one Write: one write per read,
// which is "flush when no more input is buffered". A message longer than
// the buffer is streamed through in pieces without being held whole, unless
// a hook needs it whole.
//
// A pump is not safe for concurrent use; each direction of a session has
// its own, running on its own goroutine.
type pump struct {
	src     io.Reader
	dst     io.Writer
	maxBody int

	// full: message types that must be in the buffer whole before they are
	// handled (hooked types, plus ReadyForQuery on the server side).
	full   MessageTypes
	hooked MessageTypes
	hook   MessageFunc

	// acct tracks the session's transaction state; nil in unit tests.
	acct       *accounting
	fromClient bool

	buf      []byte  // current read buffer; small or borrowed large; nil while idle
	small    []byte  // the session's own bufpool.RelayBufSize buffer (nil while idle)
	smallH   *[]byte // small's pool handle
	r, w     int     // unread bytes are buf[r:w]
	rem      int     // body bytes of a streamed message not yet forwarded
	need     int     // bytes needed at buf[r:] before scanning can go on
	out      Writer  // output assembled when a hook ran in this chunk
	lastType byte    // type of the last message forwarded (or being streamed)

	// dstBroken is set when a write to dst failed.
	dstBroken bool
}

// newPump returns a pump with a pooled buffer holding the startup leftover
// (bytes already buffered by the handshake reader).
func newPump(src io.Reader, dst io.Writer, leftover []byte) *pump {
	p := &pump{src: src, dst: dst, maxBody: DefaultMaxMessageSize, need: 5}
	p.takeSmall(max(bufpool.RelayBufSize, len(leftover)))
	p.w = copy(p.buf, leftover)
	return p
}

// takeSmall takes the pump's own buffer from the pool as the read buffer.
func (p *pump) takeSmall(n int) {
	p.smallH = bufpool.GetHandle(n)
	p.small = *p.smallH
	p.buf = p.small
	p.r, p.w = 0, 0
}

// idle gives the read buffers back to the pool when nothing is buffered
// and the pump is about to wait for its source (see rawio.Looper), so an
// idle session holds no relay buffers; space takes one again. A large
// hook output buffer is dropped too.
func (p *pump) idle() {
	if p.r != p.w || p.buf == nil {
		return
	}
	p.release()
	if len(p.out.buf) == 0 && cap(p.out.buf) > bufpool.RelayBufSize {
		p.out.buf = nil
	}
}

// allowFlush lets this pump's hook flush its Writer (client->server only:
// the server->client accounting reads the hook output after the hook).
func (p *pump) allowFlush() { p.out.flush = p.writeNow }

// writeNow writes b to dst at once, for Writer.Flush.
func (p *pump) writeNow(b []byte) error {
	if _, err := p.dst.Write(b); err != nil {
		p.dstBroken = true
		return &proxy.WriteError{Err: err}
	}
	return nil
}

// release returns the pump's buffers to the pool.
func (p *pump) release() {
	if p.buf == nil {
		return
	}
	if &p.buf[0] != &p.small[0] {
		bufpool.Put(p.buf)
	}
	bufpool.PutHandle(p.smallH)
	p.buf, p.small, p.smallH = nil, nil, nil
}

// setHooks installs hook for the given types. extra are types that must be
// seen whole without a hook (ReadyForQuery for the accounting).
func (p *pump) setHooks(types MessageTypes, hook MessageFunc, extra MessageTypes) {
	if hook == nil {
		types = MessageTypes{}
	}
	p.hooked, p.hook = types, hook
	p.full = types.union(&extra)
}

// atRest reports whether the pump is at a message boundary with nothing
// buffered or pending: its state is all in the struct, and it can wait
// for its source anywhere (see leg.park).
func (p *pump) atRest() bool { return p.r == p.w && p.rem == 0 && len(p.out.buf) == 0 }

// midMessage reports whether dst has received part of a message: then
// nothing more may be written to it.
func (p *pump) midMessage() bool { return p.rem > 0 }

// run relays until an error; it never returns nil. A source with its own
// read loop (rawio.Looper) spares the read that would find the socket
// empty after each burst.
func (p *pump) run() error {
	if p.w > p.r {
		if err := p.scan(); err != nil {
			return err
		}
	}
	return rawio.ReadEach(p.src, p.space, p.scanRead, p.idle)
}

// scanRead accounts for n bytes read into space() and scans them.
func (p *pump) scanRead(n int) error {
	p.w += n
	return p.scan()
}

// space makes room for p.need bytes at buf[r:] and returns the free tail
// of the buffer to read into.
func (p *pump) space() []byte {
	if p.buf == nil {
		p.takeSmall(bufpool.RelayBufSize)
	} else if p.r == p.w {
		p.r, p.w = 0, 0
		if &p.buf[0] != &p.small[0] {
			bufpool.Put(p.buf)
			p.buf = p.small
		}
	} else if len(p.buf)-p.r < p.need || p.w == len(p.buf) {
		pending := p.w - p.r
		if p.need > len(p.buf) {
			big := bufpool.Get(p.need)
			copy(big, p.buf[p.r:p.w])
			if &p.buf[0] != &p.small[0] {
				bufpool.Put(p.buf)
			}
			p.buf = big
		} else {
			copy(p.buf, p.buf[p.r:p.w])
		}
		p.r, p.w = 0, pending
	}
	return p.buf[p.w:]
}

// scan forwards what can be forwarded of buf[r:w].
func (p *pump) scan() error {
	start := p.r
	var stop error
	for {
		if p.rem > 0 {
			k := min(p.rem, p.w-p.r)
			p.r += k
			p.rem -= k
			if p.rem > 0 {
				p.need = 1
				break
			}
		}
		avail := p.w - p.r
		if avail < 5 {
			p.need = 5
			break
		}
		typ := p.buf[p.r]
		n := int64(binary.BigEndian.Uint32(p.buf[p.r+1 : p.r+5]))
		if n < 4 || n-4 > int64(p.maxBody) {
			stop = &proxy.MalformedError{Msg: fmt.Sprintf("invalid message length %d for message type %q", n, typ)}
			break
		}
		body := int(n - 4)
		whole := p.full.Has(typ)
		if whole && avail < 5+body {
			p.need = 5 + body
			break
		}
		if p.fromClient && p.acct != nil {
			if typ == 'X' {
				if body != 0 {
					stop = &proxy.MalformedError{Msg: "invalid Terminate message length"}
					break
				}
				p.r += 5
				p.lastType = typ
				stop = errTerminated
				break
			}
			if !p.acct.frontend(typ) {
				stop = errClosing
				break
			}
		}
		if !whole {
			p.r += 5
			p.rem = body
			p.lastType = typ
			continue
		}
		msg := p.buf[p.r+5 : p.r+5+body]
		if p.hooked.Has(typ) {
			p.out.buf = append(p.out.buf, p.buf[start:p.r]...)
			hookStart := len(p.out.buf)
			if err := p.hook(typ, msg, &p.out); err != nil {
				p.r += 5 + body
				start = p.r
				if we := (*proxy.WriteError)(nil); errors.As(err, &we) {
					stop = we // a Writer.Flush failed: the upstream is gone
				} else {
					stop = &proxy.HookError{Err: err}
				}
				break
			}
			p.r += 5 + body
			start = p.r
			p.lastType = typ
			// A hook may forward, drop or synthesize ReadyForQuery: account
			// for the ones the client will actually see.
			if !p.fromClient && p.acct != nil && p.readyInHookOutput(p.out.buf[hookStart:]) {
				stop = proxy.ErrDrained
				break
			}
			continue
		}
		// Seen whole for the accounting only: stays in the forwarded run.
		p.r += 5 + body
		p.lastType = typ
		if typ == 'Z' && p.acct != nil && body == 1 && p.acct.readyForQuery(msg[0]) {
			stop = proxy.ErrDrained
			break
		}
	}
	if err := p.emit(start); err != nil {
		return err
	}
	return stop
}

// readyInHookOutput walks the messages a hook wrote and feeds each
// ReadyForQuery to the accounting. It reports whether the session became
// idle during a drain (then the pump stops after emitting).
func (p *pump) readyInHookOutput(out []byte) bool {
	drained := false
	for len(out) >= 5 {
		n := int(binary.BigEndian.Uint32(out[1:5]))
		if n < 4 || 1+n > len(out) {
			return drained
		}
		if out[0] == 'Z' && n == 5 && p.acct.readyForQuery(out[5]) {
			drained = true
		}
		out = out[1+n:]
	}
	return drained
}

// emit writes the forwarded run buf[start:r], after any hook output.
func (p *pump) emit(start int) error {
	var err error
	if len(p.out.buf) > 0 {
		p.out.buf = append(p.out.buf, p.buf[start:p.r]...)
		_, err = p.dst.Write(p.out.buf)
		if cap(p.out.buf) > bufpool.MaxKeptWriter {
			p.out.buf = nil
		} else {
			p.out.buf = p.out.buf[:0]
		}
	} else if p.r > start {
		_, err = p.dst.Write(p.buf[start:p.r])
	}
	if err != nil {
		p.dstBroken = true
		return &proxy.WriteError{Err: err}
	}
	return nil
}
