package pgcrypt

import (
	"encoding/binary"
	"errors"
	"strings"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/dbproxy/dbproxy/internal/blocking"
	"github.com/dbproxy/dbproxy/proxy/postgres"
	"github.com/dbproxy/dbproxy/sqlplan"
	"github.com/dbproxy/dbproxy/sqlplan/pgsql"
)

// The search_path of a session decides which table an unqualified name
// denotes, so the proxy must know it exactly: a wrong guess could treat an
// encrypted table as a plaintext one. Its value at connection time may come
// from the role, the database or the server configuration, and "$user" in
// it stands for current_user. PostgreSQL 18 and later report search_path
// (ParameterStatus, at startup and before the ReadyForQuery of every
// request that changed it); older servers do not, and no server reports
// the role. So:
//
//   - Before the first Query, Parse or Bind of a session, and after any
//     statement that may have changed it before the next statement that
//     needs it (to be planned, or a prepared statement planned under a
//     search_path), at the start of a batch: when the server reports it,
//     every request sent before has been answered and the role is known
//     (or "$user" is not in it), the reported value is taken as it is
//     (searchPathFromReport). Otherwise the proxy sends a hidden
//     searchPathQuery (never inside an extended batch, where an earlier
//     error would make the server skip it), waits for the answer
//     (Writer.Flush, then the backend hook hands the answer over) and
//     swallows the response; the answer also tells current_user, kept
//     until a statement may change the role.
//   - "May have changed" is read in two steps. A cheap scan of the text
//     (sessionWords, startsStatement) finds the strings that may: a
//     statement starting with SET, RESET or DISCARD (comments and quoted
//     text skipped; text that cannot be split with certainty counts), any
//     mention of search_path or set_config, and COMMIT, END, ABORT,
//     ROLLBACK, PREPARE TRANSACTION, CALL or DO after a change inside a
//     transaction. Those are then parsed with the server's grammar
//     (pgsql.SessionEffects): only SET/RESET of search_path, role or
//     session_authorization, RESET ALL, DISCARD, set_config, DO and CALL
//     count, so SET statement_timeout does not make the proxy ask again.
//     Text the parser cannot read as the server will (an unsafe
//     client_encoding, standard_conforming_strings off, a syntax error)
//     counts as a change. The end of a transaction in which a change ran
//     counts too (its SETs may be undone), and so does the Execute of an
//     extended-protocol statement that changes it, and an SQL EXECUTE of a
//     statement prepared from text naming set_config.
//   - A statement that changes search_path (or the role, which "$user"
//     follows) followed by a statement in the same string, or a
//     transaction end after such a change followed by one, is refused when
//     the string needs a plan: the later statements would be planned under
//     the old value.
//
// A function may call set_config itself. The proxy does not see that in
// the text; PostgreSQL 18 reports the change, and the value is read again
// before the next batch (a request pipelined behind the call was planned
// under the old value). Older servers do not report it.
//
// Until the value is known, statements that need a plan are refused.

// searchPathQuery answers the search_path setting and the user "$user"
// stands for.
const searchPathQuery = "SELECT pg_catalog.current_setting('search_path'), current_user"

var errSearchPathMixed = errorResponse(sqlplan.StateFeatureNotSupported,
	"dbproxy: statement refused: a statement changing search_path or the role must be sent on its own, not with statements on encrypted tables")

var errSearchPathUnknown = errorResponse(sqlplan.StateFeatureNotSupported,
	"dbproxy: statement refused: the session's search_path is not known to the proxy (it changed inside this pipeline, or could not be read); send Sync or retry")

// spAnswer is the backend's answer to a hidden searchPathQuery: the
// search_path with "$user" substituted and current_user, ok false if the
// query failed.
type spAnswer struct {
	path, user string
	ok         bool
}

// The words mayChangeSearchPath and lexChanges look for, and their bits in
// a scan: one pass over the text serves both.
var sessionWords = newWordScan("rollback", "search_path", "set_config", "set", "reset", "discard",
	"client_encoding", "standard_conforming_strings")

const (
	wordRollback = 1 << iota
	wordSearchPath
	wordSetConfig
	wordSet
	wordReset
	wordDiscard
	wordClientEncoding
	wordSCS

	// anywhereWords change search_path (or what "$user" means) wherever
	// they appear: set_config('search_path', …) and set_config('role', …).
	anywhereWords = wordSearchPath | wordSetConfig
	// mayChangeWords may change it as the first word of a statement.
	mayChangeWords = wordSearchPath | wordSet | wordReset | wordDiscard

	// lexWordAnywhere change client_encoding or standard_conforming_strings
	// wherever they appear; lexWordStart as the first word of a statement.
	lexWordAnywhere = wordClientEncoding | wordSCS | wordSetConfig
	lexWordStart    = wordSet | wordReset | wordDiscard
)

