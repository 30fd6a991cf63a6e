package mysql

import (
	"io"

	"github.com/dbproxy/dbproxy/proxy/relay"
)

// framing is the packet framing both framers share (see packet.go): a
// logical packet is continued while a physical packet is maxPayload bytes
// long, and a forwarded packet's sequence id is shifted by add, the
// difference between the two legs' numbering.
type framing struct {
	add uint8
	w   Writer // hook output; its buffer is the pump's output
}

// Continue renumbers a continuation packet being forwarded (relay.Framer).
func (f *framing) Continue(hdr []byte) { hdr[3] += f.add }

// forward renumbers the first packet of a logical packet being forwarded,
// and its continuations after it, by add.
func (f *framing) forward(hdr []byte, add uint8) relay.Action {
	f.add = add
	hdr[3] += add
	return relay.Forward
}

// framer is what newPump needs of a framer: its output is its hook Writer's
// buffer.
type framer interface {
	relay.Framer
	output() *[]byte
}

// output is the pump's output buffer: the hook Writer's.
func (f *framing) output() *[]byte { return &f.w.buf }

// newPump returns a pump of packets from src to dst: headLen payload bytes
// are classified, hooked packets are held whole up to maxWhole bytes.
func newPump(src io.Reader, dst io.Writer, f framer, headLen, maxWhole int, leftover []byte) *relay.Pump {
	cfg := relay.Config{HeaderLen: headerSize, Length: relay.Uint24LE, ContinueAt: maxPayload,
		HeadLen: headLen, MaxWhole: maxWhole}
	return relay.NewPump(src, dst, f, cfg, f.output(), leftover)
}
