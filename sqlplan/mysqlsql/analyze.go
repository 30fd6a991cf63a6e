package mysqlsql

import (
	"context"
	"fmt"
	"sort"
	"strings"

	"github.com/pingcap/tidb/pkg/parser/ast"
	driver "github.com/pingcap/tidb/pkg/parser/test_driver"

	"github.com/dbproxy/dbproxy/rules"
	"github.com/dbproxy/dbproxy/sqlplan"
)

// tableRef is one table named in a statement.
type tableRef struct {
	alias string // AS name, or the table name
	name  string
	rule  *rules.TableRule
}

type reasonEntry struct {
	n ast.Node
	r string
}

// analyzer walks one statement.
type analyzer struct {
	p           *Planner
	ctx         context.Context
	db          string
	plan        *Plan
	tables      []tableRef
	repl        map[ast.Node]ast.ExprNode
	params      map[*driver.ParamMarkerExpr]int
	encrypted   bool
	usedCatalog bool
	pinned      bool // a column list from the catalog was written into the statement
	err         *sqlplan.Refusal
	reasons     []reasonEntry
	aliases     map[string]*rules.ColumnRule // select-list aliases of encrypted columns
}

func (a *analyzer) refuse(r *sqlplan.Refusal) {
	if a.err == nil {
		a.err = r
	}
}

func (a *analyzer) statement(st ast.StmtNode) error {
	a.numberParams(st)
	// Every table the statement names, in any clause.
	tc := &tableCollector{a: a}
	st.Accept(tc)
	if a.err != nil {
		return a.err
	}
	for _, t := range a.tables {
		if t.rule != nil {
			a.encrypted = true
		}
	}
	if !a.encrypted {
		if !knownStatement(st) && a.p.rules.MayTouch(st.Text()) {
			a.refuse(&sqlplan.Refusal{SQLState: sqlplan.StateFeatureNotSupported, Reason: fmt.Sprintf("%s statements that name an encrypted table are not supported", stmtName(st))})
			return a.err
		}
		a.setPlain()
		return nil
	}
	a.repl = map[ast.Node]ast.ExprNode{}
	st.Accept(&aliasCollector{a: a})
	if a.err != nil {
		return a.err
	}
	st.Accept(&unattributed{a: a})
	if a.err != nil {
		return a.err
	}
	a.encryptedStatement(st)
	if a.err != nil {
		return a.err
	}
	a.setPlain()
	if len(a.repl) > 0 || a.pinned {
		// Plain placeholders become slots too, so that the server's
		// parameter order is known whatever order the restore writes.
		for m, i := range a.params {
			if a.plan.Params[i].Role == sqlplan.RolePlain {
				a.addParamSlot(m, i)
			}
		}
	}
	return nil
}

// numberParams numbers the placeholders in text order.
func (a *analyzer) numberParams(st ast.StmtNode) {
	pc := &nodesOf[*driver.ParamMarkerExpr]{}
	st.Accept(pc)
	sort.Slice(pc.list, func(i, j int) bool { return pc.list[i].Offset < pc.list[j].Offset })
	a.params = map[*driver.ParamMarkerExpr]int{}
	base := len(a.plan.Params)
	for i, m := range pc.list {
		a.params[m] = base + i
		a.plan.Params = append(a.plan.Params, sqlplan.Param{})
	}
}

