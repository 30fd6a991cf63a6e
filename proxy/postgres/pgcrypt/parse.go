package pgcrypt

import (
	"bytes"
	"encoding/binary"
	"errors"
	"slices"
	"time"
	"unsafe"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/dbproxy/dbproxy/proxy/postgres"
	"github.com/dbproxy/dbproxy/sqlplan/pgsql"
)

// parse plans a Parse, rewrites its text and parameter types, and follows
// it with a Describe of the statement whose responses the backend
// swallows, so that the result columns of every statement are known.
func (s *session) parse(body []byte, w *postgres.Writer) error {
	name, rest, ok := bytes.Cut(body, []byte{0})
	var text []byte
	if ok {
		text, rest, ok = bytes.Cut(rest, []byte{0})
	}
	if !ok || len(rest) < 2 {
		return &postgres.Error{Code: "08P01", Message: "invalid Parse message"}
	}
	n := int(binary.BigEndian.Uint16(rest))
	if len(rest) != 2+4*n {
		return &postgres.Error{Code: "08P01", Message: "invalid Parse message"}
	}
	s.copy = nil
	skips := len(text) == 0 || s.db.planner.Skips(unsafe.String(&text[0], len(text)))
	found := sessionWords.scan(text)
	lexChange := s.lexChanges(text, found)
	var spChange pgsql.SessionEffect
	if s.mayChangeSearchPath(text, found) {
		var mixed bool
		spChange, mixed = s.searchPathEffect(text)
		if !skips && mixed {
			s.refuseBatch(errSearchPathMixed)
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
		s.refuseBatch(errSearchPathUnknown)
		return nil
	}
	var lexErr *pgproto3.ErrorResponse
	if !skips {
		var encOnly bool
		if lexErr, encOnly = s.lexRefusal(); lexErr != nil && !(encOnly && s.asciiOnly(text)) {
			s.refuseBatch(lexErr)
			return nil
		}
	}
	sql := string(text)
	plan, err := s.db.planner.Plan(s.ctx, sql, s.searchPath.current)
	if err != nil {
		s.refuseBatch(refusalResponse(err))
		return nil
	}
	if lexErr != nil && !plan.Passthrough() {
		s.refuseBatch(lexErr)
		return nil
	}
	st := &stmtInfo{fetch: isFetch(text), lexChange: lexChange, txEnd: firstWordIn(text, txEndWords), searchPathChange: spChange}
	if skips {
		st.text, st.derived = sql, s.db.planner.Derived()
	} else {
		st.sql, st.searchPath = sql, s.searchPath.current
		st.clientTypes = make([]uint32, n)
		for i := range st.clientTypes {
			st.clientTypes[i] = binary.BigEndian.Uint32(rest[2+4*i:])
		}
	}
	if plan.Passthrough() {
		w.Forward('P', body)
	} else if refusal := s.parseEncrypted(name, rest[2:], sql, st, plan, w); refusal != nil {
		s.refuseBatch(refusal)
		return nil
	}
	s.addStatement(name, st, plan)
	_, _ = w.Write(statementMessage('D', name)) // the injected Describe
	s.push(s.newEvent(event{kind: 'P', stmt: st}), s.newEvent(event{kind: 'D', stmt: st, hidden: true}))
	return nil
}

// parseEncrypted sends the Parse of st, whose plan involves encrypted
// columns, rewritten from sql; oids are the client's parameter types. A non-nil
// ErrorResponse refuses the batch.
func (s *session) parseEncrypted(name, oids []byte, sql string, st *stmtInfo, plan *pgsql.Plan, w *postgres.Writer) *pgproto3.ErrorResponse {
	if len(plan.Statements) > 0 && plan.Statements[0].Kind != pgsql.KindQuery {
		return errorResponse(pgsql.StateFeatureNotSupported,
			"dbproxy: statement refused: only SELECT, INSERT, UPDATE and DELETE on encrypted tables are supported in the extended query protocol")
	}
	s.mu.Lock()
	stdStringsOff, zone := s.lex.stdStringsOff, s.zone
	s.mu.Unlock()
	if stdStringsOff {
		return errorResponse(pgsql.StateFeatureNotSupported,
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
		s.mu.Lock()
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
		if prm.Role != pgsql.RoleMatch {
			continue
		}
		n, err := s.ic.opts.Encryptor.LiveVersions(s.ctx, prm.Column)
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
	out := append(s.frontBufs.message[:0], 'P', 0, 0, 0, 0)
	out = append(out, name...)
	out = append(out, 0)
	out, err := st.plan.Rewrite(s.ctx, out, st.sql, pgsql.Env{Encrypter: s.ic.opts.Encryptor, Zone: zone, Slots: st.slots})
	if err != nil {
		return err
	}
	out = append(out, 0)
	out = binary.BigEndian.AppendUint16(out, uint16(len(st.types)))
	for _, oid := range st.types {
		out = binary.BigEndian.AppendUint32(out, oid)
	}
	binary.BigEndian.PutUint32(out[1:5], uint32(len(out)-1))
	_, _ = w.Write(out)
	s.keep(out)
	return nil
}

// reprepare prepares statement name again with more match slots, because a
// key rotation added live versions since it was prepared: a hidden Close
// and Parse ahead of the Bind that needs them. Portals already bound from
// the statement are closed with it, as PostgreSQL closes them.
func (s *session) reprepare(name []byte, st *stmtInfo, slots []int, w *postgres.Writer) error {
	s.mu.Lock()
	stdStringsOff, zone := s.lex.stdStringsOff, s.zone
	s.mu.Unlock()
	if stdStringsOff {
		return errors.New("standard_conforming_strings is off")
	}
	_, _ = w.Write(statementMessage('C', name))
	old := st.slots
	st.slots = slots
	if err := s.upstreamParse(name, st, zone, w); err != nil {
		st.slots = old
		return err
	}
	if len(name) > 0 {
		s.mu.Lock()
		s.prepared.Add(string(name), withSlots(st.plan.Params, st.slots))
		s.mu.Unlock()
	}
	s.push(s.newEvent(event{kind: 'C', hidden: true}), s.newEvent(event{kind: 'P', stmt: st, hidden: true}))
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
			depth := 0 // PostgreSQL block comments nest
			for i < len(sql) {
				if sql[i] == '/' && i+1 < len(sql) && sql[i+1] == '*' {
					depth++
					i += 2
				} else if sql[i] == '*' && i+1 < len(sql) && sql[i+1] == '/' {
					depth--
					i += 2
					if depth == 0 {
						break
					}
				} else {
					i++
				}
			}
		default:
			if len(sql)-i < 5 || !bytes.EqualFold(sql[i:i+5], []byte("fetch")) {
				return false
			}
			if len(sql)-i == 5 {
				return true
			}
			c := sql[i+5]
			return !(c == '_' || c == '$' || c >= '0' && c <= '9' || c|0x20 >= 'a' && c|0x20 <= 'z' || c >= 0x80)
		}
	}
	return false
}

// statementMessage returns a Describe ('D') or Close ('C') message of the
// prepared statement name.
func statementMessage(typ byte, name []byte) []byte {
	m := make([]byte, 0, 7+len(name))
	m = append(m, typ, 0, 0, 0, 0, 'S')
	m = append(m, name...)
	m = append(m, 0)
	binary.BigEndian.PutUint32(m[1:5], uint32(len(m)-1))
	return m
}

// withSlots returns params with the slot counts of a statement prepared
// with them (for SQL-level EXECUTE of it); params itself when there are
// none (plans are shared and never modified).
func withSlots(params []pgsql.Param, slots []int) []pgsql.Param {
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
	if len(body) < 2 {
		return &postgres.Error{Code: "08P01", Message: "invalid Describe message"}
	}
	name, _, _ := bytes.Cut(body[1:], []byte{0})
	switch body[0] {
	case 'S':
		st := s.stmts[string(name)]
		if st == nil {
			s.refuseBatch(errorResponse("26000", "dbproxy: statement refused: Describe of a statement not prepared through this proxy"))
			return nil
		}
		s.push(s.newEvent(event{kind: 'D', stmt: st}))
	default:
		p := s.portal(name)
		if p == nil {
			s.refuseBatch(errorResponse("34000", "dbproxy: statement refused: Describe of a portal not bound through this proxy"))
			return nil
		}
		p.describeSent = true
		s.push(s.newEvent(event{kind: 'd', portal: p, stmt: p.stmt}))
	}
	w.Forward('D', body)
	return nil
}
