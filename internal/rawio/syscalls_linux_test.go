package rawio

import (
	"net"
	"syscall"
	"testing"
	"unsafe"
)

// BenchmarkSocketCalls times one relayed message's system calls on a
// loopback TCP socket (100 bytes sent on one end, read on the other) as
// the lent path makes them (sendto/recvfrom: recv and send) against
// write/read, which go through the file layer first. Run it with
// -count to see the difference above the noise:
//
//	go test -run - -bench SocketCalls -count 6 ./internal/rawio
func BenchmarkSocketCalls(b *testing.B) {
	raw := func(nr uintptr) func(fd uintptr, p []byte) (uintptr, syscall.Errno) {
		return func(fd uintptr, p []byte) (uintptr, syscall.Errno) {
			r, _, e := syscall.RawSyscall(nr, fd, uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
			return r, e
		}
	}
	for _, c := range []struct {
		name        string
		write, read func(fd uintptr, p []byte) (uintptr, syscall.Errno)
	}{
		{"send-recv", send, recv},
		{"write-read", raw(syscall.SYS_WRITE), raw(syscall.SYS_READ)},
	} {
		b.Run(c.name, func(b *testing.B) {
			wfd, rfd := socketPair(b)
			msg, buf := make([]byte, 100), make([]byte, 16<<10)
			for b.Loop() {
				if _, e := c.write(wfd, msg); e != 0 {
					b.Fatal(e)
				}
				for {
					n, e := c.read(rfd, buf)
					if e == syscall.EAGAIN {
						continue
					}
					if e != 0 || n != uintptr(len(msg)) {
						b.Fatalf("read %d, %v", n, e)
					}
					break
				}
			}
		})
	}
}

// socketPair returns the descriptors of the two ends of a loopback TCP
// connection, non-blocking.
func socketPair(b *testing.B) (uintptr, uintptr) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	s, err := l.Accept()
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { c.Close(); s.Close() })
	fd := func(conn net.Conn) uintptr {
		rc, err := conn.(*net.TCPConn).SyscallConn()
		if err != nil {
			b.Fatal(err)
		}
		var d uintptr
		if err := rc.Control(func(f uintptr) { d = f }); err != nil {
			b.Fatal(err)
		}
		return d
	}
	return fd(c), fd(s)
}
