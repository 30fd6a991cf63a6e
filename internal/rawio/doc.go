// Package rawio wraps TCP connections so that Read and Write use raw system
// calls through syscall.RawConn (Linux only; elsewhere [Wrap] is the
// identity). The protocol relays (proxy/postgres, proxy/mysql) use it for
// their sockets.
//
// It owns only that wrapper; it must not import any dbproxy package.
package rawio
