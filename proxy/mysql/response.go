package mysql

import (
	"encoding/binary"

	gomysql "github.com/go-mysql-org/go-mysql/mysql"
)

// Response framing. The server->client relay classifies each logical packet
// of a response from the command's response shape, the packet's first byte
// and the state so far, without decoding rows or definitions:
//
//	text/binary result set:  column_count, column_def*n, [EOF], row*, terminator
//	terminator:              EOF (0xfe, < 9 bytes), or OK with header 0xfe under
//	                         CLIENT_DEPRECATE_EOF; ERR may replace any row
//	multiple results:        each OK or terminator with SERVER_MORE_RESULTS_EXISTS
//	                         is followed by another result
//	LOCAL INFILE:            0xfb filename; the client sends the file's packets
//	                         and an empty one; then OK or ERR
//	COM_STMT_PREPARE:        PREPARE_OK, param_def*p, [EOF], column_def*c, [EOF]
//	COM_STMT_EXECUTE cursor: column_count, column_def*n, EOF with
//	                         SERVER_STATUS_CURSOR_EXISTS; rows come with COM_STMT_FETCH
//	COM_STMT_FETCH:          row*, terminator
//
// A packet with header 0xfe is a terminator only if it is shorter than
// 0xffffff bytes: a text row may start with the 0xfe length prefix of a
// value of 16 MiB or more, and then fills a whole packet.

// rstate is where a response is.
type rstate uint8

const (
	stInvalid       rstate = iota
	stFirst                // first packet of a result: OK, ERR, column count or LOCAL INFILE
	stColDefs              // column definitions, n left
	stColsEOF              // EOF after column definitions (no CLIENT_DEPRECATE_EOF)
	stRows                 // rows until a terminator or ERR
	stInfile               // OK or ERR after the client sent its file
	stPrepParams           // parameter definitions, n left
	stPrepParamsEOF        // EOF after them
	stPrepCols             // column definitions of a prepared statement, n left
	stPrepColsEOF          // EOF after them
	stFieldList            // column definitions until EOF or ERR
	stAuth                 // COM_CHANGE_USER authentication until OK or ERR
	stSimple               // one packet
	stStream               // replication stream, never ends
	stPrepFirst            // PREPARE_OK or ERR
)

// responseHeadLen is how many payload bytes classifying a response packet
// needs: an OK header (1 + two length-encoded ints + status) or PREPARE_OK.
const responseHeadLen = 1 + 9 + 9 + 2

// exchange is a command in flight and the state of its response.
type exchange struct {
	Exchange

	resp   respKind
	st     rstate
	n      int  // definitions left in the current block
	cursor bool // COM_STMT_EXECUTE asked for a cursor

	// local is the framed reply of a command the proxy answered itself.
	local []byte
	// d maps sequence ids: client-leg id = server-leg id + d (mod 256). It
	// changes only when a hook forwards a different number of packets than
	// it received.
	d uint8
	// nextSeq is the sequence id the client expects next, for an ERR the
	// proxy may have to send in the middle of the response.
	nextSeq uint8
	// discard drops the rest of the response after a hook replaced it
	// with an ERR.
	discard bool
	// started: the server has sent at least one packet of the response.
	started bool
}

// reset clears x for reuse, keeping its local buffer's capacity.
func (x *exchange) reset() {
	local := x.local[:0]
	*x = exchange{local: local}
}

// packetInfo is the classification of one response packet.
type packetInfo struct {
	kind      Kind
	done      bool   // the response is complete after this packet
	status    uint16 // server status flags, if hasStatus
	hasStatus bool
}

// step classifies the next logical packet of the response: n is the length
// of its first physical packet, head its first min(n, responseHeadLen)
// bytes. It advances the state and sets x.Columns, x.Params, x.Column and
// x.ResultSet for hooks. An error means the server's stream does not fit
// the protocol; the session must end.
func (x *exchange) step(n int, head []byte, deprecateEOF bool) (packetInfo, error) {
	pi, err := x.classify(n, head, deprecateEOF)
	x.Last = pi.done
	return pi, err
}

