package pgcrypt

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/dbproxy/dbproxy/proxy/postgres"
	"github.com/dbproxy/dbproxy/proxy/postgres/pgsql"
	"github.com/dbproxy/dbproxy/rules"
	"github.com/dbproxy/dbproxy/value"
)

// stmtInfo is a protocol-level prepared statement as the proxy planned it.
type stmtInfo struct {
	plan *pgsql.Plan // nil: passthrough (no encrypted parameter)
	// Frontend goroutine only, for statements with a plan: the client's
	// SQL and the parameter types sent upstream, kept to prepare the
	// statement again; slots[i] is the number of ciphertexts parameter i
	// (RoleMatch) was prepared to compare with (see pgsql.Env.Slots).
	sql   string
	types []uint32
	slots []int
	// searchPath is the search_path the statement was planned under, ""
	// when no name in it can denote an encrypted table (planner.Skips);
	// clientTypes are the parameter types of the client's Parse.
	searchPath  string
	clientTypes []uint32
	// fetch: the text is a FETCH, whose rows only a Describe of its
	// portal can attribute when the cursor is declared after the Parse.
	fetch bool
	// lexChange: its text may change client_encoding or
	// standard_conforming_strings when executed (lexstate.go).
	lexChange bool
	txEnd     bool // it may end a transaction (txEndWords)
	// text and derived, for a statement the pre-filter skipped: its SQL and
	// the derived relations it was checked against (derived.go in pgsql).
	text    string
	derived *pgsql.Derived
	// Backend goroutine only, filled from the (injected) Describe: the rule
	// of each result column (nil entries: plaintext); poison is the error
	// to report when the statement is executed, if its results cannot be
	// decrypted.
	described bool
	noData    bool // described as returning no rows
	cols      []*rules.ColumnRule
	poison    *pgproto3.ErrorResponse
	rd        rowDesc // the last RowDescription of this statement
}

// rowDesc remembers a RowDescription the server sent and what the proxy
// made of it, so that the same bytes are not decoded again (backend
// goroutine only). It is current while the catalog's generation is gen.
type rowDesc struct {
	body   []byte // the server's message body; nil: empty
	gen    uint64
	simple bool
	cols   []*rules.ColumnRule // nil: no encrypted column, forward as is
	out    []byte              // the rewritten message, type and length included
}

// portalInfo is a bound portal.
type portalInfo struct {
	stmt    *stmtInfo
	formats []int16 // result format codes as the client sent them
	// matches are the ciphertexts its Bind sent for lookups (RoleMatch
	// and RoleMatchArray parameters), nil if none; written before the
	// Bind is queued.
	matches *rules.Matches
	// describeSent: frontend only, a Describe of this portal went upstream
	// (the client's or one the proxy injected before an Execute).
	describeSent bool
	// Backend goroutine only, from a Describe of this portal that the
	// server answered with a RowDescription: the columns a statement
	// described as returning no rows (FETCH from a cursor) returns when
	// this portal is executed.
	described bool
	cols      []*rules.ColumnRule
	poison    *pgproto3.ErrorResponse
}

// event is one client message awaiting a response, in order. The frontend
// appends, the backend consumes.
type event struct {
	kind   byte // 'Q' simple query; 'P','B','D' (describe statement),'d' (describe portal),'E','C','S' (sync)
	stmt   *stmtInfo
	portal *portalInfo
	hidden bool // a message the proxy injected: swallow its responses
	// searchPath: the hidden query asking for search_path (searchpath.go).
	searchPath bool
	// searchPathAt: the search_path a simple query was planned under.
	searchPathAt string
	// lexChange (simple query and Sync): the request may change
	// client_encoding or standard_conforming_strings (lexstate.go).
	lexChange bool

	// Simple query and Sync.
	plan *pgsql.Plan
	// matches are the ciphertexts Rewrite rendered for a simple query's
	// lookups, nil if none; written before the event is queued.
	matches *rules.Matches
	inject  *pgproto3.ErrorResponse
	done    int
	srvErr  bool
}

type session struct {
	ic    *Interceptor
	db    *dbState
	rules *rules.Set
	ctx   context.Context
	log   *slog.Logger

	searchPath string // "$user" substituted; valid while spKnown

	// search_path tracking (searchpath.go). Frontend only: spKnown,
	// inBatch (extended messages sent since the last Sync). Backend only:
	// spPath, spOK, spFailed. Under mu: spTxChange, spStale.
	spKnown, inBatch    bool
	spTried, batchStart bool // asked at least once; this message starts a batch
	spPath              string
	spOK, spFailed      bool
	spTxChange, spStale bool
	spCh                chan spAnswer
	prepPath            map[string]string // under mu: statement name -> search_path it was prepared under

	// Frontend goroutine only. batchLex: an Execute of the current
	// extended batch may change the lexing settings (lexstate.go).
	batchLex   bool
	skipping   bool
	skipErr    *pgproto3.ErrorResponse
	stmts      map[string]*stmtInfo
	portals    map[string]*portalInfo // named portals
	unnamed    *portalInfo            // the unnamed portal
	qbuf       []byte
	bformats   []int16 // Bind scratch: parameter formats
	bvals      []span  // Bind scratch: parameter values
	copy       *copyIn // a COPY FROM STDIN in progress
	fcanon     []byte
	evSlab     []event
	portalSlab []portalInfo
	matchSlab  []rules.Matches
	fct        []byte
	bmatch     [][][]byte // Bind scratch: ciphertexts of RoleMatch parameters
	qcanon     []byte     // Query scratch: canonical plaintexts (pgsql.Env.Scratch)

	// Shared between the goroutines.
	mu       sync.Mutex
	queue    []*event // pending from queue[qhead]
	qhead    int
	prepared pgsql.Prepared
	zone     *time.Location
	// The lexing settings (lexstate.go): client_encoding and
	// standard_conforming_strings as the server last reported them; the
	// requests forwarded that may change them and are not answered yet;
	// whether one ran in the current transaction.
	clientEnc  string
	scsOff     bool
	lexPending int
	lexTx      atomic.Bool // written under mu; read without it

	// Backend goroutine only.
	cols          []*rules.ColumnRule // decryption of the current result; nil: none
	formats       []int16             // result formats of the current result
	failed        bool                // an error was sent; drop the rest until ReadyForQuery
	copyOutHeader bool                // the next CopyData of a COPY TO is its header line
	binOut        *binCopy            // the binary COPY TO in progress
	row           []byte
	ct            []byte
	canon         []byte
	txt           []byte
	simpleRD      rowDesc // the last RowDescription of a simple query
	// matches are the lookups of the request whose rows are being
	// decrypted (nil: none).
	matches *rules.Matches
}

