package proxy_test

import (
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/dbproxy/dbproxy/proxy"
)

// pipe returns an in-memory connection pair closed at the end of the test.
func pipe(t *testing.T) (net.Conn, net.Conn) {
	t.Helper()
	a, b := net.Pipe()
	t.Cleanup(func() { a.Close(); b.Close() })
	return a, b
}

// isClosed reports whether c was closed: a read on a closed net.Pipe end
// fails at once with io.ErrClosedPipe, an open one times out.
func isClosed(c net.Conn) bool {
	_ = c.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
	_, err := c.Read(make([]byte, 1))
	return errors.Is(err, io.ErrClosedPipe)
}

func TestSockets(t *testing.T) {
	t.Run("hard close closes both", func(t *testing.T) {
		client, _ := pipe(t)
		server, _ := pipe(t)
		s := proxy.NewSockets(client)
		if !s.SetServer(server) {
			t.Fatal("SetServer before HardClose failed")
		}
		s.HardClose()
		if !isClosed(client) || !isClosed(server) {
			t.Fatal("HardClose left a socket open")
		}
	})
	t.Run("server set after hard close is refused", func(t *testing.T) {
		client, _ := pipe(t)
		server, _ := pipe(t)
		s := proxy.NewSockets(client)
		s.HardClose()
		if s.SetServer(server) {
			t.Fatal("SetServer after HardClose succeeded")
		}
		if isClosed(server) {
			t.Fatal("SetServer closed the caller's socket; the caller owns it")
		}
	})
	t.Run("close server leaves client", func(t *testing.T) {
		client, _ := pipe(t)
		server, _ := pipe(t)
		s := proxy.NewSockets(client)
		s.CloseServer() // no server yet: no-op
		s.SetServer(server)
		s.CloseServer()
		if !isClosed(server) || isClosed(client) {
			t.Fatal("CloseServer closed the wrong socket")
		}
	})
}
