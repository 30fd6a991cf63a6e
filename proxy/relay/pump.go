package relay

import (
	"errors"
	"io"
	"net"

	"github.com/dbproxy/dbproxy/internal/bufpool"
	"github.com/dbproxy/dbproxy/internal/rawio"
	"github.com/dbproxy/dbproxy/proxy"
)

// Action is what a pump does with one logical message.
type Action uint8

const (
	// Forward relays the raw bytes (headers as the framer left them).
	Forward Action = iota
	// Hook hands the whole logical message to Framer.Hooked.
	Hook
	// Drop consumes the message without forwarding it.
	Drop
)

// maxHeader bounds Config.HeaderLen.
const maxHeader = 8

// Framer is the protocol logic of one direction of a session. A pump calls
// it from its own goroutine only.
//
// A logical message is one or more frames: a header of Config.HeaderLen
// bytes and a payload (see Config for how the header gives its length and
// when another frame continues it). Start and End may add bytes of their
// own to the output with [Pump.Insert].
type Framer interface {
	// Start classifies a logical message: hdr is its first header, which
	// the framer may rewrite in place when it forwards the message; n the
	// payload length of its first frame; head its first min(n,
	// Config.HeadLen) payload bytes. hdr and head are valid during the
	// call. An error stops the pump before the message; what came before
	// it is still written.
	Start(hdr []byte, n int, head []byte) (Action, error)
	// Continue sees the header of each further frame of a forwarded
	// message, and may rewrite it in place.
	Continue(hdr []byte)
	// Hooked handles a whole logical message that Start sent to a hook:
	// hdr is its first header, frames the number of its frames, payload
	// the payloads joined (valid during the call only). It appends what
	// goes out in its place to the pump's output (the buffer given to
	// NewPump), which may already hold earlier output.
	Hooked(hdr []byte, frames int, payload []byte) error
	// End is called once each logical message has been consumed. An error
	// stops the pump once the output so far is written.
	End() error
	// Written is called after each write to the destination.
	Written() error
}

// Skipper is an optional fast path of a [Framer] over the whole messages
// already buffered: Skip walks them from the pump's current position,
// passing those forwarded as they are ([Pump.Pass]) and replacing hooked
// ones by their output ([Pump.Cut], [Pump.Replace]), doing for each
// what Start, Hooked and End would have done. It stops at the first
// message it leaves to the slow path (not all buffered, or not its to
// take). An error stops the pump once what was passed is written.
type Skipper interface {
	Skip(p *Pump) error
}

// LengthField is how a frame header encodes the payload length.
type LengthField uint8

const (
	// Uint24LE: three bytes, little-endian (MySQL).
	Uint24LE LengthField = iota + 1
	// Uint32BE: four bytes, big-endian (PostgreSQL).
	Uint32BE
)

// Config is what a pump needs to know about the framing.
type Config struct {
	// HeaderLen is the length of a frame header (at most 8).
	HeaderLen int
	// Length is the header's length field, at byte LenAt; the payload
	// length is its value minus LenSelf (a length that counts itself).
	Length  LengthField
	LenAt   int
	LenSelf int
	// MaxFrame, if positive, bounds a frame's payload length: a header
	// whose payload length is negative or above it stops the pump with
	// the error Invalid returns for it.
	MaxFrame int
	Invalid  func(hdr []byte) error
	// ContinueAt, if positive, is the payload length of a frame that the
	// next frame continues.
	ContinueAt int
	// HeadLen is how many payload bytes Start sees.
	HeadLen int
	// MaxWhole bounds a hooked message assembled from several reads.
	MaxWhole int
}

