package pgsql

import (
	"errors"
	"fmt"
	"sort"

	pg "github.com/pganalyze/pg_query_go/v6"
)

// The parse tree gives start locations only. The ends of the few node
// kinds the planner edits (literals, parameters, casts, column references,
// ARRAY[…] constructors and operator expressions) are found here, on the
// token stream of PostgreSQL's own scanner (pg_query.Scan), so that E'…'
// strings, dollar quotes, string continuation across lines, comments and
// negative numbers are handled exactly as the server handles them.
// Anything this file cannot place precisely is an error, which the planner
// turns into a refusal: an edit is never guessed.

// token is one scanner token: bytes [start, end) of the SQL.
type token struct {
	start, end int
	tok        pg.Token
	keyword    bool
}

// tokens is the scanned SQL.
type tokens struct {
	t []token
}

func scan(sql string) (*tokens, error) {
	res, err := pg.Scan(sql)
	if err != nil {
		return nil, fmt.Errorf("%w: scan statement: %s", errSpan, safeParseMessage(err))
	}
	out := &tokens{t: make([]token, len(res.Tokens))}
	for i, t := range res.Tokens {
		out.t[i] = token{start: int(t.Start), end: int(t.End), tok: t.Token, keyword: t.KeywordKind != pg.KeywordKind_NO_KEYWORD}
	}
	return out, nil
}

// errSpan is wrapped by every failure to place an edit.
var errSpan = errors.New("cannot locate expression in the statement text")

// at returns the index of the token that starts at byte off.
func (ts *tokens) at(off int) (int, error) {
	i := sort.Search(len(ts.t), func(i int) bool { return ts.t[i].start >= off })
	if i == len(ts.t) || ts.t[i].start != off {
		return 0, fmt.Errorf("%w: no token at offset %d", errSpan, off)
	}
	return i, nil
}

// is reports whether token i exists and has type tok.
func (ts *tokens) is(i int, tok pg.Token) bool {
	return i >= 0 && i < len(ts.t) && ts.t[i].tok == tok
}

// isName reports whether token i can be (part of) a name: an identifier or
// any keyword.
func (ts *tokens) isName(i int) bool {
	if i < 0 || i >= len(ts.t) {
		return false
	}
	t := ts.t[i]
	return t.tok == pg.Token_IDENT || t.tok == pg.Token_UIDENT || t.keyword
}

// closing returns the index of the token closing the bracket opened at
// token i ("(" or "[").
func (ts *tokens) closing(i int) (int, error) {
	if i < 0 || i >= len(ts.t) {
		return 0, fmt.Errorf("%w: bracket past the end", errSpan)
	}
	open := ts.t[i].tok
	var close pg.Token
	switch open {
	case pg.Token_ASCII_40:
		close = pg.Token_ASCII_41
	case pg.Token_ASCII_91:
		close = pg.Token_ASCII_93
	default:
		return 0, fmt.Errorf("%w: expected a bracket at offset %d", errSpan, ts.t[i].start)
	}
	depth := 0
	for j := i; j < len(ts.t); j++ {
		switch ts.t[j].tok {
		case pg.Token_ASCII_40, pg.Token_ASCII_91:
			depth++
		case pg.Token_ASCII_41, pg.Token_ASCII_93:
			depth--
			if depth == 0 {
				if ts.t[j].tok != close {
					return 0, fmt.Errorf("%w: mismatched brackets at offset %d", errSpan, ts.t[j].start)
				}
				return j, nil
			}
		}
	}
	return 0, fmt.Errorf("%w: unbalanced bracket at offset %d", errSpan, ts.t[i].start)
}

// span is a byte range [start, end) of the SQL, and the token indexes of
// its first and last token.
type span struct {
	start, end  int
	first, last int
}

