package pgsql

import (
	pg "github.com/pganalyze/pg_query_go/v6"

	"github.com/dbproxy/dbproxy/rules"
	"github.com/dbproxy/dbproxy/sqlplan"
)

// exprKind classifies what an expression is, as far as encryption cares.
type exprKind uint8

const (
	exOther   exprKind = iota // a plaintext value (computed, or a plaintext column)
	exEnc                     // the ciphertext of an encrypted column
	exLiteral                 // a constant, possibly cast
	exNull                    // NULL, possibly cast
	exParam                   // $n, possibly cast
	exDefault                 // DEFAULT
)

// exprInfo describes an analyzed expression.
type exprInfo struct {
	kind exprKind
	prov *prov // exEnc
	// colRef: exEnc from a plain column reference, whose text can be
	// copied into a rewritten comparison.
	colRef bool
	lit    sqlplan.Literal // exLiteral
	bits   bool            // exLiteral: a bit-string constant (B'…', X'…')
	param  int             // exParam
	// cast is the type an exLiteral, exNull or exParam is cast to.
	cast *pg.TypeName
	node *pg.Node
}

func (e exprInfo) rule() *rules.ColumnRule {
	if e.prov == nil {
		return nil
	}
	return e.prov.rule
}

// expr analyzes n in scope sc. It refuses every construct that would
// compute on an encrypted column or mix a plaintext value into a comparison
// with one, records edits for the comparisons it can rewrite, and returns
// what n is so that the caller can decide about the rest (an encrypted
// column in a result list is fine, in a function argument it is not).
// Parameters in the returned info are not yet bound: the caller binds them
// (usePlain, or bindParam with an encrypted role).
func (a *analyzer) expr(n *pg.Node, sc *scope) (exprInfo, error) {
	if n == nil {
		return exprInfo{}, nil
	}
	info := exprInfo{node: n}
	switch v := n.GetNode().(type) {
	case *pg.Node_ColumnRef:
		return a.columnRef(v.ColumnRef, n, sc)
	case *pg.Node_AConst:
		if v.AConst.Isnull {
			info.kind = exNull
			return info, nil
		}
		info.kind = exLiteral
		info.lit, info.bits = constLiteral(v.AConst)
		info.lit.Pos = int(v.AConst.Location) + 1
		return info, nil
	case *pg.Node_ParamRef:
		info.kind = exParam
		info.param = int(v.ParamRef.Number)
		return info, nil
	case *pg.Node_SetToDefault:
		info.kind = exDefault
		return info, nil
	case *pg.Node_TypeCast:
		return a.typeCast(v.TypeCast, n, sc)
	case *pg.Node_AExpr:
		return a.aexpr(v.AExpr, n, sc)
	case *pg.Node_BoolExpr:
		for _, arg := range v.BoolExpr.Args {
			if _, err := a.plain(arg, sc, "a boolean operator (AND/OR/NOT)"); err != nil {
				return info, err
			}
		}
		return info, nil
	case *pg.Node_NullTest:
		return info, a.encOrPlain(v.NullTest.Arg, sc)
	case *pg.Node_BooleanTest:
		_, err := a.plain(v.BooleanTest.Arg, sc, "IS TRUE/FALSE/UNKNOWN")
		return info, err
	case *pg.Node_FuncCall:
		return info, a.funcCall(v.FuncCall, sc)
	case *pg.Node_SubLink:
		return a.sublink(v.SubLink, n, sc)
	case *pg.Node_CaseExpr:
		return info, a.caseExpr(v.CaseExpr, sc)
	case *pg.Node_CoalesceExpr:
		return info, a.plainAll(v.CoalesceExpr.Args, sc, "COALESCE")
	case *pg.Node_MinMaxExpr:
		return info, a.plainAll(v.MinMaxExpr.Args, sc, "GREATEST/LEAST")
	case *pg.Node_RowExpr:
		return info, a.plainAll(v.RowExpr.Args, sc, "a row constructor")
	case *pg.Node_AArrayExpr:
		return info, a.plainAll(v.AArrayExpr.Elements, sc, "an ARRAY[…] constructor")
	case *pg.Node_AIndirection:
		return info, a.indirection(v.AIndirection, sc)
	case *pg.Node_CollateClause:
		_, err := a.plain(v.CollateClause.Arg, sc, "COLLATE")
		return info, err
	case *pg.Node_SqlvalueFunction, *pg.Node_CurrentOfExpr:
		return info, nil
	case *pg.Node_GroupingFunc:
		// GROUPING(col) only reports how a row was grouped.
		for _, arg := range v.GroupingFunc.Args {
			if err := a.encOrPlain(arg, sc); err != nil {
				return info, err
			}
		}
		return info, nil
	default:
		return info, a.generic(n, sc)
	}
}