// encryptedStatement analyzes a statement that names a table with
// encrypted columns, by kind; a refusal is left in a.err.
func (a *analyzer) encryptedStatement(st ast.StmtNode) {
	switch s := st.(type) {
	case *ast.InsertStmt:
		a.insert(s)
	case *ast.LoadDataStmt:
		a.refuse(&sqlplan.Refusal{SQLState: sqlplan.StateFeatureNotSupported, Table: a.tables[0].rule.String(), Reason: "LOAD DATA into a table with encrypted columns is not supported"})
	case *ast.ExplainStmt:
		if ins, ok := s.Stmt.(*ast.InsertStmt); ok {
			a.insert(ins)
		} else {
			st.Accept(a)
		}
	case *ast.SelectStmt, *ast.SetOprStmt, *ast.UpdateStmt, *ast.DeleteStmt,
		*ast.CreateViewStmt, *ast.SetStmt, *ast.DoStmt:
		if sel, ok := s.(*ast.SelectStmt); ok && sel.SelectIntoOpt != nil {
			if col := a.copiedEncrypted(sel); col != "" {
				a.refuse(&sqlplan.Refusal{SQLState: sqlplan.StateFeatureNotSupported, Column: col, Reason: "SELECT … INTO OUTFILE would write its ciphertext to a file on the server; read it through the proxy instead"})
				break
			}
		}
		st.Accept(a)
	case *ast.CreateTableStmt:
		a.ddlDefaults(a.resolveTable(s.Table.Schema.O, s.Table.Name.O), s)
		if s.Select != nil {
			if col := a.copiedEncrypted(s.Select); col != "" {
				a.refuse(&sqlplan.Refusal{SQLState: sqlplan.StateFeatureNotSupported, Column: col, Reason: "CREATE TABLE … SELECT would copy its ciphertext into a table without encryption rules"})
				break
			}
			st.Accept(a)
		}
	case *ast.AlterTableStmt:
		a.ddlDefaults(a.resolveTable(s.Table.Schema.O, s.Table.Name.O), s)
	case *ast.DropTableStmt, *ast.TruncateTableStmt, *ast.CreateIndexStmt,
		*ast.DropIndexStmt, *ast.ShowStmt, *ast.AnalyzeTableStmt, *ast.RenameTableStmt,
		*ast.LockTablesStmt, *ast.UnlockTablesStmt, *ast.FlushStmt:
		// No values bound for encrypted columns.
	default:
		a.refuse(&sqlplan.Refusal{SQLState: sqlplan.StateFeatureNotSupported, Table: a.firstEncrypted(), Reason: fmt.Sprintf("%s statements on encrypted tables are not supported", stmtName(st))})
	}
}

// knownStatement reports whether the table collector sees every table st
// can write to (no SQL text hidden in strings, no stored program bodies).
func knownStatement(st ast.StmtNode) bool {
	switch st.(type) {
	case *ast.SelectStmt, *ast.SetOprStmt, *ast.InsertStmt, *ast.UpdateStmt, *ast.DeleteStmt,
		*ast.ExplainStmt, *ast.LoadDataStmt, *ast.CreateTableStmt, *ast.AlterTableStmt, *ast.DropTableStmt,
		*ast.TruncateTableStmt, *ast.CreateIndexStmt, *ast.DropIndexStmt, *ast.ShowStmt, *ast.SetStmt,
		*ast.BeginStmt, *ast.CommitStmt, *ast.RollbackStmt, *ast.CreateDatabaseStmt, *ast.DropDatabaseStmt,
		*ast.CreateViewStmt, *ast.RenameTableStmt, *ast.AnalyzeTableStmt, *ast.DoStmt:
		return true
	}
	return false
}

func stmtName(st ast.StmtNode) string {
	s := fmt.Sprintf("%T", st)
	s = strings.TrimPrefix(s, "*ast.")
	return strings.TrimSuffix(s, "Stmt")
}

func (a *analyzer) firstEncrypted() string {
	for _, t := range a.tables {
		if t.rule != nil {
			return t.rule.String()
		}
	}
	return ""
}

func (a *analyzer) setPlain() {
	for _, i := range a.params {
		if a.plan.Params[i].Role == sqlplan.RoleInvalid {
			a.plan.Params[i].Role = sqlplan.RolePlain
		}
	}
}

func (a *analyzer) addSlot(n ast.Node, s Slot) ast.ExprNode {
	idx := len(a.plan.Slots)
	a.plan.Slots = append(a.plan.Slots, s)
	m := marker(idx)
	if n != nil {
		a.repl[n] = m
	}
	return m
}

