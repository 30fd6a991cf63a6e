// Package rawio wraps TCP connections so that Read and Write use raw system
// calls through syscall.RawConn (Linux only; elsewhere [Wrap] is the
// identity). The protocol relays (proxy/postgres, proxy/mysql) use it for
// their sockets.
//
// Wrapped connections also implement [Looper], a read loop that saves the
// relays one system call per message exchange.
//
// [TLSServer] (the client's leg) and [TLSClient] (the leg to the database)
// wrap crypto/tls so that it never buffers input past the record it is
// reading: the relay
// can then tell when nothing is held above the socket ([Drainer]) and let
// an idle TLS leg wait on the socket like a plain one, with no goroutine
// and no read buffer.
//
// It owns those wrappers; it must not import any dbproxy package.
package rawio
