package rawio

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"encoding/binary"
	"net"
	"reflect"
	"unsafe"
)

// Drainer is a source that may hold input of its own, which its socket no
// longer shows (a TLS connection: decrypted bytes, records read ahead).
// Drained reports whether it holds none that it could deliver without more
// input from the socket: then waiting for the socket to become readable
// (a relay leg parked on a poller, a [Looper] giving its buffer back)
// cannot strand input.
//
// Idle gives back what the source keeps from earlier reads (buffers sized
// by them) before a long wait; reading takes new ones. It may be called
// only when Drained, while no Read runs.
type Drainer interface {
	Drained() bool
	Idle()
}

// TLSConn is a TLS connection that knows when it holds no input of its own
// ([Drainer]), and on Linux waits for its socket without a read buffer
// ([Looper]).
//
// crypto/tls reads ahead: it fills its record buffer with whatever the
// socket has, possibly several records, which a later Read decrypts
// without touching the socket. TLSConn hands it its socket through
// recordReader, which never gives it a byte past the end of the current
// record (it keeps those itself, and says so), so that once a Read has
// returned, crypto/tls holds no raw record it has not consumed (at most
// part of one, which needs more input from the socket); and a Read that
// did not fill its buffer left no decrypted bytes behind.
// Handshake messages after the handshake (TLS 1.3 KeyUpdate, session
// tickets) and alerts are records too: Read processes every whole one it
// reads before it returns.
type TLSConn struct {
	*tls.Conn
	rr *recordReader
	// held: the last Read filled its buffer, so crypto/tls may hold more
	// decrypted bytes.
	held bool
	wait waiter
}

// TLSServer is tls.Server on conn, reading the bytes pre already read from
// conn (the start of the handshake; nil if none) before conn itself.
func TLSServer(conn net.Conn, pre *bufio.Reader, cfg *tls.Config) *TLSConn {
	rr := &recordReader{Conn: conn, pre: pre}
	c := &TLSConn{Conn: tls.Server(rr, cfg), rr: rr}
	c.wait.init(conn)
	return c
}

// TLSClient is tls.Client on conn (the leg from the proxy to the
// database), with the same record reader as [TLSServer]: an idle upstream
// leg can then wait on its socket too.
func TLSClient(conn net.Conn, cfg *tls.Config) *TLSConn {
	rr := &recordReader{Conn: conn}
	c := &TLSConn{Conn: tls.Client(rr, cfg), rr: rr}
	c.wait.init(conn)
	return c
}

// NetConn returns the connection under TLS (the socket, not the record
// reader crypto/tls reads through).
func (c *TLSConn) NetConn() net.Conn { return c.rr.Conn }

// Read reads decrypted bytes (tls.Conn.Read).
func (c *TLSConn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil // says nothing about what crypto/tls holds
	}
	n, err := c.Conn.Read(p)
	c.held = err == nil && n > 0 && n == len(p)
	return n, err
}

// Drained implements [Drainer]: the last Read came up short or failed,
// and the record reader holds no bytes crypto/tls has not taken.
func (c *TLSConn) Drained() bool {
	return !c.held && !c.rr.buffered()
}

// recordHeaderLen is the length of a TLS record header: type (1), version
// (2), length (2).
const recordHeaderLen = 5

// recordReader is the socket as crypto/tls sees it: a Read returns no byte
// past the end of the current record, so crypto/tls never buffers a record
// beyond the one it is reading. It reads the socket into crypto/tls's
// buffer as usual, one read for a record that came whole, and keeps what
// came past the record (pipelined input) in carry for the next Reads.
// Writes go to the socket.
type recordReader struct {
	net.Conn
	pre   *bufio.Reader // read first; nil once empty
	carry []byte        // read from the socket past a record's end
	hdr   [recordHeaderLen]byte
	hn    int // bytes of the current record's header read
	rem   int // bytes of the current record's body still to read
}

