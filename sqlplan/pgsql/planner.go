package pgsql

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"slices"
	"strings"
	"sync/atomic"

	lru "github.com/hashicorp/golang-lru/v2"
	pg "github.com/pganalyze/pg_query_go/v6"

	"github.com/dbproxy/dbproxy/rules"
	"github.com/dbproxy/dbproxy/sqlplan"
)

// Catalog answers the two questions about the database that the SQL text
// cannot: where an unqualified table name points, and the column order of a
// table. The wire layer implements it over pg_catalog with a cache (and
// drops that cache, and calls Planner.Purge, after DDL). Calls happen only
// on plan-cache misses, and only for statements that may touch an
// encrypted table.
type Catalog interface {
	// Resolve returns the schema of the relation that the unqualified name
	// table denotes under searchPath, or "" if there is none. searchPath
	// holds the schemas of the search_path setting in order, "$user"
	// literally (the implementation substitutes the session user); the
	// implicit pg_temp and pg_catalog are the implementation's business,
	// as in PostgreSQL.
	Resolve(ctx context.Context, searchPath []string, table string) (schema string, err error)
	// Columns returns the names of the columns of schema.table in
	// attribute-number order, without dropped columns.
	Columns(ctx context.Context, schema, table string) ([]string, error)
	// CreationSchema returns the schema in which CREATE TABLE/VIEW of an
	// unqualified name creates the relation under searchPath (as Resolve
	// reads it): the first schema of the path that exists, "pg_temp" when
	// the path lists pg_temp first, "" when none exists.
	CreationSchema(ctx context.Context, searchPath []string) (string, error)
}

// Options configure a Planner.
type Options struct {
	// Rules are the encryption rules (rules.DialectPostgres). The Planner
	// narrows them to Database.
	Rules *rules.Set
	// Database is the database the sessions of this Planner are connected
	// to. One Planner serves one database, as a Catalog does.
	Database string
	// Catalog is required when Rules is not empty.
	Catalog Catalog
	// CacheSize is the number of plans kept (LRU). 0 means
	// sqlplan.DefaultCacheSize.
	CacheSize int
	// MaxCachedSQL is the longest SQL text whose plan is cached, in bytes;
	// longer texts (bulk INSERTs with literal values) are planned every
	// time. 0 means 8192.
	MaxCachedSQL int
	// Logger receives debug records about refusals (reason and column only).
	// Nil discards.
	Logger *slog.Logger
	// AllowDynamicSQL lets DO blocks, CREATE FUNCTION/PROCEDURE in
	// languages other than sql and calls of functions that run SQL text
	// (query_to_xml, dblink, …) through (a DO block or function whose text
	// names an encrypted or derived relation is still refused). By default
	// they are refused: SQL built at run time inside the server can reach
	// an encrypted table without ever spelling its name.
	AllowDynamicSQL bool
}

// Planner plans SQL strings for one database. It is safe for concurrent
// use by all the sessions of that database.
type Planner struct {
	rules     *rules.Set
	database  string
	catalog   Catalog
	cache     *lru.Cache[cacheKey, *cached]
	maxCached int
	log       *slog.Logger
	seed      maphash.Seed
	dynamic   bool // Options.AllowDynamicSQL
	// derived are the relations derived from encrypted tables (SetDerived);
	// nil: none known.
	derived atomic.Pointer[Derived]
}

// cacheKey is (SQL text, search_path), or with norm set (hash of the
// normalized SQL, search_path): the normalized SQL is the text with every
// constant replaced by its class (skeletonHash); the template found under
// it compares the text itself (template.instantiate), so a hash collision
// is only a miss.
type cacheKey struct {
	sql, searchPath string
	norm            bool
	hash            uint64
}

// cached is a plan for exactly one SQL text (tmpl nil), or a template for
// every text with the same normalized key.
type cached struct {
	plan *Plan
	tmpl *template
}

// maxScanLits is the number of constants scanned without allocating.
const maxScanLits = 16

// passPlan is returned for every SQL string that cannot touch an
// encrypted table. It is never modified.
var passPlan = &Plan{pass: true}

