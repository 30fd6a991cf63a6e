package pgsql

import (
	"strconv"
	"strings"

	pg "github.com/pganalyze/pg_query_go/v6"

	"github.com/dbproxy/dbproxy/rules"
	"github.com/dbproxy/dbproxy/sqlplan"
)

// insert analyzes INSERT.
func (a *analyzer) insert(s *pg.InsertStmt, parent *scope, mode outMode) (selOut, error) {
	sc := &scope{parent: parent}
	if err := a.withClause(s.WithClause, sc); err != nil {
		return selOut{}, err
	}
	target, err := a.baseRel(s.Relation)
	if err != nil {
		return selOut{}, err
	}
	var cols []string
	for _, c := range s.Cols {
		rt := c.GetResTarget()
		if rt == nil {
			continue
		}
		if err := checkTargetColumn(target, rt); err != nil {
			return selOut{}, err
		}
		cols = append(cols, rt.Name)
	}
	src := s.SelectStmt.GetSelectStmt()
	if target.rule == nil {
		if err := a.insertIntoPlain(src, sc, target); err != nil {
			return selOut{}, err
		}
	} else if src != nil {
		if err := a.insertIntoEncrypted(s, src, sc, target, cols); err != nil {
			return selOut{}, err
		}
	}
	if oc := s.OnConflictClause; oc != nil {
		if err := a.onConflict(oc, sc, target); err != nil {
			return selOut{}, err
		}
	}
	return a.returning(s.ReturningList, sc, target, mode)
}

// checkTargetColumn refuses assigning to part of an encrypted column and
// names that match an encrypted column only when case is ignored.
func checkTargetColumn(target *rel, rt *pg.ResTarget) error {
	if target.rule == nil {
		return nil
	}
	if c := target.rule.Column(rt.Name); c != nil && len(rt.Indirection) > 0 {
		return unsupported(c, "assigning to an element or field of an encrypted column")
	}
	if c := target.rule.SimilarColumn(rt.Name); c != nil {
		return refuse(c, sqlplan.StateInvalidName,
			"column %q matches encrypted column %s only when case is ignored; fix the case in the statement or in the configuration", rt.Name, c)
	}
	return nil
}

// insertIntoPlain analyzes the source of an INSERT into a table without
// rules: it must not carry ciphertext.
func (a *analyzer) insertIntoPlain(src *pg.SelectStmt, sc *scope, target *rel) error {
	if src == nil {
		return nil
	}
	out, err := a.selectStmt(src, sc, outStored)
	if err != nil {
		return err
	}
	for _, c := range out.cols {
		if c.prov != nil {
			return unsupported(c.prov.rule, "INSERT would copy its ciphertext into table %s, which has no encryption rules", target.table)
		}
	}
	return nil
}

// insertIntoEncrypted analyzes the source of an INSERT into a table with
// encrypted columns.
func (a *analyzer) insertIntoEncrypted(s *pg.InsertStmt, src *pg.SelectStmt, sc *scope, target *rel, cols []string) error {
	isValues := len(src.ValuesLists) > 0
	width := 0
	if isValues {
		if len(src.SortClause) > 0 || src.LimitCount != nil || src.LimitOffset != nil || src.WithClause != nil {
			return unsupported(nil, "INSERT … VALUES with ORDER BY, LIMIT or WITH into a table with encrypted columns")
		}
		for _, row := range src.ValuesLists {
			width = max(width, len(row.GetList().GetItems()))
		}
	}
	var out selOut
	if !isValues {
		var err error
		if out, err = a.selectStmt(src, sc, outStored); err != nil {
			return err
		}
		if !out.known {
			return unsupported(nil, "INSERT … SELECT * into a table with encrypted columns: list the columns")
		}
		width = len(out.cols)
	}
	if len(cols) == 0 {
		// No column list: take the table's column order from the catalog
		// and pin it into the statement, so that a table changed later
		// cannot shift a value into another column.
		if err := a.fetchColumns(target); err != nil {
			return err
		}
		for i := 0; i < width && i < len(target.cols); i++ {
			cols = append(cols, target.cols[i].name)
		}
		if err := a.pinColumns(s.Relation, true, cols); err != nil {
			return err
		}
	}
	if isValues {
		for _, row := range src.ValuesLists {
			for i, item := range row.GetList().GetItems() {
				var cr *rules.ColumnRule
				if i < len(cols) {
					cr = target.rule.Column(cols[i])
				}
				if err := a.assign(item, cr, sc, columnName(cols, i)); err != nil {
					return err
				}
			}
		}
		return nil
	}
	for i, oc := range out.cols {
		if i >= len(cols) {
			break
		}
		cr := target.rule.Column(cols[i])
		switch {
		case cr != nil && (oc.prov == nil || !rules.Interchangeable(oc.prov.rule, cr)):
			return refuse(cr, sqlplan.StateDatatypeMismatch, "INSERT … SELECT would write a plaintext value (or another key's ciphertext) into the encrypted column; only columns under the same key, mode and type can be copied")
		case cr == nil && oc.prov != nil:
			return unsupported(oc.prov.rule, "INSERT … SELECT would copy its ciphertext into the plaintext column %q", cols[i])
		case cr != nil:
			a.keyless = append(a.keyless, sqlplan.KeylessWrite{Column: cr, From: oc.prov.rule})
		}
	}
	return nil
}

