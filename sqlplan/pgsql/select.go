package pgsql

import (
	"fmt"

	pg "github.com/pganalyze/pg_query_go/v6"

	"github.com/dbproxy/dbproxy/rules"
	"github.com/dbproxy/dbproxy/sqlplan"
)

// outMode says what happens to the output columns of a query.
type outMode uint8

const (
	// outReturned: rows go to the client, which decrypts them from
	// RowDescription, so every encrypted output must be traceable.
	outReturned outMode = iota + 1
	// outIgnored: the rows are not used (EXISTS, EXPLAIN).
	outIgnored
	// outCompared: the outputs are values the caller compares or assigns
	// (scalar and IN subqueries, UPDATE … SET (a, b) = (SELECT …)).
	outCompared
	// outDerived: the outputs become the columns of a derived table
	// (subquery in FROM, CTE, set-operation branch, COPY (query)).
	outDerived
	// outStored: the outputs are written to a table by the caller, which
	// checks them (INSERT … SELECT, CREATE TABLE AS, views).
	outStored
)

// needNames reports whether * must be expanded to named columns.
func (m outMode) needNames() bool { return m != outReturned && m != outIgnored }

// selOut is the output of a query: its columns, and whether the list is
// complete (false when a * over a table was not expanded).
type selOut struct {
	cols  []col
	known bool
}

// topSelect analyzes a top-level SELECT.
func (a *analyzer) topSelect(s *pg.SelectStmt, parent *scope, mode outMode) (selOut, error) {
	if s.IntoClause != nil {
		mode = outStored
	}
	out, err := a.selectStmt(s, parent, mode)
	if err != nil {
		return out, err
	}
	if s.IntoClause != nil {
		return out, checkStored(out, "SELECT INTO")
	}
	if mode == outReturned {
		return out, checkReturned(out.cols)
	}
	return out, nil
}

// checkReturned refuses result columns that would reach the client as raw
// ciphertext because RowDescription will not name their origin.
func checkReturned(cols []col) error {
	for _, c := range cols {
		if c.prov != nil && !c.prov.traceable {
			return unsupported(c.prov.rule, "result column %q would be returned as ciphertext: PostgreSQL does not report its origin through UNION/INTERSECT/EXCEPT, a scalar subquery or FULL JOIN … USING; select the column directly", c.name)
		}
	}
	return nil
}

// checkStored refuses writing encrypted outputs into a table without rules.
func checkStored(out selOut, what string) error {
	for _, c := range out.cols {
		if c.prov != nil {
			return unsupported(c.prov.rule, "%s would copy its ciphertext into a table without encryption rules", what)
		}
	}
	if !out.known {
		return unsupported(nil, "%s over a table with encrypted columns needs an explicit column list", what)
	}
	return nil
}

// selectStmt analyzes a SELECT (or VALUES, or set operation) whose outer
// scope is parent.
func (a *analyzer) selectStmt(s *pg.SelectStmt, parent *scope, mode outMode) (selOut, error) {
	return a.selectRec(s, parent, mode, nil)
}

