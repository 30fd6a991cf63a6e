package pgsql

import (
	"strings"

	pg "github.com/pganalyze/pg_query_go/v6"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/dbproxy/dbproxy/rules"
)

// This file refuses DDL that would route plaintext around the rules: the
// statements after which a value bound for an encrypted column could reach
// the database without the proxy seeing it bound for that column.
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
			return refuse(nil, StateFeatureNotSupported,
				"a trigger on encrypted table %s could set its columns from values the proxy does not see bound for them", t)
		}
	case *pg.Node_RuleStmt:
		if t := a.encryptedNamed(v.RuleStmt.Relation); t != nil {
			return refuse(nil, StateFeatureNotSupported,
				"a rule on encrypted table %s could write values the proxy does not see bound for its columns", t)
		}
		if a.p.touches(text) {
			return refuse(nil, StateFeatureNotSupported,
				"a rule whose actions name an encrypted table would write values the proxy does not see bound for its columns")
		}
	case *pg.Node_ImportForeignSchemaStmt:
		return a.guardImport(v.ImportForeignSchemaStmt)
	case *pg.Node_CreateSubscriptionStmt, *pg.Node_AlterSubscriptionStmt:
		return refuse(nil, StateFeatureNotSupported,
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
	return refuse(nil, StateFeatureNotSupported,
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
				return refuse(nil, StateFeatureNotSupported,
					"a partition of encrypted table %s would take rows the proxy does not encrypt; configure the partitioned table and create partitions directly", t)
			}
			return refuse(nil, StateFeatureNotSupported,
				"a table inheriting from encrypted table %s would take rows the proxy does not encrypt, and they would appear in %s", t, t)
		}
	}
	for _, el := range cs.TableElts {
		if lc := el.GetTableLikeClause(); lc != nil {
			if t := a.encryptedNamed(lc.Relation); t != nil && !covers(self, t) {
				return refuse(nil, StateFeatureNotSupported,
					"CREATE TABLE … (LIKE %s) makes a table shaped like an encrypted table whose values would not be encrypted", t)
			}
		}
	}
	if tn := cs.OfTypename; tn != nil {
		if names, ok := stringList(tn.Names); ok && len(names) > 0 {
			if t := a.namesake(names[len(names)-1]); t != nil && !covers(self, t) {
				return refuse(nil, StateFeatureNotSupported,
					"CREATE TABLE … OF the row type of encrypted table %s makes a table whose values would not be encrypted", t)
			}
		}
	}
	return nil
}

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
			return refuse(nil, StateFeatureNotSupported,
				"renaming encrypted table %s would leave its rows under a name without encryption rules", t)
		}
		if t := a.namesake(rs.Newname); t != nil {
			return refuse(nil, StateFeatureNotSupported,
				"renaming a relation to %s, the name of encrypted table %s, would shadow it or take its place with unencrypted values", rs.Newname, t)
		}
	case rs.RenameType == pg.ObjectType_OBJECT_COLUMN, rs.RenameType == pg.ObjectType_OBJECT_ATTRIBUTE:
		trs := a.tableRulesNamed(rs.Relation)
		if c := configuredColumn(trs, rs.Subname); c != nil {
			return refuse(c, StateFeatureNotSupported,
				"renaming an encrypted column would let values be written to it under a name without encryption rules")
		}
		if c := configuredColumn(trs, rs.Newname); c != nil {
			return refuse(c, StateFeatureNotSupported,
				"renaming a column to the name of an encrypted column would put unencrypted values under its rule")
		}
	case rs.RenameType == pg.ObjectType_OBJECT_SCHEMA:
		for _, t := range a.p.rules.Tables() {
			if t.Schema == rs.Subname || t.Schema == rs.Newname {
				return refuse(nil, StateFeatureNotSupported,
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
		return refuse(nil, StateFeatureNotSupported,
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
	if pt := a.encryptedNamed(parent); pt != nil {
		cr, err := a.ruleOf(child, false)
		if err != nil {
			return err
		}
		if pr, err := a.ruleOf(parent, false); err != nil {
			return err
		} else if pr != nil {
			pt = pr
		}
		if !covers(cr, pt) {
			if partition {
				return refuse(nil, StateFeatureNotSupported,
					"attaching a partition to encrypted table %s would add rows the proxy did not encrypt (configure the partition like the table)", pt)
			}
			return refuse(nil, StateFeatureNotSupported,
				"a table inheriting from encrypted table %s would take rows the proxy does not encrypt, and they would appear in %s", pt, pt)
		}
	}
	if ct := a.encryptedNamed(child); ct != nil {
		pr, err := a.ruleOf(parent, false)
		if err != nil {
			return err
		}
		if cr, err := a.ruleOf(child, false); err != nil {
			return err
		} else if cr != nil {
			ct = cr
		}
		if !covers(pr, ct) {
			if partition {
				return refuse(nil, StateFeatureNotSupported,
					"encrypted table %s cannot become a partition: writes through the partitioned table would bypass its rules (configure that table like it)", ct)
			}
			return refuse(nil, StateFeatureNotSupported,
				"encrypted table %s cannot become an inheritance child: writes through the parent would bypass its rules", ct)
		}
	}
	return nil
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
				return refuse(nil, StateFeatureNotSupported, "IMPORT FOREIGN SCHEMA of a table named like encrypted table %s would shadow it", t)
			}
		}
		return nil
	}
	return refuse(nil, StateFeatureNotSupported,
		"IMPORT FOREIGN SCHEMA without LIMIT TO may create a relation named like an encrypted table; list the tables")
}

