package relay

import (
	"io"
	"sync"
)

// Shared is a destination written by a pump and, between the pump's
// logical messages, by the goroutine of the opposite direction: the
// replies the proxy makes itself to requests it does not forward (a
// refused statement). Both protocols answer their clients through one.
//
// The pump writes through it as through any io.Writer, and tells it
// after each write whether its output stopped inside a logical message
// (one streaming through in pieces); a reply may only go out at a message
// boundary. Whoever replies holds the lock across the decision and the
// write ([Shared.Lock], [Shared.AtBoundary], [Shared.WriteLocked]), so
// that no write of the pump comes between them.
type Shared struct {
	mu  sync.Mutex
	w   io.Writer
	mid bool // the pump's last write ended inside a logical message
}

// NewShared returns a destination writing to w.
func NewShared(w io.Writer) *Shared { return &Shared{w: w} }

// Write writes p under the lock (io.Writer), for writers other than the
// pump, such as a final error.
func (s *Shared) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

// pumpWrite is the pump's write: mid is whether p ends inside a logical
// message.
func (s *Shared) pumpWrite(p []byte, mid bool) error {
	s.mu.Lock()
	_, err := s.w.Write(p)
	s.mid = mid
	s.mu.Unlock()
	return err
}

// Lock takes the destination for a reply.
func (s *Shared) Lock() { s.mu.Lock() }

// Unlock releases it.
func (s *Shared) Unlock() { s.mu.Unlock() }

// AtBoundary reports, with the lock held, whether everything the pump
// wrote so far ends at a logical message boundary.
func (s *Shared) AtBoundary() bool { return !s.mid }

// WriteLocked writes p with the lock held.
func (s *Shared) WriteLocked(p []byte) error {
	_, err := s.w.Write(p)
	return err
}
