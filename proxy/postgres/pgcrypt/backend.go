package pgcrypt

import (
	"bytes"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/dbproxy/dbproxy/proxy/postgres"
	"github.com/dbproxy/dbproxy/proxy/postgres/pgmsg"
	"github.com/dbproxy/dbproxy/sqlplan"
	"github.com/dbproxy/dbproxy/sqlplan/pgsql"
)

// fail sends e in place of the rest of the current request's response.
func (s *session) fail(e *pgproto3.ErrorResponse, w *postgres.Writer) error {
	s.result.failed = true
	s.result.cols, s.result.matches = nil, nil
	return w.Send(e)
}

// backend handles server->client messages.
func (s *session) backend(typ byte, body []byte, w *postgres.Writer) error {
	switch typ {
	case pgmsg.TypeReadyForQuery:
		return s.readyForQuery(body, w)
	case pgmsg.TypeParameterStatus:
		s.parameterStatus(body)
		w.Forward(typ, body)
		return nil
	}
	if s.result.failed {
		return nil
	}
	ev := s.head()
	if ev == nil {
		w.Forward(typ, body)
		return nil
	}
	if ev.searchPath {
		s.searchPathResponse(typ, body)
		return nil
	}
	if ev.kind == pgmsg.TypeQuery {
		return s.simpleResponse(ev, typ, body, w)
	}
	return s.extendedResponse(ev, typ, body, w)
}

// readyForQuery ends the response to a request: everything queued up to
// and including its Sync (or Query) is answered.
func (s *session) readyForQuery(body []byte, w *postgres.Writer) error {
	s.noteReady(body)
	status, _ := pgmsg.ParseReadyForQuery(body) // 0 if malformed
	if ev := s.head(); ev != nil && ev.searchPath {
		s.pop()
		s.lexAnswered(false, status)
		s.searchPathReady()
		return nil
	}
	ev := s.popUntilSync()
	s.lexAnswered(ev != nil && ev.lexChange, status)
	if ev != nil {
		s.pop()
	}
	s.result.failed, s.result.cols, s.result.matches = false, nil, nil
	w.Forward(pgmsg.TypeReadyForQuery, body)
	return nil
}

// extendedResponse handles a response to an extended-protocol message ev
// (Parse, Bind, Describe, Execute, Close).
func (s *session) extendedResponse(ev *event, typ byte, body []byte, w *postgres.Writer) error {
	switch typ {
	case pgmsg.TypeErrorResponse:
		s.popUntilSync()
		s.result.cols = nil
		if ev.refusal != nil {
			return w.Send(ev.refusal) // in place of the server's error
		}
	case pgmsg.TypeParseComplete, pgmsg.TypeBindComplete, pgmsg.TypeCloseComplete:
		s.pop()
		if ev.hidden {
			return nil
		}
	case pgmsg.TypeParameterDescription:
		if ev.kind == pgmsg.TypeDescribe {
			if ev.hidden {
				return nil
			}
			return s.parameterDescription(ev.stmt, body, w)
		}
	case pgmsg.TypeNoData:
		if ev.kind == pgmsg.TypeDescribe || ev.kind == kindDescribePortal {
			if ev.kind == pgmsg.TypeDescribe {
				ev.stmt.described, ev.stmt.cols, ev.stmt.noData = true, nil, true
			}
			s.pop()
			if ev.hidden {
				return nil
			}
		}
	case pgmsg.TypeRowDescription:
		if ev.kind == pgmsg.TypeDescribe || ev.kind == kindDescribePortal {
			s.pop()
			return s.describeRows(ev, body, w)
		}
	case pgmsg.TypeDataRow:
		if ev.kind == pgmsg.TypeExecute {
			return s.executeRow(ev, body, w)
		}
	case pgmsg.TypeCommandComplete, pgmsg.TypePortalSuspended, pgmsg.TypeEmptyQueryResponse:
		if ev.kind == pgmsg.TypeExecute {
			if s.result.cols == nil && s.result.formats == nil && typ != pgmsg.TypeEmptyQueryResponse {
				if err := s.startExecute(ev, w); err != nil || s.result.failed {
					return err
				}
			}
			s.result.cols, s.result.formats, s.result.matches = nil, nil, nil
			s.pop()
		}
	}
	w.Forward(typ, body)
	return nil
}

