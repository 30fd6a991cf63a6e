package pgsql

import (
	"fmt"
	"iter"
	"slices"
	"strings"

	pg "github.com/pganalyze/pg_query_go/v6"

	"github.com/dbproxy/dbproxy/rules"
	"github.com/dbproxy/dbproxy/sqlplan"
)

// prov is the provenance of a value: the encrypted column whose
// ciphertext it is, and whether RowDescription will report that column as
// the value's origin (a plain column reference through tables, subqueries
// and CTEs: yes; set operations, FULL JOIN … USING, scalar subqueries,
// expressions: no). nil means plaintext.
type prov struct {
	rule      *rules.ColumnRule
	traceable bool
	// inserted: the value of the row being inserted (ON CONFLICT's
	// EXCLUDED), not a stored one.
	inserted bool
}

// col is an output column of a derived table.
type col struct {
	name string
	prov *prov
}

// rel is one range-table entry: a base table (with or without rules) or a
// derived table (subquery, CTE reference, function, VALUES, join).
type rel struct {
	// name qualifies column references: the alias, or the table name.
	name string
	// inserted: ON CONFLICT's EXCLUDED, the row being inserted.
	inserted bool
	// schema of a base table with no alias ("" when not resolved because
	// no rule can apply); schema-qualified references (s.t.c) match it.
	schema string
	table  string // base table name
	base   bool
	rule   *rules.TableRule // base table with encrypted columns
	// resolved: schema is the table's actual schema (so the catalog can be
	// asked for its columns).
	resolved bool

	// cols are the output columns of a derived table, or of a base table
	// whose columns were fetched (column aliases, * expansion). known says
	// whether cols is complete.
	cols  []col
	known bool
	// aliasList are the column aliases of a base table (FROM users AS
	// u(a, b)): they rename its first columns.
	aliasList []string
	// hidden are names merged away by JOIN … USING / NATURAL: an
	// unqualified reference resolves to the merged column instead.
	hidden map[string]bool
	// noQualify: a merged-column entry, reachable only unqualified.
	noQualify bool
}

// scope is one query level's FROM list, plus the CTEs visible there.
type scope struct {
	parent *scope
	rels   []*rel
	ctes   []*cte
}

// cte is a WITH query visible by name.
type cte struct {
	name  string
	cols  []col
	known bool
}

func (sc *scope) child() *scope { return &scope{parent: sc} }

func (sc *scope) findCTE(name string) *cte {
	for s := sc; s != nil; s = s.parent {
		for i := len(s.ctes) - 1; i >= 0; i-- {
			if s.ctes[i].name == name {
				return s.ctes[i]
			}
		}
	}
	return nil
}

// stringList returns the String values of nodes, or ok=false if one is not
// a String (e.g. A_Star).
func stringList(nodes []*pg.Node) ([]string, bool) {
	out := make([]string, 0, len(nodes))
	for _, n := range nodes {
		s, ok := n.GetNode().(*pg.Node_String_)
		if !ok {
			return out, false
		}
		out = append(out, s.String_.Sval)
	}
	return out, true
}

// colProv returns the provenance of column name of r, and whether r is
// known to have (found) or might have (maybe) such a column.
func (a *analyzer) colProv(r *rel, name string) (p *prov, found, maybe bool, err error) {
	p, found, maybe, err = a.relColProv(r, name)
	if r.inserted && p != nil {
		p = &prov{rule: p.rule, traceable: p.traceable, inserted: true}
	}
	return p, found, maybe, err
}

// relColProv is colProv without the marking of EXCLUDED's values.
func (a *analyzer) relColProv(r *rel, name string) (p *prov, found, maybe bool, err error) {
	if !r.base || r.known {
		for _, c := range r.cols {
			if c.name == name {
				return c.prov, true, false, nil
			}
		}
		if c := r.rule.SimilarColumn(name); c != nil && len(r.aliasList) == 0 {
			return nil, false, false, refuse(c, sqlplan.StateInvalidName,
				"column %q matches encrypted column %s only when case is ignored; fix the case in the statement or in the configuration", name, c)
		}
		return nil, false, !r.known, nil
	}
	if len(r.aliasList) > 0 {
		// A plain table with column aliases whose columns were not fetched.
		if slices.Contains(r.aliasList, name) {
			return nil, true, false, nil
		}
		return nil, false, true, nil
	}
	if r.rule != nil {
		if c := r.rule.Column(name); c != nil {
			return &prov{rule: c, traceable: true}, true, false, nil
		}
		if c := r.rule.SimilarColumn(name); c != nil {
			return nil, false, false, refuse(c, sqlplan.StateInvalidName,
				"column %q matches encrypted column %s only when case is ignored; fix the case in the statement or in the configuration", name, c)
		}
	}
	return nil, false, true, nil
}

