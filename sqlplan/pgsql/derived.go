package pgsql

import (
	"slices"
	"strings"

	"github.com/dbproxy/dbproxy/rules"
)

// DerivedKind says how a relation is derived from an encrypted table.
type DerivedKind uint8

const (
	derivedInvalid DerivedKind = iota
	// DerivedView: a view or materialized view that reads an encrypted
	// column (or a whole row) of the table, directly or through other
	// derived relations.
	DerivedView
	// DerivedChild: an inheritance child or partition of the table (rows
	// inserted into it appear in the table).
	DerivedChild
	// DerivedParent: an inheritance parent or partitioned table above the
	// table (rows written through it land in the table).
	DerivedParent
	// DerivedNamesake: a relation with the table's name in another schema.
	// Not refused (name resolution handles it); part of the set only so
	// that its appearance purges cached plans.
	DerivedNamesake
)

// DerivedRelation is a relation of the database that is not configured
// but whose rows are, or reach, an encrypted table's (see [Planner.SetDerived]).
type DerivedRelation struct {
	// Schema and Name as pg_catalog holds them; Schema is "pg_temp" for
	// any temporary schema.
	Schema, Name string
	Kind         DerivedKind
	// BaseSchema and BaseTable name the configured table it derives from.
	BaseSchema, BaseTable string
}

// Derived is an immutable set of derived relations with the pre-filter of
// their names. A nil *Derived is empty.
type Derived struct {
	byName  map[string][]derivedRel
	needles *rules.Needles
	key     string // canonical text of the set, to detect changes
}

type derivedRel struct {
	schema string
	kind   DerivedKind
	base   *rules.TableRule
}

func (d *Derived) mayTouch(text string) bool {
	return d != nil && d.needles.MayTouch(text)
}

// lookup returns the derived relation schema.name, if any.
func (d *Derived) lookup(schema, name string) (derivedRel, bool) {
	if d == nil {
		return derivedRel{}, false
	}
	for _, r := range d.byName[name] {
		if r.schema == schema && r.kind != DerivedNamesake {
			return r, true
		}
	}
	return derivedRel{}, false
}

// named reports whether some derived relation (of any schema) is called
// name.
func (d *Derived) named(name string) bool {
	if d == nil {
		return false
	}
	return slices.ContainsFunc(d.byName[name], func(r derivedRel) bool { return r.kind != DerivedNamesake })
}

// SetDerived replaces the set of relations derived from encrypted tables,
// as the wire layer's catalog finds them (pg_inherits, pg_depend on view
// rules, recursively). When the set changes, cached plans are dropped.
//
// A statement that names a derived relation is refused (checkDerived in
// ddl_code.go), except one that is itself configured with every
// encrypted column of its base table under an interchangeable rule
// (partitions configured like their parent, say), and DROP, GRANT and the ALTER TABLE commands that
// undo the derivation. Their names join the pre-filter, so statements
// naming them are planned. Safe for concurrent use with Plan.
func (p *Planner) SetDerived(rels []DerivedRelation) {
	d := &Derived{byName: map[string][]derivedRel{}}
	var names []string
	var key strings.Builder
	rels = slices.Clone(rels)
	slices.SortFunc(rels, func(x, y DerivedRelation) int {
		return strings.Compare(x.Schema+"\x00"+x.Name+"\x00"+x.BaseSchema+"\x00"+x.BaseTable, y.Schema+"\x00"+y.Name+"\x00"+y.BaseSchema+"\x00"+y.BaseTable)
	})
	for _, r := range rels {
		base := p.rules.Table(p.database, r.BaseSchema, r.BaseTable)
		if base == nil || r.Kind == derivedInvalid || r.Kind > DerivedNamesake {
			continue
		}
		if r.Kind != DerivedNamesake && covers(p.rules.Table(p.database, r.Schema, r.Name), base) {
			continue
		}
		d.byName[r.Name] = append(d.byName[r.Name], derivedRel{schema: r.Schema, kind: r.Kind, base: base})
		if r.Kind != DerivedNamesake {
			names = append(names, r.Name)
		}
		key.WriteString(r.Schema + "\x00" + r.Name + "\x00" + string(rune('0'+r.Kind)) + "\x00" + base.String() + "\x01")
	}
	d.key = key.String()
	d.needles = rules.NewNeedles(rules.DialectPostgres, names)
	old := p.derived.Load()
	if old != nil && old.key == d.key {
		return
	}
	if old == nil && d.key == "" {
		p.derived.Store(d)
		return
	}
	p.derived.Store(d)
	p.Purge()
}

// Derived returns the current set of derived relations (nil: none set
// yet). A caller that keeps a statement forwarded without a plan can
// compare it later to see whether the pre-filter may now answer otherwise.
func (p *Planner) Derived() *Derived { return p.derived.Load() }

// covers reports whether rule t configures every encrypted column of
// base with an interchangeable rule (then t's own rules protect it).
func covers(t, base *rules.TableRule) bool {
	if t == nil {
		return false
	}
	for _, c := range base.Columns {
		if !rules.Interchangeable(t.Column(c.Column), c) {
			return false
		}
	}
	return true
}

// describe says what r is, for refusals.
func (r derivedRel) describe(schema, name string) string {
	rel := name
	if schema != "" {
		rel = schema + "." + name
	}
	switch r.kind {
	case DerivedView:
		return "relation " + rel + " is a view over encrypted table " + r.base.String() + "; query the table"
	case DerivedChild:
		return "relation " + rel + " is a partition/child of encrypted table " + r.base.String() + "; rows written to it would bypass the rules, use the table"
	case DerivedParent:
		return "relation " + rel + " is a parent/partitioned table of encrypted table " + r.base.String() + "; rows written through it would bypass the rules, use the table"
	}
	return "relation " + rel + " is derived from encrypted table " + r.base.String()
}