// guardFunction refuses CREATE FUNCTION/PROCEDURE in languages other than
// sql unless dynamic SQL is allowed, and sql bodies naming an encrypted or
// derived relation (in the statement text, or in the body string once its
// escapes are decoded).
func (a *analyzer) guardFunction(f *pg.CreateFunctionStmt, text string) error {
	what := "CREATE FUNCTION"
	if f.IsProcedure {
		what = "CREATE PROCEDURE"
	}
	lang := ""
	var bodies []string
	for _, o := range f.Options {
		de := o.GetDefElem()
		if de == nil {
			continue
		}
		switch de.Defname {
		case "language":
			lang = strings.ToLower(de.Arg.GetString_().GetSval())
		case "as":
			if s := de.Arg.GetString_(); s != nil {
				bodies = append(bodies, s.Sval)
			}
			for _, it := range de.Arg.GetList().GetItems() {
				bodies = append(bodies, it.GetString_().GetSval())
			}
		}
	}
	if lang == "" && f.SqlBody != nil {
		lang = "sql"
	}
	return a.guardCode(what, lang, text, bodies)
}

// guardCode decides about code the server runs later or elsewhere: a DO
// block or a function body. SQL and PL/pgSQL code without dynamic SQL can
// reach a table only by spelling its name, so it is allowed unless it
// names an encrypted or derived relation (refused whatever the opt-in: it
// would read or write the table without the proxy). PL/pgSQL EXECUTE,
// functions that run SQL text, and every other language can build SQL at
// run time: refused unless dynamic SQL is allowed.
func (a *analyzer) guardCode(what, lang, text string, bodies []string) error {
	switch lang {
	case "sql", "plpgsql":
	case "":
		lang = "an unspecified language"
		fallthrough
	default:
		if !a.p.dynamic {
			return refuse(nil, StateInsufficientPrivilege,
				"%s in %s can run SQL built at run time, which the proxy cannot see (allow_dynamic_sql is off on this listener)", what, lang)
		}
		return nil
	}
	touched := a.p.touches(text)
	for _, b := range bodies {
		touched = touched || a.p.touches(b)
		if a.p.dynamic {
			continue
		}
		if hasSQLRunner(b) {
			return refuse(nil, StateInsufficientPrivilege,
				"%s whose body calls a function that runs SQL text (query_to_xml, ts_stat, dblink, …), which the proxy cannot see (allow_dynamic_sql is off on this listener)", what)
		}
		if lang == "plpgsql" && hasWordFold(b, "execute") {
			return refuse(nil, StateInsufficientPrivilege,
				"%s with EXECUTE runs SQL built at run time, which the proxy cannot see (allow_dynamic_sql is off on this listener)", what)
		}
	}
	if touched {
		return refuse(nil, StateFeatureNotSupported,
			"%s whose body names an encrypted table (or a relation derived from one) would read or write it without the proxy; run the statements directly", what)
	}
	return nil
}

// hasWordFold reports whether text contains word (lower case) as a whole
// word in any ASCII case.
func hasWordFold(text, word string) bool {
	for i := 0; i+len(word) <= len(text); i++ {
		if i > 0 && rules.IdentByte(text[i-1]) {
			continue
		}
		if !rules.HasPrefixFold(text[i:], word) {
			continue
		}
		if j := i + len(word); j == len(text) || !rules.IdentByte(text[j]) {
			return true
		}
	}
	return false
}

