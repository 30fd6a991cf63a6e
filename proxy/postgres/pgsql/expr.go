package pgsql

import (
	"fmt"
	"strconv"
	"strings"

	pg "github.com/pganalyze/pg_query_go/v6"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/dbproxy/dbproxy/rules"
	"github.com/dbproxy/dbproxy/value"
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
	lit    Literal // exLiteral
	bits   bool    // exLiteral: a bit-string constant (B'…', X'…')
	param  int     // exParam
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
		info.lit.src = int(v.AConst.Location) + 1
		return info, nil
	case *pg.Node_ParamRef:
		info.kind = exParam
		info.param = int(v.ParamRef.Number)
		return info, nil
	case *pg.Node_SetToDefault:
		info.kind = exDefault
		return info, nil
	case *pg.Node_TypeCast:
		in, err := a.expr(v.TypeCast.Arg, sc)
		if err != nil {
			return info, err
		}
		switch {
		case in.kind == exEnc:
			return info, unsupported(in.rule(), "a cast (to %s) is not supported on an encrypted column: it would convert the ciphertext", typeNameString(v.TypeCast.TypeName))
		case (in.kind == exLiteral || in.kind == exNull || in.kind == exParam) && in.cast == nil:
			in.cast = v.TypeCast.TypeName
			in.node = n
			return in, nil
		}
		if err := a.usePlain(in); err != nil {
			return info, err
		}
		return info, nil
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
		in, err := a.expr(v.NullTest.Arg, sc)
		if err != nil {
			return info, err
		}
		if in.kind != exEnc {
			if err := a.usePlain(in); err != nil {
				return info, err
			}
		}
		return info, nil
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
		if _, err := a.plain(v.AIndirection.Arg, sc, "a subscript or field selection"); err != nil {
			return info, err
		}
		for _, ind := range v.AIndirection.Indirection {
			if ai := ind.GetAIndices(); ai != nil {
				if _, err := a.plain(ai.Lidx, sc, "a subscript"); err != nil {
					return info, err
				}
				if _, err := a.plain(ai.Uidx, sc, "a subscript"); err != nil {
					return info, err
				}
			}
		}
		return info, nil
	case *pg.Node_CollateClause:
		_, err := a.plain(v.CollateClause.Arg, sc, "COLLATE")
		return info, err
	case *pg.Node_SqlvalueFunction, *pg.Node_CurrentOfExpr:
		return info, nil
	case *pg.Node_GroupingFunc:
		// GROUPING(col) only reports how a row was grouped.
		for _, arg := range v.GroupingFunc.Args {
			in, err := a.expr(arg, sc)
			if err != nil {
				return info, err
			}
			if in.kind != exEnc {
				if err := a.usePlain(in); err != nil {
					return info, err
				}
			}
		}
		return info, nil
	default:
		return info, a.generic(n, sc)
	}
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
		a.plainLits = append(a.plainLits, in.lit.src)
	}
	if in.kind == exParam {
		return a.bindParam(in.param, RolePlain, nil)
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

// constLiteral returns the value of a non-NULL constant as PostgreSQL reads
// it, and whether it is a bit string.
func constLiteral(c *pg.A_Const) (Literal, bool) {
	switch v := c.Val.(type) {
	case *pg.A_Const_Ival:
		return Literal{Text: strconv.FormatInt(int64(v.Ival.Ival), 10)}, false
	case *pg.A_Const_Fval:
		return Literal{Text: v.Fval.Fval}, false
	case *pg.A_Const_Boolval:
		if v.Boolval.Boolval {
			return Literal{Text: "true"}, false
		}
		return Literal{Text: "false"}, false
	case *pg.A_Const_Sval:
		return Literal{Text: v.Sval.Sval}, false
	case *pg.A_Const_Bsval:
		return Literal{}, true
	}
	return Literal{}, true
}

func opName(names []*pg.Node) string {
	if len(names) == 0 {
		return ""
	}
	if s := names[len(names)-1].GetString_(); s != nil {
		return s.Sval
	}
	return "?"
}

// operatorWhat names an operator for a refusal.
func operatorWhat(op string) string {
	switch op {
	case "<", ">", "<=", ">=":
		return "ordering comparison " + op
	case "~~", "!~~":
		return "LIKE"
	case "~~*", "!~~*":
		return "ILIKE"
	case "~", "~*", "!~", "!~*":
		return "regular expression match " + op
	case "+", "-", "*", "/", "%", "^":
		return "arithmetic (" + op + ")"
	case "||":
		return "concatenation (||)"
	}
	return "operator " + op
}

// aexpr analyzes an operator expression.
func (a *analyzer) aexpr(e *pg.A_Expr, n *pg.Node, sc *scope) (exprInfo, error) {
	info := exprInfo{node: n}
	op := opName(e.Name)
	switch e.Kind {
	case pg.A_Expr_Kind_AEXPR_OP:
		if e.Lexpr != nil && (op == "=" || op == "<>") {
			return info, a.compare(e, sc, op == "<>")
		}
		for _, side := range []*pg.Node{e.Lexpr, e.Rexpr} {
			if _, err := a.plain(side, sc, operatorWhat(op)); err != nil {
				return info, err
			}
		}
		return info, nil
	case pg.A_Expr_Kind_AEXPR_OP_ANY, pg.A_Expr_Kind_AEXPR_OP_ALL:
		return info, a.anyAll(e, sc, op)
	case pg.A_Expr_Kind_AEXPR_IN:
		return info, a.inList(e, sc, op == "<>")
	case pg.A_Expr_Kind_AEXPR_LIKE, pg.A_Expr_Kind_AEXPR_ILIKE, pg.A_Expr_Kind_AEXPR_SIMILAR:
		what := map[pg.A_Expr_Kind]string{pg.A_Expr_Kind_AEXPR_LIKE: "LIKE", pg.A_Expr_Kind_AEXPR_ILIKE: "ILIKE", pg.A_Expr_Kind_AEXPR_SIMILAR: "SIMILAR TO"}[e.Kind]
		for _, side := range []*pg.Node{e.Lexpr, e.Rexpr} {
			if _, err := a.plain(side, sc, what); err != nil {
				return info, err
			}
		}
		return info, nil
	case pg.A_Expr_Kind_AEXPR_BETWEEN, pg.A_Expr_Kind_AEXPR_NOT_BETWEEN, pg.A_Expr_Kind_AEXPR_BETWEEN_SYM, pg.A_Expr_Kind_AEXPR_NOT_BETWEEN_SYM:
		if _, err := a.plain(e.Lexpr, sc, "BETWEEN"); err != nil {
			return info, err
		}
		if l := e.Rexpr.GetList(); l != nil {
			return info, a.plainAll(l.Items, sc, "BETWEEN")
		}
		_, err := a.plain(e.Rexpr, sc, "BETWEEN")
		return info, err
	case pg.A_Expr_Kind_AEXPR_DISTINCT, pg.A_Expr_Kind_AEXPR_NOT_DISTINCT:
		for _, side := range []*pg.Node{e.Lexpr, e.Rexpr} {
			if _, err := a.plain(side, sc, "IS [NOT] DISTINCT FROM (use = or IS NULL)"); err != nil {
				return info, err
			}
		}
		return info, nil
	case pg.A_Expr_Kind_AEXPR_NULLIF:
		for _, side := range []*pg.Node{e.Lexpr, e.Rexpr} {
			if _, err := a.plain(side, sc, "NULLIF"); err != nil {
				return info, err
			}
		}
		return info, nil
	}
	return info, unsupported(nil, "an unknown operator expression")
}

// compare handles a = b and a <> b.
func (a *analyzer) compare(e *pg.A_Expr, sc *scope, negated bool) error {
	l, err := a.expr(e.Lexpr, sc)
	if err != nil {
		return err
	}
	r, err := a.expr(e.Rexpr, sc)
	if err != nil {
		return err
	}
	if l.kind != exEnc && r.kind != exEnc {
		if err := a.usePlain(l); err != nil {
			return err
		}
		return a.usePlain(r)
	}
	if l.kind == exEnc && r.kind == exEnc {
		return checkSameKey(l.rule(), r.rule(), "compares")
	}
	enc, other := l, r
	if r.kind == exEnc {
		enc, other = r, l
	}
	col := enc.rule()
	if !col.Deterministic {
		return unsupported(col, "equality (=, <>) cannot be evaluated on a randomized column; configure it as deterministic")
	}
	m := &Match{Negated: negated}
	switch other.kind {
	case exNull:
		return nil // col = NULL is never true; nothing to encrypt
	case exLiteral:
		if err := checkLiteral(col, other); err != nil {
			return err
		}
		m.Literals = []Literal{other.lit}
	case exParam:
		if err := checkCast(col, other.cast); err != nil {
			return err
		}
		if err := a.bindParam(other.param, RoleMatch, col); err != nil {
			return err
		}
		m.Params = []int{other.param}
	default:
		return refuse(col, StateDatatypeMismatch,
			"compared with a plaintext expression; compare an encrypted column only with a constant, a parameter or a column under the same key")
	}
	if !enc.colRef {
		return unsupported(col, "a subquery result compared with a constant; compare the column inside the subquery")
	}
	ts, err := a.tokens()
	if err != nil {
		return err
	}
	ls, err := ts.operandSpan(e.Lexpr)
	if err != nil {
		return err
	}
	rs, err := ts.operandSpan(e.Rexpr)
	if err != nil {
		return err
	}
	colSpan, err := ts.exprSpan(enc.node)
	if err != nil {
		return err
	}
	m.Column = a.sql[colSpan.start:colSpan.end]
	a.addEdit(Edit{Start: min(ls.start, rs.start), End: max(ls.end, rs.end), Kind: EditMatch, Column: col, Match: m})
	return nil
}

// checkSameKey refuses comparing two encrypted columns whose ciphertexts
// are not comparable.
func checkSameKey(x, y *rules.ColumnRule, verb string) error {
	if rules.SameKey(x, y) {
		return nil
	}
	if !x.Deterministic {
		return unsupported(x, "%s a randomized column with %s; equality needs deterministic columns under the same key", verb, y)
	}
	if !y.Deterministic {
		return unsupported(y, "%s a randomized column with %s; equality needs deterministic columns under the same key", verb, x)
	}
	return refuse(x, StateDatatypeMismatch, "%s it with %s, which is encrypted under another key or type (%q vs %q); join columns must share a data key", verb, y, x.Key, y.Key)
}

// anyAll handles x = ANY(…) and x <> ALL(…).
func (a *analyzer) anyAll(e *pg.A_Expr, sc *scope, op string) error {
	l, err := a.expr(e.Lexpr, sc)
	if err != nil {
		return err
	}
	quant := "ANY"
	if e.Kind == pg.A_Expr_Kind_AEXPR_OP_ALL {
		quant = "ALL"
	}
	if l.kind != exEnc {
		if err := a.usePlain(l); err != nil {
			return err
		}
		_, err := a.plain(e.Rexpr, sc, op+" "+quant+"(…)")
		return err
	}
	col := l.rule()
	if !((quant == "ANY" && op == "=") || (quant == "ALL" && op == "<>")) {
		return unsupported(col, "%s %s(…) cannot be evaluated on encrypted values (only = ANY and <> ALL)", op, quant)
	}
	if !col.Deterministic {
		return unsupported(col, "equality (= ANY, <> ALL) cannot be evaluated on a randomized column; configure it as deterministic")
	}
	if !l.colRef {
		return unsupported(col, "a subquery result compared with %s(…)", quant)
	}
	m := &Match{Negated: quant == "ALL"}
	var r exprInfo
	if e.Rexpr.GetAArrayExpr() == nil {
		if r, err = a.expr(e.Rexpr, sc); err != nil {
			return err
		}
	}
	switch {
	case r.kind == exParam:
		if err := a.bindParam(r.param, RoleMatchArray, col); err != nil {
			return err
		}
		m.Params = []int{r.param}
	case r.kind == exNull:
		return nil
	case e.Rexpr.GetAArrayExpr() != nil:
		for _, el := range e.Rexpr.GetAArrayExpr().Elements {
			if err := a.matchItem(col, el, sc, m); err != nil {
				return err
			}
		}
	case r.kind == exLiteral:
		// '{a,b,NULL}' (pgx's simple protocol sends array parameters so):
		// one ciphertext per element. The plan's shape depends on the
		// literal's value, so it is pinned in the plan cache.
		if err := a.arrayLiteral(col, r, m); err != nil {
			return err
		}
		a.pin(e.Rexpr)
	default:
		return refuse(col, StateDatatypeMismatch, "compared with a plaintext array expression; use a parameter or ARRAY[…] of constants")
	}
	ts, err := a.tokens()
	if err != nil {
		return err
	}
	ls, err := ts.operandSpan(e.Lexpr)
	if err != nil {
		return err
	}
	opi, err := ts.at(int(e.Location))
	if err != nil {
		return err
	}
	// op ANY ( … ): the quantifier follows the operator.
	open := opi + 2
	if !ts.is(open, pg.Token_ASCII_40) {
		return errSpanf("expected %s( after the operator", quant)
	}
	close, err := ts.closing(open)
	if err != nil {
		return err
	}
	colSpan, err := ts.exprSpan(l.node)
	if err != nil {
		return err
	}
	m.Column = a.sql[colSpan.start:colSpan.end]
	if len(m.Literals) == 0 && len(m.Params) == 0 {
		return nil // only NULLs
	}
	a.addEdit(Edit{Start: ls.start, End: ts.t[close].end, Kind: EditMatch, Column: col, Match: m})
	return nil
}

// arrayLiteral adds the elements of an array constant in PostgreSQL's text
// format, optionally cast to an array of a type castTypes allows for col.
func (a *analyzer) arrayLiteral(col *rules.ColumnRule, r exprInfo, m *Match) error {
	if r.bits {
		return unsupported(col, "a bit-string constant cannot be encrypted for a %s column", col.Type)
	}
	if r.cast != nil {
		if len(r.cast.ArrayBounds) != 1 || len(r.cast.Typmods) > 0 {
			return unsupported(col, "an array constant cast to %s compared with an encrypted column", typeNameString(r.cast))
		}
		if err := checkCast(col, &pg.TypeName{Names: r.cast.Names, Setof: r.cast.Setof, PctType: r.cast.PctType}); err != nil {
			return err
		}
	}
	err := value.PostgresArrayElems([]byte(r.lit.Text), func(el []byte, null bool) error {
		if null {
			m.Null = true
			return nil
		}
		m.Literals = append(m.Literals, Literal{Text: string(el)})
		return nil
	})
	if err != nil {
		return refuse(col, StateInvalidText, "an array constant compared with the column is malformed")
	}
	return nil
}

// matchItem adds one element of an IN list or ARRAY[…] compared with col.
func (a *analyzer) matchItem(col *rules.ColumnRule, el *pg.Node, sc *scope, m *Match) error {
	in, err := a.expr(el, sc)
	if err != nil {
		return err
	}
	switch in.kind {
	case exLiteral:
		if err := checkLiteral(col, in); err != nil {
			return err
		}
		m.Literals = append(m.Literals, in.lit)
	case exNull:
		m.Null = true
	case exParam:
		if err := checkCast(col, in.cast); err != nil {
			return err
		}
		if err := a.bindParam(in.param, RoleMatch, col); err != nil {
			return err
		}
		m.Params = append(m.Params, in.param)
	case exEnc:
		return unsupported(col, "a list mixing encrypted columns with other values")
	default:
		return refuse(col, StateDatatypeMismatch, "compared with a plaintext expression in a list; use constants or parameters")
	}
	return nil
}

// inList handles x [NOT] IN (a, b, …).
func (a *analyzer) inList(e *pg.A_Expr, sc *scope, negated bool) error {
	l, err := a.expr(e.Lexpr, sc)
	if err != nil {
		return err
	}
	list := e.Rexpr.GetList()
	if list == nil {
		return unsupported(l.rule(), "an IN expression of unknown shape")
	}
	if l.kind != exEnc {
		if err := a.usePlain(l); err != nil {
			return err
		}
		return a.plainAll(list.Items, sc, "IN (…) against a plaintext value")
	}
	col := l.rule()
	if !col.Deterministic {
		return unsupported(col, "IN (…) cannot be evaluated on a randomized column; configure it as deterministic")
	}
	// All encrypted columns under the same key: no rewriting.
	allEnc := true
	for _, it := range list.Items {
		in, err := a.expr(it, sc)
		if err != nil {
			return err
		}
		if in.kind != exEnc {
			allEnc = false
			break
		}
		if err := checkSameKey(col, in.rule(), "compares"); err != nil {
			return err
		}
	}
	if allEnc {
		return nil
	}
	if !l.colRef {
		return unsupported(col, "a subquery result compared with IN (…)")
	}
	m := &Match{Negated: negated}
	for _, it := range list.Items {
		if err := a.matchItem(col, it, sc, m); err != nil {
			return err
		}
	}
	if len(m.Literals) == 0 && len(m.Params) == 0 {
		return nil // only NULLs
	}
	ts, err := a.tokens()
	if err != nil {
		return err
	}
	ls, err := ts.operandSpan(e.Lexpr)
	if err != nil {
		return err
	}
	i, err := ts.at(int(e.Location))
	if err != nil {
		return err
	}
	if ts.is(i, pg.Token_NOT) {
		i++
	}
	if !ts.is(i, pg.Token_IN_P) || !ts.is(i+1, pg.Token_ASCII_40) {
		return errSpanf("expected IN ( at offset %d", e.Location)
	}
	close, err := ts.closing(i + 1)
	if err != nil {
		return err
	}
	colSpan, err := ts.exprSpan(l.node)
	if err != nil {
		return err
	}
	m.Column = a.sql[colSpan.start:colSpan.end]
	a.addEdit(Edit{Start: ls.start, End: ts.t[close].end, Kind: EditMatch, Column: col, Match: m})
	return nil
}

// funcName returns the lower-case function name, without pg_catalog.
func funcName(names []*pg.Node) string {
	parts, _ := stringList(names)
	if len(parts) == 2 && parts[0] == "pg_catalog" {
		parts = parts[1:]
	}
	return strings.Join(parts, ".")
}

var aggregates = map[string]bool{
	"min": true, "max": true, "sum": true, "avg": true, "array_agg": true, "string_agg": true,
	"bool_and": true, "bool_or": true, "every": true, "bit_and": true, "bit_or": true, "bit_xor": true,
	"json_agg": true, "jsonb_agg": true, "json_object_agg": true, "jsonb_object_agg": true, "xmlagg": true,
	"stddev": true, "variance": true, "percentile_cont": true, "percentile_disc": true, "mode": true,
	"any_value": true,
}

// funcCall analyzes a function or aggregate call.
func (a *analyzer) funcCall(f *pg.FuncCall, sc *scope) error {
	name := funcName(f.Funcname)
	for _, arg := range f.Args {
		in, err := a.expr(arg, sc)
		if err != nil {
			return err
		}
		if in.kind != exEnc {
			if err := a.usePlain(in); err != nil {
				return err
			}
			continue
		}
		col := in.rule()
		switch {
		case name == "count" && len(f.Args) == 1:
			if f.AggDistinct && !col.Deterministic {
				return unsupported(col, "COUNT(DISTINCT …) compares values, which a randomized column cannot; configure it as deterministic")
			}
		case aggregates[name]:
			return unsupported(col, "aggregate %s() is not supported on an encrypted column: it would compute on ciphertext", name)
		default:
			return unsupported(col, "function %s() is not supported on an encrypted column: it would compute on ciphertext", name)
		}
	}
	if err := a.sortItems(f.AggOrder, sc, nil); err != nil {
		return err
	}
	if _, err := a.plain(f.AggFilter, sc, "FILTER"); err != nil {
		return err
	}
	if f.Over != nil {
		return a.windowDef(f.Over, sc)
	}
	return nil
}

// windowDef analyzes OVER (PARTITION BY … ORDER BY …).
func (a *analyzer) windowDef(w *pg.WindowDef, sc *scope) error {
	for _, p := range w.PartitionClause {
		if err := a.groupItem(p, sc, nil, "PARTITION BY"); err != nil {
			return err
		}
	}
	if err := a.sortItems(w.OrderClause, sc, nil); err != nil {
		return err
	}
	if _, err := a.plain(w.StartOffset, sc, "a window frame offset"); err != nil {
		return err
	}
	_, err := a.plain(w.EndOffset, sc, "a window frame offset")
	return err
}

// caseExpr analyzes CASE.
func (a *analyzer) caseExpr(c *pg.CaseExpr, sc *scope) error {
	if _, err := a.plain(c.Arg, sc, "CASE x WHEN … (compare with = inside WHEN instead)"); err != nil {
		return err
	}
	for _, w := range c.Args {
		cw := w.GetCaseWhen()
		if cw == nil {
			continue
		}
		if _, err := a.plain(cw.Expr, sc, "a CASE condition"); err != nil {
			return err
		}
		if _, err := a.plain(cw.Result, sc, "a CASE result"); err != nil {
			return err
		}
	}
	_, err := a.plain(c.Defresult, sc, "a CASE result")
	return err
}

// sublink analyzes a subquery expression.
func (a *analyzer) sublink(s *pg.SubLink, n *pg.Node, sc *scope) (exprInfo, error) {
	info := exprInfo{node: n}
	sel := s.Subselect.GetSelectStmt()
	if sel == nil {
		return info, unsupported(nil, "a subquery of unknown shape")
	}
	switch s.SubLinkType {
	case pg.SubLinkType_EXISTS_SUBLINK:
		_, err := a.selectStmt(sel, sc.child(), outIgnored)
		return info, err
	case pg.SubLinkType_EXPR_SUBLINK:
		out, err := a.selectStmt(sel, sc.child(), outCompared)
		if err != nil {
			return info, err
		}
		if len(out.cols) == 1 && out.cols[0].prov != nil {
			info.kind = exEnc
			info.prov = &prov{rule: out.cols[0].prov.rule}
		}
		return info, nil
	case pg.SubLinkType_ARRAY_SUBLINK:
		out, err := a.selectStmt(sel, sc.child(), outCompared)
		if err != nil {
			return info, err
		}
		for _, c := range out.cols {
			if c.prov != nil {
				return info, unsupported(c.prov.rule, "ARRAY(subquery) over an encrypted column is not supported")
			}
		}
		return info, nil
	case pg.SubLinkType_ANY_SUBLINK, pg.SubLinkType_ALL_SUBLINK:
		test, err := a.expr(s.Testexpr, sc)
		if err != nil {
			return info, err
		}
		out, err := a.selectStmt(sel, sc.child(), outCompared)
		if err != nil {
			return info, err
		}
		var sub *rules.ColumnRule
		for _, c := range out.cols {
			if c.prov != nil {
				sub = c.prov.rule
			}
		}
		if test.kind != exEnc && sub == nil {
			return info, a.usePlain(test)
		}
		op := opName(s.OperName)
		okOp := (s.SubLinkType == pg.SubLinkType_ANY_SUBLINK && (op == "" || op == "=")) ||
			(s.SubLinkType == pg.SubLinkType_ALL_SUBLINK && op == "<>")
		col := test.rule()
		if col == nil {
			col = sub
		}
		if !okOp {
			return info, unsupported(col, "%s with a subquery cannot be evaluated on encrypted values", operatorWhat(op))
		}
		if test.kind != exEnc || sub == nil || len(out.cols) != 1 {
			return info, refuse(col, StateDatatypeMismatch, "IN (subquery) compares an encrypted column with a plaintext value")
		}
		return info, checkSameKey(test.rule(), sub, "compares")
	default:
		out, err := a.selectStmt(sel, sc.child(), outCompared)
		if err != nil {
			return info, err
		}
		for _, c := range out.cols {
			if c.prov != nil {
				return info, unsupported(c.prov.rule, "a row comparison with a subquery is not supported on encrypted columns")
			}
		}
		_, err = a.plain(s.Testexpr, sc, "a row comparison with a subquery")
		return info, err
	}
}

// generic handles expression nodes without a case of their own: they are
// fine as long as no encrypted column and no subquery is inside them;
// parameters inside are plaintext.
func (a *analyzer) generic(n *pg.Node, sc *scope) error {
	name := stmtName(n)
	var err error
	walkNodes(n.ProtoReflect(), func(c *pg.Node) bool {
		if err != nil {
			return false
		}
		switch c.GetNode().(type) {
		case *pg.Node_ColumnRef:
			var in exprInfo
			in, err = a.expr(c, sc)
			if err == nil && in.kind == exEnc {
				err = unsupported(in.rule(), "%s is not supported on an encrypted column", name)
			}
			return false
		case *pg.Node_ParamRef:
			err = a.bindParam(int(c.GetParamRef().Number), RolePlain, nil)
			return false
		case *pg.Node_SubLink, *pg.Node_SelectStmt:
			err = unsupported(nil, "a subquery inside %s is not supported in a statement touching an encrypted table", name)
			return false
		}
		return true
	})
	return err
}

// walkNodes calls fn for every *pg.Node below m (not m itself); fn returns
// false to skip a node's children.
func walkNodes(m protoreflect.Message, fn func(*pg.Node) bool) {
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		if fd.Message() == nil || fd.IsMap() {
			return true
		}
		visit := func(cm protoreflect.Message) {
			if node, ok := cm.Interface().(*pg.Node); ok {
				if !fn(node) {
					return
				}
			}
			walkNodes(cm, fn)
		}
		if fd.IsList() {
			l := v.List()
			for i := 0; i < l.Len(); i++ {
				visit(l.Get(i).Message())
			}
		} else {
			visit(v.Message())
		}
		return true
	})
}

