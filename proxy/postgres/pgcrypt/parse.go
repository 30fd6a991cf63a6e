package pgcrypt

import (
	"bytes"
	"errors"
	"slices"
	"time"
	"unsafe"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/dbproxy/dbproxy/proxy/postgres"
	"github.com/dbproxy/dbproxy/proxy/postgres/pgmsg"
	"github.com/dbproxy/dbproxy/sqlplan"
	"github.com/dbproxy/dbproxy/sqlplan/pgsql"
)

// parse plans a Parse, rewrites its text and parameter types, and follows
// it with a Describe of the statement whose responses the backend
// swallows, so that the result columns of every statement are known.
func (s *session) parse(body []byte, w *postgres.Writer) error {
	msg, err := pgmsg.ParseParse(body)
	if err != nil {
		return &postgres.Error{Code: "08P01", Message: "invalid Parse message"}
	}
	name, text := msg.Name, msg.Query
	s.copy = nil
	skips := len(text) == 0 || s.db.planner.Skips(unsafe.String(&text[0], len(text)))
	found := sessionWords.scan(text)
	lexChange := s.lexChanges(text, found)
	var spChange pgsql.SessionEffect
	if s.mayChangeSearchPath(text, found) {
		var mixed bool
		spChange, mixed = s.searchPathEffect(text)
		if !skips && mixed {
			s.refuseBatch(errSearchPathMixed, w)
			return nil
		}
		if s.endsSearchPathTx(text, found) {
			defer s.searchPathChanged(pgsql.EffectSearchPath | pgsql.EffectRole)
		} else if spChange != 0 {
			defer s.searchPathChanged(spChange)
		}
	}
	if !skips {
		if err := s.ensureSearchPath(w); err != nil {
			return err
		}
	}
	if !skips && !s.searchPath.known {
		s.refuseBatch(errSearchPathUnknown, w)
		return nil
	}
	var lexErr *pgproto3.ErrorResponse
	if !skips {
		var encOnly bool
		if lexErr, encOnly = s.lexRefusal(); lexErr != nil && !(encOnly && s.asciiOnly(text)) {
			s.refuseBatch(lexErr, w)
			return nil
		}
	}
	sql := string(text)
	plan, src, err := s.db.planner.PlanReusing(s.ctx, sql, s.searchPath.current, nil)
	s.planned(src)
	if err != nil {
		s.refuseBatch(refusalResponse(err), w)
		return nil
	}
	if lexErr != nil && !plan.Passthrough() {
		s.refuseBatch(lexErr, w)
		return nil
	}
	if refusal := s.checkKeyless(plan); refusal != nil {
		s.refuseBatch(refusal, w)
		return nil
	}
	st := &stmtInfo{fetch: isFetch(text), lexChange: lexChange, txEnd: firstWordIn(text, txEndWords), searchPathChange: spChange}
	if skips {
		st.text, st.derived = sql, s.db.planner.Derived()
	} else {
		st.sql, st.searchPath = sql, s.searchPath.current
		st.clientTypes = make([]uint32, msg.ParamTypes.Len())
		for i := range st.clientTypes {
			st.clientTypes[i] = msg.ParamTypes.At(i)
		}
	}
	if plan.Passthrough() {
		w.Forward(pgmsg.TypeParse, body)
	} else if refusal := s.parseEncrypted(name, msg.ParamTypes.Bytes(), sql, st, plan, w); refusal != nil {
		s.refuseBatch(refusal, w)
		return nil
	}
	s.addStatement(name, st, plan)
	_, _ = w.Write(pgmsg.AppendDescribe(nil, pgmsg.ObjectStatement, name)) // the injected Describe
	s.push(s.newEvent(event{kind: pgmsg.TypeParse, stmt: st}), s.newEvent(event{kind: pgmsg.TypeDescribe, stmt: st, hidden: true}))
	return nil
}