// mayChangeSearchPath reports whether the statement text, in which
// sessionWords.scan found the words found, may change the session's
// search_path (or what "$user" in it means).
func (s *session) mayChangeSearchPath(text []byte, found uint8) bool {
	if s.endsSearchPathTx(text, found) {
		return true
	}
	if found&anywhereWords != 0 {
		return true
	}
	// A word that may change it: only as the first word of a statement
	// (SET ROLE, RESET ALL, DISCARD ALL, SET search_path …).
	return found&mayChangeWords != 0 && s.mayStartWithSet(text)
}

// searchPathEffect reads text, in which mayChangeSearchPath found words
// that may change search_path, with the server's grammar: effect is what
// its statements may do to search_path and the role, mixed whether
// another statement follows such a change in the same string. Text the
// parser cannot read as the server will may do anything.
func (s *session) searchPathEffect(text []byte) (effect pgsql.SessionEffect, mixed bool) {
	const all = pgsql.EffectSearchPath | pgsql.EffectRole
	if e, encOnly := s.lexRefusal(); e != nil && !(encOnly && isASCII(text)) {
		return all, true
	}
	effects, err := pgsql.SessionEffects(string(text))
	if err != nil {
		return all, true
	}
	for i, e := range effects {
		if e != 0 {
			effect |= e
			mixed = mixed || i < len(effects)-1
		}
	}
	return effect, mixed
}

// preparedSearchPathChange follows SQL PREPARE and EXECUTE in a planned
// string, in which sessionWords.scan found the words found: a statement
// prepared in a string naming set_config may change search_path when it
// is executed. It returns whether plan executes such a statement, and
// whether another statement follows that EXECUTE in the string.
func (s *session) preparedSearchPathChange(plan *pgsql.Plan, found uint8) (changes, mixed bool) {
	for i := range plan.Statements {
		st := &plan.Statements[i]
		switch {
		case st.Kind == pgsql.KindPrepare && st.Prepare != nil && found&wordSetConfig != 0:
			if s.searchPath.changers == nil {
				s.searchPath.changers = map[string]bool{}
			}
			s.searchPath.changers[st.Prepare.Name] = true
		case st.Kind == pgsql.KindExecute && st.Execute != nil && s.searchPath.changers[st.Execute.Name]:
			changes = true
			mixed = mixed || i < len(plan.Statements)-1
		case st.Kind == pgsql.KindDeallocate && st.DeallocateAll:
			clear(s.searchPath.changers)
		case st.Kind == pgsql.KindDeallocate:
			delete(s.searchPath.changers, st.Deallocate)
		}
	}
	return changes, mixed
}

// endsSearchPathTx reports whether text may end a transaction in which
// search_path (or the role) was set — COMMIT, END, ABORT, ROLLBACK,
// PREPARE TRANSACTION, or a CALL/DO that commits — undoing a SET LOCAL:
// statements after it in the same string run under another search_path.
func (s *session) endsSearchPathTx(text []byte, found uint8) bool {
	s.lock()
	inTx := s.searchPath.txChange
	s.mu.Unlock()
	return inTx && (found&wordRollback != 0 || !s.lexCertain() || startsStatement(text, txEndWords))
}

// searchPathChanged records that a statement that may change search_path
// (and, with pgsql.EffectRole, the role) was forwarded: read it again
// before the next plan, and again once the current transaction (if any)
// has ended.
func (s *session) searchPathChanged(effect pgsql.SessionEffect) {
	s.searchPath.known = false
	if effect&pgsql.EffectRole != 0 {
		s.searchPath.userKnown = false
	}
	s.lock()
	s.searchPath.txChange = true
	s.mu.Unlock()
}

