package mycrypt

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dbproxy/dbproxy/fieldcrypt"
	"github.com/dbproxy/dbproxy/internal/blocking"
	"github.com/dbproxy/dbproxy/proxy"
	"github.com/dbproxy/dbproxy/proxy/mysql"
	"github.com/dbproxy/dbproxy/rules"
	"github.com/dbproxy/dbproxy/sqlplan/mysqlsql"
)

// stmt is a prepared statement the session knows.
type stmt struct {
	plan     *mysqlsql.Plan
	types    []uint16 // client parameter types of the last execution
	poisoned bool     // long data for an encrypted parameter was dropped
	// zoneRisky: executing it may change time_zone (timezone.go).
	zoneRisky bool
	// cols are the result columns of the last result set (PREPARE or
	// EXECUTE response), for COM_STMT_FETCH and for the next execution.
	// A published slice is never modified.
	cols []column
	// defs remembers, per result column, the server's last column
	// definition and what went to the client instead: every execution's
	// response repeats them, and a repeated one needs neither a rule
	// lookup nor a rewrite. Touched only by result hooks (one goroutine).
	defs []colDef
}

// colDef is a remembered column definition (see stmt.defs).
type colDef struct {
	raw []byte // the server's payload
	out []byte // what the client got instead; nil: raw unchanged
	col column
}

type session struct {
	ic  *Interceptor
	ctx context.Context
	log *slog.Logger
	obs proxy.Observer // nil: none; observe.go
	// extMeta: column definitions carry MariaDB's extended metadata
	// (mysql.MariaDBExtendedMetadata).
	extMeta bool

	mu    sync.Mutex // take it with lock
	db    string
	stmts map[uint32]*stmt

	// cipher encrypts, looks up and decrypts for this session: every use
	// of a key goes through it. COM_CHANGE_USER replaces it (cipher.go).
	cipher atomic.Pointer[fieldcrypt.Cipher]

	// tz is the session time_zone (timezone.go): nil UTC, zoneUnknown.
	tz atomic.Pointer[time.Location]
	// zoneRisky: a prepared statement may change time_zone (timezone.go).
	zoneRisky atomic.Bool

	// lx is how the server lexes the session's text (lexstate.go);
	// guarded by mu.
	lx           lexTrack
	caps         uint64
	sessionTrack bool

	// spare is the cleared state of a finished COM_STMT_EXECUTE or
	// COM_QUERY, for the next one: execute and query take it, the result
	// hook of the response's last packet (or query, for a statement it
	// does not watch) puts it back (execState, release, unwatched), so
	// that a statement allocates no state of its own.
	spare atomic.Pointer[exState]

	// Scratch buffers, so that executions and rows allocate no
	// intermediate values: cmdCanon, cmdCT and the lookup ciphertexts
	// cmdMatch (sliced by cmdMatches) belong to the command hook,
	// resCanon, resText and resMask (a plaintext to mask) to the result
	// hook (they run on one goroutine each).
	cmdCanon, cmdCT, cmdMatch  []byte
	cmdMatches                 [][]byte
	cmdOut                     []byte           // a rewritten COM_QUERY or COM_STMT_PREPARE
	rewriteBufs                mysqlsql.Scratch // mysqlsql.Plan.RewriteRecording's
	resCanon, resText, resMask []byte
}

// column is what a result hook knows about one result column.
type column struct {
	rule *rules.ColumnRule
	typ  byte // the server's column type
}

// exState is the per-exchange state of a watched command.
type exState struct {
	// reuse: the state of a COM_STMT_EXECUTE or COM_QUERY, cleared and
	// kept as the session's spare once the response is complete.
	reuse  bool
	plan   *mysqlsql.Plan
	stmt   *stmt // COM_STMT_EXECUTE / FETCH
	cols   []column
	anyEnc bool
	// readable: the session may read every column of the current result
	// set (unreadable found nothing; checked once per result set).
	readable bool
	// defsEOF: the next EOF is the one after the column definitions (not
	// a result set's terminator).
	defsEOF bool
	shared  bool // cols is stmt.cols of an earlier result set: copy before writing
	// matches are the deterministic lookups of this exchange's execution:
	// result cells that are their ciphertexts need no decryption.
	matches rules.Matches
	// zone is the time_zone change on its way (timezone.go); zoneRisky,
	// for COM_STMT_PREPARE, that the statement may change it.
	zone      *zoneChange
	zoneRisky bool
	// database tracking
	use    bool
	newDB  string
	prevDB string
	single bool // the string is just the USE
	// changeUser: the cipher of the user a COM_CHANGE_USER names, the
	// session's once the server answers OK.
	changeUser *fieldcrypt.Cipher
	// prepare
	stmtID   uint32
	prepared bool
	// lex is a pending change of the session's lexing state.
	lex *lexChange
}

// execState returns the state of a new COM_STMT_EXECUTE or COM_QUERY: the
// session's spare if there is one (no earlier statement's response is
// still in flight), else a new one.
func (s *session) execState() *exState {
	if st := s.spare.Swap(nil); st != nil {
		return st
	}
	return &exState{reuse: true}
}

// release clears the state of x, whose response is complete, and keeps it
// as the spare if it is an execution's. x no longer refers to it: no hook
// sees this exchange again.
func (s *session) release(x *mysql.Exchange) {
	st, _ := x.State.(*exState)
	if st == nil || !st.reuse {
		return
	}
	x.State = nil
	s.unwatched(st)
}

// unwatched clears st, the state of a statement taken from execState
// that no exchange refers to (its response was complete, or it was never
// watched), and keeps it as the spare.
func (s *session) unwatched(st *exState) {
	*st = exState{reuse: true}
	s.spare.Store(st)
}

// lock takes s.mu. One side of the session may hold it while it waits
// off the event loop (see blocking): the other side, finding it taken,
// announces a wait too rather than stall the loop.
func (s *session) lock() { blocking.Lock(s.ctx, &s.mu) }