// parseEncrypted sends the Parse of st, whose plan involves encrypted
// columns, rewritten from sql; oids are the client's parameter types. A non-nil
// ErrorResponse refuses the batch.
func (s *session) parseEncrypted(name, oids []byte, sql string, st *stmtInfo, plan *pgsql.Plan, w *postgres.Writer) *pgproto3.ErrorResponse {
	if len(plan.Statements) > 0 && plan.Statements[0].Kind != pgsql.KindQuery {
		return errorResponse(sqlplan.StateFeatureNotSupported,
			"dbproxy: statement refused: only SELECT, INSERT, UPDATE and DELETE on encrypted tables are supported in the extended query protocol")
	}
	s.lock()
	stdStringsOff, zone := s.lex.stdStringsOff, s.zone
	s.mu.Unlock()
	if stdStringsOff {
		return errorResponse(sqlplan.StateFeatureNotSupported,
			"dbproxy: statement refused: standard_conforming_strings is off")
	}
	st.plan, st.sql = plan, sql
	st.types = upstreamTypes(oids, plan)
	var err error
	if st.slots, err = s.matchSlots(plan, nil); err != nil {
		return refusalResponse(err)
	}
	if err := s.upstreamParse(name, st, zone, w); err != nil {
		return refusalResponse(err)
	}
	return nil
}

// addStatement records st, planned as plan, as the statement name.
func (s *session) addStatement(name []byte, st *stmtInfo, plan *pgsql.Plan) {
	if s.stmts == nil {
		s.stmts = map[string]*stmtInfo{}
	}
	s.stmts[string(name)] = st
	if len(name) > 0 {
		s.lock()
		s.prepared.Add(string(name), withSlots(plan.Params, st.slots))
		if st.searchPath != "" {
			s.searchPath.preparedUnder[string(name)] = st.searchPath
		} else {
			delete(s.searchPath.preparedUnder, string(name))
		}
		s.mu.Unlock()
	}
}

// matchSlots returns, per parameter of plan, the number of live versions of
// the key of each RoleMatch parameter's column (0 for the other roles): the
// slots the statement is prepared with. A RoleMatch parameter is then
// rendered as an IN list of that many array elements, which PostgreSQL's
// generic plan turns into index lookups (it estimates `= ANY` of a
// parameter array at 10 rows, enough to prefer a sequential scan on small
// tables). cts, when not nil, holds the ciphertexts about to be bound per
// parameter: a slot count is then at least their number.
func (s *session) matchSlots(plan *pgsql.Plan, cts [][][]byte) ([]int, error) {
	var slots []int
	for i, prm := range plan.Params {
		if prm.Role != sqlplan.RoleMatch {
			continue
		}
		n, err := s.cipher.LiveVersions(s.ctx, prm.Column)
		if err != nil {
			return nil, err
		}
		if i < len(cts) {
			n = max(n, len(cts[i]))
		}
		if slots == nil {
			slots = make([]int, len(plan.Params))
		}
		slots[i] = n
	}
	return slots, nil
}

// upstreamParse sends the Parse of st (its rewritten SQL, with st.slots)
// under name. The caller queues the events of its responses.
func (s *session) upstreamParse(name []byte, st *stmtInfo, zone *time.Location, w *postgres.Writer) error {
	out := pgmsg.AppendParseStart(s.frontBufs.message[:0], name)
	out, err := st.plan.Rewrite(s.ctx, out, st.sql, pgsql.Env{Encrypter: s.cipher, Zone: zone, Slots: st.slots})
	if err != nil {
		return err
	}
	out = pgmsg.End(appendSlotTypes(append(out, 0), st), 0)
	_, _ = w.Write(out)
	s.keep(out)
	return nil
}

// appendSlotTypes appends the parameter types to declare upstream for st
// with its slots: st.types, with pgsql.SlotOID for a match parameter
// with slots (bytea for one).
func appendSlotTypes(out []byte, st *stmtInfo) []byte {
	out = pgmsg.AppendCount(out, len(st.types))
	for i, t := range st.types {
		if i < len(st.slots) && st.slots[i] > 0 {
			t = pgsql.SlotOID(st.plan.Params[i], st.slots[i])
		}
		out = pgmsg.AppendUint32(out, t)
	}
	return out
}