func columnName(cols []string, i int) string {
	if i < len(cols) {
		return cols[i]
	}
	return "column " + strconv.Itoa(i+1)
}

// pinColumns inserts an explicit column list right after the relation name
// of an INSERT (withAlias: INSERT INTO t AS a) or a COPY.
func (a *analyzer) pinColumns(rv *pg.RangeVar, withAlias bool, cols []string) error {
	if len(cols) == 0 {
		return nil
	}
	ts, i, err := a.tokenAt(rv.Location)
	if err != nil {
		return err
	}
	last, parts := i, 1
	for ts.is(last+1, pg.Token_ASCII_46) && ts.isName(last+2) {
		last += 2
		parts++
	}
	want := 1
	if rv.Schemaname != "" {
		want++
	}
	if rv.Catalogname != "" {
		want++
	}
	if parts != want {
		return errSpanf("relation name at offset %d has %d parts, expected %d", rv.Location, parts, want)
	}
	if withAlias && rv.Alias != nil {
		if !ts.is(last+1, pg.Token_AS) || !ts.isName(last+2) {
			return errSpanf("expected AS alias at offset %d", ts.t[last].end)
		}
		last += 2
	}
	var b strings.Builder
	b.WriteString(" (")
	for i, c := range cols {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(quoteIdent(c))
	}
	b.WriteString(")")
	pos := ts.t[last].end
	a.addEdit(Edit{Start: pos, End: pos, Kind: EditText, Text: b.String()})
	return nil
}

// quoteIdent quotes an identifier for PostgreSQL.
func quoteIdent(s string) string {
	return `"` + strings.ReplaceAll(s, `"`, `""`) + `"`
}

// assign analyzes a value written to a column: a VALUES item, an UPDATE
// SET or ON CONFLICT … SET value. cr is the encrypted column or nil.
func (a *analyzer) assign(n *pg.Node, cr *rules.ColumnRule, sc *scope, colName string) error {
	in, err := a.expr(n, sc)
	if err != nil {
		return err
	}
	if cr == nil {
		if in.kind == exEnc {
			return unsupported(in.rule(), "would copy its ciphertext into the plaintext column %q", colName)
		}
		return a.usePlain(in)
	}
	switch in.kind {
	case exNull, exDefault:
		a.keyless = append(a.keyless, sqlplan.KeylessWrite{Column: cr})
		return nil
	case exLiteral:
		if err := checkLiteral(cr, in); err != nil {
			return err
		}
		sp, err := a.exprSpan(in.node)
		if err != nil {
			return err
		}
		a.addEdit(Edit{Start: sp.start, End: sp.end, Kind: EditStore, Column: cr, Literal: in.lit})
		return nil
	case exParam:
		if err := checkCast(cr, in.cast); err != nil {
			return err
		}
		if err := a.bindParam(in.param, sqlplan.RoleStore, cr); err != nil {
			return err
		}
		if in.cast != nil {
			sp, err := a.exprSpan(in.node)
			if err != nil {
				return err
			}
			a.addEdit(Edit{Start: sp.start, End: sp.end, Kind: EditText, Text: "$" + strconv.Itoa(in.param) + "::bytea"})
		}
		return nil
	case exEnc:
		if rules.Interchangeable(in.rule(), cr) {
			w := sqlplan.KeylessWrite{Column: cr, From: in.rule()}
			if in.prov.inserted {
				w.From = nil // EXCLUDED.col: the client's own value, not a stored one
			}
			a.keyless = append(a.keyless, w)
			return nil
		}
		return refuse(cr, sqlplan.StateDatatypeMismatch, "would receive a value of %s, which is encrypted under another key, mode or type; only columns under the same key can be copied", in.rule())
	default:
		return refuse(cr, sqlplan.StateDatatypeMismatch, "a computed or plaintext value cannot be written to an encrypted column; use a constant or a parameter")
	}
}

// onConflict analyzes ON CONFLICT … DO NOTHING / DO UPDATE.
func (a *analyzer) onConflict(oc *pg.OnConflictClause, sc *scope, target *rel) error {
	excluded := *target
	excluded.name = "excluded"
	excluded.inserted = true
	excluded.hidden = nil
	osc := &scope{parent: sc.parent, ctes: sc.ctes, rels: []*rel{target, &excluded}}
	if inf := oc.Infer; inf != nil {
		for _, ie := range inf.IndexElems {
			if el := ie.GetIndexElem(); el != nil && el.Expr != nil {
				if _, err := a.plain(el.Expr, osc, "an ON CONFLICT index expression"); err != nil {
					return err
				}
			}
		}
		if _, err := a.plain(inf.WhereClause, osc, "an ON CONFLICT … WHERE condition"); err != nil {
			return err
		}
	}
	if err := a.setList(oc.TargetList, osc, target); err != nil {
		return err
	}
	_, err := a.plain(oc.WhereClause, osc, "an ON CONFLICT … WHERE condition")
	return err
}

