package config

import (
	"fmt"
	"strings"

	"github.com/dbproxy/dbproxy/value"
)

// The encryption: section: table rules, their columns and data key names.

// tableKey identifies a table rule for duplicate detection (case folded).
type tableKey struct{ schema, table string }

type tableRules struct {
	first string            // path of the first rule for this table
	anyDB string            // path of the rule without a database, if any
	byDB  map[string]string // folded database -> path
}

// keyUse is the first column seen using a data key.
type keyUse struct {
	path  string
	label string
	typ   value.Type
	mode  Mode
}

func (d *decoder) encryption(c *Config) {
	mysqlOnly := len(c.Listeners) > 0
	for _, l := range c.Listeners {
		if l.Protocol != ProtocolMySQL {
			mysqlOnly = false
		}
	}
	tables := map[tableKey]*tableRules{}
	keys := map[string]keyUse{}
	for i := range c.Encryption {
		t := &c.Encryption[i]
		tp := fmt.Sprintf("encryption[%d]", i)

		d.identifier(tp+".table", t.Table, "table", "required: the table name")
		schemaSet := t.Schema != ""
		if schemaSet {
			d.identifier(tp+".schema", t.Schema, "schema", "")
		} else {
			t.Schema = DefaultSchema
		}
		if t.Table != "" {
			d.uniqueTable(tables, t, tp)
		}

		if !d.isSet(tp + ".columns") {
			d.errf(tp+".columns", "required: the list of encrypted columns")
		} else if len(t.Columns) == 0 {
			d.errf(tp+".columns", "must list at least one column")
		}
		names := map[string]string{}
		for j := range t.Columns {
			cp := fmt.Sprintf("%s.columns[%d]", tp, j)
			d.column(t, &t.Columns[j], cp, names, keys, mysqlOnly && !schemaSet)
		}
	}
}

// uniqueTable reports a second rule for the same table: in the same
// database, or overlapping a rule for every database.
func (d *decoder) uniqueTable(tables map[tableKey]*tableRules, t *Table, tp string) {
	k := tableKey{strings.ToLower(t.Schema), strings.ToLower(t.Table)}
	r := tables[k]
	if r == nil {
		r = &tableRules{byDB: map[string]string{}}
		tables[k] = r
	}
	label := t.Schema + "." + t.Table
	db := strings.ToLower(t.Database)
	switch {
	case t.Database == "" && r.first != "":
		d.errf(tp+".table", "duplicate rule for table %s (also %s); a rule without database applies to every database", clip(label), r.first)
	case t.Database != "" && r.byDB[db] != "":
		d.errf(tp+".table", "duplicate rule for table %s in database %s (also %s)", clip(label), clip(t.Database), r.byDB[db])
	case t.Database != "" && r.anyDB != "":
		d.errf(tp+".table", "rule for table %s in database %s overlaps %s, which applies to every database", clip(label), clip(t.Database), r.anyDB)
	}
	if r.first == "" {
		r.first = tp
	}
	if t.Database == "" && r.anyDB == "" {
		r.anyDB = tp
	}
	if t.Database != "" && r.byDB[db] == "" {
		r.byDB[db] = tp
	}
}

// column checks one encrypted column at path cp: a name unique in its table
// (names), mode, type and data key name (defaulting to schema.table.column,
// or table.column when tableKeyNames), and that a key shared by several
// columns (keys) has one type and mode.
func (d *decoder) column(t *Table, col *Column, cp string, names map[string]string, keys map[string]keyUse, tableKeyNames bool) {
	if d.identifier(cp+".name", col.Name, "column", "required: the column name") {
		folded := strings.ToLower(col.Name)
		if prev, dup := names[folded]; dup {
			d.errf(cp+".name", "duplicate column %q in this table (also %s)", clip(col.Name), prev)
		} else {
			names[folded] = cp
		}
	}

	switch col.Mode {
	case "":
		col.Mode = ModeRandomized
	case ModeDeterministic, ModeRandomized:
	default:
		d.errf(cp+".mode", "unknown mode %q: must be deterministic or randomized", clip(string(col.Mode)))
	}

	typ := value.TypeUnknown
	if col.Type == "" {
		d.errf(cp+".type", "required: one of %s", strings.Join(value.TypeNames(), ", "))
	} else if tt, err := value.ParseType(col.Type); err != nil {
		d.errf(cp+".type", "unknown type %q: must be one of %s", clip(col.Type), strings.Join(value.TypeNames(), ", "))
	} else {
		typ = tt
	}

	if col.Key == "" && t.Table != "" && col.Name != "" {
		if tableKeyNames {
			col.Key = t.Table + "." + col.Name
		} else {
			col.Key = t.Schema + "." + t.Table + "." + col.Name
		}
	}
	if col.Key == "" {
		return
	}
	if !validKeyName(col.Key) {
		d.errf(cp+".key", "invalid data key name %q: must be 1 to %d bytes of printable UTF-8", clip(col.Key), maxKeyNameLen)
		return
	}
	if typ == value.TypeUnknown || (col.Mode != ModeDeterministic && col.Mode != ModeRandomized) {
		return
	}
	label := t.Schema + "." + t.Table + "." + col.Name
	use := keyUse{path: cp, label: label, typ: typ, mode: col.Mode}
	first, seen := keys[col.Key]
	if !seen {
		keys[col.Key] = use
		return
	}
	if first.typ != use.typ || first.mode != use.mode {
		d.keyConflict(col.Key, use, first)
		d.keyConflict(col.Key, first, use)
	}
}

// keyConflict reports at column a that it shares data key name with b
// although their type or mode differ.
func (d *decoder) keyConflict(name string, a, b keyUse) {
	d.errf(a.path+".key", "data key %q is also used by %s (column %s, %s %s) but this column is %s %s; columns sharing a key must have the same type and mode",
		clip(name), b.path, clip(b.label), b.mode, b.typ, a.mode, a.typ)
}
