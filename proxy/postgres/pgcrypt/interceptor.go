package pgcrypt

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/dbproxy/dbproxy/proxy/postgres"
	"github.com/dbproxy/dbproxy/proxy/postgres/pgsql"
	"github.com/dbproxy/dbproxy/rules"
)

// Options configure an Interceptor.
type Options struct {
	// Rules are the encryption rules (rules.DialectPostgres).
	Rules *rules.Set
	// Encryptor encrypts and decrypts values (over the key manager).
	Encryptor *rules.Encryptor
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
}

// Interceptor is the encryption layer; it implements postgres.Interceptor.
type Interceptor struct {
	opts Options
	log  *slog.Logger

	mu  sync.Mutex
	dbs map[string]*dbState
}

var _ postgres.Interceptor = (*Interceptor)(nil)

// dbState is what the sessions of one database share.
type dbState struct {
	planner *pgsql.Planner
	catalog *catalog
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
	return &Interceptor{opts: opts, log: log, dbs: map[string]*dbState{}}, nil
}

// Close closes the catalog connections.
func (ic *Interceptor) Close() {
	ic.mu.Lock()
	defer ic.mu.Unlock()
	for _, d := range ic.dbs {
		d.catalog.close()
	}
	clear(ic.dbs)
}

func (ic *Interceptor) database(name, user string) (*dbState, error) {
	ic.mu.Lock()
	defer ic.mu.Unlock()
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
		CacheSize: ic.opts.PlanCacheSize, Logger: ic.log})
	if err != nil {
		return nil, fmt.Errorf("planner for database %q: %w", name, err)
	}
	d := &dbState{planner: p, catalog: cat}
	ic.dbs[name] = d
	return d, nil
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
	sctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	s := &session{
		ic:        ic,
		db:        db,
		rules:     db.planner.Rules(),
		ctx:       sctx,
		log:       info.Logger,
		scsOff:    info.ServerParams["standard_conforming_strings"] != "on",
		clientEnc: info.ServerParams["client_encoding"],
	}
	if s.log == nil {
		s.log = ic.log
	}
	s.zone = loadZone(info.ServerParams["TimeZone"])
	sp := info.StartupParams["search_path"]
	if sp == "" {
		sp = `"$user", public`
	}
	s.searchPath = strings.ReplaceAll(sp, "$user", strings.ReplaceAll(info.User, `"`, `""`))
	s.spCh = make(chan spAnswer, 1)
	s.prepPath = map[string]string{}
	h := &postgres.SessionHooks{Frontend: s.frontend, Backend: s.backend, Close: cancel}
	h.FrontendTypes.Add('Q', 'F', 'P', 'B', 'D', 'E', 'C', 'S', 'd', 'c', 'f')
	h.BackendTypes.Add('T', 'D', 'C', 'I', 'E', 'Z', 'S', '1', '2', '3', 't', 'n', 's', 'H', 'd')
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
