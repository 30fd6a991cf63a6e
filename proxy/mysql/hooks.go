package mysql

import (
	"github.com/dbproxy/dbproxy/proxy"
)

// CommandSet is a set of command bytes (COM_QUERY, COM_STMT_PREPARE, ...).
type CommandSet = proxy.ByteSet

// Kind classifies a server packet within the response to a command. The
// zero value is invalid.
type Kind uint8

const (
	_ Kind = iota // the zero value is invalid
	// KindOK is an OK packet ending a response or a result of a
	// multi-result response (header 0x00).
	KindOK
	// KindERR is an ERR packet; it always ends the response.
	KindERR
	// KindEOF is an EOF packet (after column or parameter definitions
	// without CLIENT_DEPRECATE_EOF) or a result-set terminator (an EOF, or
	// an OK with header 0xfe under CLIENT_DEPRECATE_EOF).
	KindEOF
	// KindColumnCount starts a result set: a length-encoded column count.
	KindColumnCount
	// KindColumnDef is a column definition (ColumnDefinition41) of a result
	// set, of a prepared statement's columns, or of COM_FIELD_LIST.
	KindColumnDef
	// KindParamDef is a parameter definition of a COM_STMT_PREPARE response.
	KindParamDef
	// KindTextRow is a row of a text result set (COM_QUERY).
	KindTextRow
	// KindBinaryRow is a row of a binary result set (COM_STMT_EXECUTE,
	// COM_STMT_FETCH): 0x00 || NULL bitmap (offset 2) || values.
	KindBinaryRow
	// KindPrepareOK is COM_STMT_PREPARE's first packet:
	// 0x00 || uint32 statement_id || uint16 columns || uint16 params || 0x00 || uint16 warnings.
	KindPrepareOK
	// KindInfileRequest is the server's LOCAL INFILE request (0xfb ||
	// file name); the client answers with the file's contents. Never handed
	// to hooks: refuse LOAD DATA LOCAL at COM_QUERY instead.
	KindInfileRequest
	// KindOther is any other packet: the answer to COM_STATISTICS, and
	// the authentication exchange of COM_CHANGE_USER. Never handed to
	// hooks.
	KindOther
	numKinds
)

var kindNames = [numKinds]string{"invalid", "OK", "ERR", "EOF", "column count", "column definition",
	"parameter definition", "text row", "binary row", "prepare OK", "LOCAL INFILE request", "other"}

func (k Kind) String() string {
	if k < numKinds {
		return kindNames[k]
	}
	return "invalid"
}

// KindSet is a set of Kinds.
type KindSet uint32

// Add adds kinds to the set.
func (s *KindSet) Add(kinds ...Kind) {
	for _, k := range kinds {
		*s |= 1 << k
	}
}

// Has reports whether k is in the set.
func (s KindSet) Has(k Kind) bool { return s&(1<<k) != 0 }

// Exchange is one command and its response. The relay creates it when the
// command arrives and hands the same *Exchange to the command hook and to
// every result hook of that response, in order; it is reused once the
// response is complete, so hooks must not keep it.
type Exchange struct {
	// Command is the command byte (COM_QUERY, COM_STMT_EXECUTE, ...).
	Command byte
	// StmtID is the statement id of COM_STMT_EXECUTE, COM_STMT_FETCH,
	// COM_STMT_CLOSE, COM_STMT_RESET and COM_STMT_SEND_LONG_DATA.
	StmtID uint32
	// Watch, set by the command hook, asks for this exchange's response
	// packets of the kinds in SessionHooks.Results to be handed to
	// SessionHooks.Result. Unwatched responses are relayed as raw bytes.
	Watch bool
	// State is free for the hooks, typically the rewrite plan the command
	// hook made, so that the result hook of a pipelined response finds the
	// plan of its own command.
	State any

	// Set by the relay for result hooks:

	// ResultSet counts the result sets of a multi-result response, from 0.
	ResultSet int
	// Columns is the column count of the current result set, or of a
	// prepared statement's columns; Params the parameter count of a
	// COM_STMT_PREPARE response.
	Columns, Params int
	// Column is the index of the column (or parameter) definition being
	// handed over.
	Column int
	// DeprecateEOF reports whether CLIENT_DEPRECATE_EOF was negotiated.
	DeprecateEOF bool
	// Last reports whether the packet being handed over ends the
	// response: no further result hook sees this exchange, and State may
	// be reused once the hook returns.
	Last bool
}

// CommandFunc handles a command the hooks asked for (SessionHooks.Commands).
// payload is the whole command (command byte first); it aliases the relay's
// buffers and is valid only during the call. The func writes the packet to
// forward in its place to w — the command unchanged (w.Packet(payload)), or
// rewritten — and may set x.Watch and x.State. A non-fatal *Error instead
// answers the client with an ERR packet and nothing is sent upstream; any
// other error ends the session. A command that has a response must either
// forward a packet or return an error; a refused command without a response
// (COM_STMT_CLOSE, COM_STMT_SEND_LONG_DATA) is dropped silently, as the
// client expects no answer. Selecting COM_CHANGE_USER, COM_INIT_DB or
// COM_RESET_CONNECTION lets the hooks follow the session's user, database
// and prepared statements.
type CommandFunc func(x *Exchange, payload []byte, w *Writer) error

