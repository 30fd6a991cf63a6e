package rawio_test

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/dbproxy/dbproxy/internal/rawio"
)

func fdOpen(fd int) bool {
	_, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0)
	return err == nil
}

// TestLend: a lent socket reads without waiting (ErrWouldBlock), keeps
// what the socket does not take until Flush, survives Close while lent
// (shut down, not closed: the descriptor number cannot be reused under
// the loop) and, released, waits again under its deadlines and closes.
func TestLend(t *testing.T) {
	a, b := tcpPair(t)
	ra := rawio.Wrap(a)
	l, ok := ra.(rawio.Lender)
	if !ok {
		t.Fatal("wrapped TCP connection is no Lender")
	}
	fd, err := l.Lend()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Write([]byte("x")); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("the original net.Conn after Lend: %v, want it closed", err)
	}
	if _, err := ra.(*net.TCPConn); err {
		t.Fatal("wrapper is the TCPConn")
	}
	if _, err := ra.(interface {
		SyscallConn() (syscall.RawConn, error)
	}).SyscallConn(); err == nil {
		t.Fatal("SyscallConn of a lent socket works")
	}

	buf := make([]byte, 64)
	if n, err := ra.Read(buf); n != 0 || err != rawio.ErrWouldBlock {
		t.Fatalf("Read with nothing waiting: %d, %v", n, err)
	}
	if _, err := b.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	waitReadable(t, fd)
	if n, err := ra.Read(buf); err != nil || string(buf[:n]) != "hello" {
		t.Fatalf("Read: %q, %v", buf[:n], err)
	}

	// The peer does not read: writes never wait, the rest is pending.
	chunk := bytes.Repeat([]byte("abcdefgh"), 8192)
	total := 0
	for !l.Pending() {
		n, err := ra.Write(chunk)
		if err != nil || n != len(chunk) {
			t.Fatalf("Write: %d, %v", n, err)
		}
		total += n
		if total > 1<<30 {
			t.Fatal("nothing pending after 1 GiB")
		}
	}
	// Written after something is pending goes behind it.
	if _, err := ra.Write([]byte("END")); err != nil {
		t.Fatal(err)
	}
	total += 3
	got := make(chan []byte)
	go func() {
		all, _ := io.ReadAll(io.LimitReader(b, int64(total)))
		got <- all
	}()
	deadline := time.Now().Add(10 * time.Second)
	for l.Pending() {
		if _, err := l.Flush(); err != nil {
			t.Fatal(err)
		}
		if time.Now().After(deadline) {
			t.Fatal("pending output not flushed")
		}
		time.Sleep(time.Millisecond)
	}
	all := <-got
	if len(all) != total || !bytes.HasSuffix(all, []byte("END")) || !bytes.HasPrefix(all, chunk) {
		t.Fatalf("peer got %d bytes, want %d ending in END", len(all), total)
	}

	// Close while lent: shut down (the peer sees the end), still open.
	if err := ra.Close(); err != nil {
		t.Fatal(err)
	}
	if !fdOpen(fd) {
		t.Fatal("descriptor closed while lent")
	}
	_ = b.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := b.Read(buf); err != io.EOF {
		t.Fatalf("peer after Close of a lent socket: %d, %v, want EOF", n, err)
	}
	l.Release()
	if fdOpen(fd) {
		t.Fatal("descriptor still open after Close and Release")
	}
}

// TestLendReleased: after Release, Read waits for input under the read
// deadline, Write writes pending output first, Close closes at once.
func TestLendReleased(t *testing.T) {
	a, b := tcpPair(t)
	ra := rawio.Wrap(a)
	l := ra.(rawio.Lender)
	fd, err := l.Lend()
	if err != nil {
		t.Fatal(err)
	}
	l.Release()

	buf := make([]byte, 16)
	_ = ra.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	if _, err := ra.Read(buf); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Read past the deadline: %v, want ErrDeadlineExceeded", err)
	}
	_ = ra.SetReadDeadline(time.Time{})
	go func() {
		time.Sleep(50 * time.Millisecond)
		_, _ = b.Write([]byte("late"))
	}()
	if n, err := ra.Read(buf); err != nil || string(buf[:n]) != "late" {
		t.Fatalf("Read that waits: %q, %v", buf[:n], err)
	}
	if _, err := ra.Write([]byte("bye")); err != nil {
		t.Fatal(err)
	}
	_ = b.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := io.ReadFull(b, buf[:3]); err != nil || string(buf[:n]) != "bye" {
		t.Fatalf("peer: %q, %v", buf[:n], err)
	}
	if err := ra.Close(); err != nil {
		t.Fatal(err)
	}
	if fdOpen(fd) {
		t.Fatal("descriptor open after Close")
	}
	if _, err := ra.Read(buf); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Read after Close: %v", err)
	}
	if err := ra.Close(); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("second Close: %v", err)
	}
}

func waitReadable(t *testing.T, fd int) {
	t.Helper()
	fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
	if n, err := unix.Poll(fds, 5000); n != 1 || err != nil {
		t.Fatalf("poll: %d, %v", n, err)
	}
}

// TestLendWritersConcurrent: the write side of a lent socket may be used
// by two goroutines at once (the loop's and a hook's that left it) while
// the loop flushes: every byte arrives once, each write whole and in its
// writer's order, and OnPending runs when output goes pending.
func TestLendWritersConcurrent(t *testing.T) {
	a, b := tcpPair(t)
	// Small buffers: the writers outrun the peer, output goes pending.
	_ = a.(*net.TCPConn).SetWriteBuffer(16 << 10)
	_ = b.(*net.TCPConn).SetReadBuffer(16 << 10)
	ra := rawio.Wrap(a)
	l := ra.(rawio.Lender)
	var pendings atomic.Int32
	l.OnPending(func() { pendings.Add(1) })
	if _, err := l.Lend(); err != nil {
		t.Fatal(err)
	}
	const writes, size = 2000, 512
	want := 2 * writes * size
	got := make(chan []byte)
	go func() {
		all, _ := io.ReadAll(io.LimitReader(b, int64(want)))
		got <- all
	}()
	var wg sync.WaitGroup
	for w := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range writes {
				p := bytes.Repeat([]byte{byte('a' + w)}, size)
				p[0], p[1] = byte(i>>8), byte(i)
				if _, err := ra.Write(p); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	stop := make(chan struct{})
	flushed := make(chan struct{})
	go func() { // the loop
		defer close(flushed)
		for {
			select {
			case <-stop:
				return
			default:
			}
			if l.Pending() {
				if _, err := l.Flush(); err != nil {
					t.Error(err)
					return
				}
			}
			runtime.Gosched()
		}
	}()
	wg.Wait()
	for l.Pending() {
		if _, err := l.Flush(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Millisecond)
	}
	close(stop)
	<-flushed
	all := <-got
	if len(all) != want {
		t.Fatalf("peer got %d bytes, want %d", len(all), want)
	}
	next := [2]int{}
	for off := 0; off < len(all); off += size {
		p := all[off : off+size]
		w := int(p[size-1] - 'a')
		if w < 0 || w > 1 || !bytes.Equal(p[2:], bytes.Repeat([]byte{p[size-1]}, size-2)) {
			t.Fatalf("write at %d torn or interleaved", off)
		}
		if i := int(p[0])<<8 | int(p[1]); i != next[w] {
			t.Fatalf("writer %d: write %d arrived where %d was due", w, i, next[w])
		}
		next[w]++
	}
	if pendings.Load() == 0 {
		t.Fatal("OnPending never ran")
	}
}