// selectRec is selectStmt with a hook run after the left branch of a set
// operation (recursive CTEs learn their columns there).
func (a *analyzer) selectRec(s *pg.SelectStmt, parent *scope, mode outMode, onLeft func(selOut)) (selOut, error) {
	if s == nil {
		return selOut{known: true}, nil
	}
	sc := &scope{parent: parent}
	if err := a.withClause(s.WithClause, sc); err != nil {
		return selOut{}, err
	}
	if s.Op != pg.SetOperation_SETOP_NONE && s.Op != pg.SetOperation_SET_OPERATION_UNDEFINED {
		return a.setOp(s, sc, mode, onLeft)
	}
	if len(s.ValuesLists) > 0 {
		n := 0
		for _, row := range s.ValuesLists {
			items := row.GetList().GetItems()
			if err := a.plainAll(items, sc, "a VALUES list"); err != nil {
				return selOut{}, err
			}
			n = max(n, len(items))
		}
		out := selOut{known: true}
		for i := range n {
			out.cols = append(out.cols, col{name: fmt.Sprintf("column%d", i+1)})
		}
		return out, a.tail(s, sc, out)
	}
	for _, f := range s.FromClause {
		if err := a.fromItem(f, sc); err != nil {
			return selOut{}, err
		}
	}
	if _, err := a.plain(s.WhereClause, sc, "a WHERE condition"); err != nil {
		return selOut{}, err
	}
	out, err := a.targetList(s.TargetList, sc, mode.needNames())
	if err != nil {
		return selOut{}, err
	}
	for _, g := range s.GroupClause {
		if err := a.groupItem(g, sc, out.cols, "GROUP BY"); err != nil {
			return selOut{}, err
		}
	}
	if _, err := a.plain(s.HavingClause, sc, "a HAVING condition"); err != nil {
		return selOut{}, err
	}
	for _, w := range s.WindowClause {
		if wd := w.GetWindowDef(); wd != nil {
			if err := a.windowDef(wd, sc); err != nil {
				return selOut{}, err
			}
		}
	}
	if len(s.DistinctClause) > 0 {
		if err := a.distinct(s.DistinctClause, sc, out); err != nil {
			return selOut{}, err
		}
	}
	return out, a.tail(s, sc, out)
}

// tail analyzes ORDER BY, LIMIT and OFFSET.
func (a *analyzer) tail(s *pg.SelectStmt, sc *scope, out selOut) error {
	if err := a.sortItems(s.SortClause, sc, out.cols); err != nil {
		return err
	}
	if _, err := a.plain(s.LimitCount, sc, "LIMIT"); err != nil {
		return err
	}
	_, err := a.plain(s.LimitOffset, sc, "OFFSET")
	return err
}

// setOp analyzes UNION, INTERSECT and EXCEPT.
func (a *analyzer) setOp(s *pg.SelectStmt, sc *scope, mode outMode, onLeft func(selOut)) (selOut, error) {
	l, err := a.selectStmt(s.Larg, sc, outDerived)
	if err != nil {
		return selOut{}, err
	}
	if onLeft != nil {
		onLeft(l)
	}
	r, err := a.selectStmt(s.Rarg, sc, outDerived)
	if err != nil {
		return selOut{}, err
	}
	opName := map[pg.SetOperation]string{pg.SetOperation_SETOP_UNION: "UNION", pg.SetOperation_SETOP_INTERSECT: "INTERSECT", pg.SetOperation_SETOP_EXCEPT: "EXCEPT"}[s.Op]
	compares := !(s.Op == pg.SetOperation_SETOP_UNION && s.All)
	out := selOut{known: l.known && r.known}
	for i, lc := range l.cols {
		c := col{name: lc.name}
		var rp *prov
		if i < len(r.cols) {
			rp = r.cols[i].prov
		}
		lp := lc.prov
		switch {
		case lp == nil && rp == nil:
		case lp != nil && rp != nil && rules.Interchangeable(lp.rule, rp.rule):
			if compares && !lp.rule.Deterministic {
				return selOut{}, unsupported(lp.rule, "%s compares values, which a randomized column cannot; use UNION ALL or a deterministic column", opName)
			}
			c.prov = &prov{rule: lp.rule}
		default:
			var cr *rules.ColumnRule
			if lp != nil {
				cr = lp.rule
			} else {
				cr = rp.rule
			}
			return selOut{}, refuse(cr, sqlplan.StateDatatypeMismatch, "%s combines the encrypted column with a plaintext column or one under another key", opName)
		}
		out.cols = append(out.cols, c)
	}
	if !out.known {
		for _, c := range append(l.cols, r.cols...) {
			if c.prov != nil {
				return selOut{}, unsupported(c.prov.rule, "%s with * over tables with encrypted columns needs explicit column lists", opName)
			}
		}
	}
	return out, a.tail(s, sc, out)
}

