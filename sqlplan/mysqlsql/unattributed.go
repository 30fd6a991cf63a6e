package mysqlsql

import (
	"fmt"
	"strings"

	"github.com/pingcap/tidb/pkg/parser/ast"

	"github.com/dbproxy/dbproxy/sqlplan"
)

// The wire layer decrypts a result column when its column definition's
// schema, org_table and org_name name an encrypted column. MariaDB (10.11;
// integration TestMySQLFailClosedMariaDBOrigins pins it down) does not do so
// through a set operation (org_table empty), a scalar subquery (org_table
// and org_name empty) or a derived table or CTE (the derived table's alias
// as org_table when it is merged; the base table without a schema and the
// alias as org_name when it is materialized, which the optimizer and the
// session's optimizer_switch decide): such a column would reach the client
// as raw ciphertext, or be decrypted as another column. So a query whose
// set operation branch, scalar subquery, derived table or CTE yields an
// encrypted column is refused, as on PostgreSQL.

// unattributed finds those shapes; a is the statement's analyzer.
type unattributed struct{ a *analyzer }

func (u *unattributed) Enter(n ast.Node) (ast.Node, bool) {
	a := u.a
	if a.err != nil {
		return n, true
	}
	switch x := n.(type) {
	case *ast.SetOprStmt:
		if x.SelectList == nil {
			break
		}
		for _, sel := range x.SelectList.Selects {
			if col := a.yieldsEncrypted(sel); col != "" {
				op := setOpName(x.SelectList)
				a.refuse(&sqlplan.Refusal{SQLState: sqlplan.StateFeatureNotSupported, Column: col, Reason: fmt.Sprintf("result column would be returned as ciphertext: MariaDB does not report its origin through %s; select the column directly", op)})
				return n, true
			}
		}
	case *ast.SelectField:
		if x.Expr == nil {
			break
		}
		if _, plain := unparen(x.Expr).(*ast.ColumnNameExpr); plain {
			break
		}
		if col := a.subqueryYieldsEncrypted(x.Expr); col != "" {
			a.refuse(&sqlplan.Refusal{SQLState: sqlplan.StateFeatureNotSupported, Column: col, Reason: "result column would be returned as ciphertext: MariaDB does not report its origin through a scalar subquery; select the column directly (a join)"})
			return n, true
		}
	case *ast.SelectStmt:
		a.derived(x)
	case *ast.VariableAssignment:
		// SET @v = (SELECT enc …): the ciphertext would leave the
		// table for a variable no rule decrypts.
		if x.Value == nil {
			break
		}
		if col := a.subqueryYieldsEncrypted(x.Value); col != "" {
			a.refuse(&sqlplan.Refusal{SQLState: sqlplan.StateFeatureNotSupported, Column: col, Reason: "SET of a variable from a subquery yielding an encrypted column would copy its ciphertext where no rule decrypts it; select the column directly"})
			return n, true
		}
	case *ast.CommonTableExpression:
		if x.Query != nil {
			if col := a.yieldsEncrypted(x.Query.Query); col != "" {
				a.refuse(&sqlplan.Refusal{SQLState: sqlplan.StateFeatureNotSupported, Column: col, Reason: fmt.Sprintf("WITH query %s yields an encrypted column: MariaDB does not report its origin through a CTE; select the column directly", x.Name.O)})
				return n, true
			}
		}
	}
	return n, false
}

func (u *unattributed) Leave(n ast.Node) (ast.Node, bool) { return n, true }

// setOpName is the (first) operator of a set operation, for messages.
func setOpName(l *ast.SetOprSelectList) string {
	for _, sel := range l.Selects {
		var op *ast.SetOprType
		switch x := sel.(type) {
		case *ast.SelectStmt:
			op = x.AfterSetOperator
		case *ast.SetOprSelectList:
			op = x.AfterSetOperator
		}
		if op != nil {
			if name := op.String(); name != "" {
				return name
			}
		}
	}
	return "UNION/INTERSECT/EXCEPT"
}

// subqueries lists the outermost subqueries of an expression.
type subqueries struct{ list []ast.Node }

func (s *subqueries) Enter(n ast.Node) (ast.Node, bool) {
	if _, ok := n.(*ast.ExistsSubqueryExpr); ok {
		return n, true // yields a boolean
	}
	if q, ok := n.(*ast.SubqueryExpr); ok {
		s.list = append(s.list, q.Query)
		return n, true
	}
	return n, false
}

func (s *subqueries) Leave(n ast.Node) (ast.Node, bool) { return n, true }