// span locates a Bind parameter value; off < 0: NULL.
type span struct{ off, n int }

// Shared, never modified result format lists (the common Bind cases).
var (
	resultFormatsText   = []int16{0}
	resultFormatsBinary = []int16{1}
)

func errorResponse(code, msg string) *pgproto3.ErrorResponse {
	return &pgproto3.ErrorResponse{Severity: "ERROR", SeverityUnlocalized: "ERROR", Code: code, Message: msg}
}

func refusalResponse(err error) *pgproto3.ErrorResponse {
	var r *pgsql.Refusal
	if errors.As(err, &r) {
		return errorResponse(r.SQLState, r.Error())
	}
	// Catalog or key failures: the message names tables and keys only.
	return errorResponse("XX000", "dbproxy: statement refused: "+err.Error())
}

func safeReason(err error) string {
	var r *pgsql.Refusal
	if errors.As(err, &r) {
		return r.Error()
	}
	return "catalog or key error"
}

// newEvent returns a new event holding e. Events are carved from slabs to
// spare an allocation per message; a slab is never reused (frontend
// goroutine only).
func (s *session) newEvent(e event) *event {
	if len(s.evSlab) == 0 {
		s.evSlab = make([]event, slabSize)
	}
	ev := &s.evSlab[0]
	*ev = e
	s.evSlab = s.evSlab[1:]
	return ev
}

// newPortal is newEvent for portals.
func (s *session) newPortal(p portalInfo) *portalInfo {
	if len(s.portalSlab) == 0 {
		s.portalSlab = make([]portalInfo, slabSize)
	}
	pi := &s.portalSlab[0]
	*pi = p
	s.portalSlab = s.portalSlab[1:]
	return pi
}

const slabSize = 32

// The match sets are filled by the frontend goroutine before the request
// is queued and read by the backend goroutine after it is dequeued (the
// queue's mutex orders the two); never changed afterwards.
var _ pgsql.MatchRecorder = (*rules.Matches)(nil)

// newMatchSet is newEvent for match sets (kept apart: most events and
// portals need none).
func (s *session) newMatchSet() *rules.Matches {
	if len(s.matchSlab) == 0 {
		s.matchSlab = make([]rules.Matches, slabSize/2)
	}
	m := &s.matchSlab[0]
	s.matchSlab = s.matchSlab[1:]
	return m
}

func (s *session) push(evs ...*event) {
	s.mu.Lock()
	if s.qhead > 0 && len(s.queue)+len(evs) > cap(s.queue) {
		n := copy(s.queue, s.queue[s.qhead:])
		clear(s.queue[n:])
		s.queue, s.qhead = s.queue[:n], 0
	}
	s.queue = append(s.queue, evs...)
	s.mu.Unlock()
}

func (s *session) head() *event {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.qhead == len(s.queue) {
		return nil
	}
	return s.queue[s.qhead]
}

// popLocked drops the first event; s.mu held, the queue not empty.
func (s *session) popLocked() {
	s.queue[s.qhead] = nil
	s.qhead++
	if s.qhead == len(s.queue) {
		s.queue, s.qhead = s.queue[:0], 0
	}
}

func (s *session) pop() {
	s.mu.Lock()
	if s.qhead < len(s.queue) {
		s.popLocked()
	}
	s.mu.Unlock()
}

// popUntilSync drops the events before the next Sync (or simple Query) and
// returns that one, which stays queued.
func (s *session) popUntilSync() *event {
	s.mu.Lock()
	defer s.mu.Unlock()
	for s.qhead < len(s.queue) {
		if ev := s.queue[s.qhead]; ev.kind == 'S' || ev.kind == 'Q' {
			return ev
		}
		s.popLocked()
	}
	return nil
}

// frontend handles client->server messages.
func (s *session) frontend(typ byte, body []byte, w *postgres.Writer) error {
	if s.skipping && typ != 'S' {
		return nil // the server would discard these after an error, too
	}
	s.batchStart = !s.inBatch
	switch typ {
	case 'P', 'B', 'D', 'E', 'C':
		s.inBatch = true
	case 'S':
		s.inBatch = false
	}
	// The session's search_path is read before its first statement (so that
	// a pipeline at the very start is not refused), and later only when a
	// statement needs it (query, parse, bind).
	if (typ == 'Q' || typ == 'P' || typ == 'B') && !s.spTried {
		if err := s.ensureSearchPath(w); err != nil {
			return err
		}
	}
	switch typ {
	case 'd':
		if s.copy != nil && s.copy.bin != nil {
			return s.copyBinaryData(body, w)
		}
		if s.copy != nil {
			return s.copyData(body, w)
		}
	case 'c', 'f':
		if s.copy != nil {
			return s.copyDone(typ, body, w)
		}
	case 'Q':
		return s.query(body, w)
	case 'F': // FunctionCall: answered like a query, up to ReadyForQuery
		if !s.functionCallAllowed(body) {
			return s.refuseQuery(errFunctionCall, w) // fastpath.go
		}
		// A function may change any setting: treat it as a change.
		s.push(s.newEvent(event{kind: 'Q', lexChange: s.lexRequest(true)}))
	case 'P':
		return s.parse(body, w)
	case 'B':
		return s.bind(body, w)
	case 'D':
		return s.describe(body, w)
	case 'E':
		portal, _, _ := bytes.Cut(body, []byte{0})
		p := s.portal(portal)
		if p == nil {
			// A portal the proxy did not see bound (a cursor opened by
			// DECLARE, say): its rows cannot be attributed safely.
			s.refuseBatch(errorResponse(pgsql.StateFeatureNotSupported,
				"dbproxy: statement refused: Execute of a portal not bound through this proxy"))
			return nil
		}
		if p.stmt.lexChange || p.stmt.txEnd && s.lexInTx() {
			s.lexBatch()
		}
		if p.stmt.fetch && !p.describeSent {
			// A FETCH prepared before its cursor was declared is described
			// as returning no rows: describe its portal, so that its rows
			// are attributed (the answer is swallowed).
			p.describeSent = true
			d := statementMessage('D', portal)
			d[5] = 'P'
			_, _ = w.Write(d)
			s.push(s.newEvent(event{kind: 'd', portal: p, stmt: p.stmt, hidden: true}))
		}
		s.push(s.newEvent(event{kind: 'E', portal: p, stmt: p.stmt}))
	case 'C':
		if len(body) > 1 {
			name, _, _ := bytes.Cut(body[1:], []byte{0})
			if body[0] == 'S' {
				delete(s.stmts, string(name))
				s.mu.Lock()
				s.prepared.Remove(string(name))
				s.mu.Unlock()
			} else if len(name) == 0 {
				s.unnamed = nil
			} else {
				delete(s.portals, string(name))
			}
		}
		s.push(s.newEvent(event{kind: 'C'}))
	case 'S':
		s.push(s.newEvent(event{kind: 'S', inject: s.skipErr, lexChange: s.lexRequest(false)}))
		s.skipping, s.skipErr = false, nil
	}
	w.Forward(typ, body)
	return nil
}