// New returns a Planner.
func New(opts Options) (*Planner, error) {
	if opts.Rules == nil {
		return nil, errors.New("pgsql planner: no rules")
	}
	if opts.Rules.Dialect() != rules.DialectPostgres {
		return nil, fmt.Errorf("pgsql planner: rules are for %s, not postgres", opts.Rules.Dialect())
	}
	set := opts.Rules.ForDatabase(opts.Database)
	if !set.Empty() && opts.Catalog == nil {
		return nil, errors.New("pgsql planner: encryption rules need a Catalog")
	}
	size := opts.CacheSize
	if size <= 0 {
		size = sqlplan.DefaultCacheSize
	}
	cache, err := lru.New[cacheKey, *cached](size)
	if err != nil {
		return nil, fmt.Errorf("pgsql planner: %w", err)
	}
	p := &Planner{rules: set, database: opts.Database, catalog: opts.Catalog, cache: cache,
		maxCached: opts.MaxCachedSQL, log: opts.Logger, seed: maphash.MakeSeed(), dynamic: opts.AllowDynamicSQL}
	if p.maxCached <= 0 {
		p.maxCached = 8192
	}
	if p.log == nil {
		p.log = slog.New(slog.DiscardHandler)
	}
	return p, nil
}

// Rules returns the rules the Planner applies (narrowed to its database).
func (p *Planner) Rules() *rules.Set { return p.rules }

// Purge drops every cached plan. Call it after DDL that can change how
// names resolve or a table's column order (CREATE/DROP/ALTER TABLE, SET
// search_path does not need it: the search path is part of the cache key).
func (p *Planner) Purge() { p.cache.Purge() }

// Skips reports whether Plan returns a passthrough plan for sql without
// parsing it (the pre-filter below found nothing that could need one). It
// only reads sql during the call, so a caller may pass a string that
// aliases a buffer it reuses, and avoid copying text it forwards as is.
func (p *Planner) Skips(sql string) bool { return !p.mayNeedPlan(sql) }

// mayNeedPlan is the pre-filter: rules.Set.MayTouch, the names of the
// relations derived from encrypted tables (SetDerived), the keywords of
// SQL-level prepared statements (EXECUTE carries values for a statement
// prepared earlier, so the Prepared map must know every PREPARE), and the
// words that start DDL able to route values around the rules without
// naming an encrypted table (DO, CREATE, ALTER, IMPORT: see ddl.go).
func (p *Planner) mayNeedPlan(sql string) bool {
	if p.rules.Empty() {
		return false
	}
	return p.touches(sql) || hasPlanKeyword(sql, false)
}

// touches reports whether text may name an encrypted table or a relation
// derived from one.
func (p *Planner) touches(text string) bool {
	return p.rules.MayTouch(text) || p.derived.Load().mayTouch(text)
}

// hasPlanKeyword reports whether sql contains EXECUTE, PREPARE, DEALLOCATE
// or DISCARD or the name of a function that runs SQL text (sqlRunners)
// anywhere, or DO, CREATE, ALTER or IMPORT as a whole word, in any ASCII
// case, in one pass; with ddlOnly, not the four session keywords. A statement
// keyword cannot be escaped, quoted or split by a comment, so every
// statement that starts with one of these words contains it as a word
// (false positives, the word in a literal say, cost a parse).
func hasPlanKeyword(sql string, ddlOnly bool) bool {
	for i := 0; i+2 <= len(sql); i++ {
		var w string
		word := true
		switch uint16(sql[i]|0x20)<<8 | uint16(sql[i+1]|0x20) {
		case 'e'<<8 | 'x':
			w, word = "execute", false
		case 'p'<<8 | 'r':
			w, word = "prepare", false
		case 'd'<<8 | 'e':
			w, word = "deallocate", false
		case 'd'<<8 | 'i':
			w, word = "discard", false
		case 'd'<<8 | 'o':
			w = "do"
		case 'c'<<8 | 'r':
			w = "create"
		case 'a'<<8 | 'l':
			w = "alter"
		case 'i'<<8 | 'm':
			w = "import"
		case 'q'<<8 | 'u', 't'<<8 | 's', 'd'<<8 | 'b':
			if sqlRunnerAt(sql[i:]) {
				return true
			}
			continue
		default:
			continue
		}
		if !word && ddlOnly {
			continue
		}
		if !rules.HasPrefixFold(sql[i:], w) {
			continue
		}
		if !word || ((i == 0 || !rules.IdentByte(sql[i-1])) && (i+len(w) == len(sql) || !rules.IdentByte(sql[i+len(w)]))) {
			return true
		}
	}
	return false
}

