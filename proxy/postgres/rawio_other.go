//go:build !linux

package postgres

import "net"

// withRawIO is the identity outside Linux.
func withRawIO(c net.Conn) net.Conn { return c }