// exprSpan places n, which must be a literal, a parameter, a NULL, a
// DEFAULT, a column reference, a cast of one of these, or an ARRAY[…]
// constructor. Surrounding grouping parentheses are not included.
func (ts *tokens) exprSpan(n *pg.Node) (span, error) {
	switch v := n.GetNode().(type) {
	case *pg.Node_AConst:
		return ts.constSpan(int(v.AConst.Location))
	case *pg.Node_ParamRef:
		i, err := ts.at(int(v.ParamRef.Location))
		if err != nil {
			return span{}, err
		}
		if !ts.is(i, pg.Token_PARAM) {
			return span{}, fmt.Errorf("%w: expected a parameter at offset %d", errSpan, ts.t[i].start)
		}
		return ts.mk(i, i), nil
	case *pg.Node_SetToDefault:
		i, err := ts.at(int(v.SetToDefault.Location))
		if err != nil {
			return span{}, err
		}
		return ts.mk(i, i), nil
	case *pg.Node_ColumnRef:
		return ts.columnRefSpan(v.ColumnRef)
	case *pg.Node_TypeCast:
		return ts.typeCastSpan(v.TypeCast)
	case *pg.Node_AArrayExpr:
		i, err := ts.at(int(v.AArrayExpr.Location))
		if err != nil {
			return span{}, err
		}
		open := i
		if ts.is(i, pg.Token_ARRAY) {
			open = i + 1
		}
		if !ts.is(open, pg.Token_ASCII_91) {
			return span{}, fmt.Errorf("%w: expected ARRAY[ at offset %d", errSpan, ts.t[i].start)
		}
		j, err := ts.closing(open)
		if err != nil {
			return span{}, err
		}
		return ts.mk(i, j), nil
	default:
		return span{}, fmt.Errorf("%w: unsupported node %T", errSpan, n.GetNode())
	}
}

func (ts *tokens) mk(first, last int) span {
	return span{start: ts.t[first].start, end: ts.t[last].end, first: first, last: last}
}

// constSpan places the constant starting at loc: one token, or a sign and
// a number (the grammar folds -5 into one constant located at the sign).
func (ts *tokens) constSpan(loc int) (span, error) {
	i, err := ts.at(loc)
	if err != nil {
		return span{}, err
	}
	switch ts.t[i].tok {
	case pg.Token_ASCII_45, pg.Token_ASCII_43:
		if ts.is(i+1, pg.Token_ICONST) || ts.is(i+1, pg.Token_FCONST) {
			return ts.mk(i, i+1), nil
		}
		if ts.is(i+1, pg.Token_ASCII_45) || ts.is(i+1, pg.Token_ASCII_43) {
			// - - 5: the grammar folds nested signs too.
			s, err := ts.constSpan(ts.t[i+1].start)
			if err != nil {
				return span{}, err
			}
			return ts.mk(i, s.last), nil
		}
	case pg.Token_SCONST, pg.Token_USCONST, pg.Token_ICONST, pg.Token_FCONST,
		pg.Token_BCONST, pg.Token_XCONST, pg.Token_NULL_P, pg.Token_TRUE_P, pg.Token_FALSE_P:
		return ts.mk(i, i), nil
	}
	return span{}, fmt.Errorf("%w: expected a constant at offset %d", errSpan, loc)
}

// columnRefSpan places a possibly qualified column reference.
func (ts *tokens) columnRefSpan(c *pg.ColumnRef) (span, error) {
	i, err := ts.at(int(c.Location))
	if err != nil {
		return span{}, err
	}
	if !ts.isName(i) && !ts.is(i, pg.Token_ASCII_42) {
		return span{}, fmt.Errorf("%w: expected a column name at offset %d", errSpan, ts.t[i].start)
	}
	last, parts := i, 1
	for ts.is(last+1, pg.Token_ASCII_46) && (ts.isName(last+2) || ts.is(last+2, pg.Token_ASCII_42)) {
		last += 2
		parts++
	}
	if parts != len(c.Fields) {
		return span{}, fmt.Errorf("%w: column reference at offset %d has %d parts, expected %d", errSpan, c.Location, parts, len(c.Fields))
	}
	return ts.mk(i, last), nil
}

// typeCastSpan places x::type, CAST(x AS type) and type 'literal'.
func (ts *tokens) typeCastSpan(tc *pg.TypeCast) (span, error) {
	if tc.Arg == nil || tc.TypeName == nil {
		return span{}, fmt.Errorf("%w: incomplete cast", errSpan)
	}
	if tc.Location < 0 {
		// type 'literal': the type name comes first.
		ti, err := ts.at(int(tc.TypeName.Location))
		if err != nil {
			return span{}, err
		}
		arg, err := ts.exprSpan(tc.Arg)
		if err != nil {
			return span{}, err
		}
		if arg.first <= ti {
			return span{}, fmt.Errorf("%w: typed literal out of order", errSpan)
		}
		return ts.mk(ti, arg.last), nil
	}
	i, err := ts.at(int(tc.Location))
	if err != nil {
		return span{}, err
	}
	switch ts.t[i].tok {
	case pg.Token_CAST:
		if !ts.is(i+1, pg.Token_ASCII_40) {
			return span{}, fmt.Errorf("%w: expected CAST( at offset %d", errSpan, ts.t[i].start)
		}
		j, err := ts.closing(i + 1)
		if err != nil {
			return span{}, err
		}
		return ts.mk(i, j), nil
	case pg.Token_TYPECAST:
		arg, err := ts.operandSpan(tc.Arg)
		if err != nil {
			return span{}, err
		}
		if arg.last+1 != i {
			return span{}, fmt.Errorf("%w: cast operand does not end at :: (offset %d)", errSpan, ts.t[i].start)
		}
		last, err := ts.typeNameEnd(tc.TypeName)
		if err != nil {
			return span{}, err
		}
		if last <= i {
			return span{}, fmt.Errorf("%w: type name before a :: cast", errSpan)
		}
		return ts.mk(arg.first, last), nil
	}
	return span{}, fmt.Errorf("%w: unrecognised cast at offset %d", errSpan, tc.Location)
}

