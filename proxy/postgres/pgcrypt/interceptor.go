package pgcrypt

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dbproxy/dbproxy/fieldcrypt"
	"github.com/dbproxy/dbproxy/proxy/postgres"
	"github.com/dbproxy/dbproxy/proxy/postgres/pgmsg"
	"github.com/dbproxy/dbproxy/rules"
	"github.com/dbproxy/dbproxy/sqlplan/pgsql"
)

// Options configure an Interceptor.
type Options struct {
	// Rules are the encryption rules (rules.DialectPostgres).
	Rules *rules.Set
	// Encryptor encrypts and decrypts values (over the key manager). Each
	// session uses it through its own fieldcrypt.Cipher.
	Encryptor *rules.Encryptor
	// Guard, optional, is consulted before each use of a column's key by
	// a session, and may refuse it (fieldcrypt.Guard).
	Guard fieldcrypt.Guard
	// Monitor, optional, is told of each use of a column's key by a
	// session (fieldcrypt.Monitor).
	Monitor fieldcrypt.Monitor
	// Policy, optional, decides what each session may do with each
	// encrypted column (fieldcrypt.Policy): results show the columns as
	// it says, and the uses of keys it does not allow are refused.
	Policy fieldcrypt.Policy
	// Connect opens the catalog connection of a database (see the package
	// doc). Required.
	Connect ConnectFunc
	// PlanCacheSize is passed to each database's planner (0: its default).
	PlanCacheSize int
	// CopyBuffer bounds, in bytes, the line of a COPY … FROM STDIN (text or
	// csv) the proxy keeps while it waits for its end; a longer line fails
	// the COPY (CopyFail naming the limit). 0: DefaultCopyBuffer (16 MiB).
	CopyBuffer int
	// Logger receives debug records (never SQL text or values). Nil
	// discards.
	Logger *slog.Logger
	// AllowDynamicSQL lets DO blocks and CREATE FUNCTION/PROCEDURE in
	// languages other than sql through (pgsql.Options.AllowDynamicSQL);
	// the YAML listener field allow_dynamic_sql.
	AllowDynamicSQL bool
	// DerivedRefresh is how often the relations derived from encrypted
	// tables (views, inheritance children, partitions, parents) are read
	// again from the catalog while a database has sessions; 0 means
	// DefaultDerivedRefresh. Each new session also reads them before its
	// first statement, and DDL through the proxy triggers a read at once.
	DerivedRefresh time.Duration
}

// DefaultDerivedRefresh bounds how long a relation derived from an
// encrypted table that was created directly in the database (not through
// the proxy) can go unnoticed by sessions that were already open.
const DefaultDerivedRefresh = 2 * time.Second

// Interceptor is the encryption layer; it implements postgres.Interceptor.
type Interceptor struct {
	opts Options
	log  *slog.Logger

	mu  sync.Mutex
	dbs map[string]*dbState

	// base is cancelled by Close: refresh loops end.
	base  context.Context
	stop  context.CancelFunc
	loops sync.WaitGroup
}

var _ postgres.Interceptor = (*Interceptor)(nil)

// dbState is what the sessions of one database share.
type dbState struct {
	planner *pgsql.Planner
	catalog *catalog
	// sessions counts open sessions; the refresh loop runs (looping)
	// while there are any. kick asks it for a refresh now (DDL went
	// through).
	sessions atomic.Int64
	looping  atomic.Bool
	kick     chan struct{}
}

// refreshSoon asks for the derived relations to be read again now (after
// DDL); it does not wait.
func (d *dbState) refreshSoon() {
	select {
	case d.kick <- struct{}{}:
	default:
	}
}

