package pgsql

import (
	pg "github.com/pganalyze/pg_query_go/v6"

	"github.com/dbproxy/dbproxy/rules"
	"github.com/dbproxy/dbproxy/sqlplan"
)

// relationObject reports whether an object type is a relation that
// statements can read or write by name.
// (PostgreSQL lets ALTER TABLE and, for RENAME, ALTER INDEX act on any
// kind of relation.)
func relationObject(t pg.ObjectType) bool {
	switch t {
	case pg.ObjectType_OBJECT_TABLE, pg.ObjectType_OBJECT_VIEW, pg.ObjectType_OBJECT_MATVIEW,
		pg.ObjectType_OBJECT_FOREIGN_TABLE, pg.ObjectType_OBJECT_INDEX, pg.ObjectType_OBJECT_SEQUENCE:
		return true
	}
	return false
}

// guardRename refuses renaming encrypted tables, columns and schemas, and
// renaming anything to an encrypted table's or column's name.
func (a *analyzer) guardRename(rs *pg.RenameStmt) error {
	switch {
	case relationObject(rs.RenameType):
		if t := a.encryptedNamed(rs.Relation); t != nil {
			return refuse(nil, sqlplan.StateFeatureNotSupported,
				"renaming encrypted table %s would leave its rows under a name without encryption rules", t)
		}
		if t := a.namesake(rs.Newname); t != nil {
			return refuse(nil, sqlplan.StateFeatureNotSupported,
				"renaming a relation to %s, the name of encrypted table %s, would shadow it or take its place with unencrypted values", rs.Newname, t)
		}
	case rs.RenameType == pg.ObjectType_OBJECT_COLUMN, rs.RenameType == pg.ObjectType_OBJECT_ATTRIBUTE:
		trs := a.tableRulesNamed(rs.Relation)
		if c := configuredColumn(trs, rs.Subname); c != nil {
			return refuse(c, sqlplan.StateFeatureNotSupported,
				"renaming an encrypted column would let values be written to it under a name without encryption rules")
		}
		if c := configuredColumn(trs, rs.Newname); c != nil {
			return refuse(c, sqlplan.StateFeatureNotSupported,
				"renaming a column to the name of an encrypted column would put unencrypted values under its rule")
		}
	case rs.RenameType == pg.ObjectType_OBJECT_SCHEMA:
		for _, t := range a.p.rules.Tables() {
			if t.Schema == rs.Subname || t.Schema == rs.Newname {
				return refuse(nil, sqlplan.StateFeatureNotSupported,
					"renaming schema %s would move encrypted table %s out from under its rules, or put other tables under them", rs.Subname, t)
			}
		}
	}
	return nil
}

// guardSetSchema refuses ALTER … SET SCHEMA of a relation named like an
// encrypted table (the table itself, or a namesake that would shadow or
// replace it).
func (a *analyzer) guardSetSchema(s *pg.AlterObjectSchemaStmt) error {
	if !relationObject(s.ObjectType) || s.Relation == nil {
		return nil
	}
	if t := a.namesake(s.Relation.Relname); t != nil {
		return refuse(nil, sqlplan.StateFeatureNotSupported,
			"moving relation %s to schema %s would take encrypted table %s out from under its rules, or shadow it", s.Relation.Relname, s.Newschema, t)
	}
	return nil
}

// guardAlterTable refuses ALTER TABLE … INHERIT and ATTACH PARTITION that
// link a table to an encrypted one (the column commands are checked by
// alterTable).
func (a *analyzer) guardAlterTable(at *pg.AlterTableStmt) error {
	for _, n := range at.Cmds {
		cmd := n.GetAlterTableCmd()
		if cmd == nil {
			continue
		}
		switch cmd.Subtype {
		case pg.AlterTableType_AT_AddInherit:
			if err := a.link(at.Relation, cmd.Def.GetRangeVar(), false); err != nil {
				return err
			}
		case pg.AlterTableType_AT_AttachPartition:
			if err := a.link(cmd.Def.GetPartitionCmd().GetName(), at.Relation, true); err != nil {
				return err
			}
		case pg.AlterTableType_AT_AlterColumnType:
			trs := a.tableRulesNamed(at.Relation)
			if cd := cmd.Def.GetColumnDef(); cd != nil && len(trs) > 0 && configuredColumn(trs, cmd.Name) == nil {
				// (A change of an encrypted column's own type is refused
				// by alterTable.)
				if c := refsConfigured(cd.RawDefault, trs); c != nil {
					return unsupported(c, "a USING expression over an encrypted column would compute on ciphertext")
				}
			}
		}
	}
	return nil
}