// ensureSearchPath asks the server for the session's search_path when it
// is not known and the session is at the start of a batch. It blocks until
// the answer arrives.
func (s *session) ensureSearchPath(w *postgres.Writer) error {
	s.lock()
	if s.searchPath.stale {
		// The transaction ended: its SET ROLE may be undone too.
		s.searchPath.stale, s.searchPath.known, s.searchPath.userKnown = false, false, false
	}
	if s.searchPath.newReport {
		s.searchPath.newReport, s.searchPath.known = false, false
	}
	s.mu.Unlock()
	if s.searchPath.known || !s.batch.starting {
		return nil
	}
	s.searchPath.asked = true
	if s.searchPathFromReport() {
		return nil
	}
	q := []byte{'Q', 0, 0, 0, 0}
	q = append(q, searchPathQuery...)
	q = append(q, 0)
	binary.BigEndian.PutUint32(q[1:5], uint32(len(q)-1))
	_, _ = w.Write(q)
	s.push(s.newEvent(event{kind: 'Q', hidden: true, searchPath: true}))
	if err := w.Flush(); err != nil {
		return err
	}
	blocking.Announce(s.ctx) // the backend brings the answer
	select {
	case a := <-s.searchPath.answers:
		if a.ok {
			s.searchPath.current, s.searchPath.known = a.path, true
			s.searchPath.user, s.searchPath.userKnown = a.user, true
		}
		return nil
	case <-s.ctx.Done():
		return s.ctx.Err()
	}
}

// searchPathFromReport takes the search_path from the server's own
// reports (ParameterStatus, PostgreSQL 18 and later) when it can: every
// request sent before has been answered, so its reports have arrived, and
// the role "$user" stands for is known (no statement since the last
// searchPathQuery may have changed it) or not needed. Frontend goroutine.
func (s *session) searchPathFromReport() bool {
	s.lock()
	reported, path, idle := s.searchPath.reported, s.searchPath.reportedPath, s.pending.len() == 0
	s.mu.Unlock()
	if !reported || !idle {
		return false
	}
	if strings.Contains(path, "$user") {
		if !s.searchPath.userKnown {
			return false
		}
		path = substituteUser(path, s.searchPath.user)
	}
	s.searchPath.current, s.searchPath.known = path, true
	return true
}

// substituteUser replaces "$user" in a search_path setting by user, as a
// quoted identifier's content.
func substituteUser(path, user string) string {
	return strings.ReplaceAll(path, "$user", strings.ReplaceAll(user, `"`, `""`))
}

// searchPathResponse consumes the response to a hidden searchPathQuery
// (backend goroutine); ReadyForQuery hands the answer to the frontend.
func (s *session) searchPathResponse(typ byte, body []byte) {
	switch typ {
	case 'D':
		path, user, ok := twoTextCells(body)
		if ok {
			s.searchPath.replyPath, s.searchPath.replyUser = substituteUser(path, user), user
		}
		s.searchPath.replyOK = ok
	case 'E':
		s.searchPath.replyOK, s.searchPath.replyFailed = false, true
	}
}

// searchPathReady ends a hidden searchPathQuery at its ReadyForQuery.
func (s *session) searchPathReady() {
	a := spAnswer{path: s.searchPath.replyPath, user: s.searchPath.replyUser, ok: s.searchPath.replyOK && !s.searchPath.replyFailed}
	if !a.ok {
		s.log.Warn("could not read the session's search_path; statements on encrypted tables are refused until it can be read")
	}
	s.searchPath.replyPath, s.searchPath.replyUser, s.searchPath.replyOK, s.searchPath.replyFailed = "", "", false, false
	s.searchPath.answers <- a
}

// noteReady tracks transaction ends for search_path changes made inside a
// transaction (backend goroutine).
func (s *session) noteReady(body []byte) {
	if len(body) != 1 || body[0] != 'I' {
		return
	}
	s.lock()
	if s.searchPath.txChange {
		s.searchPath.txChange, s.searchPath.stale = false, true
	}
	s.mu.Unlock()
}

// twoTextCells returns the two cells of a DataRow body of two non-NULL
// columns.
func twoTextCells(body []byte) (a, b string, ok bool) {
	if len(body) < 2 || binary.BigEndian.Uint16(body) != 2 {
		return "", "", false
	}
	body = body[2:]
	var cells [2]string
	for i := range cells {
		if len(body) < 4 {
			return "", "", false
		}
		n := int(int32(binary.BigEndian.Uint32(body)))
		if n < 0 || len(body) < 4+n {
			return "", "", false
		}
		cells[i] = string(body[4 : 4+n])
		body = body[4+n:]
	}
	return cells[0], cells[1], true
}

// A statement prepared under one search_path and executed under another is
// analysed again by the server under the new one (its plan cache tracks
// search_path), so the proxy must plan it again too: a Bind of such a
// statement first re-prepares it (hidden Close, Parse and Describe) from
// a new plan. SQL-level EXECUTE cannot be re-prepared by the proxy: it is
// refused (checkExecutes).