// checkLiteral checks that a constant (and its cast) can be encrypted for
// col: bit strings and casts that would change the value are refused.
func checkLiteral(col *rules.ColumnRule, in exprInfo) error {
	if in.bits {
		return unsupported(col, "a bit-string constant cannot be encrypted for a %s column", col.Type)
	}
	return checkCast(col, in.cast)
}

// castTypes lists, per plaintext type, the casts a value bound for an
// encrypted column may carry: those that cannot change the value the proxy
// encrypts (no typmods, no lossy conversions).
var castTypes = map[value.Type][]string{
	value.TypeText:        {"text", "varchar"},
	value.TypeSmallint:    {"int2"},
	value.TypeInt:         {"int2", "int4"},
	value.TypeBigint:      {"int2", "int4", "int8"},
	value.TypeReal:        {"float4"},
	value.TypeDouble:      {"float8"},
	value.TypeNumeric:     {"numeric", "int2", "int4", "int8"},
	value.TypeBoolean:     {"bool"},
	value.TypeDate:        {"date"},
	value.TypeTimestamp:   {"timestamp"},
	value.TypeTimestamptz: {"timestamptz"},
	value.TypeUUID:        {"uuid"},
	value.TypeBytes:       {"bytea"},
	value.TypeJSON:        {"json"},
}

