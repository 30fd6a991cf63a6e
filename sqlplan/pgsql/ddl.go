package pgsql

import (
	"strings"

	pg "github.com/pganalyze/pg_query_go/v6"

	"github.com/dbproxy/dbproxy/rules"
	"github.com/dbproxy/dbproxy/sqlplan"
)

// This file, ddl_alter.go and ddl_code.go refuse DDL that would route
// plaintext around the rules: the statements after which a value bound
// for an encrypted column could reach the database without the proxy
// seeing it bound for that column.
//
//   - Renaming an encrypted table or column, or moving the table to another
//     schema: later statements would name it by a name without rules.
//   - Creating (CREATE [TEMP] TABLE, VIEW, MATERIALIZED VIEW, FOREIGN
//     TABLE, TABLE AS, SELECT INTO), renaming or moving a relation to an
//     encrypted table's name outside the rule's schema: it would shadow the
//     table on some search_path, and the proxy would encrypt for one table
//     while the server writes another (inside a transaction the catalog
//     connection cannot even see it yet). Renaming a relation to the name
//     of an encrypted table is refused in every schema.
//   - Inheritance and partitioning with an encrypted table (INHERITS,
//     PARTITION OF, ATTACH PARTITION, ALTER … INHERIT) and LIKE / OF of
//     one: rows written through the other relation land in, or copy the
//     shape of, the encrypted table without its rules.
//   - Triggers and rules on an encrypted table (their code sets columns
//     from other values), and rules whose actions name one.
//   - Views and materialized views that read an encrypted table.
//   - DO blocks and functions or procedures that can build SQL at run time
//     that never spells a table's name — PL/pgSQL with EXECUTE, bodies
//     calling functions that run SQL text, any language but sql and
//     plpgsql — unless Options.AllowDynamicSQL; and, whatever the opt-in,
//     bodies naming an encrypted or derived relation.
//   - Subscriptions and IMPORT FOREIGN SCHEMA without a LIMIT TO list of
//     other names (rows or relations arrive without the proxy).
//
// The pre-filter sends these statements here even when they name no
// encrypted table (hasPlanKeyword). DROP of an encrypted column or table
// is allowed: it removes ciphertext and stores nothing.

// guardDDL refuses n if it is DDL of the kinds above. text is the
// statement's text.
func (a *analyzer) guardDDL(n *pg.Node, text string) error {
	switch v := n.GetNode().(type) {
	case *pg.Node_DoStmt:
		lang, body := "plpgsql", ""
		for _, o := range v.DoStmt.Args {
			switch de := o.GetDefElem(); de.GetDefname() {
			case "language":
				lang = strings.ToLower(de.Arg.GetString_().GetSval())
			case "as":
				body = de.Arg.GetString_().GetSval()
			}
		}
		return a.guardCode("DO block", lang, text, []string{body})
	case *pg.Node_CreateFunctionStmt:
		return a.guardFunction(v.CreateFunctionStmt, text)
	case *pg.Node_CreateStmt:
		return a.guardCreate(v.CreateStmt, "CREATE TABLE")
	case *pg.Node_CreateForeignTableStmt:
		return a.guardCreate(v.CreateForeignTableStmt.BaseStmt, "CREATE FOREIGN TABLE")
	case *pg.Node_ViewStmt:
		return a.newRelation(v.ViewStmt.View, "CREATE VIEW")
	case *pg.Node_CreateTableAsStmt:
		if v.CreateTableAsStmt.Into != nil {
			what := "CREATE TABLE AS"
			if v.CreateTableAsStmt.Objtype == pg.ObjectType_OBJECT_MATVIEW {
				what = "CREATE MATERIALIZED VIEW"
			}
			return a.newRelation(v.CreateTableAsStmt.Into.Rel, what)
		}
	case *pg.Node_SelectStmt:
		if v.SelectStmt.IntoClause != nil {
			return a.newRelation(v.SelectStmt.IntoClause.Rel, "SELECT INTO")
		}
	case *pg.Node_ExplainStmt:
		if v.ExplainStmt.Query != nil {
			return a.guardDDL(v.ExplainStmt.Query, text)
		}
	case *pg.Node_RenameStmt:
		return a.guardRename(v.RenameStmt)
	case *pg.Node_AlterObjectSchemaStmt:
		return a.guardSetSchema(v.AlterObjectSchemaStmt)
	case *pg.Node_AlterTableStmt:
		return a.guardAlterTable(v.AlterTableStmt)
	case *pg.Node_CreateTrigStmt:
		if t := a.encryptedNamed(v.CreateTrigStmt.Relation); t != nil {
			return refuse(nil, sqlplan.StateFeatureNotSupported,
				"a trigger on encrypted table %s could set its columns from values the proxy does not see bound for them", t)
		}
	case *pg.Node_RuleStmt:
		if t := a.encryptedNamed(v.RuleStmt.Relation); t != nil {
			return refuse(nil, sqlplan.StateFeatureNotSupported,
				"a rule on encrypted table %s could write values the proxy does not see bound for its columns", t)
		}
		if a.p.touches(text) {
			return refuse(nil, sqlplan.StateFeatureNotSupported,
				"a rule whose actions name an encrypted table would write values the proxy does not see bound for its columns")
		}
	case *pg.Node_ImportForeignSchemaStmt:
		return a.guardImport(v.ImportForeignSchemaStmt)
	case *pg.Node_CreateSubscriptionStmt, *pg.Node_AlterSubscriptionStmt:
		return refuse(nil, sqlplan.StateFeatureNotSupported,
			"a subscription replicates rows into tables without the proxy, so plaintext could reach an encrypted table")
	}
	return nil
}