// portal returns the portal bound under name, nil if none.
func (s *session) portal(name []byte) *portalInfo {
	if len(name) == 0 {
		return s.unnamed
	}
	return s.portals[string(name)]
}

// refuseBatch discards the client's messages up to the next Sync and
// reports e there.
func (s *session) refuseBatch(e *pgproto3.ErrorResponse) {
	s.skipping, s.skipErr = true, e
}

// refuseQuery replaces a simple Query by an empty one and reports e in
// place of its EmptyQueryResponse.
func (s *session) refuseQuery(e *pgproto3.ErrorResponse, w *postgres.Writer) error {
	s.push(s.newEvent(event{kind: 'Q', inject: e, lexChange: s.lexRequest(false)}))
	w.Forward('Q', []byte{0})
	return nil
}

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
		if !skips && (changesSearchPath.Match(text) || s.endsSearchPathTx(text, found)) {
			return s.refuseQuery(errSearchPathMixed, w)
		}
		defer s.searchPathChanged() // once this statement is on its way
	}
	if skips {
		// Forwarded as is: no copy of the text.
		s.push(s.newEvent(event{kind: 'Q', lexChange: s.lexRequest(lexChange)}))
		w.Forward('Q', body)
		return nil
	}
	if err := s.ensureSearchPath(w); err != nil {
		return err
	}
	if !s.spKnown {
		return s.refuseQuery(errSearchPathUnknown, w)
	}
	// Checked after ensureSearchPath, which waits for the answers to
	// everything sent before: a change ahead of this string is settled.
	lexErr, encOnly := s.lexRefusal()
	if lexErr != nil && !(encOnly && s.asciiOnly(text)) {
		return s.refuseQuery(lexErr, w)
	}
	sql := string(text)
	plan, err := s.db.planner.Plan(s.ctx, sql, s.searchPath)
	if err != nil {
		s.log.Debug("query refused", slog.String("reason", safeReason(err)))
		return s.refuseQuery(refusalResponse(err), w)
	}
	if lexErr != nil && !lexPlanAllowed(text, plan) {
		return s.refuseQuery(lexErr, w)
	}
	if plan.Passthrough() {
		s.push(s.newEvent(event{kind: 'Q', lexChange: s.lexRequest(lexChange)}))
		w.Forward('Q', body)
		return nil
	}
	var copyPlan *pgsql.Statement
	for i := range plan.Statements {
		switch st := &plan.Statements[i]; st.Kind {
		case pgsql.KindCopyFrom, pgsql.KindCopyTo:
			if len(plan.Statements) != 1 {
				return s.refuseQuery(errorResponse(pgsql.StateFeatureNotSupported,
					"dbproxy: statement refused: COPY of encrypted columns must be the only statement of its query"), w)
			}
			if st.Copy == nil || (st.Copy.Format != pgsql.CopyBinary && (len(st.Copy.Delimiter) != 1 ||
				(st.Copy.Format == pgsql.CopyCSV && (len(st.Copy.Quote) != 1 || len(st.Copy.Escape) != 1)))) {
				return s.refuseQuery(errorResponse(pgsql.StateFeatureNotSupported,
					"dbproxy: statement refused: COPY of encrypted columns needs a one-byte delimiter, quote and escape"), w)
			}
			if st.Copy != nil && st.Copy.Format == pgsql.CopyCSV && !copyBytesOK(st.Copy) {
				return s.refuseQuery(errorResponse(pgsql.StateFeatureNotSupported,
					"dbproxy: statement refused: COPY of encrypted columns with a backslash as QUOTE, or a line ending as DELIMITER, QUOTE or ESCAPE"), w)
			}
			copyPlan = st
		}
	}
	if err := s.checkExecutes(plan); err != nil {
		return s.refuseQuery(err, w)
	}
	s.mu.Lock()
	zone := s.zone
	ev := s.newEvent(event{kind: 'Q', plan: plan, matches: s.newMatchSet(), searchPathAt: s.searchPath})
	out := append(s.qbuf[:0], 'Q', 0, 0, 0, 0)
	out, err = plan.Rewrite(s.ctx, out, sql, pgsql.Env{Encrypter: s.ic.opts.Encryptor, Zone: zone, Prepared: &s.prepared,
		Matches: ev.matches, Scratch: &s.qcanon})
	s.mu.Unlock()
	if err != nil {
		return s.refuseQuery(refusalResponse(err), w)
	}
	out = append(out, 0)
	binary.BigEndian.PutUint32(out[1:5], uint32(len(out)-1))
	ev.lexChange = s.lexRequest(lexChange)
	s.push(ev)
	if copyPlan != nil && copyPlan.Kind == pgsql.KindCopyFrom {
		s.copy = newCopyIn(copyPlan.Copy, s.ic.opts.CopyBuffer)
	}
	_, _ = w.Write(out)
	s.keep(out)
	return nil
}

