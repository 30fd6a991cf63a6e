package relay

import (
	"encoding/binary"

	"github.com/dbproxy/dbproxy/internal/bufpool"
	"github.com/dbproxy/dbproxy/proxy"
)

// scan consumes what it can of buf[r:w] and writes the result.
func (p *Pump) scan() error {
	p.start = p.r
	var stop error
	wait := false
	for !wait && stop == nil {
		switch p.st {
		case atHeader:
			wait, stop = p.header()
		case atWhole:
			wait, stop = p.whole()
		case inBody:
			wait, stop = p.body()
		case atCont:
			wait, stop = p.contHeader()
		}
	}
	if err := p.emit(); err != nil {
		return err
	}
	return stop
}

// header classifies the logical message at buf[r:]. It reports whether it
// must wait for more input.
func (p *Pump) header() (bool, error) {
	if p.skip != nil {
		if err := p.skip.Skip(p); err != nil {
			return false, err
		}
	}
	hdr, n, cont, wait, err := p.frame()
	if wait || err != nil {
		return wait, err
	}
	hl, avail := p.cfg.HeaderLen, p.w-p.r
	hn := min(n, p.cfg.HeadLen)
	if avail < hl+hn {
		p.need = hl + hn
		return true, nil
	}
	act, err := p.f.Start(hdr, n, p.buf[p.r+hl:p.r+hl+hn])
	if err != nil {
		return false, err
	}
	p.act, p.n, p.cont = act, n, cont
	if act == Forward && !cont && hl+n <= avail {
		p.r += hl + n // all buffered: it stays in the raw run
		return false, p.endMessage()
	}
	if act == Hook && !cont && hl+n <= len(p.buf) {
		p.st = atWhole // hand it over from the read buffer
		return p.whole()
	}
	return false, p.beginBody()
}

// frame decodes the frame header at buf[r:], or reports that it must wait
// for it.
func (p *Pump) frame() (hdr []byte, n int, cont, wait bool, err error) {
	hl := p.cfg.HeaderLen
	if p.w-p.r < hl {
		p.need = hl
		return nil, 0, false, true, nil
	}
	hdr = p.buf[p.r : p.r+hl]
	b := hdr[p.cfg.LenAt:]
	if p.cfg.Length == Uint24LE {
		n = int(b[0]) | int(b[1])<<8 | int(b[2])<<16
	} else {
		n = int(binary.BigEndian.Uint32(b))
	}
	n -= p.cfg.LenSelf
	if p.cfg.MaxFrame > 0 && (n < 0 || n > p.cfg.MaxFrame) {
		return hdr, 0, false, false, p.cfg.Invalid(hdr)
	}
	return hdr, n, p.cfg.ContinueAt > 0 && n == p.cfg.ContinueAt, false, nil
}

// whole hands a hooked single-frame message over from the read buffer
// (header included) once it is all there.
func (p *Pump) whole() (bool, error) {
	hl := p.cfg.HeaderLen
	if p.w-p.r < hl+p.n {
		p.need = hl + p.n
		return true, nil
	}
	p.cut()
	err := p.f.Hooked(p.buf[p.r:p.r+hl], 1, p.buf[p.r+hl:p.r+hl+p.n])
	p.r += hl + p.n
	p.start = p.r
	if err != nil {
		p.st = atHeader
		return false, err
	}
	return false, p.endMessage()
}

// body consumes payload bytes of the current frame.
func (p *Pump) body() (bool, error) {
	if p.rem > 0 {
		avail := p.w - p.r
		if avail == 0 {
			p.need = 1
			return true, nil
		}
		k := min(p.rem, avail)
		if p.act == Hook {
			p.asm = append(p.asm, p.buf[p.r:p.r+k]...)
		}
		p.r += k
		p.rem -= k
		if p.act != Forward {
			p.start = p.r
		}
		if p.rem > 0 {
			p.need = 1
			return true, nil
		}
	}
	if p.cont {
		p.st = atCont
		return false, nil
	}
	if p.act == Hook {
		p.cut()
		err := p.f.Hooked(p.hdr[:p.cfg.HeaderLen], p.asmK, p.asm)
		p.releaseAsm()
		if err != nil {
			p.st = atHeader
			return false, err
		}
	}
	return false, p.endMessage()
}

