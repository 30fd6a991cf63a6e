package mycrypt

import (
	"encoding/binary"
	"errors"
	"fmt"

	gomysql "github.com/go-mysql-org/go-mysql/mysql"

	"github.com/dbproxy/dbproxy/proxy/mysql"
	"github.com/dbproxy/dbproxy/sqlplan"
	"github.com/dbproxy/dbproxy/sqlplan/mysqlsql"
	"github.com/dbproxy/dbproxy/value"
)

func refused(err error) *mysql.Error {
	e := &mysql.Error{Code: codeRefused, State: "42000", Message: err.Error()}
	var r *sqlplan.Refusal
	if errors.As(err, &r) {
		e.Cause = r // for the refusal's log (observe.go); the client gets Message
	}
	return e
}

func failed(msg string, cause error) *mysql.Error {
	return &mysql.Error{Code: codeFailed, State: "HY000", Message: "dbproxy: " + msg, Cause: cause}
}

func (s *session) plan(sql string) (*mysqlsql.Plan, error) {
	plan, _, err := s.planLex(sql)
	return plan, err
}

// planLex plans sql under the session's database and lexing state, and
// returns that state.
func (s *session) planLex(sql string) (*mysqlsql.Plan, mysqlsql.Lex, error) {
	s.lock()
	db, lex := s.db, s.lx.lex()
	s.mu.Unlock()
	plan, err := s.planIn(db, lex, sql)
	return plan, lex, err
}

func (s *session) planIn(db string, lex mysqlsql.Lex, sql string) (*mysqlsql.Plan, error) {
	plan, src, err := s.ic.planner.PlanLex(s.ctx, db, sql, lex)
	s.planned(src)
	if err != nil {
		var r *sqlplan.Refusal
		if errors.As(err, &r) {
			if r.Cause != nil {
				s.log.Warn("catalog lookup failed", "table", r.Table, "err", r.Cause)
			}
			return nil, refused(r)
		}
		return nil, failed("cannot plan the statement", err)
	}
	if err := s.checkKeyless(plan); err != nil {
		return nil, err
	}
	return plan, nil
}

func (s *session) rewrite(plan *mysqlsql.Plan, cmd byte) ([]byte, error) {
	return s.rewriteRecording(plan, cmd, nil)
}

// rewriteRecording is rewrite, reporting the lookups rendered from literals
// to rec.
func (s *session) rewriteRecording(plan *mysqlsql.Plan, cmd byte, rec sqlplan.MatchRecorder) ([]byte, error) {
	loc := s.zone()
	if loc == zoneUnknown {
		for i := range plan.Slots {
			if c := plan.Slots[i].Column; c != nil && c.Type == value.TypeTimestamptz && plan.Slots[i].Kind != mysqlsql.SlotParam {
				return nil, refused(fmt.Errorf("dbproxy: statement refused: %s: %w", c, errZoneUnknown))
			}
		}
		loc = nil
	}
	out, err := plan.RewriteRecording(s.ctx, s.cipher.Load(), loc, append(s.cmdOut[:0], cmd), rec, &s.rewriteBufs)
	if err != nil {
		var r *sqlplan.Refusal
		if errors.As(err, &r) {
			return nil, refused(r)
		}
		s.log.Warn("encryption failed", "err", err)
		return nil, keyError("cannot encrypt a value for an encrypted column", err)
	}
	s.cmdOut = reusable(out)
	return out, nil
}

// internalError ends the session on a bug rather than forwarding anything.
func internalError(err *error) {
	if r := recover(); r != nil {
		*err = &mysql.Error{Code: codeFailed, State: "HY000", Message: "dbproxy: internal error", Fatal: true,
			Cause: fmt.Errorf("panic: %v", r)}
	}
}

