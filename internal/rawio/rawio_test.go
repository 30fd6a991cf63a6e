package rawio_test

import (
	"bytes"
	"crypto/rand"
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"

	"github.com/dbproxy/dbproxy/internal/rawio"
)

func tcpPair(t *testing.T) (a, b net.Conn) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	b, err = net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	a, err = l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close(); b.Close() })
	return a, b
}

func TestRawIOConn(t *testing.T) {
	a, b := tcpPair(t)
	ra := rawio.Wrap(a)
	if _, ok := ra.(*net.TCPConn); ok {
		t.Skip("no raw I/O on this platform")
	}
	// A write far larger than the socket buffers completes (waiting for
	// writability through the poller), and arrives intact.
	big := make([]byte, 16<<20)
	if _, err := rand.Read(big); err != nil {
		t.Fatal(err)
	}
	got := make(chan []byte, 1)
	go func() {
		buf, _ := io.ReadAll(io.LimitReader(b, int64(len(big))))
		got <- buf
	}()
	if n, err := ra.Write(big); n != len(big) || err != nil {
		t.Fatalf("Write = %d, %v", n, err)
	}
	if !bytes.Equal(<-got, big) {
		t.Fatal("data corrupted")
	}
	// Reads see data, then a read deadline interrupts a blocked read.
	if _, err := b.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 16)
	if n, err := io.ReadAtLeast(ra, buf, 5); err != nil || string(buf[:n]) != "hello" {
		t.Fatalf("Read = %q, %v", buf[:n], err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := ra.Read(buf)
		done <- err
	}()
	time.Sleep(10 * time.Millisecond)
	_ = a.SetReadDeadline(time.Unix(1, 0))
	if err := <-done; !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("interrupted Read: %v, want deadline exceeded", err)
	}
	_ = a.SetReadDeadline(time.Time{})
	// EOF when the peer closes.
	b.Close()
	if n, err := ra.Read(buf); n != 0 || err != io.EOF {
		t.Fatalf("Read after peer close = %d, %v; want EOF", n, err)
	}
	// Close interrupts and later calls fail with net.ErrClosed.
	ra.Close()
	if _, err := ra.Read(buf); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Read after Close: %v", err)
	}
	if _, err := ra.Write(buf); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Write after Close: %v", err)
	}
}
