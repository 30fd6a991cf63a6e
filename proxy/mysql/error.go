package mysql

import (
	"errors"

	gomysql "github.com/go-mysql-org/go-mysql/mysql"

	"github.com/dbproxy/dbproxy/proxy"
)

// Error codes the proxy itself sends. Codes in the 2000 range are client
// error numbers (CR_*), used as the mysql client library would report the
// same condition on a direct connection.
const (
	codeConnectHost         = 2003 // CR_CONN_HOST_ERROR: cannot reach the server
	codeServerLost          = 2013 // CR_SERVER_LOST: connection lost during a query
	codeSSLConnection       = 2026 // CR_SSL_CONNECTION_ERROR
	codeHandshake           = gomysql.ER_HANDSHAKE_ERROR
	codeAccessDenied        = gomysql.ER_ACCESS_DENIED_ERROR
	codeUnknownCommand      = gomysql.ER_UNKNOWN_COM_ERROR
	codeServerShutdown      = gomysql.ER_SERVER_SHUTDOWN
	codeUnknown             = gomysql.ER_UNKNOWN_ERROR
	codeNotSupported        = gomysql.ER_NOT_SUPPORTED_YET
	codeMalformed           = gomysql.ER_MALFORMED_PACKET
	codeSecureTransport     = 3159 // ER_SECURE_TRANSPORT_REQUIRED (MySQL 5.7+)
	codePacketTooLarge      = gomysql.ER_NET_PACKET_TOO_LARGE
	codeConnKilled          = 1927                       // ER_CONNECTION_KILLED (MariaDB)
	codeIdleTimeout         = 4031                       // ER_CLIENT_INTERACTION_TIMEOUT (MySQL 8.0.24+)
	codeTooManyConnections  = gomysql.ER_CON_COUNT_ERROR // 1040
	stateTooManyConnections = "08004"
	stateConnection         = "08S01"
	stateGeneral            = "HY000"
	stateAccessDenied       = "28000"
	stateSyntaxOrAccess     = "42000"
)

// Error is an error that goes back to the client as an ERR packet. Its
// Message must never carry SQL values, passwords or packet contents. Cause,
// if set, is for the proxy's log only.
//
// Returned by a hook, an Error that is not Fatal answers that one command
// (or ends that one response) and the session goes on; a Fatal Error, or
// any other error, is sent and then ends the session.
type Error struct {
	Code    uint16
	State   string // SQLSTATE, five characters; "" means HY000
	Message string
	Fatal   bool
	Cause   error
}

func (e *Error) Error() string { return proxy.ClientErrorText(e.Message, e.Cause) }

func (e *Error) Unwrap() error { return e.Cause }

func fatalf(code uint16, state, msg string, cause error) *Error {
	return &Error{Code: code, State: state, Message: msg, Fatal: true, Cause: cause}
}

// asError converts err to the *Error sent to the client: an *Error keeps
// its fields, anything else becomes a generic internal error (its text
// stays in the log).
func asError(err error) *Error {
	var me *Error
	if errors.As(err, &me) {
		return me
	}
	var mal *proxy.MalformedError
	if errors.As(err, &mal) {
		return fatalf(codeMalformed, stateConnection, "dbproxy: malformed packet: "+mal.Msg, nil)
	}
	return fatalf(codeUnknown, stateGeneral, "dbproxy: internal error", err)
}

// appendErr appends err as an ERR packet with sequence id seq. Every error
// the proxy sends a client goes through here.
//
//	0xff || uint16 code || '#' || 5-byte SQLSTATE || message
func appendErr(dst []byte, seq uint8, err error) []byte {
	e := asError(err)
	state := e.State
	if len(state) != 5 {
		state = stateGeneral
	}
	msg := e.Message
	if len(msg) > 512 {
		msg = msg[:512]
	}
	n := 1 + 2 + 1 + 5 + len(msg)
	dst = append(dst, byte(n), byte(n>>8), byte(n>>16), seq)
	dst = append(dst, gomysql.ERR_HEADER, byte(e.Code), byte(e.Code>>8), '#')
	dst = append(dst, state...)
	return append(dst, msg...)
}

// drainError is the ERR that ends a session drained for reason.
func drainError(reason proxy.DrainReason) error {
	switch reason {
	case proxy.DrainRulesChanged:
		return fatalf(codeConnKilled, stateConnection, "dbproxy's encryption rules changed (configuration reload); reconnect to continue under the new rules", nil)
	case proxy.DrainIdleTimeout:
		return fatalf(codeIdleTimeout, stateGeneral, "dbproxy closed the connection: idle longer than its idle timeout (limits.idle_timeout)", nil)
	default:
		return fatalf(codeServerShutdown, stateConnection, "dbproxy is shutting down", nil)
	}
}