// Pump relays messages from src to dst. It reads as much as is available
// into its buffer, walks the frame headers and writes every run of
// untouched frames straight from the buffer, in one write per read: that
// is "flush when no more input is buffered". A message longer than the
// buffer streams through in pieces without being held whole, unless a hook
// needs it whole; then it is assembled in a separate buffer (bounded by
// Config.MaxWhole).
//
// A Pump is not safe for concurrent use; each direction of a session has
// its own, running on one goroutine at a time.
type Pump struct {
	src  io.Reader
	dst  io.Writer
	f    Framer
	skip Skipper // nil: f has no fast path
	// shared is dst when it is a *Shared: the pump tells it where its
	// output stops.
	shared *Shared
	cfg    Config

	buf   []byte  // read buffer; nil while idle
	bufH  *[]byte // its pool handle
	r, w  int
	start int // buf[start:r] is a run of raw bytes still to write
	need  int // bytes needed at buf[r:] before scanning can go on

	st     state
	rem    int             // payload bytes of the current frame not yet consumed
	n      int             // payload length of the current frame
	hdr    [maxHeader]byte // first header of the current logical message
	cont   bool            // the current logical message continues in another frame
	act    Action          // what happens to the current logical message
	asm    []byte          // assembly of a hooked logical message
	asmK   int             // frames in asm
	out    *[]byte         // output when more than a raw run goes out (the framer's buffer)
	broken bool            // a write to dst failed
	// partial: dst received the start of a logical message but not its end.
	partial bool
	count   func(n int) // nil: reads are not counted
	stepped bool        // Step ran: leftover was scanned
	// full counts Step's reads in a row that filled the space they were
	// given: the source is streaming (see FullReads).
	full int
}

type state uint8

const (
	atHeader state = iota // at the header of a logical message
	atWhole               // classified, waiting for the whole message to be buffered
	inBody                // inside a frame's payload
	atCont                // at the header of a continuation frame
)

// ErrTooLarge ends a session whose hooked message exceeds Config.MaxWhole.
var ErrTooLarge = errors.New("message too large")

// NewPump returns a pump with a pooled buffer holding leftover (bytes
// already buffered by the handshake reader). out is where output other
// than raw runs is assembled: the framer's hooks append to it.
func NewPump(src io.Reader, dst io.Writer, f Framer, cfg Config, out *[]byte, leftover []byte) *Pump {
	if cfg.HeaderLen <= 0 || cfg.HeaderLen > maxHeader || cfg.Length != Uint24LE && cfg.Length != Uint32BE {
		panic("relay: invalid framing")
	}
	p := &Pump{src: src, dst: dst, f: f, cfg: cfg, out: out, need: cfg.HeaderLen}
	p.skip, _ = f.(Skipper)
	p.shared, _ = dst.(*Shared)
	p.takeBuf(max(bufpool.RelayBufSize, len(leftover)))
	p.w = copy(p.buf, leftover)
	return p
}

// takeBuf takes the read buffer from the pool.
func (p *Pump) takeBuf(n int) {
	p.bufH = bufpool.GetHandle(n)
	p.buf = *p.bufH
	p.r, p.w = 0, 0
}

// releaseBuf gives the read buffer back to the pool.
func (p *Pump) releaseBuf() {
	if p.buf != nil {
		bufpool.PutHandle(p.bufH)
		p.buf, p.bufH = nil, nil
	}
}

// idle gives the read buffer back when nothing is buffered and the pump is
// about to wait for its source (see rawio.Looper), so an idle session holds
// no relay buffer; space takes one again. A large output buffer is dropped
// too. A hooked message being assembled stays.
func (p *Pump) idle() {
	if p.r != p.w {
		return
	}
	p.releaseBuf()
	if len(*p.out) == 0 && cap(*p.out) > bufpool.RelayBufSize {
		*p.out = nil
	}
}

// Release returns the pump's buffers to the pool.
func (p *Pump) Release() {
	p.releaseBuf()
	p.releaseAsm()
}

func (p *Pump) releaseAsm() {
	if cap(p.asm) > bufpool.RelayBufSize {
		bufpool.Put(p.asm)
		p.asm = nil
	} else {
		p.asm = p.asm[:0]
	}
}

// Run relays until an error; it never returns nil. A source with its own
// read loop (rawio.Looper) spares the read that would find the socket
// empty after each burst. After it returned it may be called again (a
// parked leg resuming): it goes on from the pump's state.
func (p *Pump) Run() error {
	if p.w > p.r {
		if err := p.scan(); err != nil {
			return err
		}
	}
	return rawio.ReadEach(p.src, p.space, p.scanRead, p.idle)
}

