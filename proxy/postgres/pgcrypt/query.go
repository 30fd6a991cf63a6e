package pgcrypt

import (
	"encoding/binary"
	"unsafe"

	"github.com/dbproxy/dbproxy/proxy/postgres"
	"github.com/dbproxy/dbproxy/proxy/postgres/pgmsg"
	"github.com/dbproxy/dbproxy/sqlplan"
	"github.com/dbproxy/dbproxy/sqlplan/pgsql"
	"github.com/jackc/pgx/v5/pgproto3"
)

func (s *session) query(body []byte, w *postgres.Writer) error {
	if len(body) == 0 || body[len(body)-1] != 0 {
		return &postgres.Error{Code: "08P01", Message: "invalid Query message"}
	}
	s.copy = nil // a COPY the server refused to start
	text := body[:len(body)-1]
	skips := len(text) == 0 || s.db.planner.Skips(unsafe.String(&text[0], len(text)))
	found := sessionWords.scan(text)
	lexChange := s.lexChanges(text, found)
	if s.mayChangeSearchPath(text, found) {
		effect, mixed := s.searchPathEffect(text)
		if s.endsSearchPathTx(text, found) {
			mixed, effect = true, effect|pgsql.EffectSearchPath|pgsql.EffectRole
		}
		if !skips && mixed {
			return s.refuseQuery(errSearchPathMixed, w)
		}
		if effect != 0 {
			defer s.searchPathChanged(effect) // once this statement is on its way
		}
	}
	if skips {
		// Forwarded as is: no copy of the text.
		s.planned(sqlplan.SourceSkipped)
		s.statement(false)
		s.push(s.newEvent(event{kind: pgmsg.TypeQuery, lexChange: s.lexRequest(lexChange)}))
		w.Forward(pgmsg.TypeQuery, body)
		return nil
	}
	if err := s.ensureSearchPath(w); err != nil {
		return err
	}
	if !s.searchPath.known {
		return s.refuseQuery(errSearchPathUnknown, w)
	}
	// Checked after ensureSearchPath, which waits for the answers to
	// everything sent before: a change ahead of this string is settled.
	lexErr, encOnly := s.lexRefusal()
	if lexErr != nil && !(encOnly && s.asciiOnly(text)) {
		return s.refuseQuery(lexErr, w)
	}
	// text aliases the relay's buffer: the planner copies what it keeps,
	// and the plan (of a template hit, in s.frontBufs.plan) is used only
	// during this call; the event keeps plan.Shared().
	sql := unsafe.String(&text[0], len(text))
	if s.frontBufs.plan == nil {
		s.frontBufs.plan = new(pgsql.PlanScratch) // not before: an idle session keeps it
	}
	plan, src, err := s.db.planner.PlanReusing(s.ctx, sql, s.searchPath.current, s.frontBufs.plan)
	s.planned(src)
	if err != nil {
		return s.refuseQuery(refusalResponse(err), w)
	}
	if lexErr != nil && !lexPlanAllowed(text, plan) {
		return s.refuseQuery(lexErr, w)
	}
	if refusal := s.checkKeyless(plan); refusal != nil {
		return s.refuseQuery(refusal, w)
	}
	if changes, mixed := s.preparedSearchPathChange(plan, found); mixed {
		return s.refuseQuery(errSearchPathMixed, w)
	} else if changes {
		defer s.searchPathChanged(pgsql.EffectSearchPath | pgsql.EffectRole)
	}
	if plan.Passthrough() {
		s.statement(false)
		s.push(s.newEvent(event{kind: pgmsg.TypeQuery, lexChange: s.lexRequest(lexChange)}))
		w.Forward(pgmsg.TypeQuery, body)
		return nil
	}
	return s.rewriteQuery(plan, sql, lexChange, w)
}

