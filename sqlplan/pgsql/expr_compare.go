package pgsql

import (
	"strconv"

	pg "github.com/pganalyze/pg_query_go/v6"

	"github.com/dbproxy/dbproxy/rules"
	"github.com/dbproxy/dbproxy/sqlplan"
	"github.com/dbproxy/dbproxy/value"
)

// constLiteral returns the value of a non-NULL constant as PostgreSQL reads
// it, and whether it is a bit string.
func constLiteral(c *pg.A_Const) (sqlplan.Literal, bool) {
	switch v := c.Val.(type) {
	case *pg.A_Const_Ival:
		return sqlplan.Literal{Text: strconv.FormatInt(int64(v.Ival.Ival), 10)}, false
	case *pg.A_Const_Fval:
		return sqlplan.Literal{Text: v.Fval.Fval}, false
	case *pg.A_Const_Boolval:
		if v.Boolval.Boolval {
			return sqlplan.Literal{Text: "true"}, false
		}
		return sqlplan.Literal{Text: "false"}, false
	case *pg.A_Const_Sval:
		return sqlplan.Literal{Text: v.Sval.Sval}, false
	case *pg.A_Const_Bsval:
		return sqlplan.Literal{}, true
	}
	return sqlplan.Literal{}, true
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
		m.Literals = []sqlplan.Literal{other.lit}
	case exParam:
		if err := checkCast(col, other.cast); err != nil {
			return err
		}
		if err := a.bindParam(other.param, sqlplan.RoleMatch, col); err != nil {
			return err
		}
		m.Params = []int{other.param}
	default:
		return refuse(col, sqlplan.StateDatatypeMismatch,
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
	return refuse(x, sqlplan.StateDatatypeMismatch, "%s it with %s, which is encrypted under another key or type (%q vs %q); join columns must share a data key", verb, y, x.Key, y.Key)
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
		if err := a.bindParam(r.param, sqlplan.RoleMatchArray, col); err != nil {
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
		return refuse(col, sqlplan.StateDatatypeMismatch, "compared with a plaintext array expression; use a parameter or ARRAY[…] of constants")
	}
	return a.anyAllEdit(e, l, col, quant, m)
}

// anyAllEdit records the edit that replaces x op quant(…) by the match m.
func (a *analyzer) anyAllEdit(e *pg.A_Expr, l exprInfo, col *rules.ColumnRule, quant string, m *Match) error {
	edit, err := a.matchEdit(e, l, col, m, func(ts *tokens, op int) (int, error) {
		// op ANY ( … ): the quantifier follows the operator.
		if !ts.is(op+2, pg.Token_ASCII_40) {
			return 0, errSpanf("expected %s( after the operator", quant)
		}
		return op + 2, nil
	})
	if err != nil {
		return err
	}
	if len(m.Literals) == 0 && len(m.Params) == 0 {
		return nil // only NULLs
	}
	a.addEdit(edit)
	return nil
}

// matchEdit makes the edit that replaces the comparison e by the match m:
// from e's left operand to the parenthesis closing its list, whose opening
// one open finds from the operator's token. It sets m.Column to the text
// of the compared column.
func (a *analyzer) matchEdit(e *pg.A_Expr, l exprInfo, col *rules.ColumnRule, m *Match, open func(ts *tokens, op int) (int, error)) (Edit, error) {
	ts, err := a.tokens()
	if err != nil {
		return Edit{}, err
	}
	ls, err := ts.operandSpan(e.Lexpr)
	if err != nil {
		return Edit{}, err
	}
	op, err := ts.at(int(e.Location))
	if err != nil {
		return Edit{}, err
	}
	o, err := open(ts, op)
	if err != nil {
		return Edit{}, err
	}
	close, err := ts.closing(o)
	if err != nil {
		return Edit{}, err
	}
	colSpan, err := ts.exprSpan(l.node)
	if err != nil {
		return Edit{}, err
	}
	m.Column = a.sql[colSpan.start:colSpan.end]
	return Edit{Start: ls.start, End: ts.t[close].end, Kind: EditMatch, Column: col, Match: m}, nil
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
		m.Literals = append(m.Literals, sqlplan.Literal{Text: string(el)})
		return nil
	})
	if err != nil {
		return refuse(col, sqlplan.StateInvalidText, "an array constant compared with the column is malformed")
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
		if err := a.bindParam(in.param, sqlplan.RoleMatch, col); err != nil {
			return err
		}
		m.Params = append(m.Params, in.param)
	case exEnc:
		return unsupported(col, "a list mixing encrypted columns with other values")
	default:
		return refuse(col, sqlplan.StateDatatypeMismatch, "compared with a plaintext expression in a list; use constants or parameters")
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
	edit, err := a.matchEdit(e, l, col, m, func(ts *tokens, i int) (int, error) {
		if ts.is(i, pg.Token_NOT) {
			i++
		}
		if !ts.is(i, pg.Token_IN_P) || !ts.is(i+1, pg.Token_ASCII_40) {
			return 0, errSpanf("expected IN ( at offset %d", e.Location)
		}
		return i + 1, nil
	})
	if err != nil {
		return err
	}
	a.addEdit(edit)
	return nil
}
