package rawio_test

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"testing"
	"time"

	"github.com/dbproxy/dbproxy/internal/rawio"
)

func tcpPair(t testing.TB) (a, b net.Conn) {
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

// TestReadLoop streams many writes of random sizes and timings into a
// ReadLoop with a small buffer (so reads both fill it and come up short)
// and checks every byte arrives in order: a loop that parked while data sat
// in the socket would stall here until the deadline fails the test.
func TestReadLoop(t *testing.T) {
	a, b := tcpPair(t)
	ra := rawio.Wrap(a)
	l, ok := ra.(rawio.Looper)
	if !ok {
		t.Skip("no raw I/O on this platform")
	}
	const total = 4 << 20
	want := make([]byte, total)
	if _, err := rand.Read(want); err != nil {
		t.Fatal(err)
	}
	go func() {
		sizes := make([]byte, 1)
		for off := 0; off < total; {
			_, _ = rand.Read(sizes)
			n := min(total-off, 1+int(sizes[0])*int(sizes[0]))
			if _, err := b.Write(want[off : off+n]); err != nil {
				return
			}
			off += n
			if sizes[0]%7 == 0 {
				time.Sleep(50 * time.Microsecond)
			}
		}
	}()
	_ = a.SetReadDeadline(time.Now().Add(20 * time.Second))
	got := make([]byte, 0, total)
	buf := make([]byte, 1000)
	done := errors.New("done")
	err := l.ReadLoop(func() []byte { return buf }, func(n int) error {
		got = append(got, buf[:n]...)
		if len(got) == total {
			return done
		}
		return nil
	}, nil)
	if err != done {
		t.Fatalf("ReadLoop = %v after %d of %d bytes", err, len(got), total)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("data corrupted")
	}

	// Ping-pong, the relay's rhythm: each message arrives only after the
	// previous one was handled, so every wait parks with an empty socket.
	go func() {
		p := make([]byte, 1)
		for i := range 2000 {
			if _, err := b.Write([]byte{byte(i)}); err != nil {
				return
			}
			if _, err := io.ReadFull(b, p); err != nil {
				return
			}
		}
	}()
	count, idles := 0, 0
	err = l.ReadLoop(func() []byte { return buf }, func(n int) error {
		if n != 1 || buf[0] != byte(count) {
			return fmt.Errorf("message %d: got %v", count, buf[:n])
		}
		if _, err := ra.Write(buf[:1]); err != nil {
			return err
		}
		if count++; count == 2000 {
			return done
		}
		return nil
	}, func() { idles++ })
	if err != done {
		t.Fatalf("ping-pong ReadLoop = %v after %d messages", err, count)
	}
	// Each wait is announced: idle runs when a read finds the socket
	// empty (EAGAIN), which is most of the time in this rhythm (the
	// answer to the peer's byte is read again at once, and the next byte
	// is usually not there yet), never more than once per message.
	if idles < (count-1)/2 || idles > count {
		t.Fatalf("idle called %d times for %d messages", idles, count)
	}

	// A deadline interrupts a parked loop; EOF ends it.
	_ = a.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
	if err := l.ReadLoop(func() []byte { return buf }, func(int) error { return nil }, nil); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("ReadLoop past the deadline: %v", err)
	}
	_ = a.SetReadDeadline(time.Time{})
	b.Close()
	if err := l.ReadLoop(func() []byte { return buf }, func(int) error { return nil }, nil); err != io.EOF {
		t.Fatalf("ReadLoop after peer close: %v, want EOF", err)
	}
}

// TestReadLoopDeadlineWhileStreaming: a deadline stops a ReadLoop even when
// the source never pauses, so that every read fills the buffer.
func TestReadLoopDeadlineWhileStreaming(t *testing.T) {
	a, b := tcpPair(t)
	l, ok := rawio.Wrap(a).(rawio.Looper)
	if !ok {
		t.Skip("no raw I/O on this platform")
	}
	go func() {
		chunk := make([]byte, 64<<10)
		for {
			if _, err := b.Write(chunk); err != nil {
				return
			}
		}
	}()
	buf := make([]byte, 100)
	var set time.Time
	reads := 0
	err := l.ReadLoop(func() []byte { return buf }, func(int) error {
		if reads++; reads == 1000 {
			set = time.Now()
			_ = a.SetReadDeadline(time.Unix(1, 0))
		}
		if !set.IsZero() && time.Since(set) > 5*time.Second {
			return errors.New("deadline ignored while data kept coming")
		}
		return nil
	}, nil)
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("ReadLoop = %v, want deadline exceeded", err)
	}
}

// dataThenError returns its data and err from the same Read call.
type dataThenError struct {
	data []byte
	err  error
}

func (r *dataThenError) Read(p []byte) (int, error) {
	n := copy(p, r.data)
	r.data = r.data[n:]
	if len(r.data) == 0 {
		return n, r.err
	}
	return n, nil
}

// TestReadEachReader: with a plain reader, bytes that come with an error
// are handled before the error is returned; a handler error stops at once.
func TestReadEachReader(t *testing.T) {
	boom := errors.New("boom")
	buf := make([]byte, 4)
	var got []byte
	collect := func(n int) error { got = append(got, buf[:n]...); return nil }
	err := rawio.ReadEach(&dataThenError{data: []byte("hello, world"), err: boom}, func() []byte { return buf }, collect, nil)
	if err != boom || string(got) != "hello, world" {
		t.Fatalf("ReadEach = %v after %q; want boom after everything", err, got)
	}
	stop := errors.New("stop")
	calls := 0
	err = rawio.ReadEach(&dataThenError{data: []byte("0123456789"), err: io.EOF}, func() []byte { return buf }, func(int) error {
		calls++
		return stop
	}, nil)
	if err != stop || calls != 1 {
		t.Fatalf("ReadEach = %v after %d calls; want stop after 1", err, calls)
	}
}

// TestReadLoopEOFWithData: bytes followed at once by the peer's FIN (a
// client that sends a command needing no answer and closes) end the loop
// with io.EOF after the bytes, both when they are already there as the
// loop starts and when they arrive while it waits.
func TestReadLoopEOFWithData(t *testing.T) {
	for _, wait := range []bool{false, true} {
		t.Run(fmt.Sprintf("arrives-while-waiting=%v", wait), func(t *testing.T) {
			for range 50 {
				a, b := tcpPair(t)
				l, ok := rawio.Wrap(a).(rawio.Looper)
				if !ok {
					t.Skip("no raw I/O on this platform")
				}
				send := func() {
					_, _ = b.Write([]byte("command"))
					_ = b.Close()
				}
				if wait {
					go func() { time.Sleep(time.Millisecond); send() }()
				} else {
					send()
					time.Sleep(time.Millisecond) // both are in a's receive queue
				}
				_ = a.SetReadDeadline(time.Now().Add(5 * time.Second))
				buf := make([]byte, 100)
				got := 0
				err := l.ReadLoop(func() []byte { return buf }, func(n int) error { got += n; return nil }, nil)
				if !errors.Is(err, io.EOF) || got != len("command") {
					t.Fatalf("ReadLoop: %v after %d bytes, want io.EOF after %d", err, got, len("command"))
				}
			}
		})
	}
}
