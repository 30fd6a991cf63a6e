package rawio_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"io"
	"math/big"
	"net"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dbproxy/dbproxy/internal/rawio"
)

// testCert is a self-signed certificate for 127.0.0.1.
func testCert(t testing.TB) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "rawio test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// batchConn holds its writes while batch is set, until Flush sends them
// in one write: records sent together reach the reader in one segment.
type batchConn struct {
	net.Conn
	batch bool
	buf   bytes.Buffer
}

func (c *batchConn) Write(p []byte) (int, error) {
	if !c.batch {
		return c.Conn.Write(p)
	}
	return c.buf.Write(p)
}

func (c *batchConn) Flush() error {
	_, err := c.Conn.Write(c.buf.Bytes())
	c.buf.Reset()
	return err
}

// tlsPair returns a TLSConn on a TCP socket (after the handshake) and its
// crypto/tls peer on a batchConn: the TLSConn is the server side
// (TLSServer, the client's leg of a session) or, with client, the client
// side (TLSClient, the leg to a database).
func tlsPair(t *testing.T, version uint16, client bool) (*rawio.TLSConn, *tls.Conn, *batchConn) {
	t.Helper()
	a, b := tcpPair(t)
	bc := &batchConn{Conn: b}
	srvCfg := &tls.Config{Certificates: []tls.Certificate{testCert(t)}, MinVersion: version, MaxVersion: version}
	cliCfg := &tls.Config{InsecureSkipVerify: true}
	var conn *rawio.TLSConn
	var peer *tls.Conn
	if client {
		conn, peer = rawio.TLSClient(rawio.Wrap(a), cliCfg), tls.Server(bc, srvCfg)
	} else {
		conn, peer = rawio.TLSServer(rawio.Wrap(a), nil, srvCfg), tls.Client(bc, cliCfg)
	}
	errc := make(chan error, 1)
	go func() { errc <- conn.Handshake() }()
	if err := peer.Handshake(); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	return conn, peer, bc
}

// onTLSSides runs test as subtests for each side a TLSConn can take
// (server, client) and TLS 1.2 and 1.3.
func onTLSSides(t *testing.T, test func(t *testing.T, version uint16, client bool)) {
	for _, side := range []struct {
		name   string
		client bool
	}{{"server", false}, {"client", true}} {
		for _, v := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
			t.Run(side.name+"/"+tls.VersionName(v), func(t *testing.T) { test(t, v, side.client) })
		}
	}
}

// TestTLSConnReadLoopPipelined: rounds of many records sent in one
// segment (small ones, ones larger than a record, ending with a
// close_notify in the last round) all reach a ReadLoop whose buffer is
// smaller than some of them, which waits for the socket (idle) only once a
// round is delivered. A reader that let crypto/tls read ahead would wait
// for the socket with records still buffered, and stall until the
// deadline failed the test.
func TestTLSConnReadLoopPipelined(t *testing.T) { onTLSSides(t, testTLSConnReadLoopPipelined) }

func testTLSConnReadLoopPipelined(t *testing.T, v uint16, client bool) {
	t.Helper()
	conn, peer, bc := tlsPair(t, v, client)
	l, ok := any(conn).(rawio.Looper)
	if !ok {
		t.Skip("no TLS read loop on this platform")
	}
	bc.batch = true
	_ = conn.NetConn().SetReadDeadline(time.Now().Add(20 * time.Second))
	const rounds = 20
	var msgs [rounds][][]byte
	var want []byte
	var ends []int // len(want) after each round
	for i := range rounds {
		for j := range 1 + i%7 {
			msg := bytes.Repeat([]byte{byte(i), byte(j)}, 1+(i*j*997)%(40<<10))
			msgs[i] = append(msgs[i], msg)
			want = append(want, msg...)
		}
		ends = append(ends, len(want))
	}
	delivered := make(chan struct{}, rounds)
	go func() {
		for i := range rounds {
			for _, msg := range msgs[i] {
				_, _ = peer.Write(msg)
			}
			if i == rounds-1 {
				_ = peer.CloseWrite() // close_notify with the last round
				_ = bc.SetWriteDeadline(time.Time{})
			}
			_ = bc.Flush()
			<-delivered
		}
	}()
	var got []byte
	buf := make([]byte, 3000)
	idles, waitedDrained := 0, true
	err := l.ReadLoop(func() []byte { return buf }, func(n int) error {
		got = append(got, buf[:n]...)
		if len(got) == ends[0] {
			ends = ends[1:]
			delivered <- struct{}{}
		}
		return nil
	}, func() {
		idles++
		waitedDrained = waitedDrained && conn.Drained()
	})
	if err != io.EOF {
		t.Fatalf("ReadLoop = %v after %d bytes, want EOF", err, len(got))
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("got %d bytes, want %d: data differs", len(got), len(want))
	}
	if idles == 0 || !waitedDrained {
		t.Fatalf("idle called %d times for %d rounds (drained each time: %v)", idles, rounds, waitedDrained)
	}
}