// resolveColumn resolves a column reference (the String fields of a
// ColumnRef, without a trailing *) in sc. It returns the provenance of the
// value, nil for plaintext.
//
// Qualified references are resolved as PostgreSQL does; a qualifier that
// names no relation in scope fails upstream, and is refused here when the
// column looks encrypted (the failing statement's text would be logged by
// the server). Unqualified ones are resolved conservatively: if the name could be
// an encrypted column of some visible relation and could also be a column
// of another relation at the same or a nearer level (where PostgreSQL might
// pick it instead), the statement is refused as ambiguous, so that no plan
// depends on catalog details that might change under it.
func (a *analyzer) resolveColumn(sc *scope, fields []string) (*prov, error) {
	switch len(fields) {
	case 0:
		return nil, nil
	case 1:
		return a.resolveUnqualified(sc, fields[0])
	}
	colName := fields[len(fields)-1]
	qual := fields[:len(fields)-1]
	if len(qual) == 3 {
		qual = qual[1:] // database.schema.table: the database is the session's
	}
	for s := sc; s != nil; s = s.parent {
		for _, r := range s.rels {
			if r.noQualify || !matchesQualifier(r, qual) {
				continue
			}
			p, _, _, err := a.colProv(r, colName)
			return p, err
		}
	}
	// The qualifier names no relation in scope: PostgreSQL will fail the
	// statement, and log its text. If the reference looks like an
	// encrypted column (a table in scope, or a configured table, has one
	// of that name), refuse rather than let a constant compared with it
	// reach the server log in plaintext.
	for s := sc; s != nil; s = s.parent {
		for _, r := range s.rels {
			if c := r.rule.Column(colName); c != nil {
				return nil, refuse(c, sqlplan.StateUndefinedTable, "reference %s.%s names no relation in scope (use the alias)", strings.Join(qual, "."), colName)
			}
		}
	}
	for _, t := range a.p.rules.TablesNamed(nil, qual[len(qual)-1]) {
		if c := t.Column(colName); c != nil {
			return nil, refuse(c, sqlplan.StateUndefinedTable, "reference %s.%s names no relation in scope", strings.Join(qual, "."), colName)
		}
	}
	return nil, nil
}

func matchesQualifier(r *rel, qual []string) bool {
	switch len(qual) {
	case 1:
		return r.name == qual[0]
	case 2:
		// schema.table: only an unaliased base table.
		return r.base && r.name == r.table && r.table == qual[1] && r.schema == qual[0]
	}
	return false
}

// resolveUnqualified resolves a bare column name; see resolveColumn.
func (a *analyzer) resolveUnqualified(sc *scope, name string) (*prov, error) {
	// Pass 1: is there an encrypted candidate anywhere?
	var enc *prov
	encLevel := 0
	for level, r := range relsSeeing(sc, name, -1) {
		p, _, _, err := a.colProv(r, name)
		if err != nil {
			return nil, err
		}
		if p != nil && p.rule != nil && enc == nil {
			enc, encLevel = p, level
		}
	}
	if enc == nil {
		return nil, nil
	}
	// Pass 2: every other relation at the encrypted candidate's level or
	// nearer must certainly not have the name.
	for _, r := range relsSeeing(sc, name, encLevel) {
		if err := a.notAlsoIn(r, name, enc); err != nil {
			return nil, err
		}
	}
	return enc, nil
}

// relsSeeing yields the relations of sc and of its parents up to maxLevel
// (all of them when negative) that do not hide name, nearest first, with
// their level (0 for sc's own).
func relsSeeing(sc *scope, name string, maxLevel int) iter.Seq2[int, *rel] {
	return func(yield func(int, *rel) bool) {
		level := 0
		for s := sc; s != nil && (maxLevel < 0 || level <= maxLevel); s = s.parent {
			for _, r := range s.rels {
				if !r.hidden[name] && !yield(level, r) {
					return
				}
			}
			level++
		}
	}
}

// notAlsoIn refuses name as ambiguous when r may have a column of that name
// other than the encrypted candidate enc.
func (a *analyzer) notAlsoIn(r *rel, name string, enc *prov) error {
	p, found, maybe, err := a.colProv(r, name)
	if err != nil {
		return err
	}
	if p == enc || (p != nil && p.rule == enc.rule && p.traceable == enc.traceable) {
		return nil
	}
	if maybe && r.base && !r.known {
		if err := a.fetchColumns(r); err != nil {
			return err
		}
		_, found, maybe, err = a.colProv(r, name)
		if err != nil {
			return err
		}
	}
	if !found && !maybe {
		return nil
	}
	what := "another relation"
	if r.name != "" {
		what = fmt.Sprintf("relation %q", r.name)
	}
	return refuse(enc.rule, sqlplan.StateAmbiguousColumn,
		"column reference %q could be the encrypted column or a column of %s; qualify it", name, what)
}

