//go:build !linux

package evloop

import (
	"errors"
	"time"
)

// Event bits (unused outside Linux).
const (
	In  = 0x1
	Out = 0x4
	Hup = 0x10
	Err = 0x8
)

// ErrClosed is returned by Add after Close.
var ErrClosed = errors.New("evloop: loop closed")

// Handler receives the events of one registered descriptor.
type Handler interface {
	Event(events uint32)
	Abort()
}

// Reg is a registration of a descriptor on a loop.
type Reg struct{}

// Loop is not available outside Linux.
type Loop struct{}

// New reports that event loops are Linux-only.
func New() (*Loop, error) { return nil, errors.New("evloop: Linux only") }

// Do does nothing.
func (l *Loop) Do(func()) bool { return false }

// Close does nothing.
func (l *Loop) Close() {}

// Add fails.
func (l *Loop) Add(int, uint32, Handler) (Reg, error) { return Reg{}, ErrClosed }

// Modify fails.
func (l *Loop) Modify(Reg, uint32) error { return ErrClosed }

// Remove does nothing.
func (l *Loop) Remove(Reg) {}

// Len is 0.
func (l *Loop) Len() int { return 0 }

// Handoff does nothing.
func (l *Loop) Handoff() {}

// OnLoop is false.
func (l *Loop) OnLoop() bool { return false }

// Done is a closed channel.
func (l *Loop) Done() <-chan struct{} {
	c := make(chan struct{})
	close(c)
	return c
}

// WatchStalls does nothing.
func (l *Loop) WatchStalls(time.Duration, func(time.Duration)) {}