// TestTLSConnIdle: Idle drops crypto/tls's read buffers once the
// connection holds no input (not while decrypted bytes wait to be read),
// and the connection reads on, pipelined records included.
func TestTLSConnIdle(t *testing.T) { onTLSSides(t, testTLSConnIdle) }

func testTLSConnIdle(t *testing.T, v uint16, client bool) {
	t.Helper()
	conn, peer, bc := tlsPair(t, v, client)
	_ = conn.NetConn().SetReadDeadline(time.Now().Add(20 * time.Second))
	if rawio.ReadBufCap(conn) <= 0 {
		t.Fatalf("read buffers after the handshake: %d bytes, want some (found: %v)",
			rawio.ReadBufCap(conn), rawio.ReadBufCap(conn) >= 0)
	}
	if _, err := peer.Write([]byte("0123456789")); err != nil {
		t.Fatal(err)
	}
	one := make([]byte, 1)
	if n, err := conn.Read(one); n != 1 || err != nil {
		t.Fatalf("Read = %d, %v", n, err)
	}
	before := rawio.ReadBufCap(conn)
	conn.Idle() // nine bytes are still held: nothing is dropped
	if conn.Drained() || rawio.ReadBufCap(conn) != before {
		t.Fatalf("Idle with input held: drained %v, buffers %d -> %d", conn.Drained(), before, rawio.ReadBufCap(conn))
	}
	rest := make([]byte, 100)
	if n, err := conn.Read(rest); string(rest[:n]) != "123456789" || err != nil {
		t.Fatalf("Read after Idle = %q, %v", rest[:n], err)
	}
	conn.Idle()
	if !conn.Drained() || rawio.ReadBufCap(conn) != 0 {
		t.Fatalf("Idle when drained: drained %v, buffers %d bytes", conn.Drained(), rawio.ReadBufCap(conn))
	}
	// Three records in one segment after Idle: all arrive.
	bc.batch = true
	for _, m := range []string{"first", "second", "third"} {
		_, _ = peer.Write([]byte(m))
	}
	if err := bc.Flush(); err != nil {
		t.Fatal(err)
	}
	var got []byte
	for len(got) < len("firstsecondthird") {
		n, err := conn.Read(rest)
		if err != nil {
			t.Fatalf("Read after Idle: %v (got %q)", err, got)
		}
		got = append(got, rest[:n]...)
	}
	if string(got) != "firstsecondthird" || !conn.Drained() {
		t.Fatalf("got %q, drained %v", got, conn.Drained())
	}
}

// TestTLSConnKeyUpdate: a TLS 1.3 KeyUpdate from the peer (openssl
// s_client's "K" command: update requested, so crypto/tls answers with its
// own) between two messages is processed by the read loop, which then
// waits for the socket and reads the next message under the new key.
func TestTLSConnKeyUpdate(t *testing.T) {
	openssl, err := exec.LookPath("openssl")
	if err != nil {
		t.Skip("no openssl")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	cmd := exec.Command(openssl, "s_client", "-connect", ln.Addr().String(), "-tls1_3")
	var out syncBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	a, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	srv := rawio.TLSServer(rawio.Wrap(a), nil, &tls.Config{Certificates: []tls.Certificate{testCert(t)}})
	l, ok := any(srv).(rawio.Looper)
	if !ok {
		t.Skip("no TLS read loop on this platform")
	}
	_ = a.SetReadDeadline(time.Now().Add(20 * time.Second))
	lines := make(chan string, 3)
	go func() {
		_, _ = io.WriteString(stdin, "hello1\n")
		<-lines
		_, _ = io.WriteString(stdin, "K\n")
		time.Sleep(200 * time.Millisecond) // s_client reads its commands one line per read
		_, _ = io.WriteString(stdin, "hello2\n")
		<-lines
		_ = stdin.Close()
	}()
	buf := make([]byte, 64)
	var got []byte
	done := errors.New("done")
	err = l.ReadLoop(func() []byte { return buf }, func(n int) error {
		got = append(got, buf[:n]...)
		if bytes.HasSuffix(got, []byte("\n")) {
			lines <- string(got)
			if bytes.Count(got, []byte("\n")) == 2 {
				return done
			}
		}
		return nil
	}, nil)
	if err != done || string(got) != "hello1\nhello2\n" {
		t.Fatalf("ReadLoop = %v, got %q", err, got)
	}
	if v := srv.ConnectionState().Version; v != tls.VersionTLS13 {
		t.Fatalf("version %x", v)
	}
	if !strings.Contains(out.String(), "KEYUPDATE") {
		t.Fatalf("s_client sent no KeyUpdate:\n%s", out.String())
	}
}

// syncBuffer is a bytes.Buffer safe for a command's output goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}
