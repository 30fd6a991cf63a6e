package mysql

import (
	"encoding/binary"

	gomysql "github.com/go-mysql-org/go-mysql/mysql"
)

// respKind is the shape of the response a command gets.
type respKind uint8

const (
	respInvalid   respKind = iota
	respNone               // no response (COM_STMT_CLOSE, COM_STMT_SEND_LONG_DATA, COM_QUIT)
	respSimple             // one packet: OK, ERR, EOF or a string
	respQuery              // text result sets, OK, ERR or LOCAL INFILE, possibly several
	respResultSet          // text result set without LOCAL INFILE (COM_PROCESS_INFO)
	respExecute            // binary result sets or OK/ERR, possibly several; a cursor defers rows
	respPrepare            // PREPARE_OK, parameter and column definitions
	respFetch              // binary rows and a terminator
	respFieldList          // column definitions until EOF
	respAuth               // an authentication exchange ending in OK or ERR
	respStream             // a replication stream: relayed raw to the end of the session
	respLocal              // answered by the proxy (a refused command)
)

// firstState is the state a response of each shape starts in, where it
// is not stFirst.
var firstState = [respLocal + 1]rstate{
	respFetch:     stRows,
	respFieldList: stFieldList,
	respPrepare:   stPrepFirst,
	respSimple:    stSimple,
	respAuth:      stAuth,
	respStream:    stStream,
}

// commandResponse returns the response shape of a command byte, or
// respInvalid for commands the relay does not know (they are refused).
func commandResponse(cmd byte) respKind {
	switch cmd {
	case gomysql.COM_QUERY:
		return respQuery
	case gomysql.COM_STMT_EXECUTE:
		return respExecute
	case gomysql.COM_STMT_PREPARE:
		return respPrepare
	case gomysql.COM_STMT_FETCH:
		return respFetch
	case gomysql.COM_STMT_CLOSE, gomysql.COM_STMT_SEND_LONG_DATA, gomysql.COM_QUIT:
		return respNone
	case gomysql.COM_FIELD_LIST:
		return respFieldList
	case gomysql.COM_PROCESS_INFO:
		return respResultSet
	case gomysql.COM_CHANGE_USER:
		return respAuth
	case gomysql.COM_BINLOG_DUMP, gomysql.COM_BINLOG_DUMP_GTID:
		return respStream
	case gomysql.COM_INIT_DB, gomysql.COM_PING, gomysql.COM_RESET_CONNECTION, gomysql.COM_STMT_RESET,
		gomysql.COM_SET_OPTION, gomysql.COM_STATISTICS, gomysql.COM_PROCESS_KILL, gomysql.COM_REFRESH,
		gomysql.COM_DEBUG, gomysql.COM_SHUTDOWN, gomysql.COM_REGISTER_SLAVE, gomysql.COM_SLEEP,
		gomysql.COM_CREATE_DB, gomysql.COM_DROP_DB, gomysql.COM_CONNECT, gomysql.COM_TIME,
		gomysql.COM_DELAYED_INSERT, gomysql.COM_TABLE_DUMP, gomysql.COM_CONNECT_OUT:
		// Obsolete commands get an ERR (or OK) from the server: one packet.
		return respSimple
	}
	return respInvalid
}

// stmtCommand reports whether cmd starts with a uint32 statement id.
func stmtCommand(cmd byte) bool {
	switch cmd {
	case gomysql.COM_STMT_EXECUTE, gomysql.COM_STMT_FETCH, gomysql.COM_STMT_CLOSE,
		gomysql.COM_STMT_RESET, gomysql.COM_STMT_SEND_LONG_DATA:
		return true
	}
	return false
}

// commandHeadLen is how many payload bytes classifying a command needs:
// the command byte, a statement id and COM_STMT_EXECUTE's flags.
const commandHeadLen = 6

// initExchange fills x for the command whose first bytes are head (at
// least min(len, commandHeadLen) bytes of a payload of n bytes).
func initExchange(x *exchange, head []byte, resp respKind) {
	x.Command = head[0]
	if stmtCommand(x.Command) && len(head) >= 5 {
		x.StmtID = binary.LittleEndian.Uint32(head[1:])
	}
	if x.Command == gomysql.COM_STMT_EXECUTE && len(head) >= 6 {
		x.cursor = head[5]&(gomysql.CURSOR_TYPE_READ_ONLY|gomysql.CURSOR_TYPE_FOR_UPDATE|gomysql.CURSOR_TYPE_SCROLLABLE) != 0
	}
	x.resp = resp
	x.st = stFirst
	if int(resp) < len(firstState) && firstState[resp] != stInvalid {
		x.st = firstState[resp]
	}
}