// upstreamTypes returns the parameter types to declare upstream for plan:
// the client's (clientTypes, n big-endian OIDs), with bytea / bytea[] for
// the encrypted parameters.
func upstreamTypes(clientTypes []byte, plan *pgsql.Plan) []uint32 {
	n := len(clientTypes) / 4
	types := make([]uint32, max(n, len(plan.Params)))
	for i := range types {
		if i < n {
			types[i] = binary.BigEndian.Uint32(clientTypes[4*i:])
		}
		if i < len(plan.Params) && plan.Params[i].Encrypted() {
			types[i] = pgsql.UpstreamOID(plan.Params[i])
		}
	}
	return types
}

// replan re-prepares statement name, planned under another search_path,
// under the current one.
func (s *session) replan(name []byte, st *stmtInfo, w *postgres.Writer) error {
	plan, src, err := s.db.planner.PlanReusing(s.ctx, st.sql, s.searchPath.current, nil)
	s.planned(src)
	if err != nil {
		return err
	}
	if plan.Passthrough() && st.plan == nil {
		st.searchPath = s.searchPath.current // still plaintext under the new path
		return nil
	}
	if !plan.Passthrough() && len(plan.Statements) > 0 && plan.Statements[0].Kind != pgsql.KindQuery {
		return errors.New("only SELECT, INSERT, UPDATE and DELETE on encrypted tables are supported in the extended query protocol")
	}
	s.lock()
	stdStringsOff, zone := s.lex.stdStringsOff, s.zone
	s.mu.Unlock()
	if stdStringsOff && !plan.Passthrough() {
		return errors.New("standard_conforming_strings is off")
	}
	client := make([]byte, 0, 4*len(st.clientTypes))
	for _, oid := range st.clientTypes {
		client = binary.BigEndian.AppendUint32(client, oid)
	}
	_, _ = w.Write(statementMessage('C', name))
	if plan.Passthrough() {
		st.plan, st.slots, st.types = nil, nil, nil
		p := []byte{'P', 0, 0, 0, 0}
		p = append(p, name...)
		p = append(p, 0)
		p = append(p, st.sql...)
		p = append(p, 0)
		p = binary.BigEndian.AppendUint16(p, uint16(len(st.clientTypes)))
		p = append(p, client...)
		binary.BigEndian.PutUint32(p[1:5], uint32(len(p)-1))
		_, _ = w.Write(p)
	} else {
		st.plan, st.types = plan, upstreamTypes(client, plan)
		if st.slots, err = s.matchSlots(plan, nil); err != nil {
			return err
		}
		if err := s.upstreamParse(name, st, zone, w); err != nil {
			return err
		}
	}
	_, _ = w.Write(statementMessage('D', name))
	st.searchPath = s.searchPath.current
	st.described, st.cols, st.noData, st.poison = false, nil, false, nil
	if len(name) > 0 {
		var params []sqlplan.Param
		if st.plan != nil {
			params = withSlots(st.plan.Params, st.slots)
		}
		s.lock()
		s.prepared.Add(string(name), params)
		s.searchPath.preparedUnder[string(name)] = s.searchPath.current
		s.mu.Unlock()
	}
	s.push(s.newEvent(event{kind: 'C', hidden: true}), s.newEvent(event{kind: 'P', stmt: st, hidden: true}),
		s.newEvent(event{kind: 'D', stmt: st, hidden: true}))
	return nil
}

// notePrepared records the search_path a SQL PREPARE was planned under
// (with s.mu held, as the statement completes).
func (s *session) notePrepared(st *pgsql.Statement, path string) {
	switch {
	case st.Kind == pgsql.KindPrepare && st.Prepare != nil:
		s.searchPath.preparedUnder[st.Prepare.Name] = path
	case st.Kind == pgsql.KindDeallocate && st.DeallocateAll:
		clear(s.searchPath.preparedUnder)
	case st.Kind == pgsql.KindDeallocate:
		delete(s.searchPath.preparedUnder, st.Deallocate)
	}
}

// checkExecutes refuses an EXECUTE of a statement prepared under another
// search_path than the current one.
func (s *session) checkExecutes(plan *pgsql.Plan) *pgproto3.ErrorResponse {
	for i := range plan.Statements {
		st := &plan.Statements[i]
		if st.Kind != pgsql.KindExecute || st.Execute == nil {
			continue
		}
		s.lock()
		path, ok := s.searchPath.preparedUnder[st.Execute.Name]
		s.mu.Unlock()
		if ok && path != s.searchPath.current {
			return errorResponse(sqlplan.StateFeatureNotSupported, "dbproxy: statement refused: prepared statement "+
				st.Execute.Name+" was prepared under another search_path; DEALLOCATE and PREPARE it again")
		}
	}
	return nil
}