// contHeader consumes the header of a continuation frame.
func (p *Pump) contHeader() (bool, error) {
	hdr, n, cont, wait, err := p.frame()
	if wait || err != nil {
		return wait, err
	}
	p.cont = cont
	switch p.act {
	case Forward:
		p.f.Continue(hdr)
	case Hook:
		if len(p.asm)+n > p.cfg.MaxWhole {
			return false, ErrTooLarge
		}
		p.asmK++
		p.cut()
	case Drop:
		p.cut()
	}
	p.r += len(hdr)
	if p.act != Forward {
		p.start = p.r
	}
	p.n, p.rem, p.st = n, n, inBody
	return false, nil
}

// beginBody consumes the first header of a logical message classified for
// streaming: forwarding, assembly or dropping.
func (p *Pump) beginBody() error {
	switch p.act {
	case Forward:
		p.partial = true
	case Hook:
		if p.n > p.cfg.MaxWhole {
			return ErrTooLarge
		}
		copy(p.hdr[:], p.buf[p.r:p.r+p.cfg.HeaderLen])
		p.cut()
		p.asm = p.asm[:0]
		if cap(p.asm) < p.n {
			// The first frame's length, up to the largest pooled size: a
			// claimed length is not trusted beyond that.
			p.asm = bufpool.Get(min(p.n, bufpool.MaxPooled))[:0]
		}
		p.asmK = 1
	case Drop:
		p.cut()
	}
	p.r += p.cfg.HeaderLen
	if p.act != Forward {
		p.start = p.r
	}
	p.rem, p.st = p.n, inBody
	return nil
}

// endMessage finishes the current logical message.
func (p *Pump) endMessage() error {
	p.st = atHeader
	p.partial = false
	return p.f.End()
}

// Unread returns the bytes buffered at the pump's position (for a
// Skipper, valid until it returns).
func (p *Pump) Unread() []byte { return p.buf[p.r:p.w] }

// Pass forwards the next k unread bytes as they are (a Skipper's whole
// messages).
func (p *Pump) Pass(k int) { p.r += k }

// Cut moves the raw run before the pump's position into the output, so
// that a Skipper can append a hook's output after it.
func (p *Pump) Cut() { p.cut() }

// Replace consumes the next k unread bytes: hooked messages and raw runs
// a Skipper has put in the output itself.
func (p *Pump) Replace(k int) {
	p.r += k
	p.start = p.r
}

// Insert adds b to the output at the current position: ahead of the
// message being classified when called from Framer.Start, after the one
// just consumed when called from Framer.End.
func (p *Pump) Insert(b []byte) {
	p.cut()
	*p.out = append(*p.out, b...)
}

// cut moves the raw run buf[start:r] into the assembled output, so that
// something else can be appended after it.
func (p *Pump) cut() {
	if p.r > p.start {
		*p.out = append(*p.out, p.buf[p.start:p.r]...)
	}
	p.start = p.r
}

// emit writes the assembled output and the raw run buf[start:r].
func (p *Pump) emit() error {
	var err error
	wrote := false
	if out := *p.out; len(out) > 0 {
		out = append(out, p.buf[p.start:p.r]...)
		err = p.write(out)
		if cap(out) > bufpool.MaxKeptWriter {
			*p.out = nil
		} else {
			*p.out = out[:0]
		}
		wrote = true
	} else if p.r > p.start {
		err = p.write(p.buf[p.start:p.r])
		wrote = true
	}
	p.start = p.r
	if err != nil {
		p.broken = true
		return &proxy.WriteError{Err: err}
	}
	if wrote {
		return p.f.Written()
	}
	return nil
}
