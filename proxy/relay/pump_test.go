package relay_test

import (
	"bytes"
	"errors"
	"io"
	"testing"

	"github.com/dbproxy/dbproxy/proxy/relay"
)

// toyFramer frames messages as type || uint24le length || payload; a
// length of 255 is continued by another frame of the same shape. Type 'h' goes to
// the hook (upper-cased), 'd' is dropped, 'q' ends the pump after it, the
// rest is forwarded; before 'i' the framer inserts "<>".
type toyFramer struct {
	out    []byte
	ins    interface{ Insert([]byte) }
	quit   bool
	frames []int // frames of each hooked message
}

func (f *toyFramer) Start(hdr []byte, _ int, _ []byte) (relay.Action, error) {
	switch hdr[0] {
	case 'h':
		return relay.Hook, nil
	case 'd':
		return relay.Drop, nil
	case 'q':
		f.quit = true
	case 'i':
		f.ins.Insert([]byte("<>"))
	case 'x':
		return 0, errors.New("refused")
	}
	return relay.Forward, nil
}

func (*toyFramer) Continue(hdr []byte) { hdr[0] = 'c' }

func (f *toyFramer) Hooked(_ []byte, frames int, payload []byte) error {
	f.frames = append(f.frames, frames)
	f.out = append(f.out, 'H', byte(min(len(payload), 254)), 0, 0)
	f.out = append(f.out, bytes.ToUpper(payload[:min(len(payload), 254)])...)
	return nil
}

func (f *toyFramer) End() error {
	if f.quit {
		return io.ErrShortWrite
	}
	return nil
}

func (*toyFramer) Written() error { return nil }

// oneByte reads one byte at a time.
type oneByte struct{ r io.Reader }

func (o oneByte) Read(p []byte) (int, error) { return o.r.Read(p[:1]) }

func msg(typ byte, payload string) []byte {
	return append([]byte{typ, byte(len(payload)), 0, 0}, payload...)
}

func run(t *testing.T, in []byte, slow bool, maxWhole int) (string, *toyFramer, error) {
	t.Helper()
	return runCfg(t, in, slow, relay.Config{HeaderLen: 4, Length: relay.Uint24LE, LenAt: 1, ContinueAt: 255,
		HeadLen: 1, MaxWhole: maxWhole})
}

func runCfg(t *testing.T, in []byte, slow bool, cfg relay.Config) (string, *toyFramer, error) {
	t.Helper()
	var src io.Reader = bytes.NewReader(in)
	if slow {
		src = oneByte{src}
	}
	var out bytes.Buffer
	f := &toyFramer{}
	p := relay.NewPump(src, &out, f, cfg, &f.out, nil)
	f.ins = p
	defer p.Release()
	err := p.Run()
	if !p.AtRest() && err == io.EOF {
		t.Errorf("pump not at rest at the end of its input")
	}
	return out.String(), f, err
}

func TestPumpActions(t *testing.T) {
	var in []byte
	in = append(in, msg('a', "one")...)
	in = append(in, msg('h', "two")...)
	in = append(in, msg('d', "gone")...)
	in = append(in, msg('i', "")...)
	in = append(in, msg('a', "three")...)
	want := "a\x03\x00\x00one" + "H\x03\x00\x00TWO" + "<>" + "i\x00\x00\x00" + "a\x05\x00\x00three"
	for _, slow := range []bool{false, true} {
		got, _, err := run(t, in, slow, 1000)
		if err != io.EOF || got != want {
			t.Errorf("slow=%v: got %q, %v; want %q, EOF", slow, got, err, want)
		}
	}
}

func TestPumpStopsAfterOrBefore(t *testing.T) {
	in := append(append(msg('a', "1"), msg('q', "2")...), msg('a', "3")...)
	got, _, err := run(t, in, false, 1000)
	if err != io.ErrShortWrite || got != "a\x01\x00\x001q\x01\x00\x002" {
		t.Errorf("End error: got %q, %v", got, err)
	}
	in = append(append(msg('a', "1"), msg('x', "2")...), msg('a', "3")...)
	got, _, err = run(t, in, false, 1000)
	if err == nil || err.Error() != "refused" || got != "a\x01\x00\x001" {
		t.Errorf("Start error: got %q, %v", got, err)
	}
}

func TestPumpContinuedAndLarge(t *testing.T) {
	long := bytes.Repeat([]byte("z"), 255)
	cont := append([]byte{'a', 255, 0, 0}, long...)
	cont = append(cont, msg('a', "end")...)
	got, _, err := run(t, cont, false, 1000)
	want := "a\xff\x00\x00" + string(long) + "c\x03\x00\x00end"
	if err != io.EOF || got != want {
		t.Errorf("forwarded continuation: got %q, %v", got, err)
	}
	hooked := append([]byte{'h', 255, 0, 0}, long...)
	hooked = append(hooked, msg('h', "end")...)
	for _, slow := range []bool{false, true} {
		got, f, err := run(t, hooked, slow, 1000)
		if err != io.EOF || len(got) != 258 || len(f.frames) != 1 || f.frames[0] != 2 {
			t.Errorf("slow=%v: hooked continuation: %d bytes out, frames %v, %v", slow, len(got), f.frames, err)
		}
	}
	if _, _, err := run(t, hooked, false, 200); !errors.Is(err, relay.ErrTooLarge) {
		t.Errorf("over MaxWhole: %v", err)
	}
}

// TestPumpLengthField: a big-endian length that counts itself, no
// continuations (empty messages included), and a bound on frames.
func TestPumpLengthField(t *testing.T) {
	be := func(typ byte, payload string) []byte {
		n := len(payload) + 4
		return append([]byte{typ, byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)}, payload...)
	}
	bad := errors.New("bad length")
	cfg := relay.Config{HeaderLen: 5, Length: relay.Uint32BE, LenAt: 1, LenSelf: 4, MaxFrame: 10,
		Invalid: func([]byte) error { return bad }, HeadLen: 1, MaxWhole: 10}
	in := append(append(be('a', ""), be('a', "xyz")...), be('a', "")...)
	for _, slow := range []bool{false, true} {
		got, _, err := runCfg(t, in, slow, cfg)
		if err != io.EOF || got != string(in) {
			t.Errorf("slow=%v: got %q, %v", slow, got, err)
		}
	}
	in = append(be('a', "ok"), be('a', "much too long")...)
	if got, _, err := runCfg(t, in, false, cfg); err != bad || got != string(be('a', "ok")) {
		t.Errorf("over MaxFrame: got %q, %v", got, err)
	}
	if _, _, err := runCfg(t, []byte{'a', 0, 0, 0, 3}, false, cfg); err != bad {
		t.Errorf("length below its own size: %v", err)
	}
}