// New returns an Interceptor.
func New(opts Options) (*Interceptor, error) {
	if opts.Rules == nil || opts.Rules.Dialect() != rules.DialectPostgres {
		return nil, errors.New("pgcrypt: postgres rules required")
	}
	if opts.Encryptor == nil {
		return nil, errors.New("pgcrypt: encryptor required")
	}
	if opts.Connect == nil {
		return nil, errors.New("pgcrypt: catalog connect func required")
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if opts.DerivedRefresh <= 0 {
		opts.DerivedRefresh = DefaultDerivedRefresh
	}
	base, stop := context.WithCancel(context.Background())
	return &Interceptor{opts: opts, log: log, dbs: map[string]*dbState{}, base: base, stop: stop}, nil
}

// Close stops the refresh loops, closes the catalog connections for good
// and drops the per-database state (plan caches, catalog caches). Sessions
// still open fail their next catalog lookup; new sessions are refused.
// Close is idempotent.
func (ic *Interceptor) Close() {
	ic.mu.Lock()
	ic.stop() // under mu: database() starts no loop after this
	ic.mu.Unlock()
	ic.loops.Wait()
	ic.mu.Lock()
	defer ic.mu.Unlock()
	for _, d := range ic.dbs {
		if d != nil {
			d.catalog.close()
		}
	}
	clear(ic.dbs)
}

// errClosed refuses a session on a closed Interceptor.
var errClosed = errors.New("pgcrypt: encryption layer closed")

func (ic *Interceptor) database(name, user string) (*dbState, error) {
	ic.mu.Lock()
	defer ic.mu.Unlock()
	if ic.base.Err() != nil {
		return nil, errClosed
	}
	if d, ok := ic.dbs[name]; ok {
		return d, nil
	}
	set := ic.opts.Rules.ForDatabase(name)
	if set.Empty() {
		ic.dbs[name] = nil
		return nil, nil
	}
	cat := newCatalog(name, user, set, ic.opts.Connect)
	p, err := pgsql.New(pgsql.Options{Rules: set, Database: name, Catalog: cat,
		CacheSize: ic.opts.PlanCacheSize, Logger: ic.log, AllowDynamicSQL: ic.opts.AllowDynamicSQL})
	if err != nil {
		return nil, fmt.Errorf("planner for database %q: %w", name, err)
	}
	d := &dbState{planner: p, catalog: cat, kick: make(chan struct{}, 1)}
	ic.dbs[name] = d
	return d, nil
}

// startRefresh starts the refresh loop of database name unless it runs
// or the Interceptor is closed.
func (ic *Interceptor) startRefresh(name string, d *dbState) {
	ic.mu.Lock()
	defer ic.mu.Unlock()
	if ic.base.Err() != nil || !d.looping.CompareAndSwap(false, true) {
		return
	}
	ic.loops.Add(1)
	go ic.refreshLoop(name, d)
}

// refreshLoop reads the derived relations of database name every
// DerivedRefresh, and when DDL asks for it, until the database has no
// session left or Close. A failed read keeps the previous set (logged);
// new sessions, which read it synchronously, fail instead.
func (ic *Interceptor) refreshLoop(name string, d *dbState) {
	defer ic.loops.Done()
	t := time.NewTicker(ic.opts.DerivedRefresh)
	defer t.Stop()
	for {
		select {
		case <-ic.base.Done():
			return
		case <-t.C:
		case <-d.kick:
		}
		if d.sessions.Load() == 0 {
			d.looping.Store(false)
			// A session that arrived meanwhile either finds the loop
			// stopped and starts another, or this one carries on.
			if d.sessions.Load() == 0 || !d.looping.CompareAndSwap(false, true) {
				return
			}
		}
		ctx, cancel := context.WithTimeout(ic.base, 10*time.Second)
		if err := d.catalog.refreshDerived(ctx, time.Now(), d.planner); err != nil {
			ic.log.Warn("reading relations derived from encrypted tables failed", slog.String("database", name), slog.Any("error", err))
		}
		cancel()
	}
}

// NewSession implements postgres.Interceptor. Sessions of databases without
// rules are relayed untouched.
func (ic *Interceptor) NewSession(ctx context.Context, info postgres.SessionInfo) (*postgres.SessionHooks, error) {
	db, err := ic.database(info.Database, info.User)
	if err != nil {
		return nil, err
	}
	if db == nil {
		return nil, nil
	}
	// The session's first statement must see the relations derived from
	// encrypted tables as they are now (the pre-filter needs their names).
	if err := db.catalog.refreshDerived(ctx, time.Now(), db.planner); err != nil {
		// The cause names the catalog login and the setting that fixes
		// it (never a password).
		return nil, &postgres.Error{Code: "57P03", Cause: err,
			Message: "dbproxy: cannot read the relations derived from encrypted tables from the catalog (" + err.Error() + "); try again"}
	}
	db.sessions.Add(1)
	ic.startRefresh(info.Database, db)
	sctx, cancelCtx := context.WithCancel(context.WithoutCancel(ctx))
	cancel := func() {
		cancelCtx()
		db.sessions.Add(-1)
	}
	s := &session{
		ic:    ic,
		db:    db,
		rules: db.planner.Rules(),
		ctx:   sctx,
		log:   info.Logger,
		lex: lexSettings{
			stdStringsOff:  info.ServerParams["standard_conforming_strings"] != "on",
			clientEncoding: info.ServerParams["client_encoding"],
		},
	}
	if s.log == nil {
		s.log = ic.log
	}
	s.cipher = fieldcrypt.New(ic.opts.Encryptor, info.Principal, fieldcrypt.Options{Guard: ic.opts.Guard, Monitor: ic.opts.Monitor, Policy: ic.opts.Policy})
	s.zone = loadZone(info.ServerParams["TimeZone"])
	sp := info.StartupParams["search_path"]
	if sp == "" {
		sp = `"$user", public`
	}
	s.searchPath.current = strings.ReplaceAll(sp, "$user", strings.ReplaceAll(info.User, `"`, `""`))
	s.searchPath.reportedPath, s.searchPath.reported = info.ServerParams["search_path"]
	s.searchPath.answers = make(chan spAnswer, 1)
	s.searchPath.preparedUnder = map[string]string{}
	s.seen.obs = info.Observer
	h := &postgres.SessionHooks{Frontend: s.observedFrontend, Backend: s.backend, Close: cancel}
	h.FrontendTypes.Add(pgmsg.TypeQuery, pgmsg.TypeFunctionCall, pgmsg.TypeParse, pgmsg.TypeBind, pgmsg.TypeDescribe,
		pgmsg.TypeExecute, pgmsg.TypeClose, pgmsg.TypeSync, pgmsg.TypeCopyData, pgmsg.TypeCopyDone, pgmsg.TypeCopyFail)
	h.BackendTypes.Add(pgmsg.TypeRowDescription, pgmsg.TypeDataRow, pgmsg.TypeCommandComplete, pgmsg.TypeEmptyQueryResponse,
		pgmsg.TypeErrorResponse, pgmsg.TypeReadyForQuery, pgmsg.TypeParameterStatus, pgmsg.TypeParseComplete,
		pgmsg.TypeBindComplete, pgmsg.TypeCloseComplete, pgmsg.TypeParameterDescription, pgmsg.TypeNoData,
		pgmsg.TypePortalSuspended, pgmsg.TypeCopyOutResponse, pgmsg.TypeCopyData)
	return h, nil
}

// loadZone returns the location of a TimeZone setting, nil if unknown.
func loadZone(name string) *time.Location {
	if name == "" {
		return nil
	}
	if loc, err := time.LoadLocation(name); err == nil {
		return loc
	}
	return nil
}
