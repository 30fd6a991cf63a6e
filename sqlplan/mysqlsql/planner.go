package mysqlsql

import (
	"container/list"
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/pingcap/tidb/pkg/parser"
	"github.com/pingcap/tidb/pkg/parser/ast"
	"github.com/pingcap/tidb/pkg/parser/format"
	"github.com/pingcap/tidb/pkg/parser/mysql"
	driver "github.com/pingcap/tidb/pkg/parser/test_driver"

	"github.com/dbproxy/dbproxy/internal/blocking"
	"github.com/dbproxy/dbproxy/rules"
	"github.com/dbproxy/dbproxy/sqlplan"
)

// Catalog returns the column order of a table, for INSERT and REPLACE
// without a column list into a table with encrypted columns. The wire
// layer implements it over information_schema.columns (or not: with a nil
// Catalog such statements are refused). The Planner asks it only on
// plan-cache misses and caches the answers until [Planner.Purge].
type Catalog interface {
	// Columns returns the column names of database.table in ordinal
	// order; none (and no error) if the table does not exist.
	Columns(ctx context.Context, database, table string) ([]string, error)
}

// Options are the optional settings of a Planner.
type Options struct {
	// CacheSize is the number of plans kept (LRU by SQL text, current
	// database and lexing state). 0 means sqlplan.DefaultCacheSize.
	CacheSize int
	// AllowDynamicSQL lets PREPARE … FROM a variable (or any source that
	// is not a string literal), EXECUTE IMMEDIATE, and stored programs or
	// compound statements containing PREPARE/EXECUTE through. They run SQL
	// the proxy never sees: a value they store in an encrypted column is
	// stored as plaintext.
	AllowDynamicSQL bool
	// Relations, optional, lists the server's views, so that statements
	// naming a view over an encrypted table are refused. Without it such
	// views (created directly in the database) go unnoticed.
	Relations RelationSource
	// RelationsMaxAge bounds how old the list of views may be when a
	// statement is planned (default 10s); DDL through the proxy makes the
	// next statement read it again.
	RelationsMaxAge time.Duration
	// OnRelationsError, optional, is told when the list cannot be read
	// (the last one read stays in use).
	OnRelationsError func(error)
}

// Planner makes Plans. It is safe for concurrent use.
type Planner struct {
	rules   *rules.Set
	catalog Catalog
	parsers sync.Pool

	mu    sync.Mutex
	max   int
	lru   *list.List
	cache map[cacheKey]*list.Element
	// gen counts purges: an answer derived from the catalog is cached only
	// if no purge happened while it was being made.
	gen  uint64
	cols map[tableKey][]string // catalog answers

	allowDynamic bool
	rel          *relations // nil without Options.Relations

}

type cacheKey struct {
	db, sql string
	lex     Lex
	// normalized: sql is a normalized key (template.go); only strings the
	// pre-filter says may touch an encrypted table get one.
	normalized bool
}

type tableKey struct{ db, table string }

type cacheEntry struct {
	key     cacheKey
	plan    *Plan
	err     error
	catalog bool // the plan depends on catalog answers
	// For a normalized key: its template, nil until the key's second miss;
	// noTemplate once one could not be made.
	tmpl       *template
	noTemplate bool
}

// New returns a Planner for set (DialectMySQL). catalog may be nil.
func New(set *rules.Set, catalog Catalog, opts Options) *Planner {
	size := opts.CacheSize
	if size <= 0 {
		size = sqlplan.DefaultCacheSize
	}
	p := &Planner{rules: set, catalog: catalog, max: size, lru: list.New(), cache: map[cacheKey]*list.Element{},
		cols: map[tableKey][]string{}, allowDynamic: opts.AllowDynamicSQL}
	p.parsers.New = func() any { return parser.New() }
	if opts.Relations != nil && !set.Empty() {
		p.rel = &relations{src: opts.Relations, maxAge: opts.RelationsMaxAge, onError: opts.OnRelationsError, rules: set,
			changed: p.dropPlans}
		if p.rel.maxAge <= 0 {
			p.rel.maxAge = defaultRelationsMaxAge
		}
	}
	return p
}

