package mysql

import (
	"errors"
	"io"

	"github.com/dbproxy/dbproxy/internal/bufpool"
	"github.com/dbproxy/dbproxy/internal/rawio"
	"github.com/dbproxy/dbproxy/proxy"
)

// action is what a pump does with one logical packet.
type action uint8

const (
	actForward action = iota // relay the raw bytes (sequence ids adjusted)
	actHook                  // hand the whole logical packet to framer.hooked
	actDrop                  // consume without forwarding
)

// framer is the protocol logic of one direction of a session. A pump calls
// it from its own goroutine only.
type framer interface {
	// start classifies a logical packet: n is the payload length of its
	// first physical packet, seq its sequence id, head its first
	// min(n, headLen) payload bytes (valid during the call). add is added
	// to the sequence id of each forwarded physical packet. An error stops
	// the pump before the packet; what came before it is still written.
	start(seq uint8, n int, head []byte) (act action, add uint8, err error)
	// hooked handles a whole logical packet that start sent to a hook:
	// seq is the id of its first physical packet, k the number of them.
	// Its output goes to w (which may already hold earlier output: the
	// framer calls w.reset with the first output id).
	hooked(seq uint8, k int, payload []byte, w *Writer) error
	// end is called once each logical packet has been consumed. Bytes it
	// returns are sent right after that packet. An error stops the pump
	// once the output so far is written.
	end() ([]byte, error)
	// written is called after each write to the destination.
	written() error
	// before returns bytes to send ahead of the packet start just
	// classified (its header is not consumed yet); nil if none.
	before() []byte
}

// pump relays packets from src to dst. It reads as much as is available
// into its buffer, walks the packet headers and writes every run of
// untouched packets straight from the buffer, in one write per read: that
// is "flush when no more input is buffered". A packet longer than the
// buffer streams through in pieces without being held whole, unless a hook
// needs it whole; then it is assembled in a separate buffer (bounded by
// maxAsm).
//
// A pump is not safe for concurrent use; each direction of a session has
// its own, running on its own goroutine.
type pump struct {
	src     io.Reader
	dst     io.Writer
	f       framer
	headLen int
	maxAsm  int

	buf  []byte  // read buffer; nil while idle
	bufH *[]byte // its pool handle
	r, w int
	need int // bytes needed at buf[r:] before scanning can go on

	st     pumpState
	rem    int    // payload bytes of the current physical packet not yet consumed
	n      int    // payload length of the current physical packet
	seq    uint8  // sequence id of the current logical packet's first physical packet
	cont   bool   // the current logical packet continues in the next physical packet
	act    action // what happens to the current logical packet
	add    uint8  // sequence id adjustment of forwarded packets
	asm    []byte // assembly of a hooked logical packet
	asmK   int    // physical packets in asm
	out    Writer // output when more than a raw run goes out
	broken bool   // a write to dst failed
	// partial: dst received the start of a logical packet but not its end.
	partial bool
}

type pumpState uint8

const (
	psHeader pumpState = iota // at the header of a logical packet
	psWhole                   // classified, waiting for the whole packet to be buffered
	psBody                    // inside a physical packet's payload
	psCont                    // at the header of a continuation packet
)

// errTooLarge ends a session whose hooked packet exceeds maxAsm.
var errTooLarge = errors.New("packet too large")

func newPump(src io.Reader, dst io.Writer, f framer, headLen, maxAsm int, leftover []byte) *pump {
	p := &pump{src: src, dst: dst, f: f, headLen: headLen, maxAsm: maxAsm, need: headerSize}
	p.takeBuf(max(bufpool.RelayBufSize, len(leftover)))
	p.w = copy(p.buf, leftover)
	return p
}

// takeBuf takes the read buffer from the pool.
func (p *pump) takeBuf(n int) {
	p.bufH = bufpool.GetHandle(n)
	p.buf = *p.bufH
	p.r, p.w = 0, 0
}

// releaseBuf gives the read buffer back to the pool.
func (p *pump) releaseBuf() {
	if p.buf != nil {
		bufpool.PutHandle(p.bufH)
		p.buf, p.bufH = nil, nil
	}
}

// idle gives the read buffer back when nothing is buffered and the pump is
// about to wait for its source (see rawio.Looper), so an idle session holds
// no relay buffer; space takes one again. A large output buffer is dropped
// too. A hooked packet being assembled stays.
func (p *pump) idle() {
	if p.r != p.w {
		return
	}
	p.releaseBuf()
	if len(p.out.buf) == 0 && cap(p.out.buf) > bufpool.RelayBufSize {
		p.out.buf = nil
	}
}

// release returns the pump's buffers to the pool.
func (p *pump) release() {
	p.releaseBuf()
	p.releaseAsm()
}

func (p *pump) releaseAsm() {
	if cap(p.asm) > bufpool.RelayBufSize {
		bufpool.Put(p.asm)
		p.asm = nil
	} else {
		p.asm = p.asm[:0]
	}
}

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
		p.takeBuf(bufpool.RelayBufSize)
	} else if p.r == p.w {
		p.r, p.w = 0, 0
	} else if len(p.buf)-p.r < p.need || p.w == len(p.buf) {
		n := copy(p.buf, p.buf[p.r:p.w])
		p.r, p.w = 0, n
	}
	return p.buf[p.w:]
}