// link refuses making child an inheritance child (or, with partition, a
// partition) of parent when either is an encrypted table, unless the
// other is configured with every encrypted column of it (then both are
// encrypted tables and rows moving between them stay encrypted).
func (a *analyzer) link(child, parent *pg.RangeVar, partition bool) error {
	for _, side := range []struct {
		enc, other             *pg.RangeVar
		partition, inheritance string // refusal formats, of the encrypted table
	}{
		{parent, child,
			"attaching a partition to encrypted table %s would add rows the proxy did not encrypt (configure the partition like the table)",
			"a table inheriting from encrypted table %[1]s would take rows the proxy does not encrypt, and they would appear in %[1]s"},
		{child, parent,
			"encrypted table %s cannot become a partition: writes through the partitioned table would bypass its rules (configure that table like it)",
			"encrypted table %s cannot become an inheritance child: writes through the parent would bypass its rules"},
	} {
		t, err := a.uncovered(side.enc, side.other)
		if err != nil {
			return err
		}
		if t != nil {
			format := side.inheritance
			if partition {
				format = side.partition
			}
			return refuse(nil, sqlplan.StateFeatureNotSupported, format, t)
		}
	}
	return nil
}

// uncovered returns the rules of enc when it is an encrypted table and
// other is not configured with every encrypted column of it; nil when enc
// is not encrypted or other covers it.
func (a *analyzer) uncovered(enc, other *pg.RangeVar) (*rules.TableRule, error) {
	t := a.encryptedNamed(enc)
	if t == nil {
		return nil, nil
	}
	or, err := a.ruleOf(other, false)
	if err != nil {
		return nil, err
	}
	if r, err := a.ruleOf(enc, false); err != nil {
		return nil, err
	} else if r != nil {
		t = r
	}
	if covers(or, t) {
		return nil, nil
	}
	return t, nil
}

// ruleOf returns the rule configured for relation rv: of its schema when
// qualified, else of the schema the unqualified name resolves to (an
// existing relation) or is created in (creating). Temporary relations
// have no rules.
func (a *analyzer) ruleOf(rv *pg.RangeVar, creating bool) (*rules.TableRule, error) {
	if rv == nil || rv.Relpersistence == "t" || a.namesake(rv.Relname) == nil {
		return nil, nil
	}
	schema := rv.Schemaname
	if schema == "" {
		a.noCache = true
		var err error
		if creating {
			schema, err = a.p.catalog.CreationSchema(a.ctx, a.searchPath)
		} else {
			schema, err = a.resolveSchema(rv.Relname)
		}
		if err != nil {
			return nil, err
		}
	}
	return a.p.rules.Table(a.p.database, schema, rv.Relname), nil
}

// guardImport refuses IMPORT FOREIGN SCHEMA unless it is limited to a list
// of tables none of which is named like an encrypted table.
func (a *analyzer) guardImport(s *pg.ImportForeignSchemaStmt) error {
	if s.ListType == pg.ImportForeignSchemaType_FDW_IMPORT_SCHEMA_LIMIT_TO {
		for _, n := range s.TableList {
			if t := a.namesake(n.GetRangeVar().GetRelname()); t != nil {
				return refuse(nil, sqlplan.StateFeatureNotSupported, "IMPORT FOREIGN SCHEMA of a table named like encrypted table %s would shadow it", t)
			}
		}
		return nil
	}
	return refuse(nil, sqlplan.StateFeatureNotSupported,
		"IMPORT FOREIGN SCHEMA without LIMIT TO may create a relation named like an encrypted table; list the tables")
}