func (r *recordReader) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if len(r.carry) > 0 || !r.preEmpty() {
		// Buffered bytes: hand them out up to the end of the header or
		// body being read (no system call).
		want := r.rem
		if want == 0 {
			want = recordHeaderLen - r.hn
		}
		p = p[:min(len(p), want)]
		var n int
		if len(r.carry) > 0 {
			n = copy(p, r.carry)
			if r.carry = r.carry[n:]; len(r.carry) == 0 {
				r.carry = nil
			}
		} else {
			n, _ = r.pre.Read(p) // buffered bytes only: no error
		}
		r.advance(p[:n])
		return n, nil
	}
	n, err := r.Conn.Read(p)
	k := r.advance(p[:n])
	if k < n {
		r.carry = append([]byte(nil), p[k:n]...)
	}
	return k, err
}

// advance moves the record position over the bytes of b that belong to
// the current record (the rest of its header, then of its body) and
// returns how many that is.
func (r *recordReader) advance(b []byte) int {
	k := 0
	if r.rem == 0 {
		k = copy(r.hdr[r.hn:], b)
		if r.hn += k; r.hn < recordHeaderLen {
			return k
		}
		r.hn, r.rem = 0, int(binary.BigEndian.Uint16(r.hdr[3:]))
	}
	body := min(r.rem, len(b)-k)
	r.rem -= body
	return k + body
}

// buffered reports whether the reader holds bytes read from the socket
// that crypto/tls has not taken, dropping the pre-handshake reader once it
// is empty.
func (r *recordReader) buffered() bool {
	return len(r.carry) > 0 || !r.preEmpty()
}

// preEmpty reports whether the bytes read before the handshake are used
// up, dropping the reader then.
func (r *recordReader) preEmpty() bool {
	if r.pre != nil && r.pre.Buffered() == 0 {
		r.pre = nil
	}
	return r.pre == nil
}

// tlsReadBufs locates crypto/tls's read buffers in a tls.Conn, which keep
// their capacity for the connection's life: rawInput (records read, a
// bytes.Buffer), input (the current record's decrypted bytes, a
// bytes.Reader over rawInput's buffer) and hand (handshake bytes, a
// bytes.Buffer). After a handshake they hold about 3.5 KiB (sized by the
// ClientHello), which an idle connection does not need. ok is false if this
// Go release names or types them differently: then nothing is dropped
// (TestTLSConnIdle fails, so that it is noticed).
type tlsReadBufs struct {
	ok                    bool
	rawInput, input, hand uintptr // offsets in tls.Conn
}

func findTLSReadBufs() tlsReadBufs {
	t := reflect.TypeFor[tls.Conn]()
	field := func(name string, typ reflect.Type) (uintptr, bool) {
		f, ok := t.FieldByName(name)
		return f.Offset, ok && f.Type == typ
	}
	buf, rd := reflect.TypeFor[bytes.Buffer](), reflect.TypeFor[bytes.Reader]()
	var b tlsReadBufs
	var ok1, ok2, ok3 bool
	b.rawInput, ok1 = field("rawInput", buf)
	b.input, ok2 = field("input", rd)
	b.hand, ok3 = field("hand", buf)
	b.ok = ok1 && ok2 && ok3
	return b
}

// tlsBufs is computed once and never changes.
var tlsBufs = findTLSReadBufs()

// Idle implements [Drainer]: it drops crypto/tls's read buffers when they
// are empty (see tlsReadBufs). A Read while Idle runs would race: the
// caller (the relay parking the connection's reader) guarantees none runs.
func (c *TLSConn) Idle() {
	if !tlsBufs.ok || !c.Drained() {
		return
	}
	base := unsafe.Pointer(c.Conn)
	raw := (*bytes.Buffer)(unsafe.Add(base, tlsBufs.rawInput))
	in := (*bytes.Reader)(unsafe.Add(base, tlsBufs.input))
	hand := (*bytes.Buffer)(unsafe.Add(base, tlsBufs.hand))
	if raw.Len() != 0 || in.Len() != 0 || hand.Len() != 0 {
		return // part of a record or handshake message: it stays
	}
	*raw, *hand = bytes.Buffer{}, bytes.Buffer{}
	in.Reset(nil)
}

// readBufCap is the capacity of crypto/tls's read buffers (for tests).
func (c *TLSConn) readBufCap() int {
	if !tlsBufs.ok {
		return -1
	}
	base := unsafe.Pointer(c.Conn)
	return (*bytes.Buffer)(unsafe.Add(base, tlsBufs.rawInput)).Cap() + (*bytes.Buffer)(unsafe.Add(base, tlsBufs.hand)).Cap()
}
