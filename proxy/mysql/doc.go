// Package mysql is the MySQL/MariaDB wire protocol of dbproxy: a [Handler]
// (a proxy.Handler) that accepts MySQL clients, greets them, connects each
// to the upstream server once it has sent its login, relays the login and
// then the session.
//
// # Connection phase
//
// The database is dialled only once the client has sent its
// HandshakeResponse, so connections that stall before that (slow clients,
// port scanners, a flood of TCP connects) never hold a database connection
// (max_connections on the server). To greet a client before there is a
// server greeting to relay, the Handler keeps a template: the last usable
// initial handshake read from the server (server version, capabilities,
// charset, status flags, default plugin, MariaDB-ness). The proxy sends the
// template with a fresh 20-byte scramble (crypto/rand, 7-bit, no NUL) and a
// connection id of its own, reads the SSLRequest (TLS) and
// HandshakeResponse, then dials the server and reads its real greeting.
// Connections accepted before the Handler has read a first greeting (the
// listener's first connection after start) are served the old way: the
// server is dialled at accept and its greeting relayed. Every real greeting
// read updates the template (logged when it changes).
//
// The client computed its auth response on the proxy's scramble. A response
// that does not depend on it (empty: no password; mysql_clear_password;
// sha256_password from a TLS client, the password in clear) is forwarded as
// is. Any other is replaced: the HandshakeResponse goes to the server with
// an empty auth response and the plugin name "dbproxy_rescramble", which no
// server implements. The server then does what it does for every client
// whose plugin differs from the account's: it sends an AuthSwitchRequest
// for the account's plugin with its own scramble, relayed to the client.
// So the client sees exactly one AuthSwitchRequest, which any client with
// CLIENT_PLUGIN_AUTH handles (go-sql-driver and libmysql accept one switch
// per login: the proxy switching first and the server switching again to
// ed25519 would fail), and the server checks an answer to its own scramble.
// A client without CLIENT_PLUGIN_AUTH cannot be switched: unless its
// password is empty it is refused with ERR 1251
// (ER_NOT_SUPPORTED_AUTH_MODE), as a server refuses it a plugin it cannot
// run. If the real greeting differs from the template in what the client
// relied on (MariaDB-ness, or a capability it selected that the server no
// longer offers, e.g. after a server upgrade or failover), the client gets
// ERR 2013 asking it to reconnect; the template is updated, so the next
// connection works. Until then clients see the template's server version
// string.
//
// Connection ids: the greeting's id is the proxy's, from a range servers do
// not reach (3221225472 and up; a server numbers its threads from 1, one
// per connection), while the session runs on the server's thread
// (SessionInfo.ConnectionID, CONNECTION_ID(), the process list). The
// Handler maps each live session's greeting id to its thread id;
// KILL [HARD|SOFT] [CONNECTION|QUERY] <id> (exactly that, whitespace
// around the words, an optional ';') and COM_PROCESS_KILL naming a greeting
// id of the same Handler are rewritten to the thread id before they are
// forwarded, so the mysql client's Ctrl-C (KILL QUERY <greeting id> on a
// new connection) interrupts its own query. Anything else, including a
// greeting id of another listener or proxy, reaches the server unchanged,
// where no thread has such an id ("Unknown thread id"): never another
// session. KILL <CONNECTION_ID()> works as on the server.
//
// Handshake timeout: Options.HandshakeTimeout (default 5s) bounds the
// connection phase on the client's socket; the server's socket has its own
// deadline, set when it is dialled. A client that stalls gets ERR 1043
// "Bad handshake" naming limits.handshake_timeout (written with a fresh
// short deadline) before the connection is closed; one that stalls inside
// its TLS handshake is closed without one.
//
// The capabilities offered
// to the client are the server's minus what the relay does not implement
// (see relayedCaps): compression, QUERY_ATTRIBUTES,
// OPTIONAL_RESULTSET_METADATA, MULTI_FACTOR_AUTHENTICATION and the MariaDB
// extended capabilities other than extended metadata (progress reports,
// COM_MULTI, bulk operations, cached metadata). MariaDB's extended
// metadata (MARIADB_CLIENT_EXTENDED_METADATA: type name and format of each
// column, e.g. format "json", which mysql2 and MariaDB's connectors use to
// return JSON columns as JSON) is passed through when both sides set it; it
// adds a field to every column definition ([MariaDBExtendedMetadata]) that
// an Interceptor rewriting column definitions must handle. A client that sets a
// flag it was not offered (mysql2 sets CLIENT_QUERY_ATTRIBUTES whatever the
// server says) is treated as the server treats it: the flag is ignored. The
// proxy reads the HandshakeResponse with such flags masked off, as the
// server does, and forwards them masked, so the server, the relay and the
// Interceptor (SessionInfo.Capabilities) all run the session without them.
// Options.HideCapabilities hides more (for example CLIENT_DEPRECATE_EOF).
//
// TLS is per leg. Client side: with Options.TLS the handshake offers
// CLIENT_SSL; an SSLRequest upgrades the connection with the proxy's
// certificate (clients send their ClientHello without waiting, so whatever
// follows the SSLRequest goes through the TLS layer), and with
// Options.RequireTLS a plaintext client gets ERR 3159. Upstream: libpq
// sslmode semantics (proxy.UpstreamTLS). With TLS the proxy sends its own
// SSLRequest built from the client's flags, then the client's
// HandshakeResponse41 with CLIENT_SSL set; without, CLIENT_SSL is cleared.
// Sequence ids are renumbered when only one leg has the extra SSLRequest
// packet. sslmode prefer uses plaintext when the server does not offer
// CLIENT_SSL; a failed TLS handshake is an error (the client has already
// sent its HandshakeResponse, so the proxy cannot redial).
//
// With several upstream hosts (proxy.Upstream) the first that sends its
// first packet (greeting or ERR) serves the session (target_session_attrs
// any; read-write is refused by NewHandler): a host that cannot be
// reached, or closes or stays silent for its share of the time, is
// skipped (hosts.go). A failure after the first packet (TLS) ends that
// session. When every host is skipped, the client gets ERR 2003 naming
// each host and why.
//
// # Authentication
//
// The exchange after the HandshakeResponse is relayed packet by packet
// without decoding the client's answers, whatever the plugin:
// mysql_native_password (the client answers the server's scramble),
// MariaDB's client_ed25519 and parsec, and unknown plugins; AuthSwitchRequest
// and AuthMoreData included. It is half-duplex: each server packet other
// than OK, ERR and caching_sha2_password's fast-auth success is answered by
// one client packet. A failed login reaches the client as the server's ERR
// packet, verbatim.
//
// caching_sha2_password: the fast path (scramble answered, 0x03, OK) is
// relayed. Full authentication (0x04) needs the password: a client sends it
// in clear over TLS, or RSA-encrypted to the server's public key otherwise,
// and the server accepts a clear password only over TLS. So:
//
//	client leg   upstream leg   full authentication
//	plaintext    plaintext      relayed (the client asks for the server's key)
//	TLS          TLS            relayed (clear password inside both TLS sessions)
//	TLS          plaintext      bridged: the proxy encrypts the client's password
//	                            to the server's RSA key (fetched like a client)
//	plaintext    TLS            bridged: the proxy answers the key request with
//	                            its own RSA key, decrypts the client's answer and
//	                            sends the password inside TLS
//
// A plaintext client that encrypts to a server key it already holds
// (--server-public-key-path) cannot be bridged to a TLS upstream. Bridging
// applies to the initial login only; COM_CHANGE_USER is relayed as is.
// sha256_password is relayed as is (same leg rules, no bridging).
//
// A password travels in clear through the proxy only when both legs are
// safe for it: the client leg TLS or loopback, the upstream leg loopback or
// TLS with a verified certificate (verify-ca, verify-full; under prefer or
// require a man in the middle could pose as the server, and an RSA key
// fetched over a plaintext leg may be his). That covers
// mysql_clear_password (asked in an AuthSwitchRequest, or sent by the
// client in its HandshakeResponse), sha256_password from a TLS client, and
// caching_sha2_password full authentication of a TLS client (relayed or
// bridged) and of a plaintext client bridged to a TLS upstream. Otherwise
// the login is refused with ERR 1045 (28000) naming the setting to change,
// before the client is asked for its password where the protocol allows,
// and the refusal is logged. The authentication exchange of
// COM_CHANGE_USER, otherwise relayed as is, follows the same rule for the
// server's requests (a switch to mysql_clear_password, or sha256_password
// or caching_sha2_password full authentication from a TLS client): the
// client gets ERR 1045 in place of the request and the session ends. Not
// covered: a client that puts a password in clear in the COM_CHANGE_USER
// packet itself (its own choice of mysql_clear_password), which the relay
// does not decode. A plaintext client's RSA-encrypted answer relayed
// between two plaintext legs is not a password in clear and is relayed as
// on a direct connection.
//
// # Command phase
//
// Two goroutines relay the session, one per direction, each a proxy/relay
// pump driven by one of this package's framers (relay.go, pump.go): the
// pump reads what is available into a pooled buffer, walks the packet
// headers (including 16 MiB continuation packets) and writes each run of
// packets straight from that buffer, in one write per read. On Linux both sockets read and write
// with raw system calls (internal/rawio), which spares the runtime's
// syscall bookkeeping and its sysmon wake-ups on every call; buffers come
// from internal/bufpool. The client->server side classifies
// each command and queues an exchange (queue.go, counted in a
// relay.Exchanges) before forwarding it; the
// server->client side follows each response with a small state machine
// (response.go) that knows which packet is a column count, column or
// parameter definition, text or binary row, EOF/OK terminator or ERR, with
// and without CLIENT_DEPRECATE_EOF, across multiple result sets
// (SERVER_MORE_RESULTS_EXISTS), LOCAL INFILE (the client's data packets
// are relayed until its empty packet), COM_STMT_PREPARE, COM_STMT_EXECUTE
// (binary rows; cursors), COM_STMT_FETCH, COM_FIELD_LIST and the
// authentication exchange of COM_CHANGE_USER. COM_STMT_CLOSE and
// COM_STMT_SEND_LONG_DATA have no response; COM_QUIT is forwarded and ends
// the session; replication streams (COM_BINLOG_DUMP) are relayed raw to the
// end. Unknown commands are answered ERR 1047 without reaching the server.
// Nothing is decoded beyond packet headers and the first bytes of response
// packets. A server packet outside any response other than an ERR (which a
// server sends before closing) means the relay lost track: the session ends.
//
// Idle sessions hold no goroutine (Linux, plain TCP legs): the pumps run
// under a proxy.Relay, which parks a pump's socket on the server's poller
// between packets once nothing has been in flight for proxy.ParkDelay;
// input starts a fresh goroutine that goes on from the pump's state. A
// queued command wakes the server->client pump at once. A TLS leg (the
// client's or the one to the server) parks too, through rawio's record
// reader (rawio.TLSServer, rawio.TLSClient), whenever crypto/tls holds no
// input of its own.
//
// The hook point for the layer above (encryption) is [Interceptor]: per
// session it selects commands (COM_QUERY, COM_STMT_PREPARE,
// COM_STMT_EXECUTE, ...) and response packet kinds; each selected packet is
// handed over whole with a [Writer] for what to forward instead, and an
// [Exchange] that carries the hook's per-command state to the response's
// hooks. A hook may refuse a command with an ERR packet (nothing is sent
// upstream) or replace the rest of a response with one. Sequence ids are
// renumbered if a hook changes the number of packets. With no Interceptor
// nothing is decoded and nothing is renumbered.
//
// # Lifecycle
//
// A malformed client packet (an empty command), a malformed response or a
// hook failure ends only that session, with an ERR packet when the client
// can read one. When the server goes away the client gets the server's last
// ERR (e.g. 1927 after KILL CONNECTION), or ERR 2013 if it was waiting for a
// response; an idle client's connection is simply closed, as the server
// would. When the client goes away the server gets COM_QUIT. A graceful
// shutdown closes each session when it is idle: nothing in flight and no
// open transaction (SERVER_STATUS_IN_TRANS of the last status seen), with
// ERR 1053 to the client and COM_QUIT to the server.
//
// # Libraries
//
// Constants, capability flags, status flags, error numbers and
// length-encoded integers come from go-mysql's mysql package. The relay
// does its own framing instead of using go-mysql's packet.Conn, which owns
// a net.Conn with a private read buffer (its buffered bytes cannot be
// handed over after TLS upgrades or to the pumps), copies every packet, and
// cannot forward raw runs; the codec files here (packet.go, handshake.go,
// response.go, command.go, pump.go) use neither net nor context, so they are
// fuzzed without sockets. go-mysql's server package cannot relay logins (it
// authenticates with its own scramble); the tests use it, and packet.Conn,
// as independent peers.
//
// # Boundaries
//
// This package must not import config, proxy/postgres or any KMS provider.
// It never logs SQL text, parameter values, passwords or packet contents.
package mysql
