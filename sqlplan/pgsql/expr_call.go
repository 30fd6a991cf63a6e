package pgsql

import (
	"fmt"
	"strings"

	pg "github.com/pganalyze/pg_query_go/v6"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/dbproxy/dbproxy/rules"
	"github.com/dbproxy/dbproxy/sqlplan"
	"github.com/dbproxy/dbproxy/value"
)

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
		return info, a.plainSubquery(sel, sc, "ARRAY(subquery) over an encrypted column is not supported")
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
			return info, refuse(col, sqlplan.StateDatatypeMismatch, "IN (subquery) compares an encrypted column with a plaintext value")
		}
		return info, checkSameKey(test.rule(), sub, "compares")
	default:
		if err := a.plainSubquery(sel, sc, "a row comparison with a subquery is not supported on encrypted columns"); err != nil {
			return info, err
		}
		_, err := a.plain(s.Testexpr, sc, "a row comparison with a subquery")
		return info, err
	}
}

// plainSubquery plans subquery sel and refuses it (reason) when it returns
// an encrypted column.
func (a *analyzer) plainSubquery(sel *pg.SelectStmt, sc *scope, reason string) error {
	out, err := a.selectStmt(sel, sc.child(), outCompared)
	if err != nil {
		return err
	}
	for _, c := range out.cols {
		if c.prov != nil {
			return unsupported(c.prov.rule, "%s", reason)
		}
	}
	return nil
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
			err = a.bindParam(int(c.GetParamRef().Number), sqlplan.RolePlain, nil)
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