// classify is step without setting x.Last.
func (x *exchange) classify(n int, head []byte, deprecateEOF bool) (packetInfo, error) {
	if n == 0 {
		if x.st == stStream || x.st == stSimple || x.st == stAuth {
			return packetInfo{kind: KindOther, done: x.st != stStream}, nil
		}
		return packetInfo{}, malformed("empty packet from the server in a response")
	}
	b := head[0]
	terminator := b == gomysql.EOF_HEADER && n < maxPayload
	switch x.st {
	case stFirst, stInfile:
		return x.stepFirst(head)
	case stColDefs:
		return x.stepColumnDef(b, deprecateEOF), nil
	case stColsEOF:
		return x.stepColumnsEOF(b, head, terminator)
	case stRows:
		return x.stepRow(b, head, terminator, deprecateEOF)
	case stPrepParams, stPrepCols:
		return x.stepPrepareDef(deprecateEOF), nil
	case stPrepParamsEOF, stPrepColsEOF:
		return x.stepPrepareEOF(head, terminator)
	case stFieldList:
		return x.stepFieldList(b, terminator), nil
	case stAuth:
		return stepAuth(b, head), nil
	case stSimple:
		return stepSimple(b, head, terminator, deprecateEOF), nil
	case stStream:
		return packetInfo{kind: KindOther}, nil
	case stPrepFirst:
		return x.stepPrepareOK(n, head)
	}
	return packetInfo{}, malformed("response in an invalid state")
}

// errPacket is an ERR packet: the end of the response.
var errPacket = packetInfo{kind: KindERR, done: true}

// stepFirst reads the first packet of a response (or the one after LOCAL
// INFILE data): OK, ERR, a LOCAL INFILE request, or a result set's column
// count.
func (x *exchange) stepFirst(head []byte) (packetInfo, error) {
	var pi packetInfo
	switch b := head[0]; {
	case b == gomysql.OK_HEADER:
		return x.endResult(KindOK, head, false)
	case b == gomysql.ERR_HEADER:
		return errPacket, nil
	case x.st == stInfile:
		return pi, malformed("unexpected packet from the server after LOCAL INFILE data")
	case b == gomysql.LocalInFile_HEADER && x.resp == respQuery:
		x.st = stInfile
		pi.kind = KindInfileRequest
		return pi, nil
	}
	cols, _, null, ok := lenEnc(head)
	if !ok || null || cols == 0 || cols > 1<<16 {
		return pi, malformed("invalid column count from the server")
	}
	x.Columns, x.Column = int(cols), 0
	x.n = int(cols)
	x.st = stColDefs
	pi.kind = KindColumnCount
	return pi, nil
}

// stepColumnDef reads one column definition of a result set.
func (x *exchange) stepColumnDef(b byte, deprecateEOF bool) packetInfo {
	if b == gomysql.ERR_HEADER {
		return errPacket
	}
	x.Column = x.Columns - x.n
	x.n--
	if x.n == 0 {
		if deprecateEOF {
			x.st = stRows
		} else {
			x.st = stColsEOF
		}
	}
	return packetInfo{kind: KindColumnDef}
}

// stepColumnsEOF reads the EOF after a result set's column definitions.
func (x *exchange) stepColumnsEOF(b byte, head []byte, terminator bool) (packetInfo, error) {
	if b == gomysql.ERR_HEADER {
		return errPacket, nil
	}
	if !terminator {
		return packetInfo{}, malformed("expected EOF after column definitions")
	}
	pi := packetInfo{kind: KindEOF}
	pi.status, pi.hasStatus = eofStatus(head)
	x.st = stRows
	if x.cursor && pi.status&gomysql.SERVER_STATUS_CURSOR_EXISTS != 0 {
		pi.done = true // rows come with COM_STMT_FETCH
	}
	return pi, nil
}

// stepRow reads a row of a result set, or the packet that ends the rows.
func (x *exchange) stepRow(b byte, head []byte, terminator, deprecateEOF bool) (packetInfo, error) {
	var pi packetInfo
	switch {
	case b == gomysql.ERR_HEADER:
		return errPacket, nil
	case terminator:
		if x.resp == respFetch {
			pi.kind, pi.done = KindEOF, true
			pi.status, pi.hasStatus = terminatorStatus(head, deprecateEOF)
			return pi, nil
		}
		return x.endResult(KindEOF, head, !deprecateEOF)
	case x.resp == respExecute || x.resp == respFetch:
		pi.kind = KindBinaryRow
	default:
		pi.kind = KindTextRow
	}
	return pi, nil
}

// stepPrepareDef reads a parameter or column definition of a
// COM_STMT_PREPARE response.
func (x *exchange) stepPrepareDef(deprecateEOF bool) packetInfo {
	pi := packetInfo{kind: KindColumnDef}
	if x.st == stPrepParams {
		pi.kind = KindParamDef
		x.Column = x.Params - x.n
	} else {
		x.Column = x.Columns - x.n
	}
	x.n--
	if x.n == 0 {
		if !deprecateEOF {
			x.st++ // to the matching EOF state
		} else if x.st == stPrepParams {
			pi.done = x.startPrepCols()
		} else {
			pi.done = true
		}
	}
	return pi
}