// Step is Run for a source lent to an event loop (rawio.Lender): it reads
// the source once, without waiting, and relays what came. It returns nil
// when the source had nothing more to give (rawio.ErrWouldBlock) or after
// one read; like Run, an error ends the pump. With nothing buffered the
// read buffer goes back to the pool, as Run's idle wait does.
func (p *Pump) Step() error {
	if p.w > p.r && !p.stepped {
		// Leftover from the handshake, or from Run before the loan.
		p.stepped = true
		if err := p.scan(); err != nil {
			return err
		}
	}
	p.stepped = true
	sp := p.space()
	n, err := p.src.Read(sp)
	if n == len(sp) {
		p.full++
	} else {
		p.full = 0
	}
	if n > 0 {
		if herr := p.scanRead(n); herr != nil {
			return herr
		}
	}
	switch {
	case err == rawio.ErrWouldBlock:
	case err != nil:
		return err
	case n == 0:
		return io.ErrNoProgress
	}
	p.idle()
	return nil
}

// FullReads returns how many of Step's reads in a row, up to the last
// one, filled the space they were given: a source with more waiting than
// one read takes, a large result streaming (see proxy.RelayLeg).
func (p *Pump) FullReads() int { return p.full }

// WriteNow writes b to the destination at once, ahead of what the pump is
// assembling: a hook's flush before it waits for an answer.
func (p *Pump) WriteNow(b []byte) error {
	if err := p.write(b); err != nil {
		p.broken = true
		return &proxy.WriteError{Err: err}
	}
	return nil
}

// write writes b to the destination.
func (p *Pump) write(b []byte) error {
	if p.shared != nil {
		return p.shared.pumpWrite(b, p.partial)
	}
	_, err := p.dst.Write(b)
	return err
}

// Broken reports whether a write to the destination failed.
func (p *Pump) Broken() bool { return p.broken }

// MidMessage reports whether the destination has received part of a
// logical message: then nothing more may be written to it.
func (p *Pump) MidMessage() bool { return p.partial }

// AtRest reports whether the pump is at a message boundary with nothing
// buffered, assembled or pending: its state is all in the struct, and it
// can wait for its source anywhere (see proxy.Relay).
func (p *Pump) AtRest() bool {
	return p.r == p.w && p.st == atHeader && !p.cont && !p.partial && p.rem == 0 &&
		len(p.asm) == 0 && len(*p.out) == 0
}

// CountReads makes the pump report the size of each read from its source
// to count (a metrics counter: it must be cheap); nil counts nothing.
// Bytes buffered before the pump started (NewPump's leftover) are not
// reported.
func (p *Pump) CountReads(count func(n int)) { p.count = count }

// scanRead accounts for n bytes read into space() and scans them.
func (p *Pump) scanRead(n int) error {
	p.w += n
	if p.count != nil {
		p.count(n)
	}
	return p.scan()
}

// space makes room for p.need bytes at buf[r:] and returns the free tail
// of the buffer to read into.
func (p *Pump) space() []byte {
	if p.buf == nil {
		p.takeBuf(bufpool.RelayBufSize)
	} else if p.r == p.w {
		p.r, p.w = 0, 0
	} else if len(p.buf)-p.r < p.need || p.w == len(p.buf) {
		n := copy(p.buf, p.buf[p.r:p.w])
		p.r, p.w = 0, n
	}
	return p.buf[p.w:]
}

// Leg describes the pump as a leg of a proxy.Relay: guard runs Run or
// Step with the protocol's panic handling; conn is the raw socket it
// reads (through TLS if tls: then it parks only if its source is a
// rawio.Drainer, when that holds no input, and parking drops its TLS read
// buffers too), mayPark whether the session lets it wait without a
// goroutine, isReadDeadline which of its errors are a read deadline
// expiring. A plain TCP leg may be relayed by an event loop (Step) when
// the protocol allows it (proxy.NewRelay's loopOK).
func (p *Pump) Leg(guard func(run func() error) error, conn net.Conn, tls bool, mayPark func() bool, isReadDeadline func(error) bool) proxy.RelayLeg {
	leg := proxy.RelayLeg{
		Run: func() error { return guard(p.Run) }, Conn: conn, Parkable: !tls,
		AtRest: p.AtRest, Release: p.Release, MayPark: mayPark, IsReadDeadline: isReadDeadline,
	}
	if !tls {
		step := p.Step // once: a method value made per call would allocate
		leg.Step = func() error { return guard(step) }
		leg.FullReads = p.FullReads
	}
	if d, ok := p.src.(rawio.Drainer); ok && tls {
		leg.Parkable, leg.AtRest = true, func() bool { return p.AtRest() && d.Drained() }
		leg.Release = func() { p.Release(); d.Idle() }
	}
	return leg
}