// operandSpan is exprSpan widened to the grouping parentheses around the
// expression, as in (x)::text or (email) = 'a'. It must only be used for
// operands of operators, where a "(" right before and a ")" right after
// can only be grouping parentheses.
func (ts *tokens) operandSpan(n *pg.Node) (span, error) {
	s, err := ts.exprSpan(n)
	if err != nil {
		return span{}, err
	}
	return ts.widen(s), nil
}

// widen extends s over grouping parentheses that enclose exactly s.
func (ts *tokens) widen(s span) span {
	for ts.is(s.first-1, pg.Token_ASCII_40) && ts.is(s.last+1, pg.Token_ASCII_41) {
		s = ts.mk(s.first-1, s.last+1)
	}
	return s
}

// typeNameEnd returns the index of the last token of the type name that
// starts at tn.Location: a possibly qualified name, the multi-word forms
// (double precision, character varying, timestamp with time zone, …), an
// optional modifier list and array brackets.
func (ts *tokens) typeNameEnd(tn *pg.TypeName) (int, error) {
	i, err := ts.at(int(tn.Location))
	if err != nil {
		return 0, err
	}
	if !ts.isName(i) {
		return 0, fmt.Errorf("%w: expected a type name at offset %d", errSpan, tn.Location)
	}
	last := i
	for ts.is(last+1, pg.Token_ASCII_46) && ts.isName(last+2) {
		last += 2
	}
	word := func(j int) string {
		if j < 0 || j >= len(ts.t) {
			return ""
		}
		return ts.t[j].tok.String()
	}
	switch word(last) {
	case "DOUBLE_P":
		if word(last+1) == "PRECISION" {
			last++
		}
	case "NATIONAL":
		if w := word(last + 1); w == "CHARACTER" || w == "CHAR_P" {
			last++
		}
		if word(last+1) == "VARYING" {
			last++
		}
	case "CHARACTER", "CHAR_P", "NCHAR", "BIT":
		if word(last+1) == "VARYING" {
			last++
		}
	case "TIMESTAMP", "TIME":
		if ts.is(last+1, pg.Token_ASCII_40) {
			j, err := ts.closing(last + 1)
			if err != nil {
				return 0, err
			}
			last = j
		}
		if w := word(last + 1); (w == "WITH" || w == "WITH_LA" || w == "WITHOUT") && word(last+2) == "TIME" && word(last+3) == "ZONE" {
			last += 3
		}
		return ts.arrayBounds(last, tn)
	case "INTERVAL":
		return 0, fmt.Errorf("%w: interval type names are not supported here", errSpan)
	}
	if ts.is(last+1, pg.Token_ASCII_40) {
		if len(tn.Typmods) == 0 {
			return 0, fmt.Errorf("%w: unexpected ( after type name", errSpan)
		}
		j, err := ts.closing(last + 1)
		if err != nil {
			return 0, err
		}
		last = j
	}
	return ts.arrayBounds(last, tn)
}

func (ts *tokens) arrayBounds(last int, tn *pg.TypeName) (int, error) {
	n := 0
	for ts.is(last+1, pg.Token_ASCII_91) {
		j, err := ts.closing(last + 1)
		if err != nil {
			return 0, err
		}
		last = j
		n++
	}
	if ts.is(last+1, pg.Token_ARRAY) {
		last++
		n = max(n, 1)
		if ts.is(last+1, pg.Token_ASCII_91) {
			j, err := ts.closing(last + 1)
			if err != nil {
				return 0, err
			}
			last = j
		}
	}
	if n != len(tn.ArrayBounds) {
		return 0, fmt.Errorf("%w: type name at offset %d: array bounds do not match", errSpan, tn.Location)
	}
	return last, nil
}