func (s *session) command(x *mysql.Exchange, payload []byte, w *mysql.Writer) (err error) {
	defer internalError(&err)
	switch x.Command {
	case gomysql.COM_QUERY:
		return s.query(x, payload, w)
	case gomysql.COM_STMT_PREPARE:
		return s.prepare(x, payload, w)
	case gomysql.COM_STMT_EXECUTE:
		return s.execute(x, payload, w)
	case gomysql.COM_STMT_FETCH:
		s.lock()
		st := s.stmts[x.StmtID]
		var cols []column
		if st != nil {
			cols = st.cols
		}
		s.mu.Unlock()
		if st != nil && st.plan.Encrypted {
			fs := &exState{plan: st.plan, stmt: st, cols: cols}
			for _, c := range fs.cols {
				fs.anyEnc = fs.anyEnc || c.rule != nil
			}
			x.Watch, x.State = true, fs
		}
		w.Packet(payload)
		return nil
	case gomysql.COM_STMT_SEND_LONG_DATA:
		return s.longData(x, payload, w)
	case gomysql.COM_STMT_CLOSE:
		s.lock()
		delete(s.stmts, x.StmtID)
		s.mu.Unlock()
	case gomysql.COM_STMT_RESET:
		s.lock()
		if st := s.stmts[x.StmtID]; st != nil {
			st.poisoned = false
		}
		s.mu.Unlock()
	case gomysql.COM_INIT_DB:
		s.lock()
		st := &exState{use: true, single: true, newDB: string(payload[1:]), prevDB: s.db}
		s.db = mysqlsql.UnknownDatabase
		s.mu.Unlock()
		x.Watch, x.State = true, st
	case gomysql.COM_CHANGE_USER:
		s.lock()
		s.db = mysqlsql.UnknownDatabase
		clear(s.stmts)
		s.mu.Unlock()
		s.resetZone()
		s.changeUser(payload)
		x.Watch, x.State = true, &exState{changeUser: s.changeUserCipher(payload)}
	case gomysql.COM_RESET_CONNECTION:
		s.lock()
		clear(s.stmts)
		s.mu.Unlock()
		s.resetZone()
		s.resetConnection()
	}
	w.Packet(payload)
	return nil
}

func (s *session) query(x *mysql.Exchange, payload []byte, w *mysql.Writer) error {
	sql := string(payload[1:])
	plan, lex, err := s.planLex(sql)
	if err != nil {
		return err
	}
	st := s.execState()
	st.plan = plan
	st.zone = s.beginZoneChange(sql, lex)
	if plan.Session != nil {
		st.lex = s.beginLexChange(plan)
	}
	if plan.HasUse {
		s.lock()
		st.use, st.newDB, st.prevDB = true, plan.Use, s.db
		st.single = plan.Statements == 1
		s.db = mysqlsql.UnknownDatabase
		s.mu.Unlock()
	}
	watch := plan.Encrypted || plan.HasUse || plan.DDL || st.zone != nil || st.lex != nil
	if watch {
		x.Watch, x.State = true, st
	}
	if plan.Passthrough {
		if !watch {
			s.unwatched(st)
		}
		w.Packet(payload)
		return nil
	}
	out, err := s.rewriteRecording(plan, gomysql.COM_QUERY, &st.matches)
	if err != nil {
		if plan.HasUse {
			s.lock()
			s.db = st.prevDB
			s.mu.Unlock()
		}
		if st.lex != nil {
			s.finishLexChange(st.lex, gomysql.ERR_HEADER, false)
		}
		return err
	}
	if !watch {
		s.unwatched(st)
	}
	w.Packet(out)
	return nil
}

func (s *session) prepare(x *mysql.Exchange, payload []byte, w *mysql.Writer) error {
	plan, err := s.plan(string(payload[1:]))
	if err != nil {
		return err
	}
	if plan.HasUse {
		return refused(errors.New("dbproxy: USE cannot be prepared through the proxy"))
	}
	x.Watch, x.State = true, &exState{plan: plan, zoneRisky: s.preparedChangesZone(string(payload[1:]))}
	if plan.Passthrough {
		w.Packet(payload)
		return nil
	}
	// Placeholders are not encrypted here: Rewrite only writes `?`, and
	// literal slots get their ciphertexts now.
	out, err := s.rewrite(plan, gomysql.COM_STMT_PREPARE)
	if err != nil {
		return err
	}
	w.Packet(out)
	return nil
}

func (s *session) longData(x *mysql.Exchange, payload []byte, w *mysql.Writer) error {
	if len(payload) < longDataLen {
		w.Packet(payload)
		return nil
	}
	s.lock()
	defer s.mu.Unlock()
	st := s.stmts[x.StmtID]
	if st == nil || st.plan.Passthrough {
		w.Packet(payload)
		return nil
	}
	pid := int(binary.LittleEndian.Uint16(payload[longDataParam:]))
	if pid >= len(st.plan.Params) || st.plan.Params[pid].Role != sqlplan.RolePlain {
		st.poisoned = true
		return refused(errors.New("dbproxy: long data for an encrypted parameter is not supported"))
	}
	for i, sp := range st.plan.ServerParams {
		if sp.Client == pid {
			out := append([]byte(nil), payload...)
			binary.LittleEndian.PutUint16(out[longDataParam:], uint16(i))
			w.Packet(out)
			return nil
		}
	}
	st.poisoned = true
	return refused(errors.New("dbproxy: long data for an unknown parameter"))
}