// Plan returns the plan of sql under searchPath, the session's search_path
// setting as SHOW prints it ("" means PostgreSQL's default "$user",
// public). Pass it with "$user" replaced by the quoted session user (e.g.
// "alice", public): the search path is part of the cache key, so the plan
// is then exact for that user. A literal $user is treated as possibly
// naming any schema, which refuses more (see "Name resolution" in the
// package doc). A SQL string that cannot touch an encrypted table gets a
// Passthrough plan without being parsed. The result is shared: do not
// modify it.
//
// Errors: a *Refusal for a statement that must not be sent upstream (the
// wire layer answers it with an ErrorResponse and sends nothing); any other
// error is a failure of the Catalog (also: send nothing).
func (p *Planner) Plan(ctx context.Context, sql, searchPath string) (*Plan, error) {
	pl, _, err := p.planCached(ctx, sql, searchPath, nil)
	return pl, err
}

// PlanScratch is the memory of the plans PlanReusing instantiates from
// templates. The zero value is ready to use. Not safe for concurrent use.
type PlanScratch struct{ ar planArena }

// PlanReusing is Plan for a caller that reuses memory, and reports how
// the plan was come by (for the plan-cache metric). With a non-nil sc, sql
// may alias a buffer the caller overwrites once the call returns
// (whatever the Planner keeps, it copies), and a plan made from a cached
// template is built in sc instead of on the heap, so a cache hit
// allocates nothing. The result is then valid only until the next call
// with sc, and its Literals alias sql: use it (Rewrite) while both are
// unchanged, and keep [Plan.Shared] beyond that. With a nil sc it is Plan.
func (p *Planner) PlanReusing(ctx context.Context, sql, searchPath string, sc *PlanScratch) (*Plan, sqlplan.Source, error) {
	return p.planCached(ctx, sql, searchPath, sc)
}

// planCached is Plan and PlanReusing.
func (p *Planner) planCached(ctx context.Context, sql, searchPath string, sc *PlanScratch) (*Plan, sqlplan.Source, error) {
	if !p.mayNeedPlan(sql) {
		return passPlan, sqlplan.SourceSkipped, nil
	}
	derived := p.derived.Load()
	k := cacheKey{sql: sql, searchPath: searchPath}
	if c, ok := p.cache.Get(k); ok {
		return c.plan, sqlplan.SourceCached, nil
	}
	cacheable := len(sql) <= p.maxCached
	var (
		buf  [maxScanLits]litSpan
		lits []litSpan
		nk   cacheKey
		norm bool
	)
	if cacheable {
		var ok bool
		lits, ok = scanLiterals(sql, buf[:0])
		if norm = ok && len(lits) > 0; norm {
			nk = cacheKey{searchPath: searchPath, norm: true, hash: skeletonHash(p.seed, sql, lits)}
			if c, ok := p.cache.Get(nk); ok && c.tmpl != nil {
				if pl, ok := c.tmpl.instantiate(p.touches, sql, lits, sc); ok {
					return pl, sqlplan.SourceTemplate, nil
				}
			}
		}
	}
	if sc != nil {
		// Everything below may be kept: the plan, the template, the key.
		sql = strings.Clone(sql)
		k.sql = sql
	}
	pl, a, err := p.plan(ctx, sql, searchPath)
	if err != nil {
		var r *sqlplan.Refusal
		if errors.As(err, &r) {
			p.log.LogAttrs(ctx, slog.LevelDebug, "statement refused",
				slog.String("column", r.Column), slog.String("reason", r.Reason), slog.String("sqlstate", r.SQLState))
		}
		return nil, sqlplan.SourceParsed, err
	}
	if !cacheable || p.derived.Load() != derived || (a != nil && a.noCache) {
		// Planned while the derived relations changed: the plan may
		// predate them, so it is not kept.
		return pl, sqlplan.SourceParsed, nil
	}
	if norm && !p.cache.Contains(nk) {
		// A template already there (made with other fixed constants) is
		// kept; this text then only gets an exact entry. The text of a new
		// template gets one too, so that repeating it exactly costs no scan.
		if t := buildTemplate(p.touches, sql, slices.Clone(lits), pl, a); t != nil {
			p.cache.Add(nk, &cached{tmpl: t})
		}
	}
	p.cache.Add(k, &cached{plan: pl})
	return pl, sqlplan.SourceParsed, nil
}