// withClause makes the CTEs of a WITH clause visible in sc.
func (a *analyzer) withClause(w *pg.WithClause, sc *scope) error {
	if w == nil {
		return nil
	}
	for _, n := range w.Ctes {
		ce := n.GetCommonTableExpr()
		if ce == nil {
			continue
		}
		c := &cte{name: ce.Ctename}
		if w.Recursive {
			// Visible inside its own definition; its columns are known
			// once the non-recursive branch is analyzed (onLeft).
			sc.ctes = append(sc.ctes, c)
		}
		var out selOut
		var err error
		if sel := ce.Ctequery.GetSelectStmt(); sel != nil {
			out, err = a.selectRec(sel, sc, outDerived, func(l selOut) {
				c.cols, c.known = renameCols(l.cols, ce.Aliascolnames), l.known
			})
		} else {
			var ok bool
			if out, ok, err = a.query(ce.Ctequery, sc, outDerived); !ok {
				err = unsupported(nil, "a WITH query of this kind (%s)", stmtName(ce.Ctequery))
			}
		}
		if err != nil {
			return err
		}
		c.cols, c.known = renameCols(out.cols, ce.Aliascolnames), out.known
		if !w.Recursive {
			sc.ctes = append(sc.ctes, c)
		}
	}
	return nil
}

// renameCols applies a positional column alias list.
func renameCols(cols []col, aliases []*pg.Node) []col {
	names, _ := stringList(aliases)
	if len(names) == 0 {
		return cols
	}
	out := make([]col, len(cols))
	copy(out, cols)
	for i, n := range names {
		if i < len(out) {
			out[i].name = n
		}
	}
	return out
}

// targetList analyzes a SELECT list or RETURNING list.
func (a *analyzer) targetList(items []*pg.Node, sc *scope, needNames bool) (selOut, error) {
	out := selOut{known: true}
	for _, it := range items {
		rt := it.GetResTarget()
		if rt == nil {
			continue
		}
		if cr := rt.Val.GetColumnRef(); cr != nil {
			if qual, ok := stringList(cr.Fields); !ok {
				if err := a.star(qual, sc, needNames, &out); err != nil {
					return selOut{}, err
				}
				continue
			}
		}
		in, err := a.expr(rt.Val, sc)
		if err != nil {
			return selOut{}, err
		}
		c := col{name: rt.Name}
		if c.name == "" {
			c.name = outputName(rt.Val)
		}
		if in.kind == exEnc {
			c.prov = in.prov
		} else if err := a.usePlain(in); err != nil {
			return selOut{}, err
		}
		out.cols = append(out.cols, c)
	}
	return out, nil
}

// star expands * or t.* in a target list.
func (a *analyzer) star(qual []string, sc *scope, needNames bool, out *selOut) error {
	matched := false
	for _, r := range sc.rels {
		if len(qual) > 0 && (r.noQualify || !matchesQualifier(r, qual)) {
			continue
		}
		matched = true
		if r.base && !r.known {
			if !needNames {
				// The wire layer decrypts a base table's columns from
				// RowDescription; the names are not needed.
				out.known = false
				continue
			}
			if err := a.fetchColumns(r); err != nil {
				return err
			}
		}
		if !r.known {
			out.known = false
		}
		for _, c := range r.cols {
			if len(qual) == 0 && r.hidden[c.name] {
				continue
			}
			out.cols = append(out.cols, c)
		}
	}
	if len(qual) > 0 && !matched {
		// t.* of an outer relation or a mistake: PostgreSQL decides.
		out.known = false
	}
	return nil
}

// outputName is PostgreSQL's name for an unaliased output column.
func outputName(n *pg.Node) string {
	switch v := n.GetNode().(type) {
	case *pg.Node_ColumnRef:
		f, _ := stringList(v.ColumnRef.Fields)
		if len(f) > 0 {
			return f[len(f)-1]
		}
	case *pg.Node_FuncCall:
		parts, _ := stringList(v.FuncCall.Funcname)
		if len(parts) > 0 {
			return parts[len(parts)-1]
		}
	case *pg.Node_TypeCast:
		return outputName(v.TypeCast.Arg)
	}
	return "?column?"
}