// executeRow handles a DataRow answering Execute ev.
func (s *session) executeRow(ev *event, body []byte, w *postgres.Writer) error {
	if s.result.cols == nil && s.result.formats == nil {
		if err := s.startExecute(ev, w); err != nil || s.result.failed {
			return err
		}
	}
	if s.result.cols != nil {
		return s.dataRow(body, w)
	}
	if ev.stmt.noData && !ev.portal.described {
		// Rows from a statement described as returning none (FETCH
		// from a cursor, say): their origin is unknown.
		return s.fail(errorResponse(sqlplan.StateFeatureNotSupported,
			"dbproxy: result refused: rows whose columns the proxy cannot attribute (use the simple query protocol for FETCH)"), w)
	}
	w.Forward(pgmsg.TypeDataRow, body)
	return nil
}

// startExecute sets up decryption for the rows of an Execute.
func (s *session) startExecute(ev *event, w *postgres.Writer) error {
	st := ev.stmt
	if st.poison != nil {
		return s.fail(st.poison, w)
	}
	if !st.described {
		return s.fail(errorResponse("XX000", "dbproxy: result refused: the result columns of this statement are unknown"), w)
	}
	s.result.formats = ev.portal.formats
	if s.result.formats == nil {
		s.result.formats = []int16{}
	}
	s.result.cols = st.cols
	if st.noData && ev.portal.described {
		// The portal's own RowDescription attributes its rows.
		if ev.portal.poison != nil {
			return s.fail(ev.portal.poison, w)
		}
		s.result.cols = ev.portal.cols
	}
	s.result.matches = ev.portal.matches
	return nil
}

// simpleResponse handles the responses to a simple Query.
func (s *session) simpleResponse(ev *event, typ byte, body []byte, w *postgres.Writer) error {
	switch typ {
	case pgmsg.TypeErrorResponse:
		s.result.cols = nil
		if ev.refusal != nil {
			return w.Send(ev.refusal) // in place of the server's error
		}
	case pgmsg.TypeRowDescription:
		rd, errResp, err := s.rowDescription(&s.result.simpleDesc, body, true)
		if err != nil {
			return err
		}
		if errResp != nil {
			return s.fail(errResp, w)
		}
		s.result.cols, s.result.formats = rd.cols, nil
		s.result.matches = ev.matches
		if rd.cols == nil {
			break
		}
		_, _ = w.Write(rd.out)
		return nil
	case pgmsg.TypeDataRow:
		if s.result.cols != nil {
			return s.dataRow(body, w)
		}
	case pgmsg.TypeCommandComplete:
		s.result.cols, s.result.matches = nil, nil
		s.commandComplete(ev, body)
	case pgmsg.TypeCopyInResponse:
		// The server refused to start a COPY the proxy expected (an error
		// arrives instead) or started one: nothing to do either way.
	case pgmsg.TypeCopyOutResponse:
		if cp := copyTo(ev); cp != nil {
			if refused := s.copyOutRefusal(cp); refused != nil {
				return s.fail(refused, w)
			}
			s.result.copyOutHeader = cp.Header
			s.result.binaryCopyOut = nil
		}
	case pgmsg.TypeCopyData:
		if cp := copyTo(ev); cp != nil {
			if cp.Format == pgsql.CopyBinary {
				return s.copyBinaryOut(cp, body, w)
			}
			return s.copyOutRow(cp, body, w)
		}
	}
	w.Forward(typ, body)
	return nil
}

