package pgsql

import (
	pg "github.com/pganalyze/pg_query_go/v6"

	"github.com/dbproxy/dbproxy/sqlplan"
)

// fromItem adds the range entries of one FROM item to sc.
func (a *analyzer) fromItem(n *pg.Node, sc *scope) error {
	switch v := n.GetNode().(type) {
	case *pg.Node_RangeVar:
		rv := v.RangeVar
		if rv.Schemaname == "" {
			if c := sc.findCTE(rv.Relname); c != nil {
				r := &rel{name: rv.Relname, cols: c.cols, known: c.known}
				if rv.Alias != nil {
					r.name = rv.Alias.Aliasname
					r.cols = renameCols(r.cols, rv.Alias.Colnames)
				}
				sc.rels = append(sc.rels, r)
				return nil
			}
		}
		r, err := a.baseRel(rv)
		if err != nil {
			return err
		}
		sc.rels = append(sc.rels, r)
		return nil
	case *pg.Node_RangeSubselect:
		rs := v.RangeSubselect
		sel := rs.Subquery.GetSelectStmt()
		if sel == nil {
			return unsupported(nil, "a subquery in FROM of unknown shape")
		}
		parent := &scope{parent: sc.parent, ctes: sc.ctes}
		if rs.Lateral {
			parent = sc
		}
		out, err := a.selectStmt(sel, parent, outDerived)
		if err != nil {
			return err
		}
		r := &rel{cols: out.cols, known: out.known}
		if rs.Alias != nil {
			r.name = rs.Alias.Aliasname
			r.cols = renameCols(r.cols, rs.Alias.Colnames)
		}
		sc.rels = append(sc.rels, r)
		return nil
	case *pg.Node_RangeFunction:
		return a.rangeFunction(v.RangeFunction, sc)
	case *pg.Node_JoinExpr:
		return a.join(v.JoinExpr, sc)
	case *pg.Node_RangeTableSample:
		ts := v.RangeTableSample
		if err := a.fromItem(ts.Relation, sc); err != nil {
			return err
		}
		if err := a.plainAll(ts.Args, sc, "TABLESAMPLE"); err != nil {
			return err
		}
		_, err := a.plain(ts.Repeatable, sc, "TABLESAMPLE")
		return err
	default:
		if err := a.generic(n, sc); err != nil {
			return err
		}
		sc.rels = append(sc.rels, &rel{})
		return nil
	}
}

// rangeFunction handles a function in FROM: its arguments must not be
// encrypted columns; its output columns are plaintext.
func (a *analyzer) rangeFunction(f *pg.RangeFunction, sc *scope) error {
	r := &rel{}
	for _, item := range f.Functions {
		parts := item.GetList().GetItems()
		if len(parts) == 0 {
			continue
		}
		if _, err := a.plain(parts[0], sc, "a function in FROM"); err != nil {
			return err
		}
		if r.name == "" {
			if fc := parts[0].GetFuncCall(); fc != nil {
				r.name = funcName(fc.Funcname)
			}
		}
	}
	var names []string
	if f.Alias != nil {
		r.name = f.Alias.Aliasname
		names, _ = stringList(f.Alias.Colnames)
	}
	for _, cd := range f.Coldeflist {
		if d := cd.GetColumnDef(); d != nil && len(f.Alias.GetColnames()) == 0 {
			names = append(names, d.Colname)
		}
	}
	for _, n := range names {
		r.cols = append(r.cols, col{name: n})
	}
	// A function's columns are plaintext; their names are only partly
	// known without the catalog.
	r.known = len(names) > 0 && !f.Ordinality
	sc.rels = append(sc.rels, r)
	return nil
}

// join analyzes a JOIN: both sides, USING / NATURAL, and the ON condition.
func (a *analyzer) join(j *pg.JoinExpr, sc *scope) error {
	before := len(sc.rels)
	if err := a.fromItem(j.Larg, sc); err != nil {
		return err
	}
	mid := len(sc.rels)
	if err := a.fromItem(j.Rarg, sc); err != nil {
		return err
	}
	left, right := sc.rels[before:mid], sc.rels[mid:]
	using, _ := stringList(j.UsingClause)
	if j.IsNatural {
		var err error
		if using, err = a.naturalColumns(left, right); err != nil {
			return err
		}
	}
	if len(using) > 0 {
		merged := &rel{noQualify: true, known: true}
		for _, name := range using {
			lp, err := a.sideProv(left, name)
			if err != nil {
				return err
			}
			rp, err := a.sideProv(right, name)
			if err != nil {
				return err
			}
			var mp *prov
			switch {
			case lp == nil && rp == nil:
			case lp != nil && rp != nil:
				if err := checkSameKey(lp.rule, rp.rule, "JOIN … USING compares"); err != nil {
					return err
				}
				src := lp
				if j.Jointype == pg.JoinType_JOIN_RIGHT {
					src = rp
				}
				mp = &prov{rule: src.rule, traceable: src.traceable && j.Jointype != pg.JoinType_JOIN_FULL}
			default:
				cr := lp
				if cr == nil {
					cr = rp
				}
				return refuse(cr.rule, sqlplan.StateDatatypeMismatch, "JOIN … USING (%s) compares the encrypted column with a plaintext column", name)
			}
			for _, r := range sc.rels[before:] {
				if r.hidden == nil {
					r.hidden = map[string]bool{}
				}
				r.hidden[name] = true
			}
			merged.cols = append(merged.cols, col{name: name, prov: mp})
		}
		sc.rels = append(sc.rels, merged)
	}
	if _, err := a.plain(j.Quals, sc, "a JOIN condition"); err != nil {
		return err
	}
	if j.Alias != nil {
		for _, r := range sc.rels[before:] {
			if relHasEncrypted(r) {
				return unsupported(nil, "an aliased JOIN (… ) AS %s over a table with encrypted columns is not supported", j.Alias.Aliasname)
			}
		}
	}
	return nil
}

// sideProv resolves name among the relations of one side of a join.
func (a *analyzer) sideProv(rels []*rel, name string) (*prov, error) {
	for _, r := range rels {
		if r.hidden[name] {
			continue
		}
		p, found, _, err := a.colProv(r, name)
		if err != nil {
			return nil, err
		}
		if found || p != nil {
			return p, nil
		}
	}
	return nil, nil
}

// naturalColumns returns the column names common to both sides of a
// NATURAL JOIN; it needs every column of both sides.
func (a *analyzer) naturalColumns(left, right []*rel) ([]string, error) {
	names := func(rels []*rel) ([]string, error) {
		var out []string
		for _, r := range rels {
			if err := a.fetchColumns(r); err != nil {
				return nil, err
			}
			if !r.known {
				return nil, unsupported(nil, "NATURAL JOIN over a relation whose columns are unknown, in a statement touching an encrypted table")
			}
			for _, c := range r.cols {
				if !r.hidden[c.name] {
					out = append(out, c.name)
				}
			}
		}
		return out, nil
	}
	l, err := names(left)
	if err != nil {
		return nil, err
	}
	r, err := names(right)
	if err != nil {
		return nil, err
	}
	var common []string
	for _, n := range l {
		for _, m := range r {
			if n == m {
				common = append(common, n)
				break
			}
		}
	}
	return common, nil
}
