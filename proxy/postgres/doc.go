// Package postgres is the PostgreSQL wire protocol of dbproxy: a [Handler]
// (a proxy.Handler) that accepts PostgreSQL clients, connects each to the
// upstream server, authenticates, and relays the session.
//
// # Client leg
//
// The handler answers SSLRequest with 'S' and upgrades to TLS when
// Options.TLS is set, 'N' otherwise; a client that sent bytes after its
// SSLRequest before the handshake is dropped. PostgreSQL 17 direct SSL (the
// first byte is a TLS ClientHello) is accepted with ALPN "postgresql".
// GSSENCRequest is answered 'N'. With Options.RequireTLS a plaintext client
// gets FATAL 28000 "SSL required". A client asking for protocol 3.1 or 3.2
// gets NegotiateProtocolVersion(3.0) and the session runs 3.0. As the
// server does, a connection whose first packet has an impossible length (a
// Terminate sent before the startup packet, as node-postgres does when a
// connection is ended right after it was opened, or anything a scanner
// sends) or that closes before a whole startup packet is closed without a
// message; a malformed StartupMessage gets FATAL 08P01.
//
// # Upstream leg
//
// The upstream connection follows libpq sslmode semantics
// (proxy.UpstreamTLS): disable, prefer (TLS if offered, plaintext
// otherwise or if the handshake fails), require (TLS, unverified; verified
// against the roots if a CA file is given, as libpq does), verify-ca (chain
// verified) and verify-full (chain and host name verified). A CA file may
// hold many certificates, as the RDS global bundle does.
//
// With several upstream hosts (proxy.Upstream) a session tries them in
// order: a host that cannot be reached (dial, TLS) or that answers the
// startup with 57P03 (starting up, shutting down, in recovery; unless it
// is the last host) is skipped, a host that refuses the login ends the
// search (as libpq). Under
// target_session_attrs read-write, a session that the server reports
// read-only at startup (in_hot_standby or default_transaction_read_only,
// reported by PostgreSQL 14 and later; older servers count as read-write)
// is dropped before anything of it reaches the client: if the client took
// no part in that login (trust) the next host is tried,
// otherwise the client gets FATAL 08001 to connect again, and new sessions
// start at the next host. When every host is skipped the client gets FATAL
// 08001 naming each host and why (hosts.go).
//
// # Authentication modes
//
// The proxy first opens the upstream connection with the client's own
// startup parameters and lets the server choose the method:
//
//   - trust: the server's AuthenticationOk is relayed; nobody sends a
//     password.
//   - md5, password (cleartext) and any SASL exchange when the client leg is
//     plaintext: relayed message by message. The proxy never decodes the
//     client's password messages (so the pgproto3 SetAuthType pitfall,
//     pgx#2166, does not arise). A cleartext password request (the
//     server's `password` method) is relayed only when both legs are safe
//     for a password in clear: the client leg TLS or loopback, and the
//     upstream leg loopback or TLS with a verified certificate (verify-ca,
//     verify-full; under prefer or require a man in the middle could pose
//     as the server). Otherwise the client gets FATAL 28000 naming the
//     setting to change (sslmode on the client, upstream_tls.mode on the
//     listener) before it is asked for its password, and the refusal is
//     logged.
//   - SCRAM-SHA-256 when the client leg is TLS: SCRAM cannot be relayed
//     then (the client would bind to the proxy's certificate, or send the
//     GS2 flag 'y', which a TLS server rejects as a downgrade). The proxy
//     terminates it: it asks the client for its password with
//     AuthenticationCleartextPassword (inside the client's TLS session) and
//     logs in upstream itself with SCRAM-SHA-256-PLUS (channel binding
//     tls-server-end-point to the upstream certificate) when the server
//     offers it over TLS, SCRAM-SHA-256 otherwise, verifying the server's
//     signature. The password is kept only for the exchange.
//
// Whatever the mode, a failed login reaches the client as the server's own
// ErrorResponse, verbatim (wrong password: 28P01, as on a direct
// connection), and the upstream connection is closed.
//
// Consequences: with a TLS client leg and a SCRAM server, the client sees a
// cleartext password request (inside TLS), so a client that insists on
// SCRAM (libpq require_auth=scram-sha-256, channel_binding=require) refuses
// it; a plaintext client is offered SCRAM-SHA-256 without the -PLUS variant
// (libpq refuses a PLUS offer on a non-TLS connection).
//
// # Relay
//
// After startup two goroutines relay the session, one per direction, each
// a proxy/relay pump driven by this package's framer (relay.go): the pump
// reads what is available into a pooled buffer, the framer walks the
// message headers (type byte, int32 length), and each run of messages is
// written straight from that buffer in one write, without decoding them.
// Messages longer than the buffer stream through; a hooked one is handed
// over whole. Client messages longer than
// Options.MaxMessageSize (1 GB by default) or with an impossible length end
// that session with FATAL 08P01.
//
// On Linux the sockets are read and written with raw system calls through
// syscall.RawConn (waiting still goes through the netpoller); this avoids
// the runtime's syscall bookkeeping, which on a relay's rhythm costs a futex
// wake-up of the sysmon thread per call. A busy session holds two 16 KiB
// pooled buffers; nothing is allocated per message.
//
// Idle sessions hold no goroutine (Linux, plain TCP legs): the pumps run
// under a proxy.Relay. Once a session has had no request outstanding for
// proxy.ParkDelay (200 ms), each pump reading a plain TCP socket is
// interrupted with a read deadline at a message boundary, gives its buffer
// back and parks the socket on the server's poller (internal/netpark); its
// goroutine returns. Input (a query, a notification from the server, a
// hang-up) starts a fresh goroutine that goes on from the pump's state. A
// request wakes the server->client pump at once, so that a busy session
// waits for answers in the runtime as before. Drains, idle timeouts and
// hard closes wake parked pumps before anything is closed. A TLS leg, the
// client's or the one to the server, parks too: it reads through rawio's
// record reader (rawio.TLSServer, rawio.TLSClient), which tells when
// crypto/tls holds no input the socket no longer shows; while it holds
// some, the leg keeps its goroutine. Whichever pump ends last ends the
// session.
//
// The hook point for the layer above (encryption) is [Interceptor]: per
// session it names the message types it wants, per direction, and gets each
// such message whole with a [Writer] for what to forward instead. With no
// Interceptor nothing is decoded.
//
// The relay tracks the transaction state from ReadyForQuery and the
// messages still awaiting one (accounting.go, on a relay.Exchanges), so that a graceful shutdown closes each
// session between transactions (FATAL 57P01 to the client, Terminate to the
// server). When the server goes away the client gets the server's last
// ErrorResponse or FATAL 08006; when the client goes away the server gets
// Terminate.
//
// # Cancellation
//
// Clients receive proxy-issued BackendKeyData: the server's process ID
// (pg_backend_pid() and pg_terminate_backend agree with it, as directly)
// and a random secret (a random process ID too if the server's is already
// issued on the listener). A CancelRequest with such a key is forwarded to
// the server, on a new upstream connection to the address the session is
// connected to (not the host name, which may point elsewhere by now), with
// the server's own key.
//
// # Boundaries
//
// This package must not import config, proxy/mysql or any KMS provider.
// It never logs SQL text, parameter values, passwords or message bodies.
package postgres