// copyTo returns the COPY TO plan of a simple query, if it is one.
func copyTo(ev *event) *pgsql.Copy {
	if ev.plan == nil || len(ev.plan.Statements) != 1 || ev.plan.Statements[0].Kind != pgsql.KindCopyTo {
		return nil
	}
	return ev.plan.Statements[0].Copy
}

func (s *session) parameterStatus(body []byte) {
	ps, err := pgmsg.ParseParameterStatus(body)
	if err != nil {
		return
	}
	name, val := ps.Name, ps.Value
	switch string(name) {
	case "TimeZone":
		loc := loadZone(string(val))
		s.lock()
		s.zone = loc
		s.mu.Unlock()
	case "standard_conforming_strings":
		s.lock()
		s.lex.stdStringsOff = string(val) != "on"
		s.mu.Unlock()
	case "client_encoding":
		s.lock()
		s.lex.clientEncoding = string(val)
		s.mu.Unlock()
	case "search_path":
		s.lock()
		s.searchPath.reportedPath, s.searchPath.newReport = string(val), true
		s.mu.Unlock()
	}
}

var ddlTags = [...]string{"CREATE", "ALTER", "DROP", "COMMENT", "IMPORT", "SECURITY", "GRANT", "REVOKE"}

func (s *session) commandComplete(ev *event, body []byte) {
	if ev.plan != nil {
		if ev.done < len(ev.plan.Statements) {
			st := &ev.plan.Statements[ev.done]
			s.lock()
			s.prepared.Commit(st)
			s.notePrepared(st, ev.searchPathAt)
			s.mu.Unlock()
		}
		ev.done++
	}
	tag, _ := pgmsg.ParseCommandComplete(body)
	for _, ddl := range ddlTags {
		if bytes.HasPrefix(tag, []byte(ddl)) {
			s.db.catalog.purge(s.ctx)
			s.db.planner.Purge()
			s.db.refreshSoon() // derived relations may have changed
			return
		}
	}
}

// parameterDescription reports plaintext types for encrypted parameters.
func (s *session) parameterDescription(st *stmtInfo, body []byte, w *postgres.Writer) error {
	if st.plan == nil {
		w.Forward(pgmsg.TypeParameterDescription, body)
		return nil
	}
	types, err := pgmsg.ParseParameterDescription(body)
	if err != nil {
		return err
	}
	out := pgmsg.AppendParameterDescriptionStart(s.backBufs.message[:0], types.Len())
	for i := range types.Len() {
		oid := types.At(i)
		if i < len(st.plan.Params) {
			if p := st.plan.Params[i]; p.Encrypted() && knownType(p.ClientType()) {
				oid = plaintextOID[p.ClientType()].oid
				if p.ClientArray() {
					oid = plaintextOID[p.ClientType()].array
				}
			}
		}
		out = pgmsg.AppendUint32(out, oid)
	}
	s.backBufs.message = sendMessage(w, out)
	return nil
}

// Event kinds other than the client's message types: a Describe of a
// portal (a Describe of a statement has kind pgmsg.TypeDescribe), and the
// message the proxy sends in place of a refused one (refuseBatch).
const (
	kindDescribePortal byte = 'd'
	kindRefused        byte = '!'
)

// What the proxy sends the server in place of a refused request, so that
// the server fails it itself: a query that does not parse — as a Parse of
// a statement no client names for an extended-protocol message (it fails
// whatever the session's state: 42601, or 42P05 should a client have used
// the name, or 25P02 in a failed transaction block, and creates nothing),
// as a Query for a simple Query or FunctionCall. Neither carries anything
// of the refused request; the server's error is replaced by the proxy's
// refusal.
var (
	refusedName  = []byte("\x7fdbproxy: refused")
	refusedSQL   = []byte("dbproxy: statement refused")
	refusedQuery = append(append([]byte(nil), refusedSQL...), 0)
)

// encodeError encodes an ErrorResponse (for Writer.Answer).
func encodeError(e *pgproto3.ErrorResponse) []byte {
	b, _ := e.Encode(nil) // only fails for a message over 1 GB
	return b
}