func (a *analyzer) addParamSlot(m *driver.ParamMarkerExpr, i int) {
	if _, done := a.repl[m]; done {
		return
	}
	a.addSlot(m, Slot{Kind: SlotParam, Param: i})
}

func (a *analyzer) setRole(m *driver.ParamMarkerExpr, role sqlplan.Role, col *rules.ColumnRule) {
	i, ok := a.params[m]
	if !ok {
		a.refuse(&sqlplan.Refusal{SQLState: sqlplan.StateInternal, Column: col.String(), Reason: "internal: unnumbered placeholder"})
		return
	}
	a.plan.Params[i] = sqlplan.Param{Role: role, Column: col}
	a.addParamSlot(m, i)
}

// resolveTable finds the rule of a table reference.
func (a *analyzer) resolveTable(schema, name string) *rules.TableRule {
	if schema != "" {
		return a.p.rules.Table(schema, "", name)
	}
	if a.db == "" || a.db == UnknownDatabase {
		if a.p.rules.HasTableNamed(name) {
			a.refuse(&sqlplan.Refusal{SQLState: sqlplan.StateFeatureNotSupported, Table: name, Reason: "no current database is known for an unqualified encrypted table name; qualify it or USE a database"})
		}
		return nil
	}
	return a.p.rules.Table(a.db, "", name)
}

// column resolves a column reference to its rule (nil: not encrypted).
func (a *analyzer) column(cn *ast.ColumnName) *rules.ColumnRule {
	name := cn.Name.O
	if cn.Table.O != "" {
		for _, t := range a.tables {
			if strings.EqualFold(t.alias, cn.Table.O) || (cn.Schema.O == "" && strings.EqualFold(t.name, cn.Table.O)) {
				return t.rule.Column(name)
			}
		}
		if cn.Schema.O != "" {
			if r := a.resolveTable(cn.Schema.O, cn.Table.O); r != nil {
				return r.Column(name)
			}
		}
		// A derived table or CTE alias: refuse if the name could be
		// an encrypted column carried through it.
		if c := a.aliases[strings.ToLower(name)]; c != nil {
			return c
		}
		if a.anyEncryptedNamed(name) != nil {
			a.refuse(&sqlplan.Refusal{SQLState: sqlplan.StateFeatureNotSupported, Column: cn.Table.O + "." + name, Reason: "cannot tell whether this column is encrypted"})
		}
		return nil
	}
	var found *rules.ColumnRule
	for _, t := range a.tables {
		if c := t.rule.Column(name); c != nil {
			if found != nil && found != c {
				a.refuse(&sqlplan.Refusal{SQLState: sqlplan.StateAmbiguousColumn, Column: name, Reason: "ambiguous reference to encrypted columns of several tables"})
				return found
			}
			found = c
		}
	}
	if found == nil {
		found = a.aliases[strings.ToLower(name)]
	}
	return found
}

func (a *analyzer) anyEncryptedNamed(name string) *rules.ColumnRule {
	for _, t := range a.tables {
		if c := t.rule.Column(name); c != nil {
			return c
		}
	}
	return nil
}

func (a *analyzer) colExpr(e ast.ExprNode) *rules.ColumnRule {
	c, ok := unparen(e).(*ast.ColumnNameExpr)
	if !ok {
		return nil
	}
	return a.column(c.Name)
}

// copiedEncrypted names an encrypted column (or table) whose ciphertext
// the SELECT of an INSERT … SELECT or CREATE TABLE … SELECT would copy into
// the new rows: a select-list entry that is a plain reference to one, a
// wildcard in a statement on an encrypted table, or (failing closed) a
// select list the proxy does not follow — a UNION or a subquery — in such
// a statement. "" if none. Other expressions over encrypted columns are
// refused by the normal analysis.
func (a *analyzer) copiedEncrypted(rs ast.ResultSetNode) string {
	enc := a.firstEncrypted()
	if enc == "" {
		return ""
	}
	sel, ok := rs.(*ast.SelectStmt)
	if !ok || sel.Fields == nil {
		return enc
	}
	for _, f := range sel.Fields.Fields {
		if f.WildCard != nil {
			return enc
		}
		if col := a.colExpr(f.Expr); col != nil {
			return col.String()
		}
		if hasSubquery(f.Expr) {
			return enc
		}
	}
	return ""
}

