// Package rawio wraps TCP connections so that Read and Write use raw system
// calls through syscall.RawConn (Linux only; elsewhere [Wrap] is the
// identity). The protocol relays (proxy/postgres, proxy/mysql) use it for
// their sockets.
//
// Wrapped connections also implement [Looper], a read loop that saves the
// relays one system call per message exchange.
//
// It owns only that wrapper; it must not import any dbproxy package.
package rawio
