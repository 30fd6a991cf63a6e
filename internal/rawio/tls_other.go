//go:build !linux

package rawio

import "net"

// waiter is unused outside Linux: a TLSConn is no Looper there.
type waiter struct{}

func (w *waiter) init(net.Conn) {}
