package pgcrypt

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/dbproxy/dbproxy/fieldcrypt"
	"github.com/dbproxy/dbproxy/internal/blocking"
	"github.com/dbproxy/dbproxy/proxy/postgres"
	"github.com/dbproxy/dbproxy/proxy/postgres/pgmsg"
	"github.com/dbproxy/dbproxy/rules"
	"github.com/dbproxy/dbproxy/sqlplan"
	"github.com/dbproxy/dbproxy/sqlplan/pgsql"
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
	// searchPathChange: what executing it may do to search_path and the
	// role (searchpath.go).
	searchPathChange pgsql.SessionEffect
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
	kind   byte // the client's message type (pgmsg.TypeQuery, …; a Describe of a portal: kindDescribePortal)
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
	// refusal replaces the server's error to a message the proxy sent in
	// place of a refused one (refuseQuery, refuseBatch).
	refusal *pgproto3.ErrorResponse
	done    int
}

// session is the state of one client connection. The frontend goroutine
// handles client->server messages (frontend), the backend goroutine
// server->client ones (backend); pending links a request to its responses.
type session struct {
	ic    *Interceptor
	db    *dbState
	rules *rules.Set
	ctx   context.Context
	log   *slog.Logger

	// cipher encrypts, looks up and decrypts for this session: every use
	// of a key goes through it.
	cipher *fieldcrypt.Cipher

	searchPath searchPathState // searchpath.go

	// Frontend goroutine only.
	batch     batchState
	stmts     map[string]*stmtInfo
	portals   map[string]*portalInfo // named portals
	unnamed   *portalInfo            // the unnamed portal
	copy      *copyIn                // a COPY FROM STDIN in progress
	slabs     slabs
	frontBufs frontendScratch
	seen      observed // observe.go

	// Shared between the goroutines.
	mu       sync.Mutex   // take it with lock
	pending  pendingQueue // under mu
	prepared pgsql.Prepared
	zone     *time.Location
	lex      lexSettings // lexstate.go

	// Backend goroutine only.
	result   resultState
	backBufs backendScratch
	// first is the first pending event as the backend last read it, nil:
	// read it again. The frontend only appends, so it stays first until
	// the backend drops it (queue.go).
	first *event
}

// searchPathState tracks the session's search_path (searchpath.go).
type searchPathState struct {
	// current is the search_path, "$user" substituted; valid while known
	// (frontend only).
	current string
	// Frontend only: known: current is valid; asked: the server was asked
	// at least once.
	known, asked bool
	// Backend only: the answer to the hidden query being read.
	replyPath            string
	replyOK, replyFailed bool
	// Under mu: txChange: a change ran in the current transaction, which
	// may yet roll it back; stale: it ended, ask again.
	txChange, stale bool
	answers         chan spAnswer     // backend -> frontend: the answers
	preparedUnder   map[string]string // under mu: statement name -> search_path it was prepared under
	// Frontend only: user is current_user ("$user") as last read; valid
	// while userKnown (no statement since may have changed the role).
	user      string
	userKnown bool
	replyUser string // backend only, like replyPath
	// Under mu: the server reports search_path in ParameterStatus
	// (PostgreSQL 18 and later); reportedPath is the last value, newReport
	// set when one arrives (a function may have changed it).
	reported, newReport bool
	reportedPath        string
	// changers: SQL prepared statements whose text names set_config
	// (frontend only; allocated on first use).
	changers map[string]bool
}

// batchState is the state of the current extended-protocol batch (the
// messages up to a Sync); frontend goroutine only.
type batchState struct {
	open     bool // extended messages were sent since the last Sync
	starting bool // the message being handled starts a batch
	// lexChange: an Execute of the batch may change the lexing settings
	// (lexstate.go).
	lexChange bool
	// skipping: the batch was refused; its messages are dropped up to
	// the Sync.
	skipping bool
}

// lexSettings are the settings that decide how the server lexes SQL text
// (lexstate.go): client_encoding and standard_conforming_strings as the
// server last reported them; the requests forwarded that may change them
// and are not answered yet; whether one ran in the current transaction.
// Under session.mu.
type lexSettings struct {
	clientEncoding string
	stdStringsOff  bool        // standard_conforming_strings is off
	pending        int         // change requests not answered yet
	inTx           atomic.Bool // written under mu; read without it
}

