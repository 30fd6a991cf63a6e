package mysqlsql

import (
	"context"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pingcap/tidb/pkg/parser"
	"github.com/pingcap/tidb/pkg/parser/ast"

	"github.com/dbproxy/dbproxy/internal/blocking"
	"github.com/dbproxy/dbproxy/rules"
)

// View is a view the server has, as information_schema.VIEWS shows it.
type View struct {
	Database, Name string
	// Definition is VIEW_DEFINITION; "" when the catalog user may not see
	// it (such a view counts as reading an encrypted table).
	Definition string
}

// Trigger is a trigger the server has (information_schema.TRIGGERS).
type Trigger struct {
	Database, Name string
	// Table is the table it fires on (EVENT_OBJECT_SCHEMA/_TABLE).
	TableDatabase, Table string
	// Statement is its body (ACTION_STATEMENT).
	Statement string
}

// Relations is what the server has besides tables that can read or write
// an encrypted table without naming it.
type Relations struct {
	Views    []View
	Triggers []Trigger
}

// RelationSource reads the server's views and triggers. The wire layer
// implements it over information_schema (mycrypt.Catalog). The Planner
// calls it without the session's cancellation (the answer serves every
// session), so it must bound its own time; calls are serialised.
type RelationSource interface {
	Relations(ctx context.Context) (Relations, error)
}

const defaultRelationsMaxAge = 10 * time.Second

// viewSet is a snapshot of the views that read an encrypted table.
type viewSet struct {
	read time.Time
	// base maps db.name (lower case) of each such view to the encrypted
	// table (or view) it reads, for messages.
	base map[string]string
	// filter is the pre-filter of the view names (whole words).
	filter *rules.Needles
}

// lookup returns the encrypted table view db.name reads, if it is such a
// view. An unknown database matches a view of that name in any database.
func (v *viewSet) lookup(db, name string) (string, bool) {
	if v == nil || len(v.base) == 0 {
		return "", false
	}
	name = strings.ToLower(name)
	if db == "" || db == UnknownDatabase {
		for k, b := range v.base {
			if i := strings.LastIndexByte(k, '.'); i >= 0 && k[i+1:] == name {
				return b, true
			}
		}
		return "", false
	}
	b, ok := v.base[strings.ToLower(db)+"."+name]
	return b, ok
}

// relations keeps the viewSet fresh.
type relations struct {
	src     RelationSource
	maxAge  time.Duration
	onError func(error)
	rules   *rules.Set

	parsed map[string]parsedDef // guarded by mu

	cur   atomic.Pointer[viewSet]
	stale atomic.Bool
	mu    sync.Mutex // one refresh at a time
	// changed is called with the new snapshot when the set of views
	// differs from the last one (the planner drops its cached plans).
	changed func()
}

// current returns the snapshot, reading the catalog first if it is older
// than maxAge or was marked stale (while one statement reads it, others use
// the last snapshot; only the first read makes them wait). nil without a
// source.
func (r *relations) current(ctx context.Context) *viewSet {
	if r == nil {
		return nil
	}
	v := r.cur.Load()
	if v != nil && !r.stale.Load() && time.Since(v.read) < r.maxAge {
		return v
	}
	if !r.mu.TryLock() {
		if v != nil {
			// Another statement is reading the list: use the last one
			// rather than wait (the bound stretches by one read).
			return v
		}
		blocking.Announce(ctx) // the first read: wait for it
		r.mu.Lock()
	}
	defer r.mu.Unlock()
	v = r.cur.Load()
	if v != nil && !r.stale.Load() && time.Since(v.read) < r.maxAge {
		return v // another caller refreshed it
	}
	r.stale.Store(false)
	// The list serves every session: a session that goes away while it
	// is being read must not cut the read short.
	blocking.Announce(ctx)
	rel, err := r.src.Relations(context.WithoutCancel(ctx))
	if err != nil {
		if r.onError != nil {
			r.onError(err)
		}
		// Keep the last list, and ask again after maxAge.
		nv := &viewSet{read: time.Now()}
		if v != nil {
			nv.base, nv.filter = v.base, v.filter
		}
		r.cur.Store(nv)
		return nv
	}
	nv, parsed := buildViewSet(r.rules, rel.Views, r.parsed)
	r.parsed = parsed
	if v == nil || !sameKeys(v.base, nv.base) {
		if r.changed != nil {
			r.changed()
		}
	}
	r.cur.Store(nv)
	return nv
}