// result is the session's Result hook: resultPacket, and after the last
// packet of a response its state is released.
func (s *session) result(x *mysql.Exchange, kind mysql.Kind, payload []byte, w *mysql.Writer) error {
	err := s.resultPacket(x, kind, payload, w)
	if x.Last {
		s.release(x)
	}
	return err
}

func (s *session) resultPacket(x *mysql.Exchange, kind mysql.Kind, payload []byte, w *mysql.Writer) (err error) {
	defer internalError(&err)
	st, _ := x.State.(*exState)
	if st == nil {
		w.Packet(payload)
		return nil
	}
	switch kind {
	case mysql.KindOK, mysql.KindERR:
		if st.changeUser != nil {
			s.changeUserDone(st, kind == mysql.KindOK)
			w.Packet(payload)
			return nil
		}
		if st.use {
			s.finishUse(st, kind, payload)
		}
		if kind == mysql.KindOK {
			s.trackOK(st, 0x00, payload)
		} else {
			s.trackOK(st, gomysql.ERR_HEADER, payload)
		}
		if st.plan != nil && st.plan.DDL {
			// A table may have new columns: column orders are asked again.
			s.ic.planner.Purge()
		}
		w.Packet(payload)
		return nil
	case mysql.KindPrepareOK:
		return s.prepareOK(x, st, payload, w)
	case mysql.KindParamDef:
		if st.plan == nil || st.plan.Passthrough {
			w.Packet(payload)
			return nil
		}
		if x.Column < len(st.plan.ServerParams) && st.plan.ServerParams[x.Column].Version == 0 {
			w.Packet(payload)
		}
		return nil
	case mysql.KindColumnDef:
		return s.columnDef(x, st, payload, w)
	case mysql.KindEOF:
		return s.resultEnd(st, payload, w)
	case mysql.KindTextRow, mysql.KindBinaryRow:
		return s.row(st, kind, payload, w)
	}
	w.Packet(payload)
	return nil
}

// finishUse settles the current database after a USE or COM_INIT_DB.
func (s *session) finishUse(st *exState, kind mysql.Kind, payload []byte) {
	more := false
	if kind == mysql.KindOK {
		if len(payload) == 0 {
			payload = []byte{0xff} // malformed: no lengths below
		}
		_, n1 := lenencInt(payload[1:])
		_, n2 := lenencInt(payload[1+n1:])
		if p := 1 + n1 + n2; n1 > 0 && n2 > 0 && len(payload) >= p+2 {
			more = binary.LittleEndian.Uint16(payload[p:])&gomysql.SERVER_MORE_RESULTS_EXISTS != 0
		} else {
			more = true // malformed: leave the database unknown
			s.lock()
			s.db = mysqlsql.UnknownDatabase
			s.mu.Unlock()
		}
	}
	if more {
		return
	}
	s.lock()
	defer s.mu.Unlock()
	switch {
	case kind == mysql.KindOK:
		s.db = st.newDB
	case st.single:
		s.db = st.prevDB
	default:
		// A multi-statement string failed somewhere: whether its USE ran
		// is unknown.
		s.db = mysqlsql.UnknownDatabase
	}
	st.use = false
}

func (s *session) prepareOK(x *mysql.Exchange, st *exState, payload []byte, w *mysql.Writer) error {
	if len(payload) < prepareOKLen {
		return failed("malformed prepare response", nil)
	}
	id := binary.LittleEndian.Uint32(payload[prepareOKStmtID:])
	nparams := int(binary.LittleEndian.Uint16(payload[prepareOKParams:]))
	plan := st.plan
	out := payload
	if !plan.Passthrough {
		if nparams != len(plan.ServerParams) {
			return failed(fmt.Sprintf("the server counted %d parameters where the proxy wrote %d", nparams, len(plan.ServerParams)), nil)
		}
		out = append([]byte(nil), payload...)
		binary.LittleEndian.PutUint16(out[prepareOKParams:], uint16(len(plan.Params)))
	} else if !plan.Unparsed && nparams != len(plan.Params) {
		// The proxy parsed the statement and counted its placeholders
		// differently from the server: it misread it. A statement the
		// pre-filter skipped (it names no encrypted table) has no parameter
		// list; its parameters are forwarded as sent, so the server's count
		// holds.
		return failed(fmt.Sprintf("the server counted %d parameters where the proxy found %d", nparams, len(plan.Params)), nil)
	}
	st.stmtID, st.prepared = id, true
	ps := &stmt{plan: plan, zoneRisky: st.zoneRisky}
	st.stmt = ps
	s.lock()
	s.stmts[id] = ps
	s.mu.Unlock()
	w.Packet(out)
	return nil
}