// hasSubquery reports whether e contains a subquery.
func hasSubquery(e ast.ExprNode) bool {
	v := &subqueryFinder{}
	e.Accept(v)
	return v.found
}

type subqueryFinder struct{ found bool }

func (v *subqueryFinder) Enter(n ast.Node) (ast.Node, bool) {
	if _, ok := n.(*ast.SubqueryExpr); ok {
		v.found = true
	}
	return n, v.found
}

func (v *subqueryFinder) Leave(n ast.Node) (ast.Node, bool) { return n, true }

// insert handles INSERT and REPLACE.
func (a *analyzer) insert(s *ast.InsertStmt) {
	var target *rules.TableRule
	var tname string
	if s.Table != nil && s.Table.TableRefs != nil {
		if ts, ok := s.Table.TableRefs.Left.(*ast.TableSource); ok {
			if tn, ok := ts.Source.(*ast.TableName); ok {
				target, tname = a.resolveTable(tn.Schema.O, tn.Name.O), tn.Name.O
			}
		}
	}
	if a.err != nil {
		return
	}
	if target == nil {
		// Inserting into a plaintext table, possibly from an encrypted
		// one: the general rules apply to every expression, and no
		// ciphertext may be copied into it.
		if s.Select != nil {
			if col := a.copiedEncrypted(s.Select); col != "" {
				a.refuse(&sqlplan.Refusal{SQLState: sqlplan.StateFeatureNotSupported, Column: col, Reason: "INSERT … SELECT would copy its ciphertext into a table without encryption rules"})
				return
			}
		}
		s.Accept(a)
		return
	}
	var cols []string
	for _, c := range s.Columns {
		cols = append(cols, c.Name.O)
	}
	if len(cols) == 0 && (len(s.Lists) > 0 || s.Select != nil) {
		if cols = a.catalogColumns(s, target, tname); cols == nil {
			return
		}
	}
	colRules := make([]*rules.ColumnRule, len(cols))
	anyEnc := false
	for i, c := range cols {
		colRules[i] = target.Column(c)
		anyEnc = anyEnc || colRules[i] != nil
	}
	if s.Select != nil {
		if anyEnc {
			a.refuse(&sqlplan.Refusal{SQLState: sqlplan.StateFeatureNotSupported, Column: firstRule(colRules).String(), Reason: "INSERT … SELECT into an encrypted column is not supported"})
			return
		}
		if col := a.copiedEncrypted(s.Select); col != "" {
			a.refuse(&sqlplan.Refusal{SQLState: sqlplan.StateDatatypeMismatch, Column: col, Reason: "INSERT … SELECT would copy its ciphertext into a plaintext column"})
			return
		}
		s.Select.Accept(a)
	}
	for _, row := range s.Lists {
		if len(row) != len(cols) {
			a.refuse(&sqlplan.Refusal{SQLState: sqlplan.StateSyntaxError, Table: target.String(), Reason: "the VALUES row does not match the column list"})
			return
		}
		for i, e := range row {
			if colRules[i] == nil {
				e.Accept(a)
				continue
			}
			a.store(colRules[i], e)
		}
	}
	for _, asg := range s.OnDuplicate {
		asg.Accept(a)
	}
}