// typeCast analyzes a cast: refused on an encrypted column, kept on a
// literal, NULL or parameter (whose encoding it decides), else the operand
// must be plaintext.
func (a *analyzer) typeCast(tc *pg.TypeCast, n *pg.Node, sc *scope) (exprInfo, error) {
	info := exprInfo{node: n}
	in, err := a.expr(tc.Arg, sc)
	if err != nil {
		return info, err
	}
	switch {
	case in.kind == exEnc:
		return info, unsupported(in.rule(), "a cast (to %s) is not supported on an encrypted column: it would convert the ciphertext", typeNameString(tc.TypeName))
	case (in.kind == exLiteral || in.kind == exNull || in.kind == exParam) && in.cast == nil:
		in.cast = tc.TypeName
		in.node = n
		return in, nil
	}
	if err := a.usePlain(in); err != nil {
		return info, err
	}
	return info, nil
}

// encOrPlain analyzes n where an encrypted column may stand as it is (IS
// NULL, GROUPING: only its presence is looked at); anything else is bound
// as plaintext.
func (a *analyzer) encOrPlain(n *pg.Node, sc *scope) error {
	in, err := a.expr(n, sc)
	if err != nil {
		return err
	}
	if in.kind != exEnc {
		return a.usePlain(in)
	}
	return nil
}

// indirection analyzes a subscript or field selection: the operand and
// every subscript must be plaintext.
func (a *analyzer) indirection(ind *pg.A_Indirection, sc *scope) error {
	if _, err := a.plain(ind.Arg, sc, "a subscript or field selection"); err != nil {
		return err
	}
	for _, i := range ind.Indirection {
		if ai := i.GetAIndices(); ai != nil {
			if _, err := a.plain(ai.Lidx, sc, "a subscript"); err != nil {
				return err
			}
			if _, err := a.plain(ai.Uidx, sc, "a subscript"); err != nil {
				return err
			}
		}
	}
	return nil
}

// plain analyzes n where an encrypted column is not allowed (what says
// where, for the refusal) and binds a parameter as plaintext.
func (a *analyzer) plain(n *pg.Node, sc *scope, what string) (exprInfo, error) {
	in, err := a.expr(n, sc)
	if err != nil {
		return in, err
	}
	if in.kind == exEnc {
		return in, unsupported(in.rule(), "%s is not supported on an encrypted column: it would compute on ciphertext", what)
	}
	return in, a.usePlain(in)
}

func (a *analyzer) plainAll(ns []*pg.Node, sc *scope, what string) error {
	for _, n := range ns {
		if _, err := a.plain(n, sc, what); err != nil {
			return err
		}
	}
	return nil
}

// usePlain binds a parameter used as a plaintext value, and records a
// constant used as one: its value does not matter to the plan, so a plan
// template may vary it (template.go).
func (a *analyzer) usePlain(in exprInfo) error {
	if in.kind == exLiteral {
		a.plainLits = append(a.plainLits, in.lit.Pos)
	}
	if in.kind == exParam {
		return a.bindParam(in.param, sqlplan.RolePlain, nil)
	}
	return nil
}

// columnRef resolves a column reference.
func (a *analyzer) columnRef(c *pg.ColumnRef, n *pg.Node, sc *scope) (exprInfo, error) {
	info := exprInfo{node: n}
	fields, ok := stringList(c.Fields)
	if !ok {
		// t.* or * inside an expression: a whole row.
		return info, a.wholeRow(fields, sc)
	}
	p, err := a.resolveColumn(sc, fields)
	if err != nil {
		return info, err
	}
	if p != nil && p.rule != nil {
		info.kind, info.prov, info.colRef = exEnc, p, true
		return info, nil
	}
	if len(fields) == 1 {
		return info, a.checkWholeRow(sc, fields[0])
	}
	return info, nil
}

// checkWholeRow refuses a bare name that is no column but a relation with
// encrypted columns (SELECT u FROM users u): the row value would carry raw
// ciphertext.
func (a *analyzer) checkWholeRow(sc *scope, name string) error {
	var target *rel
	for s := sc; s != nil && target == nil; s = s.parent {
		for _, r := range s.rels {
			if r.name == name && !r.noQualify {
				target = r
				break
			}
		}
	}
	if target == nil || !relHasEncrypted(target) {
		return nil
	}
	// PostgreSQL prefers a column of that name, if any relation has one.
	for s := sc; s != nil; s = s.parent {
		for _, r := range s.rels {
			if err := a.fetchColumns(r); err != nil {
				return err
			}
			_, found, maybe, err := a.colProv(r, name)
			if err != nil {
				return err
			}
			if found {
				return nil
			}
			if maybe {
				break // unknown columns: refuse below rather than guess
			}
		}
	}
	return unsupported(nil, "a whole-row reference to %q, which has encrypted columns, is not supported; list the columns", name)
}

// wholeRow refuses t.* (or *) inside an expression when the rows carry
// encrypted columns: the row value would hold raw ciphertext.
func (a *analyzer) wholeRow(qual []string, sc *scope) error {
	for s := sc; s != nil; s = s.parent {
		for _, r := range s.rels {
			if r.noQualify {
				continue
			}
			if len(qual) == 0 || matchesQualifier(r, qual) {
				if relHasEncrypted(r) {
					return unsupported(nil, "a whole-row value of %q, which has encrypted columns, is not supported; list the columns", r.name)
				}
			}
		}
	}
	return nil
}

func relHasEncrypted(r *rel) bool {
	if r.rule != nil {
		return true
	}
	for _, c := range r.cols {
		if c.prov != nil {
			return true
		}
	}
	return false
}