// fetchColumns fills r.cols of a base table from the catalog, applying
// its column aliases.
func (a *analyzer) fetchColumns(r *rel) error {
	if !r.base || r.known {
		return nil
	}
	if !r.resolved {
		schema, err := a.resolveSchema(r.table)
		if err != nil {
			return err
		}
		if schema == "" {
			if r.rule != nil {
				return refuse(nil, sqlplan.StateUndefinedTable, "table %s not found in the catalog", r.rule)
			}
			// No such table: it has no columns PostgreSQL could pick.
			r.known = true
			return nil
		}
		r.schema, r.resolved = schema, true
	}
	names, err := a.p.catalog.Columns(a.ctx, r.schema, r.table)
	if err != nil {
		return fmt.Errorf("columns of table %s.%s: %w", r.schema, r.table, err)
	}
	r.cols = make([]col, 0, len(names))
	for i, n := range names {
		c := col{name: n}
		if cr := r.rule.Column(n); cr != nil {
			c.prov = &prov{rule: cr, traceable: true}
		}
		if i < len(r.aliasList) {
			c.name = r.aliasList[i]
		}
		r.cols = append(r.cols, c)
	}
	r.known = true
	return nil
}

// resolveSchema returns the schema an unqualified table name resolves to
// (via the catalog), or "" if there is no such table.
func (a *analyzer) resolveSchema(table string) (string, error) {
	schema, err := a.p.catalog.Resolve(a.ctx, a.searchPath, table)
	if err != nil {
		return "", fmt.Errorf("resolve table %q in search_path: %w", table, err)
	}
	return schema, nil
}

// baseRel builds the range entry of a table reference. Unqualified names
// that match a rule by name are resolved through the catalog; see the
// package doc ("Name resolution") for the fail-closed rules.
func (a *analyzer) baseRel(rv *pg.RangeVar) (*rel, error) {
	r := &rel{base: true, table: rv.Relname, name: rv.Relname}
	if rv.Alias != nil {
		r.name = rv.Alias.Aliasname
	}
	db := a.p.database
	if rv.Schemaname != "" {
		r.schema, r.resolved = rv.Schemaname, true
		r.rule = a.p.rules.Table(db, r.schema, r.table)
		if r.rule == nil {
			if sim := a.p.rules.Similar(db, r.schema, r.table); sim != nil {
				return nil, refuse(nil, sqlplan.StateInvalidName,
					"table %s.%s matches encrypted table %s only when case is ignored; fix the case in the statement or in the configuration", r.schema, r.table, sim)
			}
		}
	} else if err := a.resolveUnqualifiedTable(r); err != nil {
		return nil, err
	}
	if r.rule != nil {
		a.touched = true
	}
	if rv.Alias != nil && len(rv.Alias.Colnames) > 0 {
		if err := a.applyColumnAliases(r, rv.Alias.Colnames); err != nil {
			return nil, err
		}
	}
	return r, nil
}

func (a *analyzer) resolveUnqualifiedTable(r *rel) error {
	db := a.p.database
	cands := a.p.rules.TablesNamed(nil, r.table)
	similar := false
	if len(cands) == 0 {
		for _, t := range a.p.rules.Tables() {
			if strings.EqualFold(t.Table, r.table) {
				similar = true
			}
		}
		if !similar {
			return nil // no rule can apply: plaintext, no catalog needed
		}
	}
	schema, err := a.resolveSchema(r.table)
	if err != nil {
		return err
	}
	if schema == "" {
		// Not in the catalog (yet, e.g. created earlier in this string):
		// take the first schema of the search path that has a rule.
		for _, s := range a.searchPath {
			if t := a.p.rules.Table(db, s, r.table); t != nil {
				r.schema, r.rule = s, t
				return nil
			}
		}
		if similar {
			return a.similarTable(r.table)
		}
		return nil
	}
	r.schema, r.resolved = schema, true
	r.rule = a.p.rules.Table(db, schema, r.table)
	if r.rule != nil {
		return nil
	}
	if sim := a.p.rules.Similar(db, schema, r.table); sim != nil {
		return a.similarTable(r.table)
	}
	// Resolved to a table without rules. If a schema with a rule for this
	// name is on the search path too, the resolution depends on which
	// tables exist right now (or on $user): refuse rather than risk a
	// cached plaintext plan for the encrypted table.
	for _, t := range cands {
		if slices.Contains(a.searchPath, t.Schema) || slices.Contains(a.searchPath, "$user") {
			return refuse(nil, sqlplan.StateInvalidName,
				"table %q resolves to %s.%s, but %s is encrypted and also on the search_path; schema-qualify the table name", r.table, schema, r.table, t)
		}
	}
	return nil
}

func (a *analyzer) similarTable(name string) error {
	for _, t := range a.p.rules.Tables() {
		if strings.EqualFold(t.Table, name) {
			return refuse(nil, sqlplan.StateInvalidName,
				"table %q matches encrypted table %s only when case is ignored; fix the case in the statement or in the configuration", name, t)
		}
	}
	return nil
}

// applyColumnAliases handles FROM t AS a(x, y): positional renames, which
// need the table's column order when the table has rules.
func (a *analyzer) applyColumnAliases(r *rel, colnames []*pg.Node) error {
	aliases, ok := stringList(colnames)
	if !ok {
		return fmt.Errorf("%w: column alias list", errSpan)
	}
	r.aliasList = aliases
	if r.rule == nil {
		return nil // none of its columns is encrypted; fetch lazily if needed
	}
	return a.fetchColumns(r)
}