// checkDerived refuses a statement that names a relation derived from an
// encrypted table (Derived), except DROP, GRANT/REVOKE and ALTER TABLE …
// NO INHERIT / DETACH PARTITION, which undo or do not use the derivation.
func (a *analyzer) checkDerived(n *pg.Node, d *Derived) error {
	switch v := n.GetNode().(type) {
	case *pg.Node_DropStmt, *pg.Node_GrantStmt:
		return nil
	case *pg.Node_AlterTableStmt:
		undo := len(v.AlterTableStmt.Cmds) > 0
		for _, c := range v.AlterTableStmt.Cmds {
			switch c.GetAlterTableCmd().GetSubtype() {
			case pg.AlterTableType_AT_DropInherit, pg.AlterTableType_AT_DetachPartition, pg.AlterTableType_AT_DetachPartitionFinalize:
			default:
				undo = false
			}
		}
		if undo {
			return nil
		}
	}
	var err error
	walkRangeVars(n.ProtoReflect(), func(rv *pg.RangeVar) bool {
		if err != nil || !d.named(rv.Relname) {
			return err == nil
		}
		schema := rv.Schemaname
		if schema == "" {
			a.noCache = true
			if schema, err = a.resolveSchema(rv.Relname); err != nil {
				return false
			}
		} else if strings.HasPrefix(schema, "pg_temp") {
			schema = "pg_temp"
		}
		if r, ok := d.lookup(schema, rv.Relname); ok {
			err = refuse(nil, StateFeatureNotSupported, "%s", r.describe(schema, rv.Relname))
			return false
		}
		return true
	})
	return err
}

// walkRangeVars calls fn for every RangeVar under m, wherever it sits
// (FROM items, INSERT/UPDATE/DELETE/COPY targets, DDL relations); fn
// returns false to stop.
func walkRangeVars(m protoreflect.Message, fn func(*pg.RangeVar) bool) bool {
	ok := true
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		if fd.Message() == nil || fd.IsMap() {
			return true
		}
		visit := func(cm protoreflect.Message) bool {
			if rv, isRV := cm.Interface().(*pg.RangeVar); isRV {
				return fn(rv)
			}
			return walkRangeVars(cm, fn)
		}
		if fd.IsList() {
			l := v.List()
			for i := 0; i < l.Len(); i++ {
				if !visit(l.Get(i).Message()) {
					ok = false
					return false
				}
			}
		} else if !visit(v.Message()) {
			ok = false
			return false
		}
		return true
	})
	return ok
}

// sqlRunners are server functions that run SQL text given as an argument:
// the text can reach an encrypted table without spelling its name (and
// carries its values in clear). Matched by prefix, so query_to_xml covers
// query_to_xmlschema and query_to_xml_and_xmlschema, dblink every dblink_*
// function.
var sqlRunners = [...]string{"query_to_xml", "ts_stat", "ts_rewrite", "dblink"}

// sqlRunnerAt reports whether s starts with the name of a sqlRunner, in
// any ASCII case.
func sqlRunnerAt(s string) bool {
	for _, w := range sqlRunners {
		if rules.HasPrefixFold(s, w) {
			return true
		}
	}
	return false
}

// hasSQLRunner reports whether text mentions a sqlRunner.
func hasSQLRunner(text string) bool {
	for i := 0; i+2 <= len(text); i++ {
		switch uint16(text[i]|0x20)<<8 | uint16(text[i+1]|0x20) {
		case 'q'<<8 | 'u', 't'<<8 | 's', 'd'<<8 | 'b':
			if sqlRunnerAt(text[i:]) {
				return true
			}
		}
	}
	return false
}

// guardSQLRunners refuses calls of sqlRunners in n unless dynamic SQL is
// allowed. (ts_rewrite with two arguments, of which the second is a query,
// and the other functions always run their text.)
func (a *analyzer) guardSQLRunners(n *pg.Node) error {
	if a.p.dynamic {
		return nil
	}
	var err error
	walkNodes(n.ProtoReflect(), func(c *pg.Node) bool {
		fc := c.GetFuncCall()
		if fc == nil || err != nil {
			return err == nil
		}
		names, _ := stringList(fc.Funcname)
		if len(names) == 0 {
			return true
		}
		name := strings.ToLower(names[len(names)-1])
		for _, w := range sqlRunners {
			if strings.HasPrefix(name, w) && (w != "ts_rewrite" || len(fc.Args) == 2) {
				err = refuse(nil, StateInsufficientPrivilege,
					"%s runs SQL text, which the proxy cannot see (allow_dynamic_sql is off on this listener)", name)
				return false
			}
		}
		return true
	})
	return err
}