// ResultFunc handles a response packet of a watched exchange whose kind is
// in SessionHooks.Results. payload is the whole logical packet and is valid
// only during the call. The func writes what to send the client instead to
// w: the packet unchanged, a rewritten one, or nothing. A non-fatal *Error
// replaces the rest of the response with an ERR packet (the server's
// remaining packets of it are discarded); any other error ends the session.
type ResultFunc func(x *Exchange, kind Kind, payload []byte, w *Writer) error

// SessionHooks intercept the commands and responses of one session.
// Command runs on the client->server side and Result on the
// server->client side, concurrently; the Exchange passes from the
// first to the second with a happens-before edge, anything else they share
// must be synchronized by them. Commands and kinds not selected are relayed
// as raw bytes without being decoded. Each side may run on an event loop
// that many sessions share: a hook must not wait (for I/O, or a lock held
// across I/O) without calling blocking.Announce, with the context the
// Interceptor got, just before.
//
// The authentication exchange of COM_CHANGE_USER and the data of LOCAL
// INFILE are never handed to hooks.
type SessionHooks struct {
	Commands CommandSet
	Command  CommandFunc
	Results  KindSet
	Result   ResultFunc
	// Close, if set, is called once when the session ends.
	Close func()
}

// MariaDBExtendedMetadata is MARIADB_CLIENT_EXTENDED_METADATA (extended
// capability bit 3, here 1<<35), which the relay passes through when both
// the MariaDB server and the client set it. When it is in
// SessionInfo.Capabilities, every column definition (result sets,
// COM_STMT_PREPARE, COM_FIELD_LIST) carries one more length-encoded field
// between org_name and the fixed-length fields:
//
//	... || lenenc org_name || lenenc extended_metadata || lenenc 0x0c || fixed fields
//	extended_metadata = (uint8 kind || lenenc value)*   kind 0: type name, 1: format
//
// MariaDB sends format "json" for JSON columns and type names such as
// "uuid", "inet6" or "point" for its plugin types.
const MariaDBExtendedMetadata = capMariaDBExtendedTypes

// SessionInfo describes an authenticated session to an [Interceptor].
type SessionInfo struct {
	User     string
	Database string // from the handshake; "" if none (COM_INIT_DB and USE change it later)
	// ConnectionID is the server's thread id (CONNECTION_ID()); the
	// client's greeting may carry a proxy-assigned id instead, which KILL
	// through the proxy translates (see the package doc).
	ConnectionID  uint32
	ServerVersion string
	// Capabilities are the negotiated capability flags (MariaDB extended
	// flags in the high 32 bits).
	Capabilities uint64
	// Charset is the collation id the client chose.
	Charset byte
	proxy.SessionBase
}

// Interceptor is the hook point of the layer above the relay (the
// encryption layer). A nil Interceptor costs nothing: every packet is
// forwarded as raw bytes. An error from NewSession ends the session with
// an ERR packet.
type Interceptor = proxy.Interceptor[SessionInfo, SessionHooks]

// Writer collects the packets a hook forwards. The relay numbers them
// (sequence ids) and splits payloads longer than 16 MiB; they go out in
// order with the surrounding untouched packets, in the same write.
type Writer struct {
	buf []byte
	seq uint8
	n   int // physical packets written
}

// Packet appends one logical packet.
func (w *Writer) Packet(payload []byte) {
	before := w.seq
	w.buf, w.seq = appendPacket(w.buf, w.seq, payload)
	w.n += int(w.seq - before)
}

// Begin starts a packet built in place: append the payload to the returned
// slice and pass the result to End. No other Writer method may be called
// in between.
func (w *Writer) Begin() []byte {
	return append(w.buf, 0, 0, 0, 0)
}

// End finishes the packet started by Begin; b is Begin's slice with the
// payload appended.
func (w *Writer) End(b []byte) {
	start := len(w.buf)
	n := len(b) - start - headerSize
	if n < maxPayload {
		putHeader(b[start:], n, w.seq)
		w.seq++
		w.n++
		w.buf = b
		return
	}
	// Rare: split into 16 MiB packets.
	payload := append([]byte(nil), b[start+headerSize:]...)
	w.buf = b[:start]
	w.Packet(payload)
}

// Len returns the number of bytes collected so far.
func (w *Writer) Len() int { return len(w.buf) }

// Bytes returns the framed packets collected so far.
func (w *Writer) Bytes() []byte { return w.buf }

// Reset empties w, keeping its buffer, for a hook whose first packet has
// id 0 (as the relay does between hooks; for driving hooks in tests).
func (w *Writer) Reset() {
	w.buf = w.buf[:0]
	w.reset(0)
}

// reset prepares w for a hook whose first output packet has id seq; the
// buffer keeps what it holds.
func (w *Writer) reset(seq uint8) {
	w.seq = seq
	w.n = 0
}