// dropPlans drops every cached plan: the views they were made under changed.
func (p *Planner) dropPlans() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.gen++
	p.lru.Init()
	clear(p.cache)
}

var passPlan = &Plan{Passthrough: true, Unparsed: true}

// maxCachedSQL bounds the statements the cache keeps (bulk INSERTs are
// planned every time rather than pinned in memory).
const maxCachedSQL = 64 << 10

// Plan plans sql with database as the session's current database ("" if
// none, UnknownDatabase if unknown), for a session whose sql_mode is
// assumed to have no lexing modes and whose server version is unknown (so
// versioned executable comments on encrypted tables are refused); the wire
// layer calls [Planner.PlanLex].
func (p *Planner) Plan(ctx context.Context, database, sql string) (*Plan, error) {
	plan, _, err := p.PlanLex(ctx, database, sql, Lex{ModeAssumed: true})
	return plan, err
}

// PlanLex plans sql as the server reads it under lex, and reports how the
// plan was come by (for the plan-cache metric). The error is a *Refusal
// for a statement that must not be forwarded, or a Catalog error.
func (p *Planner) PlanLex(ctx context.Context, database, sql string, lex Lex) (*Plan, sqlplan.Source, error) {
	// touches: the statement may reach an encrypted table — by name, through
	// a view over one, or through dynamic SQL whose text the proxy never sees.
	touches := false
	if !p.rules.Empty() {
		views := p.rel.current(ctx) // also keeps the views fresh for the analysis
		touches = p.rules.MayTouch(sql) || (views != nil && views.filter.MayTouch(sql)) ||
			(!p.allowDynamic && mentionsDynamic(sql))
	}
	if !touches && !mayUse(sql) && !mayChangeSession(sql) && (p.rules.Empty() || (!mentionsDynamic(sql) && !ddlStart(sql))) {
		return passPlan, sqlplan.SourceSkipped, nil
	}
	if touches && lex.Unreadable != "" {
		return nil, sqlplan.SourceSkipped, &sqlplan.Refusal{SQLState: sqlplan.StateFeatureNotSupported, Reason: lex.Unreadable}
	}
	key := cacheKey{db: database, sql: sql, lex: lex}
	cache := p.max > 0 && len(sql) <= maxCachedSQL
	if cache {
		p.mu.Lock()
		if e, ok := p.cache[key]; ok {
			p.lru.MoveToFront(e)
			ce := e.Value.(*cacheEntry)
			p.mu.Unlock()
			return ce.plan, sqlplan.SourceCached, ce.err
		}
		p.mu.Unlock()
	}
	// A string that differs from one planned before only in the values
	// the proxy encrypts takes that plan's template (template.go).
	var lits []litSpan
	var nkey cacheKey
	seen, build := false, false
	if cache && touches {
		var arr [16]litSpan
		if l, ok := scanLiterals(sql, arr[:0]); ok && len(l) > 0 {
			lits = l
			nkey = cacheKey{db: database, sql: normalizedKey(sql, l), lex: lex, normalized: true}
			p.mu.Lock()
			var t *template
			if e, ok := p.cache[nkey]; ok {
				p.lru.MoveToFront(e)
				ce := e.Value.(*cacheEntry)
				seen, t, build = true, ce.tmpl, ce.tmpl == nil && !ce.noTemplate
			}
			p.mu.Unlock()
			if t != nil {
				if plan, ok := t.instantiate(sql, l); ok {
					return plan, sqlplan.SourceTemplate, nil
				}
			}
		}
	}
	p.mu.Lock()
	gen := p.gen
	p.mu.Unlock()
	plan, usedCatalog, err := p.planSession(ctx, database, sql, lex, touches)
	if _, refused := err.(*sqlplan.Refusal); err != nil && !refused {
		return nil, sqlplan.SourceParsed, err
	}
	if lits != nil && err == nil && (!seen || build) {
		p.noteTemplate(ctx, nkey, gen, sql, lits, plan, usedCatalog, build)
	}
	// A refusal that may come from a stale or failed catalog answer is not
	// cached: the next attempt asks again.
	if cache && !(usedCatalog && err != nil) {
		p.mu.Lock()
		if _, ok := p.cache[key]; !ok && gen == p.gen {
			p.addLocked(&cacheEntry{key: key, plan: plan, err: err, catalog: usedCatalog})
		}
		p.mu.Unlock()
	}
	return plan, sqlplan.SourceParsed, err
}