// resultState is the decryption of the result being relayed; backend
// goroutine only.
type resultState struct {
	cols    []*rules.ColumnRule // decryption of the current result; nil: none
	formats []int16             // result formats of the current result
	failed  bool                // an error was sent; drop the rest until ReadyForQuery
	// matches are the lookups of the request whose rows are being
	// decrypted (nil: none).
	matches       *rules.Matches
	simpleDesc    rowDesc  // the last RowDescription of a simple query
	copyOutHeader bool     // the next CopyData of a COPY TO is its header line
	binaryCopyOut *binCopy // the binary COPY TO in progress
}

// frontendScratch holds the buffers the frontend goroutine reuses from one
// message to the next (see reusable).
type frontendScratch struct {
	message          []byte             // the rewritten Query, Parse or Bind
	canonical        []byte             // Bind: canonical plaintext of a parameter
	ciphertext       []byte             // Bind: ciphertext of a stored parameter
	matchCiphertexts [][][]byte         // Bind: ciphertexts of each RoleMatch parameter
	matchBuf         []byte             // Bind: the lookup ciphertexts (encryptMatch)
	matchList        [][]byte           // Bind: slices of matchBuf
	query            pgsql.Scratch      // Query: Rewrite's buffers
	plan             *pgsql.PlanScratch // Query: a plan made from a cached template (made at first use)
}

// backendScratch holds the buffers the backend goroutine reuses from one
// message to the next.
type backendScratch struct {
	message    []byte // the rewritten DataRow or CopyData
	ciphertext []byte // a text-format bytea cell, hex-decoded
	canonical  []byte // a decrypted canonical plaintext
	field      []byte // a COPY TO field, unescaped
}

// Shared, never modified result format lists (the common Bind cases).
var (
	resultFormatsText   = []int16{0}
	resultFormatsBinary = []int16{1}
)

func errorResponse(code, msg string) *pgproto3.ErrorResponse {
	return &pgproto3.ErrorResponse{Severity: "ERROR", SeverityUnlocalized: "ERROR", Code: code, Message: msg}
}

func refusalResponse(err error) *pgproto3.ErrorResponse {
	var r *sqlplan.Refusal
	if errors.As(err, &r) {
		return errorResponse(r.SQLState, r.Error())
	}
	if denied := deniedResponse(err); denied != nil {
		return denied
	}
	// Catalog or key failures: the message names tables and keys only.
	return errorResponse("XX000", "dbproxy: statement refused: "+err.Error())
}

