package postgres

import (
	"net"

	"github.com/dbproxy/dbproxy/internal/rawio"
)

// withRawIO returns c with raw-syscall reads and writes on Linux TCP
// connections (see internal/rawio).
func withRawIO(c net.Conn) net.Conn { return rawio.Wrap(c) }