// derived refuses sel if it returns a column of a derived table in its
// FROM that is an encrypted column (an alias of one, or * over an
// encrypted table in the derived table): a derived table used only to
// filter, or whose encrypted columns the outer query compares, is fine.
func (a *analyzer) derived(sel *ast.SelectStmt) {
	if sel.From == nil || sel.Fields == nil {
		return
	}
	var visit func(rs ast.ResultSetNode)
	visit = func(rs ast.ResultSetNode) {
		switch x := rs.(type) {
		case *ast.Join:
			visit(x.Left)
			if x.Right != nil {
				visit(x.Right)
			}
		case *ast.TableSource:
			switch x.Source.(type) {
			case *ast.SelectStmt, *ast.SetOprStmt:
			default:
				return
			}
			col := a.yieldsEncrypted(x.Source)
			if col == "" {
				return
			}
			alias := x.AsName.O
			for _, f := range sel.Fields.Fields {
				if f.WildCard != nil && (f.WildCard.Table.O == "" || strings.EqualFold(f.WildCard.Table.O, alias)) {
					a.refuse(&sqlplan.Refusal{SQLState: sqlplan.StateFeatureNotSupported, Column: col, Reason: fmt.Sprintf("result column would be returned as ciphertext: MariaDB does not report its origin through derived table %s; select the column directly", alias)})
					return
				}
				cn, ok := unparen(f.Expr).(*ast.ColumnNameExpr)
				if !ok || (cn.Name.Table.O != "" && !strings.EqualFold(cn.Name.Table.O, alias)) {
					continue
				}
				if c := a.outputOf(x.Source, cn.Name.Name.O); c != "" {
					a.refuse(&sqlplan.Refusal{SQLState: sqlplan.StateFeatureNotSupported, Column: c, Reason: fmt.Sprintf("result column %s would be returned as ciphertext: MariaDB does not report its origin through derived table %s; select the column directly", cn.Name.Name.O, alias)})
					return
				}
			}
		}
	}
	visit(sel.From.TableRefs)
}

// outputOf names the encrypted column that query n returns as name (or
// through *), "" if none.
func (a *analyzer) outputOf(n ast.Node, name string) string {
	return a.searchSelect(n, func(f *ast.SelectField) string {
		out := f.AsName.O
		if cn, ok := unparen(f.Expr).(*ast.ColumnNameExpr); ok && out == "" {
			out = cn.Name.Name.O
		}
		if !strings.EqualFold(out, name) {
			return ""
		}
		return a.fieldYieldsEncrypted(f)
	})
}

// yieldsEncrypted names an encrypted column (or table, for *) that query n
// returns in its select list: a plain reference or alias of one, * or t.*
// over a FROM naming an encrypted table, a scalar subquery returning one,
// or any branch of a set operation doing so. "" if none.
func (a *analyzer) yieldsEncrypted(n ast.Node) string {
	if q, ok := n.(*ast.SubqueryExpr); ok {
		return a.yieldsEncrypted(q.Query)
	}
	return a.searchSelect(n, a.fieldYieldsEncrypted)
}

// fieldYieldsEncrypted names the encrypted column that select field f
// returns, directly or through a scalar subquery; "" if none.
func (a *analyzer) fieldYieldsEncrypted(f *ast.SelectField) string {
	if col := a.colExpr(f.Expr); col != nil {
		return col.String()
	}
	return a.subqueryYieldsEncrypted(f.Expr)
}

// searchSelect looks through every SELECT of query n (each branch of a
// set operation) for an encrypted result: * or t.* over a FROM naming an
// encrypted table, or a field for which field names one. "" if none.
func (a *analyzer) searchSelect(n ast.Node, field func(*ast.SelectField) string) string {
	switch q := n.(type) {
	case *ast.SetOprStmt:
		if q.SelectList != nil {
			return a.searchSelect(q.SelectList, field)
		}
	case *ast.SetOprSelectList:
		for _, sel := range q.Selects {
			if c := a.searchSelect(sel, field); c != "" {
				return c
			}
		}
	case *ast.SelectStmt:
		if q.Fields == nil {
			return ""
		}
		for _, f := range q.Fields.Fields {
			if f.WildCard != nil {
				if t := a.encryptedIn(q.From); t != "" {
					return t
				}
				continue
			}
			if c := field(f); c != "" {
				return c
			}
		}
	}
	return ""
}

// encryptedIn names an encrypted table that a FROM clause reads, directly
// or through a derived table's select list; "" if none.
func (a *analyzer) encryptedIn(from *ast.TableRefsClause) string {
	if from == nil {
		return ""
	}
	tc := &nodesOf[*ast.TableName]{}
	from.Accept(tc)
	for _, tn := range tc.list {
		if r := a.resolveTable(tn.Schema.O, tn.Name.O); r != nil {
			return r.String()
		}
	}
	return ""
}

// subqueryYieldsEncrypted returns the encrypted column that a subquery of
// e yields ("" if none does).
func (a *analyzer) subqueryYieldsEncrypted(e ast.ExprNode) string {
	f := &subqueries{}
	e.Accept(f)
	for _, q := range f.list {
		if col := a.yieldsEncrypted(q); col != "" {
			return col
		}
	}
	return ""
}