// plan parses and analyzes sql; it does not use the cache. The analyzer
// (nil for a plan made without one) reports how constants were used.
func (p *Planner) plan(ctx context.Context, sql, searchPath string) (*Plan, *analyzer, error) {
	tree, err := pg.Parse(sql)
	if err != nil {
		if p.touches(sql) || hasPlanKeyword(sql, true) {
			return nil, nil, refuse(nil, sqlplan.StateSyntaxError,
				"the statement may touch an encrypted table and could not be parsed (%s)", safeParseMessage(err))
		}
		// Only a session keyword matched: the server reports the error.
		return passPlan, nil, nil
	}
	a := &analyzer{ctx: ctx, p: p, sql: sql, searchPath: parseSearchPath(searchPath)}
	pl := &Plan{Statements: make([]Statement, 0, len(tree.Stmts))}
	pass := true
	for _, raw := range tree.Stmts {
		st, err := a.statement(raw)
		if errors.Is(err, errSpan) {
			return nil, nil, refuse(nil, sqlplan.StateInternal, "the proxy could not rewrite the statement safely (%v)", err)
		}
		if err != nil {
			return nil, nil, err
		}
		if st.Kind != KindPass {
			pass = false
		}
		pl.Statements = append(pl.Statements, st)
	}
	pl.Params = a.planParams
	pl.Keyless = a.keyless
	if len(pl.Keyless) > 0 {
		pass = false // the session checks them against its policy
	}
	for i := range pl.Params {
		if pl.Params[i].Role == sqlplan.RoleInvalid {
			pl.Params[i] = sqlplan.Param{Role: sqlplan.RolePlain}
		}
	}
	for _, prm := range pl.Params {
		if prm.Encrypted() {
			pass = false
		}
	}
	pl.pass = pass
	return pl, a, nil
}

// parseSearchPath splits a search_path setting into schema names: quoted
// names exact, unquoted ones folded to lower case, "$user" kept as is.
func parseSearchPath(s string) []string {
	if strings.TrimSpace(s) == "" {
		return []string{"$user", "public"}
	}
	var out []string
	i := 0
	for i < len(s) {
		for i < len(s) && (s[i] == ' ' || s[i] == '\t' || s[i] == ',') {
			i++
		}
		if i >= len(s) {
			break
		}
		var b strings.Builder
		if s[i] == '"' {
			i++
			for i < len(s) {
				if s[i] == '"' {
					if i+1 < len(s) && s[i+1] == '"' {
						b.WriteByte('"')
						i += 2
						continue
					}
					i++
					break
				}
				b.WriteByte(s[i])
				i++
			}
			for i < len(s) && s[i] != ',' {
				i++
			}
		} else {
			j := i
			for j < len(s) && s[j] != ',' {
				j++
			}
			word := strings.TrimSpace(s[i:j])
			for k := 0; k < len(word); k++ {
				c := word[k]
				if 'A' <= c && c <= 'Z' {
					c += 'a' - 'A'
				}
				b.WriteByte(c)
			}
			i = j
		}
		out = append(out, b.String())
	}
	return out
}
