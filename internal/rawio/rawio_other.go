//go:build !linux

package rawio

import "net"

// Wrap is the identity outside Linux.
func Wrap(c net.Conn) net.Conn { return c }
