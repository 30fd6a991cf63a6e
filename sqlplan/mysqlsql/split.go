package mysqlsql

import (
	"strconv"
	"strings"

	"github.com/pingcap/tidb/pkg/parser/ast"
	"github.com/pingcap/tidb/pkg/parser/opcode"
	driver "github.com/pingcap/tidb/pkg/parser/test_driver"

	"github.com/dbproxy/dbproxy/sqlplan"
)

// split cuts the restored text at the markers and orders the slots as
// they appear; it checks every slot appears exactly once.
func (out *Plan) split(text string) error {
	slots := out.Slots
	seen := make([]bool, len(slots))
	var segs []string
	var ordered []Slot
	for {
		i := strings.Index(text, "`"+markerPrefix)
		if i < 0 {
			break
		}
		rest := text[i+1+len(markerPrefix):]
		j := strings.IndexByte(rest, '`')
		if j < 0 {
			return &sqlplan.Refusal{SQLState: sqlplan.StateInternal, Reason: "internal: malformed rewrite"}
		}
		n, err := strconv.Atoi(rest[:j])
		if err != nil || n < 0 || n >= len(slots) || seen[n] {
			return &sqlplan.Refusal{SQLState: sqlplan.StateInternal, Reason: "internal: malformed rewrite"}
		}
		seen[n] = true
		segs = append(segs, text[:i])
		ordered = append(ordered, slots[n])
		text = rest[j+1:]
	}
	segs = append(segs, text)
	for _, s := range seen {
		if !s {
			return &sqlplan.Refusal{SQLState: sqlplan.StateInternal, Reason: "internal: a value was lost in the rewrite"}
		}
	}
	out.Segments, out.Slots = segs, ordered
	out.Params = normaliseParams(out.Params)
	for _, s := range ordered {
		if s.Kind != SlotParam {
			continue
		}
		if out.Params[s.Param].Role == sqlplan.RoleMatch {
			for v := 0; v < MatchSlots; v++ {
				out.ServerParams = append(out.ServerParams, ServerParam{Client: s.Param, Version: v})
			}
		} else {
			out.ServerParams = append(out.ServerParams, ServerParam{Client: s.Param})
		}
	}
	if len(out.ServerParams) < len(out.Params) {
		return &sqlplan.Refusal{SQLState: sqlplan.StateInternal, Reason: "internal: a placeholder was lost in the rewrite"}
	}
	return nil
}

// replacer swaps nodes for their replacements.
type replacer struct{ repl map[ast.Node]ast.ExprNode }

func (r *replacer) Enter(n ast.Node) (ast.Node, bool) {
	if e, ok := r.repl[n]; ok {
		return e, true
	}
	return n, false
}

func (r *replacer) Leave(n ast.Node) (ast.Node, bool) { return n, true }

func marker(i int) ast.ExprNode {
	return &ast.ColumnNameExpr{Name: &ast.ColumnName{Name: ast.NewCIStr(markerPrefix + strconv.Itoa(i))}}
}

// literal reports whether e is a constant, and its value.
func literal(e ast.ExprNode) (sqlplan.Literal, bool) {
	neg := false
	for {
		switch x := e.(type) {
		case *ast.ParenthesesExpr:
			e = x.Expr
			continue
		case *ast.UnaryOperationExpr:
			if x.Op == opcode.Minus && !neg {
				neg = true
				e = x.V
				continue
			}
			if x.Op == opcode.Plus {
				e = x.V
				continue
			}
			return sqlplan.Literal{}, false
		}
		break
	}
	if _, ok := e.(*driver.ParamMarkerExpr); ok {
		return sqlplan.Literal{}, false
	}
	v, ok := e.(*driver.ValueExpr)
	if !ok {
		return sqlplan.Literal{}, false
	}
	var s string
	switch v.Kind() {
	case driver.KindNull:
		if neg {
			return sqlplan.Literal{}, false
		}
		return sqlplan.Literal{Null: true}, true
	case driver.KindInt64:
		s = strconv.FormatInt(v.GetInt64(), 10)
	case driver.KindUint64:
		s = strconv.FormatUint(v.GetUint64(), 10)
	case driver.KindFloat32:
		s = strconv.FormatFloat(v.GetFloat64(), 'g', -1, 32)
	case driver.KindFloat64:
		s = strconv.FormatFloat(v.GetFloat64(), 'g', -1, 64)
	case driver.KindMysqlDecimal:
		s = v.GetMysqlDecimal().String()
	case driver.KindString, driver.KindBytes:
		if neg {
			return sqlplan.Literal{}, false
		}
		s = v.GetString()
	case driver.KindBinaryLiteral:
		if neg {
			return sqlplan.Literal{}, false
		}
		s = string(v.GetBytes())
	default:
		return sqlplan.Literal{}, false
	}
	if neg {
		if strings.HasPrefix(s, "-") {
			return sqlplan.Literal{}, false
		}
		s = "-" + s
	}
	return sqlplan.Literal{Text: s}, true
}

func param(e ast.ExprNode) (*driver.ParamMarkerExpr, bool) {
	for {
		if x, ok := e.(*ast.ParenthesesExpr); ok {
			e = x.Expr
			continue
		}
		break
	}
	m, ok := e.(*driver.ParamMarkerExpr)
	return m, ok
}

func unparen(e ast.ExprNode) ast.ExprNode {
	for {
		x, ok := e.(*ast.ParenthesesExpr)
		if !ok {
			return e
		}
		e = x.Expr
	}
}
