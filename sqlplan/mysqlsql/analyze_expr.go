package mysqlsql

import (
	"reflect"
	"strings"

	"github.com/pingcap/tidb/pkg/parser/ast"
	"github.com/pingcap/tidb/pkg/parser/opcode"

	"github.com/dbproxy/dbproxy/rules"
	"github.com/dbproxy/dbproxy/sqlplan"
)

// match handles a value compared with deterministic column col; it returns
// the replacement list element.
func (a *analyzer) matchOperand(col *rules.ColumnRule, e ast.ExprNode) (ast.ExprNode, bool) {
	if m, ok := param(e); ok {
		i, ok := a.params[m]
		if !ok {
			a.refuse(refusef(col, "internal: unnumbered placeholder"))
			return nil, false
		}
		a.plan.Params[i] = sqlplan.Param{Role: sqlplan.RoleMatch, Column: col}
		idx := len(a.plan.Slots)
		a.plan.Slots = append(a.plan.Slots, Slot{Kind: SlotParam, Param: i})
		a.repl[m] = marker(idx) // marks it handled
		return marker(idx), true
	}
	lit, ok := literal(e)
	if !ok {
		return nil, false
	}
	if lit.Null {
		return e, true
	}
	idx := len(a.plan.Slots)
	a.plan.Slots = append(a.plan.Slots, Slot{Kind: SlotMatch, Column: col, Literal: lit})
	return marker(idx), true
}

var reasonByOp = map[opcode.Op]string{
	opcode.LT: "< on an encrypted column is not supported", opcode.GT: "> on an encrypted column is not supported",
	opcode.LE: "<= on an encrypted column is not supported", opcode.GE: ">= on an encrypted column is not supported",
}

// reasonByNode says why an encrypted column cannot stand inside a node of
// these kinds.
var reasonByNode = map[reflect.Type]string{
	reflect.TypeFor[*ast.PatternLikeOrIlikeExpr](): "LIKE on an encrypted column is not supported",
	reflect.TypeFor[*ast.PatternRegexpExpr]():      "REGEXP on an encrypted column is not supported",
	reflect.TypeFor[*ast.BetweenExpr]():            "BETWEEN on an encrypted column is not supported",
	reflect.TypeFor[*ast.ByItem]():                 "ORDER BY or GROUP BY on an encrypted column is not supported",
	reflect.TypeFor[*ast.FuncCallExpr]():           "functions on an encrypted column are not supported",
	reflect.TypeFor[*ast.AggregateFuncExpr]():      "functions on an encrypted column are not supported",
	reflect.TypeFor[*ast.WindowFuncExpr]():         "functions on an encrypted column are not supported",
	reflect.TypeFor[*ast.FuncCastExpr]():           "casts of an encrypted column are not supported",
	reflect.TypeFor[*ast.CaseExpr]():               "CASE on an encrypted column is not supported",
	reflect.TypeFor[*ast.UnaryOperationExpr]():     "operators on an encrypted column are not supported",
}

// Enter implements ast.Visitor: the general rule is that an encrypted
// column may appear only in the shapes handled here.
func (a *analyzer) Enter(n ast.Node) (ast.Node, bool) {
	if a.err != nil {
		return n, true
	}
	reason := ""
	switch x := n.(type) {
	case *ast.SelectField:
		if x.Expr != nil {
			if _, ok := unparen(x.Expr).(*ast.ColumnNameExpr); ok {
				a.colExpr(x.Expr) // resolution may refuse
				return n, true
			}
		}
	case *ast.BinaryOperationExpr:
		switch x.Op {
		case opcode.EQ, opcode.NE, opcode.NullEQ:
			if a.comparison(x) {
				return n, true
			}
		case opcode.LT, opcode.GT, opcode.LE, opcode.GE:
			reason = reasonByOp[x.Op]
		case opcode.LogicAnd, opcode.LogicOr, opcode.LogicXor:
		default:
			reason = "arithmetic or bit operations on an encrypted column are not supported"
		}
	case *ast.PatternInExpr:
		if col := a.colExpr(x.Expr); col != nil {
			a.in(x, col)
			return n, true
		}
	case *ast.IsNullExpr:
		if col := a.colExpr(x.Expr); col != nil {
			return n, true
		}
	case *ast.Assignment:
		a.assignment(x)
		return n, true
	case *ast.ColumnNameExpr:
		if col := a.column(x.Name); col != nil {
			r := "this use of an encrypted column is not supported"
			for i := len(a.reasons) - 1; i >= 0; i-- {
				if a.reasons[i].r != "" {
					r = a.reasons[i].r
					break
				}
			}
			a.refuse(refusef(col, "%s", r))
		}
		return n, true
	case *ast.DefaultExpr:
		return n, true
	case *ast.SelectStmt:
		if x.Fields != nil {
			a.byPositions([]*ast.SelectStmt{x}, byItems(x.OrderBy, x.GroupBy))
		}
	case *ast.SetOprStmt:
		if x.OrderBy != nil && x.SelectList != nil {
			a.byPositions(unionSelects(x.SelectList, nil), byItems(x.OrderBy, nil))
		}
	default:
		reason = reasonByNode[reflect.TypeOf(n)]
	}
	a.reasons = append(a.reasons, reasonEntry{n, reason})
	return n, false
}