func (s *session) keep(out []byte) { s.qbuf = reusable(out) }

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
	if s.mayChangeSearchPath(text, found) {
		if !skips && changesSearchPath.Match(text) {
			s.refuseBatch(errSearchPathMixed)
			return nil
		}
		defer s.searchPathChanged()
	}
	if !skips {
		if err := s.ensureSearchPath(w); err != nil {
			return err
		}
	}
	if !skips && !s.spKnown {
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
	plan, err := s.db.planner.Plan(s.ctx, sql, s.searchPath)
	if err != nil {
		s.refuseBatch(refusalResponse(err))
		return nil
	}
	if lexErr != nil && !plan.Passthrough() {
		s.refuseBatch(lexErr)
		return nil
	}
	st := &stmtInfo{fetch: isFetch(text), lexChange: lexChange, txEnd: firstWordIn(text, txEndWords)}
	if skips {
		st.text, st.derived = sql, s.db.planner.Derived()
	} else {
		st.sql, st.searchPath = sql, s.searchPath
		st.clientTypes = make([]uint32, n)
		for i := range st.clientTypes {
			st.clientTypes[i] = binary.BigEndian.Uint32(rest[2+4*i:])
		}
	}
	if plan.Passthrough() {
		w.Forward('P', body)
	} else {
		if len(plan.Statements) > 0 && plan.Statements[0].Kind != pgsql.KindQuery {
			s.refuseBatch(errorResponse(pgsql.StateFeatureNotSupported,
				"dbproxy: statement refused: only SELECT, INSERT, UPDATE and DELETE on encrypted tables are supported in the extended query protocol"))
			return nil
		}
		s.mu.Lock()
		scsOff, zone := s.scsOff, s.zone
		s.mu.Unlock()
		if scsOff {
			s.refuseBatch(errorResponse(pgsql.StateFeatureNotSupported,
				"dbproxy: statement refused: standard_conforming_strings is off"))
			return nil
		}
		st.plan, st.sql = plan, sql
		st.types = upstreamTypes(rest[2:], plan)
		if st.slots, err = s.matchSlots(plan, nil); err != nil {
			s.refuseBatch(refusalResponse(err))
			return nil
		}
		if err := s.upstreamParse(name, st, zone, w); err != nil {
			s.refuseBatch(refusalResponse(err))
			return nil
		}
	}
	if s.stmts == nil {
		s.stmts = map[string]*stmtInfo{}
	}
	s.stmts[string(name)] = st
	if len(name) > 0 {
		s.mu.Lock()
		s.prepared.Add(string(name), withSlots(plan.Params, st.slots))
		if st.searchPath != "" {
			s.prepPath[string(name)] = st.searchPath
		} else {
			delete(s.prepPath, string(name))
		}
		s.mu.Unlock()
	}
	_, _ = w.Write(statementMessage('D', name)) // the injected Describe
	s.push(s.newEvent(event{kind: 'P', stmt: st}), s.newEvent(event{kind: 'D', stmt: st, hidden: true}))
	return nil
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
	out := append(s.qbuf[:0], 'P', 0, 0, 0, 0)
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
	scsOff, zone := s.scsOff, s.zone
	s.mu.Unlock()
	if scsOff {
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

// statementMessage returns a Describe ('D') or Close ('C') message of the
// prepared statement name.
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

// formatOf returns the format code of item i of n given a format list.
func formatOf(formats []int16, i int) int16 {
	switch len(formats) {
	case 0:
		return 0
	case 1:
		return formats[0]
	}
	if i < len(formats) {
		return formats[i]
	}
	return 0
}

var errBadBind = &postgres.Error{Code: "08P01", Message: "invalid Bind message"}

// bind encrypts the parameters bound for encrypted columns.
func (s *session) bind(body []byte, w *postgres.Writer) error {
	portal, rest, ok := bytes.Cut(body, []byte{0})
	var stmtName []byte
	if ok {
		stmtName, rest, ok = bytes.Cut(rest, []byte{0})
	}
	if !ok || len(rest) < 2 {
		return errBadBind
	}
	st := s.stmts[string(stmtName)]
	if st == nil {
		s.refuseBatch(errorResponse("26000", "dbproxy: statement refused: Bind of a statement not prepared through this proxy"))
		return nil
	}
	if st.plan != nil {
		// Its text values are in client_encoding, its results go back in
		// it, and a re-prepare sends its text again.
		if e, _ := s.lexRefusal(); e != nil && e != errSCSOff {
			s.refuseBatch(e)
			return nil
		}
	}
	if st.searchPath != "" {
		if err := s.ensureSearchPath(w); err != nil {
			return err
		}
	}
	if st.searchPath != "" && !s.spKnown {
		s.refuseBatch(errSearchPathUnknown)
		return nil
	}
	if st.searchPath == "" && st.plan == nil {
		if d := s.db.planner.Derived(); d != st.derived {
			// The relations derived from encrypted tables changed since
			// the Parse: a name in the statement may now denote one.
			if !s.db.planner.Skips(st.text) {
				s.refuseBatch(errPreparedBeforeDerived)
				return nil
			}
			st.derived = d
		}
	}
	if st.searchPath != "" && st.searchPath != s.searchPath {
		// Planned again and sent again: its text must be read as the
		// server will read it now.
		if e, _ := s.lexRefusal(); e != nil && e != errSCSOff {
			s.refuseBatch(e)
			return nil
		}
		if err := s.replan(stmtName, st, w); err != nil {
			s.refuseBatch(refusalResponse(err))
			return nil
		}
	}
	nf := int(binary.BigEndian.Uint16(rest))
	pos := 2
	if len(rest) < pos+2*nf+2 {
		return errBadBind
	}
	pformats := s.bformats[:0]
	if cap(pformats) < nf {
		pformats = make([]int16, nf)
	}
	pformats = pformats[:nf]
	s.bformats = pformats
	for i := range pformats {
		pformats[i] = int16(binary.BigEndian.Uint16(rest[pos:]))
		pos += 2
	}
	np := int(binary.BigEndian.Uint16(rest[pos:]))
	pos += 2
	valStart := pos
	vals := s.bvals[:0]
	if cap(vals) < np {
		vals = make([]span, np)
	}
	vals = vals[:np]
	s.bvals = vals
	for i := range vals {
		if len(rest) < pos+4 {
			return errBadBind
		}
		l := int(int32(binary.BigEndian.Uint32(rest[pos:])))
		pos += 4
		if l < 0 {
			vals[i] = span{-1, -1}
			continue
		}
		if len(rest) < pos+l {
			return errBadBind
		}
		vals[i] = span{pos, l}
		pos += l
	}
	valEnd := pos
	if len(rest) < pos+2 {
		return errBadBind
	}
	nr := int(binary.BigEndian.Uint16(rest[pos:]))
	pos += 2
	if len(rest) != pos+2*nr {
		return errBadBind
	}
	var rformats []int16
	switch {
	case nr == 0:
	case nr == 1 && rest[pos] == 0 && rest[pos+1] == 0:
		rformats = resultFormatsText
	case nr == 1 && rest[pos] == 0 && rest[pos+1] == 1:
		rformats = resultFormatsBinary
	default:
		rformats = make([]int16, nr)
		for i := range rformats {
			rformats[i] = int16(binary.BigEndian.Uint16(rest[pos:]))
			pos += 2
		}
	}
	p := s.newPortal(portalInfo{stmt: st, formats: rformats})
	if len(portal) == 0 {
		s.unnamed = p
	} else {
		if s.portals == nil {
			s.portals = map[string]*portalInfo{}
		}
		s.portals[string(portal)] = p
	}
	encrypted := false
	if st.plan != nil {
		for _, prm := range st.plan.Params {
			if prm.Encrypted() {
				encrypted = true
			}
		}
	}
	if !encrypted {
		s.push(s.newEvent(event{kind: 'B', portal: p}))
		w.Forward('B', body)
		return nil
	}
	p.matches = s.newMatchSet()
	s.mu.Lock()
	zone := s.zone
	s.mu.Unlock()
	// The ciphertexts of RoleMatch parameters first: if a rotation added
	// key versions since the statement was prepared, it is prepared again
	// with room for them before this Bind goes out.
	matches := s.bmatch[:0]
	grow := false
	for i, v := range vals {
		if i >= len(st.slots) || st.slots[i] == 0 || v.off < 0 {
			continue
		}
		prm := st.plan.Params[i]
		canon, err := s.bindCanon(s.fcanon[:0], prm.Column, rest[v.off:v.off+v.n], formatOf(pformats, i), zone)
		if err != nil {
			s.refuseBatch(errorResponse(pgsql.StateInvalidText,
				"dbproxy: statement refused: column "+prm.Column.String()+": parameter $"+itoa(i+1)+" is not a valid "+prm.Column.Type.String()+" value"))
			return nil
		}
		s.fcanon = canon
		cts, err := s.ic.opts.Encryptor.EncryptForMatch(s.ctx, prm.Column, canon)
		if err != nil {
			s.refuseBatch(refusalResponse(err))
			return nil
		}
		p.matches.RecordMatch(prm.Column, canon, cts)
		for len(matches) <= i {
			matches = append(matches, nil)
		}
		matches[i] = cts
		grow = grow || len(cts) > st.slots[i]
	}
	s.bmatch = matches
	if grow {
		slots, err := s.matchSlots(st.plan, matches)
		if err == nil {
			err = s.reprepare(stmtName, st, slots, w)
		}
		if err != nil {
			s.refuseBatch(refusalResponse(err))
			return nil
		}
	}
	out := append(s.qbuf[:0], 'B', 0, 0, 0, 0)
	out = append(out, body[:len(portal)+1+len(stmtName)+1]...)
	out = binary.BigEndian.AppendUint16(out, uint16(np))
	for i := 0; i < np; i++ {
		f := formatOf(pformats, i)
		if i < len(st.plan.Params) && st.plan.Params[i].Encrypted() {
			f = 1
		}
		out = binary.BigEndian.AppendUint16(out, uint16(f))
	}
	out = binary.BigEndian.AppendUint16(out, uint16(np))
	_ = valStart
	_ = valEnd
	for i, v := range vals {
		if i >= len(st.plan.Params) || !st.plan.Params[i].Encrypted() || v.off < 0 {
			out = binary.BigEndian.AppendUint32(out, uint32(int32(v.n)))
			if v.n > 0 {
				out = append(out, rest[v.off:v.off+v.n]...)
			}
			continue
		}
		prm := st.plan.Params[i]
		col := prm.Column
		src := rest[v.off : v.off+v.n]
		if prm.Role == pgsql.RoleMatchArray {
			var err error
			out, err = s.bindMatchArray(out, col, src, formatOf(pformats, i), zone, p.matches)
			if err != nil {
				s.refuseBatch(errorResponse(pgsql.StateInvalidText,
					"dbproxy: statement refused: column "+col.String()+": parameter $"+itoa(i+1)+" is not a valid array of "+col.Type.String()))
				return nil
			}
			continue
		}
		if prm.Role == pgsql.RoleMatch && i < len(matches) && matches[i] != nil {
			out = appendMatchArray(out, matches[i], st.slots[i])
			continue
		}
		canon, err := s.bindCanon(s.fcanon[:0], col, src, formatOf(pformats, i), zone)
		if err != nil {
			s.refuseBatch(errorResponse(pgsql.StateInvalidText,
				"dbproxy: statement refused: column "+col.String()+": parameter $"+itoa(i+1)+" is not a valid "+col.Type.String()+" value"))
			return nil
		}
		s.fcanon = canon
		switch prm.Role {
		case pgsql.RoleStore:
			ct, err := s.ic.opts.Encryptor.AppendStore(s.ctx, s.fct[:0], col, canon)
			if err != nil {
				s.refuseBatch(refusalResponse(err))
				return nil
			}
			s.fct = ct
			out = binary.BigEndian.AppendUint32(out, uint32(len(ct)))
			out = append(out, ct...)
		case pgsql.RoleMatch:
			cts, err := s.ic.opts.Encryptor.EncryptForMatch(s.ctx, col, canon)
			if err != nil {
				s.refuseBatch(refusalResponse(err))
				return nil
			}
			p.matches.RecordMatch(col, canon, cts)
			out = appendMatchArray(out, cts, len(cts))
		default:
			s.refuseBatch(errorResponse(pgsql.StateFeatureNotSupported,
				"dbproxy: statement refused: column "+col.String()+": parameter role not supported"))
			return nil
		}
	}
	out = binary.BigEndian.AppendUint16(out, uint16(nr))
	for _, f := range rformats {
		out = binary.BigEndian.AppendUint16(out, uint16(f))
	}
	binary.BigEndian.PutUint32(out[1:5], uint32(len(out)-1))
	s.push(s.newEvent(event{kind: 'B', portal: p}))
	_, _ = w.Write(out)
	s.keep(out)
	return nil
}

func itoa(v int) string { return string(appendInt(nil, v)) }

// bindCanon appends the canonical encoding of a Bind parameter value for
// col, sent in format f (0 text, 1 binary).
func (s *session) bindCanon(dst []byte, col *rules.ColumnRule, src []byte, f int16, zone *time.Location) ([]byte, error) {
	if f == 1 {
		return appendCanonicalFromBinary(dst, col.Type, src)
	}
	return value.AppendCanonicalTextInZone(dst, col.Type, src, zone)
}

// appendMatchArray appends a Bind parameter (length included) holding the
// binary bytea[] of cts, padded to n elements by repeating the first (a
// statement prepared with n slots reads exactly n; repeating a ciphertext
// changes no comparison, where a NULL would break NOT IN).
func appendMatchArray(out []byte, cts [][]byte, n int) []byte {
	lenAt := len(out)
	out = append(out, 0, 0, 0, 0)
	out = binary.BigEndian.AppendUint32(out, 1)  // ndim
	out = binary.BigEndian.AppendUint32(out, 0)  // no NULLs
	out = binary.BigEndian.AppendUint32(out, 17) // bytea
	out = binary.BigEndian.AppendUint32(out, uint32(n))
	out = binary.BigEndian.AppendUint32(out, 1) // lower bound
	for i := 0; i < n; i++ {
		ct := cts[0]
		if i < len(cts) {
			ct = cts[i]
		}
		out = binary.BigEndian.AppendUint32(out, uint32(len(ct)))
		out = append(out, ct...)
	}
	binary.BigEndian.PutUint32(out[lenAt:], uint32(len(out)-lenAt-4))
	return out
}

// bindMatchArray appends (with its length) a binary bytea[] holding the
// ciphertexts of every element of the client's array under every live
// version of col's key, and records them in rec.
func (s *session) bindMatchArray(out []byte, col *rules.ColumnRule, src []byte, format int16, zone *time.Location,
	rec *rules.Matches) ([]byte, error) {
	lenAt := len(out)
	out = append(out, 0, 0, 0, 0)
	hdr := len(out)
	out = binary.BigEndian.AppendUint32(out, 1)  // ndim
	out = binary.BigEndian.AppendUint32(out, 0)  // no NULLs
	out = binary.BigEndian.AppendUint32(out, 17) // bytea
	countAt := len(out)
	out = binary.BigEndian.AppendUint32(out, 0)
	out = binary.BigEndian.AppendUint32(out, 1) // lower bound
	count := 0
	err := arrayElems(src, format, func(elem []byte, bin bool) error {
		var canon []byte
		var err error
		if bin {
			canon, err = appendCanonicalFromBinary(s.fcanon[:0], col.Type, elem)
		} else {
			canon, err = value.AppendCanonicalTextInZone(s.fcanon[:0], col.Type, elem, zone)
		}
		if err != nil {
			return err
		}
		s.fcanon = canon
		cts, err := s.ic.opts.Encryptor.EncryptForMatch(s.ctx, col, canon)
		if err != nil {
			return err
		}
		rec.RecordMatch(col, canon, cts)
		for _, ct := range cts {
			out = binary.BigEndian.AppendUint32(out, uint32(len(ct)))
			out = append(out, ct...)
			count++
		}
		return nil
	})
	if err != nil {
		return out, err
	}
	if count == 0 { // an empty array has no dimensions
		out = out[:hdr]
		out = binary.BigEndian.AppendUint32(out, 0)
		out = binary.BigEndian.AppendUint32(out, 0)
		out = binary.BigEndian.AppendUint32(out, 17)
	} else {
		binary.BigEndian.PutUint32(out[countAt:], uint32(count))
	}
	binary.BigEndian.PutUint32(out[lenAt:], uint32(len(out)-lenAt-4))
	return out, nil
}

// fail sends e in place of the rest of the current request's response.
func (s *session) fail(e *pgproto3.ErrorResponse, w *postgres.Writer) error {
	s.failed = true
	s.cols, s.matches = nil, nil
	return w.Send(e)
}

// backend handles server->client messages.
func (s *session) backend(typ byte, body []byte, w *postgres.Writer) error {
	switch typ {
	case 'Z':
		s.noteReady(body)
		var status byte
		if len(body) == 1 {
			status = body[0]
		}
		if ev := s.head(); ev != nil && ev.searchPath {
			s.pop()
			s.lexAnswered(false, status)
			s.searchPathReady()
			return nil
		}
		// Everything up to and including the request's Sync (or Query).
		ev := s.popUntilSync()
		s.lexAnswered(ev != nil && ev.lexChange, status)
		if ev != nil {
			if ev.inject != nil && ev.kind == 'S' && !ev.srvErr && !s.failed {
				if err := w.Send(ev.inject); err != nil {
					return err
				}
			}
			s.pop()
		}
		s.failed, s.cols, s.matches = false, nil, nil
		w.Forward(typ, body)
		return nil
	case 'S':
		s.parameterStatus(body)
		w.Forward(typ, body)
		return nil
	}
	if s.failed {
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
	if ev.kind == 'Q' {
		return s.simpleResponse(ev, typ, body, w)
	}
	switch typ {
	case 'E':
		if ev := s.popUntilSync(); ev != nil {
			ev.srvErr = true
		}
		s.cols = nil
	case '1', '2', '3':
		s.pop()
		if ev.hidden {
			return nil
		}
	case 't':
		if ev.kind == 'D' {
			if ev.hidden {
				return nil
			}
			return s.parameterDescription(ev.stmt, body, w)
		}
	case 'n':
		if ev.kind == 'D' || ev.kind == 'd' {
			if ev.kind == 'D' {
				ev.stmt.described, ev.stmt.cols, ev.stmt.noData = true, nil, true
			}
			s.pop()
			if ev.hidden {
				return nil
			}
		}
	case 'T':
		if ev.kind == 'D' || ev.kind == 'd' {
			s.pop()
			return s.describeRows(ev, body, w)
		}
	case 'D':
		if ev.kind == 'E' {
			if s.cols == nil && s.formats == nil {
				if err := s.startExecute(ev, w); err != nil || s.failed {
					return err
				}
			}
			if s.cols != nil {
				return s.dataRow(body, w)
			}
			if ev.stmt.noData && !ev.portal.described {
				// Rows from a statement described as returning none (FETCH
				// from a cursor, say): their origin is unknown.
				return s.fail(errorResponse(pgsql.StateFeatureNotSupported,
					"dbproxy: result refused: rows whose columns the proxy cannot attribute (use the simple query protocol for FETCH)"), w)
			}
		}
	case 'C', 's', 'I':
		if ev.kind == 'E' {
			if s.cols == nil && s.formats == nil && typ != 'I' {
				if err := s.startExecute(ev, w); err != nil || s.failed {
					return err
				}
			}
			s.cols, s.formats, s.matches = nil, nil, nil
			s.pop()
		}
	}
	w.Forward(typ, body)
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
	s.formats = ev.portal.formats
	if s.formats == nil {
		s.formats = []int16{}
	}
	s.cols = st.cols
	if st.noData && ev.portal.described {
		// The portal's own RowDescription attributes its rows.
		if ev.portal.poison != nil {
			return s.fail(ev.portal.poison, w)
		}
		s.cols = ev.portal.cols
	}
	s.matches = ev.portal.matches
	return nil
}

// simpleResponse handles the responses to a simple Query.
func (s *session) simpleResponse(ev *event, typ byte, body []byte, w *postgres.Writer) error {
	switch typ {
	case 'I':
		if ev.inject != nil {
			return w.Send(ev.inject)
		}
	case 'E':
		ev.srvErr = true
		s.cols = nil
	case 'T':
		rd, errResp, err := s.rowDescription(&s.simpleRD, body, true)
		if err != nil {
			return err
		}
		if errResp != nil {
			return s.fail(errResp, w)
		}
		s.cols, s.formats = rd.cols, nil
		s.matches = ev.matches
		if rd.cols == nil {
			break
		}
		_, _ = w.Write(rd.out)
		return nil
	case 'D':
		if s.cols != nil {
			return s.dataRow(body, w)
		}
	case 'C':
		s.cols, s.matches = nil, nil
		s.commandComplete(ev, body)
	case 'G':
		// The server refused to start a COPY the proxy expected (an error
		// arrives instead) or started one: nothing to do either way.
	case 'H':
		if cp := copyTo(ev); cp != nil {
			s.copyOutHeader = cp.Header
			s.binOut = nil
		}
	case 'd':
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
	name, rest, _ := bytes.Cut(body, []byte{0})
	val, _, _ := bytes.Cut(rest, []byte{0})
	switch string(name) {
	case "TimeZone":
		loc := loadZone(string(val))
		s.mu.Lock()
		s.zone = loc
		s.mu.Unlock()
	case "standard_conforming_strings":
		s.mu.Lock()
		s.scsOff = string(val) != "on"
		s.mu.Unlock()
	case "client_encoding":
		s.mu.Lock()
		s.clientEnc = string(val)
		s.mu.Unlock()
	}
}

var ddlTags = [...]string{"CREATE", "ALTER", "DROP", "COMMENT", "IMPORT", "SECURITY", "GRANT", "REVOKE"}

func (s *session) commandComplete(ev *event, body []byte) {
	if ev.plan != nil {
		if ev.done < len(ev.plan.Statements) {
			st := &ev.plan.Statements[ev.done]
			s.mu.Lock()
			s.prepared.Commit(st)
			s.notePrepared(st, ev.searchPathAt)
			s.mu.Unlock()
		}
		ev.done++
	}
	for _, tag := range ddlTags {
		if bytes.HasPrefix(body, []byte(tag)) {
			s.db.catalog.purge()
			s.db.planner.Purge()
			s.db.refreshSoon() // derived relations may have changed
			return
		}
	}
}

// plaintextOID maps a plaintext type to its PostgreSQL type OID, size and
// array type OID.
var plaintextOID = [...]struct {
	oid   uint32
	size  int16
	array uint32
}{
	1: {25, -1, 1009}, 2: {21, 2, 1005}, 3: {23, 4, 1007}, 4: {20, 8, 1016}, 5: {700, 4, 1021}, 6: {701, 8, 1022},
	7: {1700, -1, 1231}, 8: {16, 1, 1000}, 9: {1082, 4, 1182}, 10: {1114, 8, 1115}, 11: {1184, 8, 1185},
	12: {2950, 16, 2951}, 13: {17, -1, 1001}, 14: {114, -1, 199},
}

func knownType(t value.Type) bool { return int(t) < len(plaintextOID) && plaintextOID[t].oid != 0 }

// parameterDescription reports plaintext types for encrypted parameters.
func (s *session) parameterDescription(st *stmtInfo, body []byte, w *postgres.Writer) error {
	if st.plan == nil {
		w.Forward('t', body)
		return nil
	}
	var pd pgproto3.ParameterDescription
	if err := pd.Decode(body); err != nil {
		return err
	}
	for i, p := range st.plan.Params {
		if i >= len(pd.ParameterOIDs) || !p.Encrypted() || !knownType(p.ClientType()) {
			continue
		}
		if p.ClientArray() {
			pd.ParameterOIDs[i] = plaintextOID[p.ClientType()].array
		} else {
			pd.ParameterOIDs[i] = plaintextOID[p.ClientType()].oid
		}
	}
	return w.Send(&pd)
}

// describeRows handles the RowDescription answering a Describe.
func (s *session) describeRows(ev *event, body []byte, w *postgres.Writer) error {
	rd, errResp, err := s.rowDescription(&ev.stmt.rd, body, false)
	if err != nil {
		return err
	}
	var cols []*rules.ColumnRule
	if errResp == nil {
		cols = rd.cols
	}
	if ev.kind == 'D' {
		ev.stmt.described, ev.stmt.cols, ev.stmt.poison, ev.stmt.noData = true, cols, errResp, false
	} else if ev.portal != nil {
		ev.portal.described, ev.portal.cols, ev.portal.poison = true, cols, errResp
	}
	if ev.hidden {
		return nil
	}
	if errResp != nil {
		return s.fail(errResp, w)
	}
	if cols == nil {
		w.Forward('T', body)
		return nil
	}
	_, _ = w.Write(rd.out)
	return nil
}

// rowDescription maps a RowDescription to column rules and, if it has
// encrypted columns, rewrites it, reusing c when the server sent the same
// bytes under the same catalog generation. A non-nil ErrorResponse means
// the result must not reach the client; the returned rowDesc is then
// meaningless.
func (s *session) rowDescription(c *rowDesc, body []byte, simple bool) (*rowDesc, *pgproto3.ErrorResponse, error) {
	gen := s.db.catalog.gen.Load()
	if c.body != nil && c.gen == gen && c.simple == simple && bytes.Equal(c.body, body) {
		return c, nil, nil
	}
	cols, errResp, cacheable, err := s.resultColumns(body, simple)
	if err != nil || errResp != nil {
		return nil, errResp, err
	}
	out := c.out[:0]
	if cols != nil {
		if out, err = s.appendRowDescription(out, body, cols); err != nil {
			return nil, nil, err
		}
	}
	*c = rowDesc{gen: gen, simple: simple, cols: cols, out: out}
	if cacheable && len(body) <= 1<<16 {
		c.body = append(c.body[:0], body...)
	}
	if cap(c.out) > 1<<20 {
		// Do not keep a huge buffer around; this result is used once.
		tmp := *c
		*c = rowDesc{}
		return &tmp, nil, nil
	}
	return c, nil, nil
}

// resultColumns maps the fields of a RowDescription to column rules. A
// non-nil ErrorResponse means the result must not reach the client.
// cacheable is false if the answer may change without a catalog purge (a
// relation the catalog cannot see yet).
func (s *session) resultColumns(body []byte, simple bool) (cols []*rules.ColumnRule, errResp *pgproto3.ErrorResponse, cacheable bool, err error) {
	var rd pgproto3.RowDescription
	if err := rd.Decode(body); err != nil {
		return nil, nil, false, err
	}
	cacheable = true
	for i := range rd.Fields {
		f := &rd.Fields[i]
		if f.TableOID == 0 {
			continue
		}
		ti, err := s.db.catalog.Table(s.ctx, f.TableOID)
		if err != nil {
			s.log.Warn("catalog lookup failed", slog.Any("error", err))
			return nil, errorResponse("XX000", "dbproxy: cannot resolve the columns of a result: catalog lookup failed"), false, nil
		}
		if !ti.found {
			if f.DataTypeOID == 17 {
				return nil, errorResponse(pgsql.StateFeatureNotSupported,
					"dbproxy: result refused: a bytea column comes from a table the proxy cannot see yet (created in this transaction?)"), false, nil
			}
			cacheable = false
			continue
		}
		col := ti.cols[int16(f.TableAttributeNumber)]
		if col == nil {
			if ti.encView && f.DataTypeOID == 17 {
				return nil, errorResponse(pgsql.StateFeatureNotSupported,
					"dbproxy: result refused: a bytea column of a view over an encrypted table may carry ciphertext; select from the table instead"), false, nil
			}
			continue
		}
		if simple && f.Format != 0 {
			return nil, errorResponse(pgsql.StateFeatureNotSupported,
				"dbproxy: result refused: column "+col.String()+" is encrypted and binary cursors are not supported"), false, nil
		}
		if !knownType(col.Type) {
			return nil, errorResponse("XX000", "dbproxy: result refused: column "+col.String()+" has an unknown type"), false, nil
		}
		if cols == nil {
			cols = make([]*rules.ColumnRule, len(rd.Fields))
		}
		cols[i] = col
	}
	return cols, nil, cacheable, nil
}

var errBadRowDescription = errors.New("invalid RowDescription")

// appendRowDescription appends the RowDescription body (a message the
// server sent) with the plaintext type of each encrypted column, as a
// whole message.
func (s *session) appendRowDescription(dst, body []byte, cols []*rules.ColumnRule) ([]byte, error) {
	if len(body) < 2 {
		return dst, errBadRowDescription
	}
	start := len(dst)
	dst = append(dst, 'T', 0, 0, 0, 0)
	dst = append(dst, body...)
	msg := dst[start+5:]
	n := int(binary.BigEndian.Uint16(msg))
	pos := 2
	for i := 0; i < n; i++ {
		name := bytes.IndexByte(msg[pos:], 0)
		if name < 0 || pos+name+1+18 > len(msg) {
			return dst[:start], errBadRowDescription
		}
		pos += name + 1
		// table OID (4), attnum (2), type OID (4), size (2), modifier (4), format (2)
		if i < len(cols) && cols[i] != nil {
			t := cols[i].Type
			binary.BigEndian.PutUint32(msg[pos+6:], plaintextOID[t].oid)
			binary.BigEndian.PutUint16(msg[pos+10:], uint16(plaintextOID[t].size))
			binary.BigEndian.PutUint32(msg[pos+12:], 0xffffffff)
		}
		pos += 18
	}
	if pos != len(msg) {
		return dst[:start], errBadRowDescription
	}
	binary.BigEndian.PutUint32(dst[start+1:], uint32(len(dst)-start-1))
	return dst, nil
}

func (s *session) dataRow(body []byte, w *postgres.Writer) error {
	if len(body) < 2 {
		return errors.New("short DataRow")
	}
	n := int(binary.BigEndian.Uint16(body))
	if n != len(s.cols) {
		return s.fail(errorResponse("XX000", "dbproxy: result refused: DataRow does not match its RowDescription"), w)
	}
	s.mu.Lock()
	zone := s.zone
	s.mu.Unlock()
	out := append(s.row[:0], 'D', 0, 0, 0, 0)
	out = append(out, body[:2]...)
	pos := 2
	for i := 0; i < n; i++ {
		if pos+4 > len(body) {
			return errors.New("short DataRow")
		}
		l := int32(binary.BigEndian.Uint32(body[pos:]))
		pos += 4
		if l < 0 {
			out = append(out, 0xff, 0xff, 0xff, 0xff)
			continue
		}
		if pos+int(l) > len(body) {
			return errors.New("short DataRow")
		}
		cell := body[pos : pos+int(l)]
		pos += int(l)
		col := s.cols[i]
		if col == nil {
			out = binary.BigEndian.AppendUint32(out, uint32(l))
			out = append(out, cell...)
			continue
		}
		lenAt := len(out)
		out = append(out, 0, 0, 0, 0)
		var err error
		out, err = s.decryptCell(out, col, cell, formatOf(s.formats, i), zone)
		if err != nil {
			s.log.Warn("decrypt failed", slog.String("column", col.String()), slog.Any("error", err))
			return s.fail(errorResponse("XX001", "dbproxy: a value of column "+col.String()+" cannot be decrypted: "+err.Error()), w)
		}
		binary.BigEndian.PutUint32(out[lenAt:], uint32(len(out)-lenAt-4))
	}
	s.row = sendMessage(w, out)
	return nil
}

var errNotHexBytea = errors.New("stored value is not a bytea in hex output format")

// decryptCell appends the plaintext of a bytea cell (text or binary format)
// in the same format.
func (s *session) decryptCell(dst []byte, col *rules.ColumnRule, cell []byte, format int16, zone *time.Location) ([]byte, error) {
	ct := cell
	if format == 0 {
		if len(cell) < 2 || cell[0] != '\\' || cell[1] != 'x' || len(cell)%2 != 0 {
			return dst, errNotHexBytea
		}
		hexs := cell[2:]
		n := len(hexs) / 2
		buf := slices.Grow(s.ct[:0], n)[:n]
		if _, err := hex.Decode(buf, hexs); err != nil {
			return dst, errNotHexBytea
		}
		s.ct = reusable(buf)
		ct = buf
	}
	canon, ok := s.matches.Lookup(col, ct)
	if !ok {
		var err error
		if canon, err = s.ic.opts.Encryptor.AppendDecrypt(s.ctx, s.canon[:0], col, ct); err != nil {
			return dst, err
		}
		s.canon = reusable(canon)
	}
	if format == 1 {
		return appendBinary(dst, col.Type, canon)
	}
	return appendText(dst, col, canon, zone)
}

func unhex(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10, true
	case c >= 'A' && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}
