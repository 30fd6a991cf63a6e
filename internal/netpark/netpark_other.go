//go:build !linux

package netpark

import (
	"errors"
	"syscall"
)

// ErrClosed is returned by Park after Close.
var ErrClosed = errors.New("netpark: poller closed")

// Poller is not available outside Linux.
type Poller struct{}

// Handle is one parked socket.
type Handle struct{}

// New reports that parking is unsupported.
func New() (*Poller, error) { return nil, errors.ErrUnsupported }

// Park is unsupported.
func (p *Poller) Park(syscall.Conn, func()) (*Handle, error) { return nil, errors.ErrUnsupported }

// Unpark does nothing.
func (h *Handle) Unpark() bool { return false }

// Close does nothing.
func (p *Poller) Close() error { return nil }

// Len returns 0.
func (p *Poller) Len() int { return 0 }