// setList analyzes the SET list of UPDATE or ON CONFLICT DO UPDATE.
func (a *analyzer) setList(items []*pg.Node, sc *scope, target *rel) error {
	multi := map[*pg.SubLink]selOut{}
	for _, it := range items {
		rt := it.GetResTarget()
		if rt == nil {
			continue
		}
		if err := checkTargetColumn(target, rt); err != nil {
			return err
		}
		cr := target.rule.Column(rt.Name)
		mar := rt.Val.GetMultiAssignRef()
		if mar == nil {
			if err := a.assign(rt.Val, cr, sc, rt.Name); err != nil {
				return err
			}
			continue
		}
		switch src := mar.Source.GetNode().(type) {
		case *pg.Node_RowExpr:
			args := src.RowExpr.Args
			if int(mar.Colno) < 1 || int(mar.Colno) > len(args) {
				return unsupported(cr, "a SET (…) = ROW(…) of mismatched length")
			}
			if err := a.assign(args[mar.Colno-1], cr, sc, rt.Name); err != nil {
				return err
			}
		case *pg.Node_SubLink:
			out, ok := multi[src.SubLink]
			if !ok {
				sel := src.SubLink.Subselect.GetSelectStmt()
				var err error
				if out, err = a.selectStmt(sel, sc.child(), outCompared); err != nil {
					return err
				}
				multi[src.SubLink] = out
			}
			var p *prov
			if i := int(mar.Colno) - 1; i >= 0 && i < len(out.cols) {
				p = out.cols[i].prov
			}
			switch {
			case cr != nil && (p == nil || !rules.Interchangeable(p.rule, cr)):
				return refuse(cr, sqlplan.StateDatatypeMismatch, "SET (…) = (SELECT …) would write a plaintext value into the encrypted column")
			case cr == nil && p != nil:
				return unsupported(p.rule, "SET (…) = (SELECT …) would copy its ciphertext into the plaintext column %q", rt.Name)
			}
		default:
			return unsupported(cr, "a multiple-column SET of unknown shape")
		}
	}
	return nil
}

// update analyzes UPDATE.
func (a *analyzer) update(s *pg.UpdateStmt, parent *scope, mode outMode) (selOut, error) {
	sc, target, err := a.targetScope(s.WithClause, s.Relation, s.FromClause, parent)
	if err != nil {
		return selOut{}, err
	}
	if err := a.setList(s.TargetList, sc, target); err != nil {
		return selOut{}, err
	}
	if _, err := a.plain(s.WhereClause, sc, "a WHERE condition"); err != nil {
		return selOut{}, err
	}
	return a.returning(s.ReturningList, sc, target, mode)
}

// delete analyzes DELETE.
func (a *analyzer) delete(s *pg.DeleteStmt, parent *scope, mode outMode) (selOut, error) {
	sc, target, err := a.targetScope(s.WithClause, s.Relation, s.UsingClause, parent)
	if err != nil {
		return selOut{}, err
	}
	if _, err := a.plain(s.WhereClause, sc, "a WHERE condition"); err != nil {
		return selOut{}, err
	}
	return a.returning(s.ReturningList, sc, target, mode)
}

// targetScope opens the scope of an UPDATE or DELETE: its WITH queries,
// its target table and the tables of its FROM (USING) list.
func (a *analyzer) targetScope(with *pg.WithClause, target *pg.RangeVar, from []*pg.Node, parent *scope) (*scope, *rel, error) {
	sc := &scope{parent: parent}
	if err := a.withClause(with, sc); err != nil {
		return nil, nil, err
	}
	t, err := a.baseRel(target)
	if err != nil {
		return nil, nil, err
	}
	sc.rels = append(sc.rels, t)
	for _, f := range from {
		if err := a.fromItem(f, sc); err != nil {
			return nil, nil, err
		}
	}
	return sc, t, nil
}

// returning analyzes a RETURNING list; its rows are decrypted from
// RowDescription like a SELECT's.
func (a *analyzer) returning(items []*pg.Node, sc *scope, target *rel, mode outMode) (selOut, error) {
	if len(items) == 0 {
		return selOut{known: true}, nil
	}
	rsc := sc
	if len(sc.rels) == 0 || sc.rels[0] != target {
		rsc = &scope{parent: sc.parent, ctes: sc.ctes, rels: append([]*rel{target}, sc.rels...)}
	}
	out, err := a.targetList(items, rsc, mode.needNames())
	if err != nil {
		return out, err
	}
	if mode == outReturned {
		return out, checkReturned(out.cols)
	}
	return out, nil
}