// castName returns the type name of a cast without pg_catalog, or ok=false
// if it is schema-qualified otherwise, has modifiers or array bounds.
func castName(tn *pg.TypeName) (string, bool) {
	parts, ok := stringList(tn.Names)
	if !ok || len(parts) == 0 || len(tn.Typmods) > 0 || len(tn.ArrayBounds) > 0 || tn.Setof || tn.PctType {
		return "", false
	}
	if len(parts) == 2 && parts[0] == "pg_catalog" {
		parts = parts[1:]
	}
	if len(parts) != 1 {
		return "", false
	}
	return parts[0], true
}

func typeNameString(tn *pg.TypeName) string {
	if tn == nil {
		return "?"
	}
	parts, _ := stringList(tn.Names)
	s := strings.Join(parts, ".")
	if len(tn.Typmods) > 0 {
		s += "(…)"
	}
	if len(tn.ArrayBounds) > 0 {
		s += "[]"
	}
	return s
}

func checkCast(col *rules.ColumnRule, tn *pg.TypeName) error {
	if tn == nil {
		return nil
	}
	name, ok := castName(tn)
	if ok {
		for _, t := range castTypes[col.Type] {
			if t == name {
				return nil
			}
		}
	}
	return unsupported(col, "a value cast to %s cannot be encrypted for a %s column (the cast could change it)", typeNameString(tn), col.Type)
}

func errSpanf(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{errSpan}, args...)...)
}
