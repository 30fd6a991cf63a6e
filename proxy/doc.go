// Package proxy owns the protocol-independent part of a dbproxy listener:
// accepting connections, tracking them, and shutting them down; plus what
// the wire packages (proxy/postgres, proxy/mysql) share for their sessions:
// TLS configuration, the options every handler has ([ListenerOptions]),
// the upstream and its dialer ([Upstream]), the listener's logs
// ([ListenerLogs]), what every session tells the encryption layer
// ([Interceptor], [SessionBase]), a session's life ([SessionLife]: the
// close-once socket pair [Sockets], cleanup, hard close, the hand-over to
// a [Relay]), the errors that end a relay's pumps (relay_errors.go) and
// small helpers (session_helpers.go). The pumps themselves, and the count
// of a session's outstanding exchanges, are proxy/relay's.
//
// # Server lifecycle
//
// A [Server] runs one [Handler] (one wire protocol, one upstream) on one or
// more listeners. [Server.Serve] blocks in the accept loop and returns
// [ErrServerClosed] once [Server.Shutdown] or [Server.Close] was called.
// Temporary accept errors (EMFILE, ENFILE, ECONNABORTED) do not end the loop:
// it backs off from 5 ms to 1 s and tries again.
//
// Every accepted connection runs in its own goroutine with a context derived
// from the listener's base context; the context is cancelled when the
// connection ends or the server is closed hard. A panic in a handler is
// recovered, logged and closes only that connection. A handler may keep
// the connection after its goroutine returns ([Conn.Detach], as
// http.Hijacker) and park idle sockets on the server's poller
// ([Conn.Poller]; Linux only), so that an idle session holds no goroutine;
// [Conn.OnClose] tells it to wake them before a hard close. [Relay] does
// all of that for a two-way relay; both protocols use it.
//
// [Server.Shutdown] drains: it closes the listeners, tells every connection
// that a drain is under way ([Conn.Draining], [Conn.OnDrain]) and then polls,
// with backoff, until every connection has finished or its context expires, at
// which point it closes the rest hard. What "idle" means is the protocol's
// business: a PostgreSQL connection is idle between transactions (at
// ReadyForQuery with status 'I' and nothing outstanding), so the handler ends
// it there. [Server.Close] is the hard stop.
//
// # Limits
//
// [Server.Limits] bound each listener served ([Limits]): connections per
// listener and per client address (over them, [Conn.Admission] names the
// limit and the handler refuses the client in its own protocol), and
// connections still in their handshake, where a new connection at the
// limit closes the oldest handshake of the address holding the most, so
// that stalled connections only ever evict each other. A handshake ends at
// the handler's first StateIdle or StateActive, or [Conn.HandshakeDone].
// The idle timeout is one reusable timer per connection, armed while it is
// idle; on expiry the connection is drained with [DrainIdleTimeout].
// Refusals and evictions are logged through internal/ratelog.
// [UpstreamDialer] is the proxy -> database dialer both protocols use,
// with TCP keepalive and (Linux) TCP_USER_TIMEOUT for dead-peer detection.
//
// # Upstream hosts
//
// An [Upstream] is one host:port or several (libpq's "h1:5432,h2:5432").
// Every dial resolves the host name again through its [Resolver] (no
// address is cached anywhere: after a DNS failover new sessions reach the
// new server) and tries each address in order; hosts are tried in order
// too, each within the connect timeout and a share of the caller's
// deadline ([Upstream.HostContext]). Each host verifies its own name
// unless a server name is configured. With [TargetReadWrite] the protocol
// drops read-only sessions and moves on ([Upstream.ReadOnly],
// [Upstream.Writable] keep the host that last took a read-write session
// first). [DialFunc] is the seam of each single attempt.
//
// # TLS
//
// [ServerTLSConfig] builds the client-facing TLS configuration with modern
// defaults (TLS 1.2 or newer, AEAD cipher suites with forward secrecy), and
// [UpstreamTLS] turns libpq sslmode semantics (disable, prefer, require,
// verify-ca, verify-full) into a client configuration for the database leg.
//
// # Observing
//
// [ListenerOptions.Observer] is what a listener reports to (cmd/dbproxy
// passes its metrics): the wire packages count finished and failed logins
// and, through the relay's pumps, the bytes read each way; the encryption
// layers count each statement forwarded, rewritten or refused. A refusal
// goes through [LogRefusal], which counts it under a fixed reason word
// ([RefusalReason]) and logs it once, alike for both protocols, with the
// statement's [Fingerprint] instead of its text. Without an Observer the
// hot paths pay one branch.
//
// # Boundaries
//
// This package must not import proxy/relay, proxy/postgres, proxy/mysql,
// config or any KMS provider: cmd/dbproxy translates the configuration into the option
// structs of this package and of the protocol packages. There is no global
// lock on any message path; the server's mutex guards only the listener and
// connection maps, touched once per accept and once per close.
package proxy