// catalogColumns returns the column order of the target of an INSERT
// without a column list and pins it into the statement, so that the
// values go to the columns the proxy encrypted them for even if the table
// changes later (the server rejects the statement rather than shifting a
// value into another column). nil: refused.
func (a *analyzer) catalogColumns(s *ast.InsertStmt, target *rules.TableRule, tname string) []string {
	if a.p.catalog == nil {
		a.refuse(&sqlplan.Refusal{SQLState: sqlplan.StateFeatureNotSupported, Table: target.String(), Reason: "INSERT without a column list into a table with encrypted columns needs a catalog connection for the column order " +
			"(none is configured: set the listener's catalog.user and catalog.password_env, or DBPROXY_MYSQL_CATALOG_USER and DBPROXY_MYSQL_CATALOG_PASSWORD); or name the columns"})
		return nil
	}
	a.usedCatalog = true
	tn := s.Table.TableRefs.Left.(*ast.TableSource).Source.(*ast.TableName)
	db := a.db
	if tn.Schema.O != "" {
		db = tn.Schema.O
	}
	cols, cached, err := a.p.columns(a.ctx, db, tname, false)
	if err == nil && cached && !rowsMatch(s.Lists, len(cols)) {
		// The table may have changed behind the proxy's back: ask again.
		cols, _, err = a.p.columns(a.ctx, db, tname, true)
	}
	if err != nil {
		a.refuse(&sqlplan.Refusal{SQLState: sqlplan.StateFeatureNotSupported, Table: target.String(), Reason: "cannot read the table's column order from the catalog: name the columns", Cause: err})
		return nil
	}
	if len(cols) == 0 {
		a.refuse(&sqlplan.Refusal{SQLState: sqlplan.StateFeatureNotSupported, Table: target.String(), Reason: "the catalog does not know the table's columns: name the columns"})
		return nil
	}
	s.Columns = make([]*ast.ColumnName, len(cols))
	for i, c := range cols {
		s.Columns[i] = &ast.ColumnName{Name: ast.NewCIStr(c)}
	}
	a.pinned = true
	return cols
}

func rowsMatch(rows [][]ast.ExprNode, n int) bool {
	for _, r := range rows {
		if len(r) != n {
			return false
		}
	}
	return true
}

func firstRule(cs []*rules.ColumnRule) *rules.ColumnRule {
	for _, c := range cs {
		if c != nil {
			return c
		}
	}
	return nil
}

// store handles a value bound for encrypted column col.
func (a *analyzer) store(col *rules.ColumnRule, e ast.ExprNode) {
	if m, ok := param(e); ok {
		a.setRole(m, sqlplan.RoleStore, col)
		return
	}
	lit, ok := literal(e)
	if !ok {
		a.refuse(refusef(col, "only a literal, a placeholder or NULL can be stored in an encrypted column"))
		return
	}
	if lit.Null {
		a.keyless(col, nil)
		return
	}
	a.addSlot(e, Slot{Kind: SlotStore, Column: col, Literal: lit})
}

// keyless records a write to the encrypted column col that uses no key:
// NULL (from nil) or a copy of column from (Plan.Keyless).
func (a *analyzer) keyless(col, from *rules.ColumnRule) {
	a.plan.Keyless = append(a.plan.Keyless, sqlplan.KeylessWrite{Column: col, From: from})
}

// ddlDefaults refuses DEFAULT, ON UPDATE and generated expressions for
// encrypted columns of table t: they would store a plaintext.
func (a *analyzer) ddlDefaults(t *rules.TableRule, st ast.Node) {
	if t == nil {
		return
	}
	st.Accept(&ddlVisitor{a: a, t: t})
}

type ddlVisitor struct {
	a *analyzer
	t *rules.TableRule
}

func (v *ddlVisitor) Enter(n ast.Node) (ast.Node, bool) {
	cd, ok := n.(*ast.ColumnDef)
	if !ok || cd.Name == nil {
		return n, false
	}
	col := v.t.Column(cd.Name.Name.O)
	if col == nil {
		return n, true
	}
	for _, o := range cd.Options {
		// Any option carrying an expression (DEFAULT, ON UPDATE,
		// generated; ALTER COLUMN … SET DEFAULT has type 0).
		if o.Expr == nil {
			continue
		}
		if lit, ok := literal(o.Expr); ok && lit.Null {
			continue
		}
		v.a.refuse(refusef(col, "a DEFAULT, ON UPDATE or generated value for an encrypted column is not supported"))
	}
	return n, true
}

func (v *ddlVisitor) Leave(n ast.Node) (ast.Node, bool) { return n, true }