// stepPrepareEOF reads the EOF after a COM_STMT_PREPARE response's
// parameter or column definitions.
func (x *exchange) stepPrepareEOF(head []byte, terminator bool) (packetInfo, error) {
	if !terminator {
		return packetInfo{}, malformed("expected EOF after prepared statement definitions")
	}
	pi := packetInfo{kind: KindEOF}
	pi.status, pi.hasStatus = eofStatus(head)
	if x.st == stPrepParamsEOF {
		pi.done = x.startPrepCols()
	} else {
		pi.done = true
	}
	return pi, nil
}

// stepFieldList reads a packet of a COM_FIELD_LIST response.
func (x *exchange) stepFieldList(b byte, terminator bool) packetInfo {
	switch {
	case b == gomysql.ERR_HEADER:
		return errPacket
	case terminator:
		return packetInfo{kind: KindEOF, done: true}
	}
	x.Column++
	return packetInfo{kind: KindColumnDef}
}

// stepAuth reads a packet of a COM_CHANGE_USER response.
func stepAuth(b byte, head []byte) packetInfo {
	var pi packetInfo
	switch b {
	case gomysql.OK_HEADER:
		pi.kind, pi.done = KindOK, true
		pi.status, pi.hasStatus = okStatus(head)
	case gomysql.ERR_HEADER:
		return errPacket
	default:
		pi.kind = KindOther // auth switch, more data
	}
	return pi
}

// stepSimple reads the one-packet response of a simple command.
func stepSimple(b byte, head []byte, terminator, deprecateEOF bool) packetInfo {
	pi := packetInfo{done: true}
	switch {
	case b == gomysql.OK_HEADER:
		pi.kind = KindOK
		pi.status, pi.hasStatus = okStatus(head)
	case b == gomysql.ERR_HEADER:
		pi.kind = KindERR
	case terminator:
		pi.kind = KindEOF
		pi.status, pi.hasStatus = terminatorStatus(head, deprecateEOF)
	default:
		pi.kind = KindOther
	}
	return pi
}

// stepPrepareOK handles COM_STMT_PREPARE's first packet.
func (x *exchange) stepPrepareOK(n int, head []byte) (packetInfo, error) {
	var pi packetInfo
	if n > 0 && head[0] == gomysql.ERR_HEADER {
		pi.kind, pi.done = KindERR, true
		return pi, nil
	}
	if n < 9 || head[0] != gomysql.OK_HEADER {
		return pi, malformed("invalid COM_STMT_PREPARE response from the server")
	}
	x.StmtID = binary.LittleEndian.Uint32(head[1:])
	x.Columns = int(binary.LittleEndian.Uint16(head[5:]))
	x.Params = int(binary.LittleEndian.Uint16(head[7:]))
	pi.kind = KindPrepareOK
	if x.Params > 0 {
		x.st, x.n = stPrepParams, x.Params
	} else {
		pi.done = x.startPrepCols()
	}
	return pi, nil
}

// startPrepCols moves to a prepared statement's column definitions and
// reports whether there are none (the response is complete).
func (x *exchange) startPrepCols() bool {
	if x.Columns == 0 {
		return true
	}
	x.st, x.n = stPrepCols, x.Columns
	return false
}

// endResult handles the packet that ends one result (an OK in place of a
// result set, or a result set's terminator): another result follows if
// SERVER_MORE_RESULTS_EXISTS is set.
func (x *exchange) endResult(kind Kind, head []byte, eofFormat bool) (packetInfo, error) {
	pi := packetInfo{kind: kind}
	if eofFormat {
		pi.status, pi.hasStatus = eofStatus(head)
	} else {
		pi.status, pi.hasStatus = okStatus(head)
	}
	if pi.hasStatus && pi.status&gomysql.SERVER_MORE_RESULTS_EXISTS != 0 {
		x.st = stFirst
		x.ResultSet++
		x.Columns, x.Column = 0, 0
		return pi, nil
	}
	pi.done = true
	return pi, nil
}

func terminatorStatus(head []byte, deprecateEOF bool) (uint16, bool) {
	if deprecateEOF {
		return okStatus(head)
	}
	return eofStatus(head)
}