// scan consumes what it can of buf[r:w] and writes the result.
func (p *pump) scan() error {
	start := p.r // buf[start:r] is a run of raw bytes still to write
	var stop error
loop:
	for {
		avail := p.w - p.r
		switch p.st {
		case psBody:
			if p.rem > 0 {
				if avail == 0 {
					p.need = 1
					break loop
				}
				k := min(p.rem, avail)
				if p.act == actHook {
					p.asm = append(p.asm, p.buf[p.r:p.r+k]...)
				}
				p.r += k
				p.rem -= k
				if p.act != actForward {
					start = p.r
				}
				if p.rem > 0 {
					p.need = 1
					break loop
				}
			}
			if p.cont {
				p.st = psCont
				continue
			}
			if p.act == actHook {
				p.cut(&start)
				err := p.f.hooked(p.seq, p.asmK, p.asm, &p.out)
				p.releaseAsm()
				if err != nil {
					stop = err
					p.st = psHeader
					break loop
				}
			}
			if stop = p.endPacket(&start); stop != nil {
				break loop
			}
		case psCont:
			if avail < headerSize {
				p.need = headerSize
				break loop
			}
			n := payloadLen(p.buf[p.r:])
			p.cont = n == maxPayload
			switch p.act {
			case actForward:
				p.buf[p.r+3] += p.add
			case actHook:
				if len(p.asm)+n > p.maxAsm {
					stop = errTooLarge
					break loop
				}
				p.asmK++
				p.cut(&start)
			case actDrop:
				p.cut(&start)
			}
			p.r += headerSize
			if p.act != actForward {
				start = p.r
			}
			p.n, p.rem, p.st = n, n, psBody
		case psHeader:
			if avail < headerSize {
				p.need = headerSize
				break loop
			}
			n := payloadLen(p.buf[p.r:])
			hn := min(n, p.headLen)
			if avail < headerSize+hn {
				p.need = headerSize + hn
				break loop
			}
			seq := p.buf[p.r+3]
			act, add, err := p.f.start(seq, n, p.buf[p.r+headerSize:p.r+headerSize+hn])
			if pre := p.f.before(); len(pre) > 0 {
				p.cut(&start)
				p.out.buf = append(p.out.buf, pre...)
			}
			if err != nil {
				stop = err
				break loop
			}
			p.act, p.add, p.seq, p.n, p.cont = act, add, seq, n, n == maxPayload
			if act == actHook && !p.cont && headerSize+n <= len(p.buf) {
				p.st = psWhole // hand it over from the read buffer
				continue
			}
			if err := p.beginBody(&start); err != nil {
				stop = err
				break loop
			}
		case psWhole:
			if avail < headerSize+p.n {
				p.need = headerSize + p.n
				break loop
			}
			p.cut(&start)
			err := p.f.hooked(p.seq, 1, p.buf[p.r+headerSize:p.r+headerSize+p.n], &p.out)
			p.r += headerSize + p.n
			start = p.r
			if err != nil {
				stop = err
				p.st = psHeader
				break loop
			}
			if stop = p.endPacket(&start); stop != nil {
				break loop
			}
		}
	}
	if err := p.emit(start); err != nil {
		return err
	}
	return stop
}

// beginBody consumes the first header of a logical packet classified for
// streaming, forwarding, assembly or dropping.
func (p *pump) beginBody(start *int) error {
	switch p.act {
	case actForward:
		p.buf[p.r+3] += p.add
		p.partial = true
	case actHook:
		if p.n > p.maxAsm {
			return errTooLarge
		}
		p.cut(start)
		p.asm = p.asm[:0]
		if cap(p.asm) < p.n && p.n <= bufpool.RelayBufSize<<2 {
			p.asm = bufpool.Get(p.n)[:0]
		}
		p.asmK = 1
	case actDrop:
		p.cut(start)
	}
	p.r += headerSize
	if p.act != actForward {
		*start = p.r
	}
	p.rem, p.st = p.n, psBody
	return nil
}

// endPacket finishes the current logical packet.
func (p *pump) endPacket(start *int) error {
	p.st = psHeader
	p.partial = false
	ins, err := p.f.end()
	if len(ins) > 0 {
		p.cut(start)
		p.out.buf = append(p.out.buf, ins...)
	}
	return err
}

// cut moves the raw run buf[*start:r] into the assembled output, so that
// something else can be appended after it.
func (p *pump) cut(start *int) {
	if p.r > *start {
		p.out.buf = append(p.out.buf, p.buf[*start:p.r]...)
	}
	*start = p.r
}

// emit writes the assembled output and the raw run buf[start:r].
func (p *pump) emit(start int) error {
	var err error
	wrote := false
	if len(p.out.buf) > 0 {
		p.out.buf = append(p.out.buf, p.buf[start:p.r]...)
		_, err = p.dst.Write(p.out.buf)
		if cap(p.out.buf) > bufpool.MaxKeptWriter {
			p.out.buf = nil
		} else {
			p.out.buf = p.out.buf[:0]
		}
		wrote = true
	} else if p.r > start {
		_, err = p.dst.Write(p.buf[start:p.r])
		wrote = true
	}
	if err != nil {
		p.broken = true
		return &proxy.WriteError{Err: err}
	}
	if wrote {
		return p.f.written()
	}
	return nil
}

// midPacket reports whether dst has received part of a logical packet:
// then nothing more may be written to it.
func (p *pump) midPacket() bool { return p.partial }

// atRest reports whether the pump is at a packet boundary with nothing
// buffered, assembled or pending: its state is all in the struct, and it
// can wait for its source anywhere (see proxy.Relay).
func (p *pump) atRest() bool {
	return p.r == p.w && p.st == psHeader && !p.cont && !p.partial && p.rem == 0 &&
		len(p.asm) == 0 && len(p.out.buf) == 0
}