// load returns the snapshot without refreshing it.
func (r *relations) load() *viewSet {
	if r == nil {
		return nil
	}
	return r.cur.Load()
}

func sameKeys(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k := range a {
		if _, ok := b[k]; !ok {
			return false
		}
	}
	return true
}

// parsedDef is what a view definition names: its tables as (database,
// name), the database "" when unqualified; ok false if it did not parse.
type parsedDef struct {
	tables [][2]string
	ok     bool
}

// buildViewSet finds the views that read an encrypted table, directly or
// through other views: a definition that names one (it is parsed to tell
// `users` from `users_archive`), that cannot be parsed while it may name
// one or such a view, or that the catalog user cannot see. parsed caches
// the definitions parsed by the last call (definitions rarely change); the
// returned map replaces it.
func buildViewSet(set *rules.Set, views []View, parsed map[string]parsedDef) (*viewSet, map[string]parsedDef) {
	vs := &viewSet{read: time.Now(), base: map[string]string{}}
	defs, next := parseDefinitions(views, parsed)
	for i, v := range views {
		if b, ok := readsEncrypted(set, v, defs[i]); ok {
			vs.base[viewKey(v.Database, v.Name)] = b
		}
	}
	// Views over those views, until nothing changes.
	for addViewsOver(vs.base, views, defs) {
	}
	vs.filter = viewFilter(vs.base)
	return vs, next
}

func viewKey(db, name string) string { return strings.ToLower(db) + "." + strings.ToLower(name) }

// parseDefinitions returns what each view's definition names, parsing
// those not in parsed, and the cache for the next call.
func parseDefinitions(views []View, parsed map[string]parsedDef) ([]parsedDef, map[string]parsedDef) {
	defs := make([]parsedDef, len(views))
	next := make(map[string]parsedDef, len(views))
	var ps *parser.Parser
	for i, v := range views {
		if v.Definition == "" {
			continue
		}
		d, ok := parsed[v.Definition]
		if !ok {
			if ps == nil {
				ps = parser.New()
			}
			d = parseDefinition(ps, v.Definition)
		}
		next[v.Definition] = d
		defs[i] = d
	}
	return defs, next
}

func parseDefinition(ps *parser.Parser, def string) parsedDef {
	stmts, _, err := ps.Parse(def, "", "")
	if err != nil {
		return parsedDef{}
	}
	d := parsedDef{ok: true}
	tc := &nodesOf[*ast.TableName]{}
	for _, st := range stmts {
		st.Accept(tc)
	}
	for _, tn := range tc.list {
		d.tables = append(d.tables, [2]string{tn.Schema.O, tn.Name.O})
	}
	return d
}

// readsEncrypted reports whether view v (definition d) reads an encrypted
// table directly, and which, for messages.
func readsEncrypted(set *rules.Set, v View, d parsedDef) (string, bool) {
	switch {
	case v.Definition == "":
		return "(a definition the catalog user cannot read)", true
	case !d.ok:
		return "(a definition the proxy cannot parse)", set.MayTouch(v.Definition)
	}
	for _, tn := range d.tables {
		if set.Table(defaultDB(tn[0], v.Database), "", tn[1]) != nil {
			return tn[1], true
		}
	}
	return "", false
}

// addViewsOver adds to base the views that read one already in it, and
// reports whether it added any.
func addViewsOver(base map[string]string, views []View, defs []parsedDef) bool {
	changed := false
	filter := viewFilter(base)
	for i, v := range views {
		k := viewKey(v.Database, v.Name)
		if _, ok := base[k]; ok {
			continue
		}
		if !defs[i].ok {
			// Unparsed: any mention of such a view counts.
			if filter.MayTouch(v.Definition) {
				base[k] = "(a definition the proxy cannot parse)"
				changed = true
			}
			continue
		}
		for _, tn := range defs[i].tables {
			if b, ok := base[viewKey(defaultDB(tn[0], v.Database), tn[1])]; ok {
				base[k] = b
				changed = true
				break
			}
		}
	}
	return changed
}

// defaultDB is db, or the view's own database for an unqualified name.
func defaultDB(db, viewDB string) string {
	if db == "" {
		return viewDB
	}
	return db
}

// viewFilter is the pre-filter of the views' names (base's keys are
// db.name): a statement it rejects names none of them.
func viewFilter(base map[string]string) *rules.Needles {
	names := make([]string, 0, len(base))
	for k := range base {
		names = append(names, k[strings.LastIndexByte(k, '.')+1:])
	}
	return rules.NewWordNeedles(rules.DialectMySQL, names)
}
