package rawio

// ReadBufCap exposes TLSConn.readBufCap to tests.
func ReadBufCap(c *TLSConn) int { return c.readBufCap() }