// byPositions refuses ORDER BY and GROUP BY positions (ORDER BY 2) that
// name an encrypted column of sels' select lists (every SELECT of a
// UNION), as naming the column is: the database would sort or group the
// ciphertexts. A position after a * is refused too (which column it is
// depends on the table's definition), and so is a placeholder position.
func (a *analyzer) byPositions(sels []*ast.SelectStmt, items []*ast.ByItem) {
	for _, it := range items {
		pos, ok := it.Expr.(*ast.PositionExpr)
		if !ok {
			continue
		}
		if pos.P != nil {
			a.refuse(&sqlplan.Refusal{SQLState: sqlplan.StateFeatureNotSupported, Table: a.firstEncrypted(),
				Reason: "ORDER BY or GROUP BY a placeholder position is not supported in statements on encrypted tables"})
			return
		}
		for _, sel := range sels {
			if sel.Fields == nil {
				continue
			}
			for i, f := range sel.Fields.Fields {
				if f.WildCard != nil {
					a.refuse(&sqlplan.Refusal{SQLState: sqlplan.StateFeatureNotSupported, Table: a.firstEncrypted(),
						Reason: "ORDER BY or GROUP BY a position after * is not supported in statements on encrypted tables: name the column"})
					return
				}
				if i == pos.N-1 {
					if col := a.colExpr(f.Expr); col != nil {
						a.refuse(refusef(col, "ORDER BY or GROUP BY on an encrypted column is not supported"))
						return
					}
					break
				}
			}
		}
	}
}

// byItems returns the items of an ORDER BY and a GROUP BY clause (either
// may be nil).
func byItems(order *ast.OrderByClause, group *ast.GroupByClause) []*ast.ByItem {
	var items []*ast.ByItem
	if order != nil {
		items = append(items, order.Items...)
	}
	if group != nil {
		items = append(items, group.Items...)
	}
	return items
}

// unionSelects appends the SELECTs of a UNION (INTERSECT, EXCEPT) to dst.
func unionSelects(l *ast.SetOprSelectList, dst []*ast.SelectStmt) []*ast.SelectStmt {
	for _, n := range l.Selects {
		switch x := n.(type) {
		case *ast.SelectStmt:
			dst = append(dst, x)
		case *ast.SetOprSelectList:
			dst = unionSelects(x, dst)
		}
	}
	return dst
}

// Leave implements ast.Visitor.
func (a *analyzer) Leave(n ast.Node) (ast.Node, bool) {
	if k := len(a.reasons); k > 0 && a.reasons[k-1].n == n {
		a.reasons = a.reasons[:k-1]
	}
	return n, true
}

// comparison handles =, <>, <=>; it reports whether it consumed the node.
func (a *analyzer) comparison(x *ast.BinaryOperationExpr) bool {
	lc, rc := a.colExpr(x.L), a.colExpr(x.R)
	if lc == nil && rc == nil {
		return false
	}
	if lc != nil && rc != nil {
		if !rules.SameKey(lc, rc) {
			a.refuse(refusef(lc, "comparison with %s needs both columns deterministic under the same key", rc))
		}
		return true
	}
	col, other := lc, x.R
	if col == nil {
		col, other = rc, x.L
	}
	if lit, ok := literal(other); ok && lit.Null {
		return true // col = NULL is never true; nothing to encrypt
	}
	if !col.Deterministic {
		a.refuse(refusef(col, "equality (=, <>) cannot be evaluated on a randomized column; configure it as deterministic"))
		return true
	}
	if x.Op == opcode.NullEQ {
		a.refuse(refusef(col, "<=> on an encrypted column is not supported"))
		return true
	}
	el, ok := a.matchOperand(col, other)
	if !ok {
		a.refuse(refusef(col, "an encrypted column can only be compared with literals or placeholders"))
		return true
	}
	colNode := x.L
	if lc == nil {
		colNode = x.R
	}
	a.repl[x] = &ast.PatternInExpr{Expr: colNode, List: []ast.ExprNode{el}, Not: x.Op == opcode.NE}
	return true
}

