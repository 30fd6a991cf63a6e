package relay_test

import (
	"bytes"
	"io"
	"strings"
	"testing"

	"github.com/dbproxy/dbproxy/proxy/relay"
)

// boundaryLog is the destination behind the Shared.
type boundaryLog struct{ out bytes.Buffer }

func (b *boundaryLog) Write(p []byte) (int, error) { return b.out.Write(p) }

// TestSharedBoundary: a pump writing through a Shared tells it whether its
// output stops inside a message: while a message streams through in
// pieces (read one byte at a time), a reply may not go out; between
// messages it may, and WriteLocked puts it there.
func TestSharedBoundary(t *testing.T) {
	in := append(msg('a', strings.Repeat("x", 40)), msg('b', "yy")...)
	log := &boundaryLog{}
	sh := relay.NewShared(log)
	f := &toyFramer{}
	cfg := relay.Config{HeaderLen: 4, Length: relay.Uint24LE, LenAt: 1, ContinueAt: 255, HeadLen: 1}
	var seen []bool
	src := &probe{r: oneByte{bytes.NewReader(in)}, each: func() {
		sh.Lock()
		seen = append(seen, sh.AtBoundary())
		sh.Unlock()
	}}
	p := relay.NewPump(src, sh, f, cfg, &f.out, nil)
	f.ins = p
	defer p.Release()
	if err := p.Run(); err != io.EOF {
		t.Fatal(err)
	}
	var inside, between int
	for _, b := range seen {
		if b {
			between++
		} else {
			inside++
		}
	}
	if inside == 0 || between == 0 {
		t.Fatalf("boundary states seen at reads: %d inside a message, %d between; want both", inside, between)
	}
	if !bytes.Equal(log.out.Bytes(), in) {
		t.Fatalf("output %q, want the input", log.out.Bytes())
	}
	sh.Lock()
	if !sh.AtBoundary() {
		t.Fatal("not at a boundary after the last message")
	}
	if err := sh.WriteLocked([]byte("R")); err != nil {
		t.Fatal(err)
	}
	sh.Unlock()
	if got := log.out.String(); !strings.HasSuffix(got, "R") {
		t.Fatalf("reply not written: %q", got)
	}
}

// probe calls each before every read.
type probe struct {
	r    io.Reader
	each func()
}

func (p *probe) Read(b []byte) (int, error) {
	p.each()
	return p.r.Read(b)
}