// isGuardedStmt reports the statements guardDDL must see even when their
// text names no encrypted or derived relation.
func isGuardedStmt(n *pg.Node) bool {
	switch v := n.GetNode().(type) {
	case *pg.Node_DoStmt, *pg.Node_CreateFunctionStmt, *pg.Node_CreateStmt, *pg.Node_CreateForeignTableStmt,
		*pg.Node_ViewStmt, *pg.Node_CreateTableAsStmt, *pg.Node_RenameStmt, *pg.Node_AlterObjectSchemaStmt,
		*pg.Node_AlterTableStmt, *pg.Node_CreateTrigStmt, *pg.Node_RuleStmt, *pg.Node_ImportForeignSchemaStmt,
		*pg.Node_CreateSubscriptionStmt, *pg.Node_AlterSubscriptionStmt:
		return true
	case *pg.Node_SelectStmt:
		return v.SelectStmt.IntoClause != nil
	case *pg.Node_ExplainStmt:
		return v.ExplainStmt.Query != nil && isGuardedStmt(v.ExplainStmt.Query)
	}
	return false
}

// encryptedNamed returns the rule of the encrypted table rv may denote:
// the exact rule when rv is schema-qualified, else the first rule for its
// name in any schema (conservative: the name may resolve to it on some
// search_path), nil when none.
func (a *analyzer) encryptedNamed(rv *pg.RangeVar) *rules.TableRule {
	if trs := a.tableRulesNamed(rv); len(trs) > 0 {
		return trs[0]
	}
	return nil
}

// namesake returns the first rule for a table called name, in any schema.
func (a *analyzer) namesake(name string) *rules.TableRule {
	if trs := a.p.rules.TablesNamed(nil, name); len(trs) > 0 {
		return trs[0]
	}
	return nil
}

// newRelation refuses creating relation rv when it has an encrypted
// table's name outside that table's schema (or is temporary).
func (a *analyzer) newRelation(rv *pg.RangeVar, what string) error {
	if rv == nil {
		return nil
	}
	t := a.namesake(rv.Relname)
	if t == nil {
		return nil
	}
	schema := rv.Schemaname
	switch {
	case rv.Relpersistence == "t":
		schema = "pg_temp"
	case schema == "":
		a.noCache = true
		s, err := a.p.catalog.CreationSchema(a.ctx, a.searchPath)
		if err != nil {
			return err
		}
		if s == "" {
			return nil // the server reports that no schema was selected
		}
		schema = s
	}
	if a.p.rules.Table(a.p.database, schema, rv.Relname) != nil {
		return nil
	}
	return refuse(nil, sqlplan.StateFeatureNotSupported,
		"%s of %s.%s would shadow encrypted table %s on a search_path (the proxy would encrypt for one relation while the server writes the other); use another name",
		what, schema, rv.Relname, t)
}

// guardCreate checks CREATE [FOREIGN] TABLE: its name, and inheritance,
// partitioning, LIKE and OF of an encrypted table.
func (a *analyzer) guardCreate(cs *pg.CreateStmt, what string) error {
	if cs == nil {
		return nil
	}
	if err := a.newRelation(cs.Relation, what); err != nil {
		return err
	}
	// A table configured with every encrypted column of the other one is
	// an encrypted table in its own right: it may inherit from, be a
	// partition of, or copy the shape of, that one.
	self, err := a.ruleOf(cs.Relation, true)
	if err != nil {
		return err
	}
	for _, n := range cs.InhRelations {
		if t := a.encryptedNamed(n.GetRangeVar()); t != nil && !covers(self, t) {
			if cs.Partbound != nil {
				return refuse(nil, sqlplan.StateFeatureNotSupported,
					"a partition of encrypted table %s would take rows the proxy does not encrypt; configure the partitioned table and create partitions directly", t)
			}
			return refuse(nil, sqlplan.StateFeatureNotSupported,
				"a table inheriting from encrypted table %s would take rows the proxy does not encrypt, and they would appear in %s", t, t)
		}
	}
	for _, el := range cs.TableElts {
		if lc := el.GetTableLikeClause(); lc != nil {
			if t := a.encryptedNamed(lc.Relation); t != nil && !covers(self, t) {
				return refuse(nil, sqlplan.StateFeatureNotSupported,
					"CREATE TABLE … (LIKE %s) makes a table shaped like an encrypted table whose values would not be encrypted", t)
			}
		}
	}
	if tn := cs.OfTypename; tn != nil {
		if names, ok := stringList(tn.Names); ok && len(names) > 0 {
			if t := a.namesake(names[len(names)-1]); t != nil && !covers(self, t) {
				return refuse(nil, sqlplan.StateFeatureNotSupported,
					"CREATE TABLE … OF the row type of encrypted table %s makes a table whose values would not be encrypted", t)
			}
		}
	}
	return nil
}
