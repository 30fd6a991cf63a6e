package proxy

import (
	"net"
	"sync"
	"time"
)

// Sockets closes a proxied session's two sockets — the accepted client
// socket and, once dialled, the upstream one — from any goroutine, exactly
// when needed: HardClose (the connection's context was cancelled) closes
// both and makes a later SetServer fail, so an upstream dialled during a
// hard close is never left open. Both protocol packages use it.
//
// The zero value is not usable; call NewSockets.
type Sockets struct {
	client net.Conn

	mu     sync.Mutex
	server net.Conn
	closed bool
}

// NewSockets returns Sockets for the accepted client socket.
func NewSockets(client net.Conn) *Sockets { return &Sockets{client: client} }

// SetServer records the upstream socket (the raw one, whose Close ends any
// TLS on top of it). It reports false, and the caller must close server
// itself, if HardClose already ran.
func (s *Sockets) SetServer(server net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.server = server
	return true
}

// HardClose closes both sockets.
func (s *Sockets) HardClose() {
	s.mu.Lock()
	s.closed = true
	srv := s.server
	s.mu.Unlock()
	_ = s.client.Close()
	if srv != nil {
		_ = srv.Close()
	}
}

// CloseServer closes the upstream socket, if any.
func (s *Sockets) CloseServer() {
	s.mu.Lock()
	srv := s.server
	s.mu.Unlock()
	if srv != nil {
		_ = srv.Close()
	}
}

// SetDeadline sets the deadline of both sockets (the last words of a
// session).
func (s *Sockets) SetDeadline(t time.Time) {
	s.mu.Lock()
	srv := s.server
	s.mu.Unlock()
	_ = s.client.SetDeadline(t)
	if srv != nil {
		_ = srv.SetDeadline(t)
	}
}