// reprepare prepares statement name again with more match slots, because a
// key rotation added live versions since it was prepared: a hidden Close
// and Parse ahead of the Bind that needs them. Portals already bound from
// the statement are closed with it, as PostgreSQL closes them.
func (s *session) reprepare(name []byte, st *stmtInfo, slots []int, w *postgres.Writer) error {
	s.lock()
	stdStringsOff, zone := s.lex.stdStringsOff, s.zone
	s.mu.Unlock()
	if stdStringsOff {
		return errors.New("standard_conforming_strings is off")
	}
	_, _ = w.Write(pgmsg.AppendClose(nil, pgmsg.ObjectStatement, name))
	old := st.slots
	st.slots = slots
	if err := s.upstreamParse(name, st, zone, w); err != nil {
		st.slots = old
		return err
	}
	if len(name) > 0 {
		s.lock()
		s.prepared.Add(string(name), withSlots(st.plan.Params, st.slots))
		s.mu.Unlock()
	}
	s.push(s.newEvent(event{kind: pgmsg.TypeClose, hidden: true}), s.newEvent(event{kind: pgmsg.TypeParse, stmt: st, hidden: true}))
	return nil
}

// isFetch reports whether sql starts with the keyword FETCH (after
// whitespace and comments).
func isFetch(sql []byte) bool {
	i := 0
	for i < len(sql) {
		switch c := sql[i]; {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v':
			i++
		case c == '-' && i+1 < len(sql) && sql[i+1] == '-':
			for i < len(sql) && sql[i] != '\n' {
				i++
			}
		case c == '/' && i+1 < len(sql) && sql[i+1] == '*':
			i, _ = skipBlockComment(sql, i) // unterminated: the loop ends
		default:
			if len(sql)-i < 5 || !bytes.EqualFold(sql[i:i+5], []byte("fetch")) {
				return false
			}
			if len(sql)-i == 5 {
				return true
			}
			return !isWordByte(sql[i+5])
		}
	}
	return false
}

// statementMessage returns a Describe (pgmsg.TypeDescribe) or Close
// (pgmsg.TypeClose) message of the prepared statement name.
func statementMessage(typ byte, name []byte) []byte {
	if typ == pgmsg.TypeClose {
		return pgmsg.AppendClose(nil, pgmsg.ObjectStatement, name)
	}
	return pgmsg.AppendDescribe(nil, pgmsg.ObjectStatement, name)
}

// withSlots returns params with the slot counts of a statement prepared
// with them (for SQL-level EXECUTE of it); params itself when there are
// none (plans are shared and never modified).
func withSlots(params []sqlplan.Param, slots []int) []sqlplan.Param {
	if slots == nil {
		return params
	}
	out := slices.Clone(params)
	for i := range out {
		if i < len(slots) {
			out[i].Slots = slots[i]
		}
	}
	return out
}

func (s *session) describe(body []byte, w *postgres.Writer) error {
	d, err := pgmsg.ParseDescribe(body)
	if err != nil {
		return &postgres.Error{Code: "08P01", Message: "invalid Describe message"}
	}
	name := d.Name
	switch d.Object {
	case pgmsg.ObjectStatement:
		st := s.stmts[string(name)]
		if st == nil {
			s.refuseBatch(errorResponse("26000", "dbproxy: statement refused: Describe of a statement not prepared through this proxy"), w)
			return nil
		}
		s.push(s.newEvent(event{kind: pgmsg.TypeDescribe, stmt: st}))
	default:
		p := s.portal(name)
		if p == nil {
			s.refuseBatch(errorResponse("34000", "dbproxy: statement refused: Describe of a portal not bound through this proxy"), w)
			return nil
		}
		p.describeSent = true
		s.push(s.newEvent(event{kind: kindDescribePortal, portal: p, stmt: p.stmt}))
	}
	w.Forward(pgmsg.TypeDescribe, body)
	return nil
}