func (a *analyzer) in(x *ast.PatternInExpr, col *rules.ColumnRule) {
	if x.Sel != nil {
		a.refuse(refusef(col, "IN (subquery) on an encrypted column is not supported"))
		return
	}
	if !col.Deterministic {
		a.refuse(refusef(col, "IN (…) cannot be evaluated on a randomized column; configure it as deterministic"))
		return
	}
	list := make([]ast.ExprNode, 0, len(x.List))
	for _, e := range x.List {
		el, ok := a.matchOperand(col, e)
		if !ok {
			a.refuse(refusef(col, "an encrypted column can only be compared with literals or placeholders"))
			return
		}
		list = append(list, el)
	}
	a.repl[x] = &ast.PatternInExpr{Expr: x.Expr, List: list, Not: x.Not}
}

func (a *analyzer) assignment(x *ast.Assignment) {
	col := a.column(x.Column)
	if col == nil {
		x.Expr.Accept(a)
		return
	}
	if src := a.colExpr(x.Expr); src != nil {
		if !rules.Interchangeable(src, col) {
			a.refuse(refusef(col, "copying from %s needs the same key, mode and type", src))
			return
		}
		a.keyless(col, src)
		return
	}
	if v, ok := unparen(x.Expr).(*ast.ValuesExpr); ok && v.Column != nil {
		if src := a.column(v.Column.Name); src != nil && rules.Interchangeable(src, col) {
			a.keyless(col, nil) // the row being inserted: the client's own value
			return
		}
		a.refuse(refusef(col, "VALUES() of another column cannot be stored in an encrypted column"))
		return
	}
	a.store(col, x.Expr)
}

// nodesOf lists the nodes of type T a statement holds (placeholders,
// table names), in the order the parser's walk meets them.
type nodesOf[T ast.Node] struct{ list []T }

func (c *nodesOf[T]) Enter(n ast.Node) (ast.Node, bool) {
	if x, ok := n.(T); ok {
		c.list = append(c.list, x)
	}
	return n, false
}

func (c *nodesOf[T]) Leave(n ast.Node) (ast.Node, bool) { return n, true }

// tableCollector lists every table a statement names.
type tableCollector struct{ a *analyzer }

func (c *tableCollector) Enter(n ast.Node) (ast.Node, bool) {
	switch x := n.(type) {
	case *ast.TableSource:
		if tn, ok := x.Source.(*ast.TableName); ok {
			c.add(tn, x.AsName.O)
		}
	case *ast.TableName:
		c.add(x, "")
	}
	return n, false
}

func (c *tableCollector) add(tn *ast.TableName, alias string) {
	if alias == "" {
		alias = tn.Name.O
	}
	for _, t := range c.a.tables {
		if t.alias == alias && t.name == tn.Name.O {
			return
		}
	}
	r := c.a.resolveTable(tn.Schema.O, tn.Name.O)
	c.a.tables = append(c.a.tables, tableRef{alias: alias, name: tn.Name.O, rule: r})
}

func (c *tableCollector) Leave(n ast.Node) (ast.Node, bool) { return n, true }

// aliasCollector records select-list aliases of encrypted columns, so that
// HAVING, ORDER BY and outer queries naming the alias are treated as the
// column; CTE column lists, which rename columns out of sight, are refused.
type aliasCollector struct{ a *analyzer }

func (c *aliasCollector) Enter(n ast.Node) (ast.Node, bool) {
	switch x := n.(type) {
	case *ast.SelectField:
		if x.AsName.O == "" || x.Expr == nil {
			break
		}
		if col := c.a.colExpr(x.Expr); col != nil {
			if c.a.aliases == nil {
				c.a.aliases = map[string]*rules.ColumnRule{}
			}
			c.a.aliases[strings.ToLower(x.AsName.O)] = col
		}
	case *ast.CommonTableExpression:
		if len(x.ColNameList) > 0 {
			c.a.refuse(&sqlplan.Refusal{SQLState: sqlplan.StateFeatureNotSupported, Table: x.Name.O, Reason: "CTE column lists are not supported in statements on encrypted tables"})
		}
	}
	return n, false
}

func (c *aliasCollector) Leave(n ast.Node) (ast.Node, bool) { return n, true }