// rewriteQuery sends the Query rewritten by plan (values for encrypted
// columns encrypted), or refuses it; a COPY FROM STDIN it starts gets its
// row encrypter.
func (s *session) rewriteQuery(plan *pgsql.Plan, sql string, lexChange bool, w *postgres.Writer) error {
	copyPlan, refusal := copyStatement(plan)
	if refusal != nil {
		return s.refuseQuery(refusal, w)
	}
	if err := s.checkExecutes(plan); err != nil {
		return s.refuseQuery(err, w)
	}
	s.lock()
	zone := s.zone
	ev := s.newEvent(event{kind: pgmsg.TypeQuery, plan: plan.Shared(), searchPathAt: s.searchPath.current})
	env := pgsql.Env{Encrypter: s.cipher, Zone: zone, Prepared: &s.prepared, Scratch: &s.frontBufs.query}
	if plan.RecordsMatches() { // an INSERT, say, has nothing to record
		ev.matches = s.newMatchSet()
		env.Matches = ev.matches
	}
	out := pgmsg.Begin(s.frontBufs.message[:0], pgmsg.TypeQuery)
	out, err := plan.Rewrite(s.ctx, out, sql, env)
	s.mu.Unlock()
	if err != nil {
		return s.refuseQuery(refusalResponse(err), w)
	}
	out = pgmsg.End(append(out, 0), 0)
	ev.lexChange = s.lexRequest(lexChange)
	s.push(ev)
	if copyPlan != nil && copyPlan.Kind == pgsql.KindCopyFrom {
		s.copy = newCopyIn(copyPlan.Copy, s.ic.opts.CopyBuffer)
	}
	s.statement(true)
	_, _ = w.Write(out)
	s.keep(out)
	return nil
}

func (s *session) keep(out []byte) { s.frontBufs.message = reusable(out) }

// maxKeptBuffer bounds the scratch buffers a session keeps between
// messages; a larger one (a huge row) is left to the garbage collector.
const maxKeptBuffer = 1 << 20

// reusable returns buf for reuse, or nil once it grew past maxKeptBuffer.
func reusable(buf []byte) []byte {
	if cap(buf) > maxKeptBuffer {
		return nil
	}
	return buf
}

// sendMessage finishes the message in out (a type byte and a length
// placeholder, then the body), writes it unless its body is empty, and
// returns out for reuse.
func sendMessage(w *postgres.Writer, out []byte) []byte {
	if len(out) > 5 {
		binary.BigEndian.PutUint32(out[1:5], uint32(len(out)-1))
		_, _ = w.Write(out)
	}
	return reusable(out)
}

// copyStatement returns the COPY statement of plan, nil if none, or why
// the query is refused: a COPY of encrypted columns must be alone and use
// one-byte delimiters the proxy can parse.
func copyStatement(plan *pgsql.Plan) (*pgsql.Statement, *pgproto3.ErrorResponse) {
	var copyPlan *pgsql.Statement
	for i := range plan.Statements {
		switch st := &plan.Statements[i]; st.Kind {
		case pgsql.KindCopyFrom, pgsql.KindCopyTo:
			if len(plan.Statements) != 1 {
				return nil, errorResponse(sqlplan.StateFeatureNotSupported,
					"dbproxy: statement refused: COPY of encrypted columns must be the only statement of its query")
			}
			if st.Copy == nil || (st.Copy.Format != pgsql.CopyBinary && (len(st.Copy.Delimiter) != 1 ||
				(st.Copy.Format == pgsql.CopyCSV && (len(st.Copy.Quote) != 1 || len(st.Copy.Escape) != 1)))) {
				return nil, errorResponse(sqlplan.StateFeatureNotSupported,
					"dbproxy: statement refused: COPY of encrypted columns needs a one-byte delimiter, quote and escape")
			}
			if st.Copy != nil && st.Copy.Format == pgsql.CopyCSV && !copyBytesOK(st.Copy) {
				return nil, errorResponse(sqlplan.StateFeatureNotSupported,
					"dbproxy: statement refused: COPY of encrypted columns with a backslash as QUOTE, or a line ending as DELIMITER, QUOTE or ESCAPE")
			}
			copyPlan = st
		}
	}
	return copyPlan, nil
}

// checkKeyless refuses a plan that writes NULL or DEFAULT into, or copies
// under the same key into, an encrypted column the session's access policy
// does not let it write, or copies from one it may not read: no key is
// used for those, so no Encrypt would ask the policy.
func (s *session) checkKeyless(plan *pgsql.Plan) *pgproto3.ErrorResponse {
	for _, w := range plan.Keyless {
		if err := s.cipher.CheckKeyless(s.ctx, w.Column, w.From); err != nil {
			return refusalResponse(err)
		}
	}
	return nil
}