// frontend handles client->server messages.
func (s *session) frontend(typ byte, body []byte, w *postgres.Writer) error {
	if s.batch.skipping && typ != pgmsg.TypeSync {
		return nil // the server would discard these after an error, too
	}
	s.batch.starting = !s.batch.open
	switch typ {
	case pgmsg.TypeParse, pgmsg.TypeBind, pgmsg.TypeDescribe, pgmsg.TypeExecute, pgmsg.TypeClose:
		s.batch.open = true
	case pgmsg.TypeSync:
		s.batch.open = false
	}
	// The session's search_path is read before its first statement (so that
	// a pipeline at the very start is not refused), and later only when a
	// statement needs it (query, parse, bind).
	if (typ == pgmsg.TypeQuery || typ == pgmsg.TypeParse || typ == pgmsg.TypeBind) && !s.searchPath.asked {
		if err := s.ensureSearchPath(w); err != nil {
			return err
		}
	}
	switch typ {
	case pgmsg.TypeCopyData:
		if s.copy != nil && s.copy.bin != nil {
			return s.copyBinaryData(body, w)
		}
		if s.copy != nil {
			return s.copyData(body, w)
		}
	case pgmsg.TypeCopyDone, pgmsg.TypeCopyFail:
		if s.copy != nil {
			return s.copyDone(typ, body, w)
		}
	case pgmsg.TypeQuery:
		return s.query(body, w)
	case pgmsg.TypeFunctionCall: // FunctionCall: answered like a query, up to ReadyForQuery
		if !s.functionCallAllowed(body) {
			return s.refuseQuery(errFunctionCall, w) // fastpath.go
		}
		// A function may change any setting: treat it as a change.
		s.push(s.newEvent(event{kind: pgmsg.TypeQuery, lexChange: s.lexRequest(true)}))
	case pgmsg.TypeParse:
		return s.parse(body, w)
	case pgmsg.TypeBind:
		return s.bind(body, w)
	case pgmsg.TypeDescribe:
		return s.describe(body, w)
	case pgmsg.TypeExecute:
		if !s.execute(body, w) {
			return nil
		}
	case pgmsg.TypeClose:
		s.closeMessage(body)
	case pgmsg.TypeSync:
		s.push(s.newEvent(event{kind: pgmsg.TypeSync, lexChange: s.lexRequest(false)}))
		s.batch.skipping = false
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

// refuseBatch refuses the extended-protocol message being handled with
// e: in its place the server is sent a message it rejects without side
// effects (a Parse of SQL that does not parse), so that the
// server itself fails the batch — and the transaction block, if one is
// open — as it would have failed the client's message; its error is
// replaced by e. The client's messages up to the next Sync are dropped,
// as the server would discard them after an error.
func (s *session) refuseBatch(e *pgproto3.ErrorResponse, w *postgres.Writer) {
	s.refused(e)
	s.batch.skipping = true
	s.push(s.newEvent(event{kind: kindRefused, refusal: e}))
	_, _ = w.Write(pgmsg.AppendParse(nil, refusedName, refusedSQL, nil))
}

// refuseQuery refuses a simple Query (or FunctionCall) with e. Between
// transactions, with nothing else outstanding, the proxy answers the
// client itself; otherwise it sends the server a query the server rejects
// (so that an open transaction block fails, as the client's statement
// failing would have made it) and reports e in place of the server's
// error.
func (s *session) refuseQuery(e *pgproto3.ErrorResponse, w *postgres.Writer) error {
	s.refused(e)
	lexChange := s.lexRequest(false)
	if !lexChange {
		if ok, err := w.Answer(encodeError(e)); ok || err != nil {
			return err
		}
	}
	s.push(s.newEvent(event{kind: pgmsg.TypeQuery, refusal: e, lexChange: lexChange}))
	w.Forward(pgmsg.TypeQuery, refusedQuery)
	return nil
}

// execute queues an Execute (body), preceded by a hidden Describe of its
// portal for a FETCH whose rows are otherwise not attributed. false: the
// batch was refused and the Execute is not forwarded.
func (s *session) execute(body []byte, w *postgres.Writer) bool {
	portal, _, _ := bytes.Cut(body, []byte{0})
	p := s.portal(portal)
	if p == nil {
		// A portal the proxy did not see bound (a cursor opened by
		// DECLARE, say): its rows cannot be attributed safely.
		s.refuseBatch(errorResponse(sqlplan.StateFeatureNotSupported,
			"dbproxy: statement refused: Execute of a portal not bound through this proxy"), w)
		return false
	}
	if p.stmt.lexChange || p.stmt.txEnd && s.lexInTx() {
		s.lexBatch()
	}
	if p.stmt.searchPathChange != 0 {
		s.searchPathChanged(p.stmt.searchPathChange)
	}
	if p.stmt.fetch && !p.describeSent {
		// A FETCH prepared before its cursor was declared is described
		// as returning no rows: describe its portal, so that its rows
		// are attributed (the answer is swallowed).
		p.describeSent = true
		_, _ = w.Write(pgmsg.AppendDescribe(nil, pgmsg.ObjectPortal, portal))
		s.push(s.newEvent(event{kind: kindDescribePortal, portal: p, stmt: p.stmt, hidden: true}))
	}
	s.push(s.newEvent(event{kind: pgmsg.TypeExecute, portal: p, stmt: p.stmt}))
	return true
}

// closeMessage forgets the statement or portal a Close (body) names and
// queues the Close.
func (s *session) closeMessage(body []byte) {
	if len(body) > 1 {
		name, _, _ := bytes.Cut(body[1:], []byte{0})
		if body[0] == pgmsg.ObjectStatement {
			delete(s.stmts, string(name))
			s.lock()
			s.prepared.Remove(string(name))
			s.mu.Unlock()
		} else if len(name) == 0 {
			s.unnamed = nil
		} else {
			delete(s.portals, string(name))
		}
	}
	s.push(s.newEvent(event{kind: pgmsg.TypeClose}))
}

// lock takes s.mu. One side of the session may hold it while it waits
// off the event loop (see blocking): the other side, finding it taken,
// announces a wait too rather than stall the loop.
func (s *session) lock() { blocking.Lock(s.ctx, &s.mu) }