// outputRef returns the output column an ORDER BY / GROUP BY item names by
// position (ORDER BY 2) or by output name, or nil.
func outputRef(n *pg.Node, outputs []col) *col {
	if c := n.GetAConst(); c != nil {
		if iv, ok := c.Val.(*pg.A_Const_Ival); ok {
			i := int(iv.Ival.Ival)
			if i >= 1 && i <= len(outputs) {
				return &outputs[i-1]
			}
		}
		return nil
	}
	if cr := n.GetColumnRef(); cr != nil && len(cr.Fields) == 1 {
		if s := cr.Fields[0].GetString_(); s != nil {
			for i := range outputs {
				if outputs[i].name == s.Sval && outputs[i].prov != nil {
					return &outputs[i]
				}
			}
		}
	}
	return nil
}

// sortItems refuses ORDER BY on encrypted values: ciphertext order is not
// plaintext order.
func (a *analyzer) sortItems(items []*pg.Node, sc *scope, outputs []col) error {
	for _, it := range items {
		sb := it.GetSortBy()
		if sb == nil {
			continue
		}
		a.pin(sb.Node)
		if c := outputRef(sb.Node, outputs); c != nil && c.prov != nil {
			return unsupported(c.prov.rule, "ORDER BY cannot sort encrypted values: ciphertext order is not plaintext order")
		}
		in, err := a.expr(sb.Node, sc)
		if err != nil {
			return err
		}
		if in.kind == exEnc {
			return unsupported(in.rule(), "ORDER BY cannot sort encrypted values: ciphertext order is not plaintext order")
		}
		if err := a.usePlain(in); err != nil {
			return err
		}
	}
	return nil
}

// groupItem allows grouping by a deterministic encrypted column (equal
// plaintexts have equal ciphertexts) and refuses a randomized one.
func (a *analyzer) groupItem(n *pg.Node, sc *scope, outputs []col, what string) error {
	if gs := n.GetGroupingSet(); gs != nil {
		for _, c := range gs.Content {
			if l := c.GetList(); l != nil {
				for _, it := range l.Items {
					if err := a.groupItem(it, sc, outputs, what); err != nil {
						return err
					}
				}
				continue
			}
			if err := a.groupItem(c, sc, outputs, what); err != nil {
				return err
			}
		}
		return nil
	}
	if l := n.GetList(); l != nil { // ROLLUP ((a, b))
		for _, it := range l.Items {
			if err := a.groupItem(it, sc, outputs, what); err != nil {
				return err
			}
		}
		return nil
	}
	var cr *rules.ColumnRule
	in, err := a.expr(n, sc)
	if err != nil {
		return err
	}
	if in.kind == exEnc {
		cr = in.rule()
	} else {
		if err := a.usePlain(in); err != nil {
			return err
		}
		a.pin(n)
		if c := outputRef(n, outputs); c != nil && c.prov != nil {
			cr = c.prov.rule
		}
	}
	if cr != nil && !cr.Deterministic {
		return unsupported(cr, "%s compares values, which a randomized column cannot; configure it as deterministic", what)
	}
	return nil
}

// distinct checks SELECT DISTINCT and DISTINCT ON.
func (a *analyzer) distinct(clause []*pg.Node, sc *scope, out selOut) error {
	if len(clause) == 1 && clause[0].GetNode() == nil {
		for _, c := range out.cols {
			if c.prov != nil && !c.prov.rule.Deterministic {
				return unsupported(c.prov.rule, "DISTINCT compares values, which a randomized column cannot; configure it as deterministic")
			}
		}
		if !out.known {
			for _, r := range sc.rels {
				if r.rule == nil {
					continue
				}
				for _, c := range r.rule.Columns {
					if !c.Deterministic {
						return unsupported(c, "DISTINCT * compares values, which a randomized column cannot; list the columns")
					}
				}
			}
		}
		return nil
	}
	for _, n := range clause {
		if err := a.groupItem(n, sc, out.cols, "DISTINCT ON"); err != nil {
			return err
		}
	}
	return nil
}