// noteTemplate records a miss of normalized key k by sql, planned as plan
// under generation gen: the first one marks the key seen, the second
// builds its template.
func (p *Planner) noteTemplate(ctx context.Context, k cacheKey, gen uint64, sql string, lits []litSpan, plan *Plan, usedCatalog, build bool) {
	var t *template
	if build {
		t = buildTemplate(sql, lits, plan, func(probe string) (*Plan, error) {
			pl, _, err := p.planSession(ctx, k.db, probe, k.lex, true)
			return pl, err
		}, func(probe string) ([]string, bool) { return p.values(probe, k.lex) })
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if gen != p.gen {
		return
	}
	if e, ok := p.cache[k]; ok {
		ce := e.Value.(*cacheEntry)
		if build && ce.tmpl == nil && !ce.noTemplate {
			ce.tmpl, ce.noTemplate = t, t == nil
			ce.catalog = ce.catalog || usedCatalog
		}
		return
	}
	p.addLocked(&cacheEntry{key: k, catalog: usedCatalog})
}

// addLocked caches e, dropping the least recently used entries beyond the
// cache's size. Under mu.
func (p *Planner) addLocked(e *cacheEntry) {
	p.cache[e.key] = p.lru.PushFront(e)
	for p.lru.Len() > p.max {
		old := p.lru.Remove(p.lru.Back()).(*cacheEntry)
		delete(p.cache, old.key)
	}
}

// parse parses norm under mode with a pooled parser. The statements are
// copied out of the parser's result slice, which its next parse reuses:
// once the parser is back in the pool another session may parse with it.
func (p *Planner) parse(norm string, mode mysql.SQLMode) ([]ast.StmtNode, error) {
	ps := p.parsers.Get().(*parser.Parser)
	ps.SetSQLMode(mode)
	stmts, _, err := ps.Parse(norm, "", "")
	stmts = slices.Clone(stmts)
	p.parsers.Put(ps)
	return stmts, err
}

// values returns the string and integer values the parser reads in sql
// under lex, as the planner parses it.
func (p *Planner) values(sql string, lex Lex) (vals []string, ok bool) {
	defer func() {
		if r := recover(); r != nil {
			vals, ok = nil, false
		}
	}()
	norm, err := normalize(sql, lex)
	if err != nil {
		return nil, false
	}
	stmts, err := p.parse(norm, lex.Mode)
	if err != nil {
		return nil, false
	}
	c := &valueCollector{}
	for _, st := range stmts {
		st.Accept(c)
	}
	return c.vals, true
}

// valueCollector collects the string and integer values of a tree.
type valueCollector struct{ vals []string }

func (c *valueCollector) Enter(n ast.Node) (ast.Node, bool) {
	if v, ok := n.(*driver.ValueExpr); ok {
		switch v.Kind() {
		case driver.KindString, driver.KindBytes:
			c.vals = append(c.vals, v.GetString())
		case driver.KindInt64:
			c.vals = append(c.vals, strconv.FormatInt(v.GetInt64(), 10))
		case driver.KindUint64:
			c.vals = append(c.vals, strconv.FormatUint(v.GetUint64(), 10))
		}
	}
	return n, false
}

func (c *valueCollector) Leave(n ast.Node) (ast.Node, bool) { return n, true }

// Purge drops the cached catalog answers and every cached plan made from
// them. The wire layer calls it after a statement with [Plan.DDL] (or any
// DDL) completes, so that the next column-less INSERT reads the table's
// new column order.
func (p *Planner) Purge() {
	if p.rel != nil {
		p.rel.stale.Store(true) // a view may have been created or dropped
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.gen++
	clear(p.cols)
	for e := p.lru.Front(); e != nil; {
		next := e.Next()
		if ce := e.Value.(*cacheEntry); ce.catalog {
			p.lru.Remove(e)
			delete(p.cache, ce.key)
		}
		e = next
	}
}

// columns returns the column order of database.table, from the cache
// unless fresh. cached reports that the answer came from the cache.
func (p *Planner) columns(ctx context.Context, database, table string, fresh bool) (cols []string, cached bool, err error) {
	k := tableKey{database, table}
	p.mu.Lock()
	gen := p.gen
	if c, ok := p.cols[k]; ok && !fresh {
		p.mu.Unlock()
		return c, true, nil
	}
	p.mu.Unlock()
	blocking.Announce(ctx) // a query (the hook may run on an event loop)
	cols, err = p.catalog.Columns(ctx, database, table)
	if err != nil {
		return nil, false, fmt.Errorf("column list of %s.%s: %w", database, table, err)
	}
	if len(cols) == 0 {
		return nil, false, nil // a table that does not exist yet is not remembered
	}
	p.mu.Lock()
	if gen == p.gen {
		p.cols[k] = cols
	}
	p.mu.Unlock()
	return cols, false, nil
}

// mayUse reports whether sql may contain a USE statement: the word use,
// in any case, not inside a longer identifier (cheap, no false negatives).
// A digit before it still counts: an executable comment's version number
// (/*!50000USE db*/) is not part of the statement. A table named users or
// a column user_id do not count, so statements naming them skip the parse.
func mayUse(sql string) bool {
	for i := 0; i+3 <= len(sql); i++ {
		if (sql[i]|0x20) == 'u' && (sql[i+1]|0x20) == 's' && (sql[i+2]|0x20) == 'e' &&
			(i == 0 || !isIdentByte(sql[i-1]) || '0' <= sql[i-1] && sql[i-1] <= '9') &&
			(i+3 == len(sql) || !isIdentByte(sql[i+3])) {
			return true
		}
	}
	return false
}

const markerPrefix = "dbproxy_slot_"

func (p *Planner) plan(ctx context.Context, database, sql string, lex Lex, touches bool) (plan *Plan, usedCatalog bool, err error) {
	defer func() {
		if r := recover(); r != nil {
			plan, err = nil, &sqlplan.Refusal{SQLState: sqlplan.StateInternal, Reason: "the statement could not be analysed"}
		}
	}()
	views := p.rel.load()
	lower := strings.ToLower(sql)
	if strings.Contains(lower, markerPrefix) {
		return nil, false, &sqlplan.Refusal{SQLState: sqlplan.StateFeatureNotSupported, Reason: "the statement contains a reserved identifier"}
	}
	norm, nerr := normalize(sql, lex)
	if nerr != nil {
		if touches {
			if nerr == errUnprovable {
				return nil, false, &sqlplan.Refusal{SQLState: sqlplan.StateFeatureNotSupported, Reason: "the proxy cannot read this statement exactly as the server will " +
					"(a nested or version-dependent executable comment, a non-ASCII byte after --, a NUL byte, a quote " +
					"in an optimizer hint, or a non-ASCII byte outside a string in a single-byte client character set)"}
			}
			return nil, false, &sqlplan.Refusal{SQLState: sqlplan.StateSyntaxError, Reason: "the statement may touch an encrypted table but could not be parsed"}
		}
		if mentionsUse(sql) {
			// Whether it holds a USE the server runs is not known.
			return &Plan{Passthrough: true, HasUse: true, Use: UnknownDatabase}, false, nil
		}
		return passPlan, false, nil
	}
	stmts, perr := p.parse(norm, lex.Mode)
	if perr != nil {
		if touches {
			if r := p.unparsed(sql, views); r != nil {
				return nil, false, r
			}
			return nil, false, &sqlplan.Refusal{SQLState: sqlplan.StateSyntaxError, Reason: "the statement may touch an encrypted table but could not be parsed"}
		}
		if !p.rules.Empty() && ddlStart(sql) {
			// CREATE TRIGGER, ALTER VIEW, …: may change the views.
			return &Plan{Passthrough: true, DDL: true}, false, nil
		}
		if mayUse(sql) && mentionsUse(norm) {
			return &Plan{Passthrough: true, HasUse: true, Use: UnknownDatabase}, false, nil
		}
		return passPlan, false, nil
	}
	restore := format.DefaultRestoreFlags | format.RestoreStringEscapeBackslash
	if lex.Mode&mysql.ModeNoBackslashEscapes != 0 {
		restore = format.DefaultRestoreFlags
	}
	out, texts, edited, usedCatalog, err := p.analyzeStmts(ctx, database, stmts, restore)
	if err != nil {
		return nil, usedCatalog, err
	}
	if touches && lex.ModeAssumed {
		if err := p.sameInOtherModes(ctx, database, sql, norm, lex, out, edited); err != nil {
			return nil, usedCatalog, err
		}
	}
	if !edited {
		out.Passthrough = true
		out.Slots, out.Params = nil, normaliseParams(out.Params)
		if out.HasEncryptedParams() {
			return nil, usedCatalog, &sqlplan.Refusal{SQLState: sqlplan.StateInternal, Reason: "internal: parameter roles without rewrite"}
		}
		return out, usedCatalog, nil
	}
	if err := out.split(strings.Join(texts, "; ")); err != nil {
		return nil, usedCatalog, err
	}
	return out, usedCatalog, nil
}

// planSession is plan plus what the string does to the session's lexing
// state (Plan.Session).
func (p *Planner) planSession(ctx context.Context, database, sql string, lex Lex, touches bool) (*Plan, bool, error) {
	var sc *SessionChange
	if mayChangeSession(sql) {
		c := AnalyzeSession(sql, lex)
		if c.Changed() || c.Global || c.RiskyPrepare || c.Executes {
			sc = &c
		}
		if touches && c.Trailing {
			// A string refused as dynamic SQL says so rather than this.
			if !p.allowDynamic && mentionsDynamic(sql) {
				if _, usedCatalog, err := p.plan(ctx, database, sql, lex, touches); err != nil {
					return nil, usedCatalog, err
				}
			}
			return nil, false, &sqlplan.Refusal{SQLState: sqlplan.StateFeatureNotSupported, Reason: "a statement changing sql_mode or the client character set cannot be " +
				"followed by a statement on an encrypted table in the same query string"}
		}
	}
	plan, usedCatalog, err := p.plan(ctx, database, sql, lex, touches)
	if err != nil || sc == nil {
		return plan, usedCatalog, err
	}
	cp := *plan
	cp.Session = sc
	return &cp, usedCatalog, nil
}

// sameInOtherModes checks, for a session whose sql_mode is assumed rather
// than read, that sql means the same under NO_BACKSLASH_ESCAPES and
// ANSI_QUOTES (the modes that move string boundaries) as under the assumed
// mode, so that a server configured with them would not read a value the
// parser missed.
func (p *Planner) sameInOtherModes(ctx context.Context, database, sql, norm string, lex Lex, out *Plan, edited bool) error {
	alt := lex
	if strings.ContainsRune(norm, '\\') {
		alt.Mode |= mysql.ModeNoBackslashEscapes
	}
	if strings.ContainsRune(norm, '"') {
		alt.Mode |= mysql.ModeANSIQuotes
	}
	if alt.Mode == lex.Mode {
		return nil
	}
	refusal := &sqlplan.Refusal{SQLState: sqlplan.StateFeatureNotSupported, Reason: "the statement reads differently with NO_BACKSLASH_ESCAPES or ANSI_QUOTES, and the " +
		"server's sql_mode is not known (no catalog connection): use '' to quote quotes, or SET sql_mode first"}
	norm2, err := normalize(sql, alt)
	if err != nil {
		return refusal
	}
	ps := parser.New()
	ps.SetSQLMode(alt.Mode)
	stmts2, _, err := ps.Parse(norm2, "", "")
	if err != nil {
		return refusal
	}
	out2, _, edited2, _, err := p.analyzeStmts(ctx, database, stmts2, format.DefaultRestoreFlags)
	if err != nil {
		return err
	}
	if edited2 != edited || len(out2.Slots) != len(out.Slots) || len(out2.Params) != len(out.Params) ||
		out2.Statements != out.Statements {
		return refusal
	}
	return nil
}

// mentionsUse reports whether a string that does not parse may hold a USE
// statement (a word USE anywhere).
func mentionsUse(norm string) bool {
	for i := 0; i+3 <= len(norm); i++ {
		if hasFold(norm, i, "use") && (i == 0 || wordEnd(norm, i-1) == i-1) && wordEnd(norm, i) == i+3 {
			return true
		}
	}
	return false
}

func (p *Planner) analyzeStmts(ctx context.Context, database string, stmts []ast.StmtNode, restore format.RestoreFlags) (out *Plan, texts []string, edited, usedCatalog bool, err error) {
	out = &Plan{Statements: len(stmts)}
	db := database
	for _, st := range stmts {
		a := &analyzer{p: p, ctx: ctx, db: db, plan: out}
		if u, ok := st.(*ast.UseStmt); ok {
			db = u.DBName
			out.Use, out.HasUse = db, true
			texts = append(texts, stmtText(st))
			continue
		}
		if a.guard(st, p.rel.load()); a.err != nil {
			return nil, nil, false, false, a.err
		}
		if err := a.statement(st); err != nil {
			return nil, nil, false, a.usedCatalog, err
		}
		usedCatalog = usedCatalog || a.usedCatalog
		if a.encrypted {
			out.Encrypted = true
		}
		if isDDL(st) {
			out.DDL = true
		}
		if len(a.repl) == 0 && !a.pinned {
			texts = append(texts, stmtText(st))
			continue
		}
		edited = true
		st.Accept(&replacer{repl: a.repl})
		var sb strings.Builder
		if err := st.Restore(format.NewRestoreCtx(restore, &sb)); err != nil {
			return nil, nil, false, usedCatalog, &sqlplan.Refusal{SQLState: sqlplan.StateInternal, Reason: "the statement could not be rewritten"}
		}
		texts = append(texts, sb.String())
	}
	return out, texts, edited, usedCatalog, nil
}

// isDDL reports whether st may change the columns of a table.
func isDDL(st ast.StmtNode) bool {
	switch st.(type) {
	case *ast.CreateTableStmt, *ast.AlterTableStmt, *ast.DropTableStmt, *ast.RenameTableStmt,
		*ast.CreateDatabaseStmt, *ast.DropDatabaseStmt, *ast.CreateViewStmt:
		return true
	}
	return false
}

func stmtText(st ast.StmtNode) string {
	return strings.TrimRight(strings.TrimSpace(st.Text()), "; \t\r\n")
}

func normaliseParams(ps []sqlplan.Param) []sqlplan.Param {
	for i := range ps {
		if ps[i].Role == sqlplan.RoleInvalid {
			ps[i].Role = sqlplan.RolePlain
		}
	}
	return ps
}

func refusef(col *rules.ColumnRule, format string, args ...any) *sqlplan.Refusal {
	name := ""
	if col != nil {
		name = col.String()
	}
	return &sqlplan.Refusal{SQLState: sqlplan.StateFeatureNotSupported, Column: name, Reason: fmt.Sprintf(format, args...)}
}
