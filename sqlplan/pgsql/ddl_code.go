package pgsql

import (
	"strings"

	pg "github.com/pganalyze/pg_query_go/v6"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/dbproxy/dbproxy/rules"
	"github.com/dbproxy/dbproxy/sqlplan"
)

// guardFunction refuses CREATE FUNCTION/PROCEDURE in languages other than
// sql unless dynamic SQL is allowed, and sql bodies naming an encrypted or
// derived relation (in the statement text, or in the body string once its
// escapes are decoded).
func (a *analyzer) guardFunction(f *pg.CreateFunctionStmt, text string) error {
	what := "CREATE FUNCTION"
	if f.IsProcedure {
		what = "CREATE PROCEDURE"
	}
	lang := ""
	var bodies []string
	for _, o := range f.Options {
		de := o.GetDefElem()
		if de == nil {
			continue
		}
		switch de.Defname {
		case "language":
			lang = strings.ToLower(de.Arg.GetString_().GetSval())
		case "as":
			if s := de.Arg.GetString_(); s != nil {
				bodies = append(bodies, s.Sval)
			}
			for _, it := range de.Arg.GetList().GetItems() {
				bodies = append(bodies, it.GetString_().GetSval())
			}
		}
	}
	if lang == "" && f.SqlBody != nil {
		lang = "sql"
	}
	return a.guardCode(what, lang, text, bodies)
}

// guardCode decides about code the server runs later or elsewhere: a DO
// block or a function body. SQL and PL/pgSQL code without dynamic SQL can
// reach a table only by spelling its name, so it is allowed unless it
// names an encrypted or derived relation (refused whatever the opt-in: it
// would read or write the table without the proxy). PL/pgSQL EXECUTE,
// functions that run SQL text, and every other language can build SQL at
// run time: refused unless dynamic SQL is allowed.
func (a *analyzer) guardCode(what, lang, text string, bodies []string) error {
	switch lang {
	case "sql", "plpgsql":
	case "":
		lang = "an unspecified language"
		fallthrough
	default:
		if !a.p.dynamic {
			return refuse(nil, sqlplan.StateInsufficientPrivilege,
				"%s in %s can run SQL built at run time, which the proxy cannot see (allow_dynamic_sql is off on this listener)", what, lang)
		}
		return nil
	}
	touched := a.p.touches(text)
	for _, b := range bodies {
		touched = touched || a.p.touches(b)
		if a.p.dynamic {
			continue
		}
		if hasSQLRunner(b) {
			return refuse(nil, sqlplan.StateInsufficientPrivilege,
				"%s whose body calls a function that runs SQL text (query_to_xml, ts_stat, dblink, …), which the proxy cannot see (allow_dynamic_sql is off on this listener)", what)
		}
		if lang == "plpgsql" && hasWordFold(b, "execute") {
			return refuse(nil, sqlplan.StateInsufficientPrivilege,
				"%s with EXECUTE runs SQL built at run time, which the proxy cannot see (allow_dynamic_sql is off on this listener)", what)
		}
	}
	if touched {
		return refuse(nil, sqlplan.StateFeatureNotSupported,
			"%s whose body names an encrypted table (or a relation derived from one) would read or write it without the proxy; run the statements directly", what)
	}
	return nil
}

// hasWordFold reports whether text contains word (lower case) as a whole
// word in any ASCII case.
func hasWordFold(text, word string) bool {
	for i := 0; i+len(word) <= len(text); i++ {
		if i > 0 && rules.IdentByte(text[i-1]) {
			continue
		}
		if !rules.HasPrefixFold(text[i:], word) {
			continue
		}
		if j := i + len(word); j == len(text) || !rules.IdentByte(text[j]) {
			return true
		}
	}
	return false
}

// checkDerived refuses a statement that names a relation derived from an
// encrypted table (Derived), except DROP, GRANT/REVOKE and ALTER TABLE …
// NO INHERIT / DETACH PARTITION, which undo or do not use the derivation.
func (a *analyzer) checkDerived(n *pg.Node, d *Derived) error {
	switch v := n.GetNode().(type) {
	case *pg.Node_DropStmt, *pg.Node_GrantStmt:
		return nil
	case *pg.Node_AlterTableStmt:
		undo := len(v.AlterTableStmt.Cmds) > 0
		for _, c := range v.AlterTableStmt.Cmds {
			switch c.GetAlterTableCmd().GetSubtype() {
			case pg.AlterTableType_AT_DropInherit, pg.AlterTableType_AT_DetachPartition, pg.AlterTableType_AT_DetachPartitionFinalize:
			default:
				undo = false
			}
		}
		if undo {
			return nil
		}
	}
	var err error
	walkRangeVars(n.ProtoReflect(), func(rv *pg.RangeVar) bool {
		if err != nil || !d.named(rv.Relname) {
			return err == nil
		}
		schema := rv.Schemaname
		if schema == "" {
			a.noCache = true
			if schema, err = a.resolveSchema(rv.Relname); err != nil {
				return false
			}
		} else if strings.HasPrefix(schema, "pg_temp") {
			schema = "pg_temp"
		}
		if r, ok := d.lookup(schema, rv.Relname); ok {
			err = refuse(nil, sqlplan.StateFeatureNotSupported, "%s", r.describe(schema, rv.Relname))
			return false
		}
		return true
	})
	return err
}

// walkRangeVars calls fn for every RangeVar under m, wherever it sits
// (FROM items, INSERT/UPDATE/DELETE/COPY targets, DDL relations); fn
// returns false to stop.
func walkRangeVars(m protoreflect.Message, fn func(*pg.RangeVar) bool) bool {
	ok := true
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		if fd.Message() == nil || fd.IsMap() {
			return true
		}
		visit := func(cm protoreflect.Message) bool {
			if rv, isRV := cm.Interface().(*pg.RangeVar); isRV {
				return fn(rv)
			}
			return walkRangeVars(cm, fn)
		}
		if fd.IsList() {
			l := v.List()
			for i := 0; i < l.Len(); i++ {
				if !visit(l.Get(i).Message()) {
					ok = false
					return false
				}
			}
		} else if !visit(v.Message()) {
			ok = false
			return false
		}
		return true
	})
	return ok
}

// sqlRunners are server functions that run SQL text given as an argument:
// the text can reach an encrypted table without spelling its name (and
// carries its values in clear). Matched by prefix, so query_to_xml covers
// query_to_xmlschema and query_to_xml_and_xmlschema, dblink every dblink_*
// function.
var sqlRunners = [...]string{"query_to_xml", "ts_stat", "ts_rewrite", "dblink"}

// sqlRunnerAt reports whether s starts with the name of a sqlRunner, in
// any ASCII case.
func sqlRunnerAt(s string) bool {
	for _, w := range sqlRunners {
		if rules.HasPrefixFold(s, w) {
			return true
		}
	}
	return false
}

// hasSQLRunner reports whether text mentions a sqlRunner.
func hasSQLRunner(text string) bool {
	for i := 0; i+2 <= len(text); i++ {
		switch uint16(text[i]|0x20)<<8 | uint16(text[i+1]|0x20) {
		case 'q'<<8 | 'u', 't'<<8 | 's', 'd'<<8 | 'b':
			if sqlRunnerAt(text[i:]) {
				return true
			}
		}
	}
	return false
}

// guardSQLRunners refuses calls of sqlRunners in n unless dynamic SQL is
// allowed. (ts_rewrite with two arguments, of which the second is a query,
// and the other functions always run their text.)
func (a *analyzer) guardSQLRunners(n *pg.Node) error {
	if a.p.dynamic {
		return nil
	}
	var err error
	walkNodes(n.ProtoReflect(), func(c *pg.Node) bool {
		fc := c.GetFuncCall()
		if fc == nil || err != nil {
			return err == nil
		}
		names, _ := stringList(fc.Funcname)
		if len(names) == 0 {
			return true
		}
		name := strings.ToLower(names[len(names)-1])
		for _, w := range sqlRunners {
			if strings.HasPrefix(name, w) && (w != "ts_rewrite" || len(fc.Args) == 2) {
				err = refuse(nil, sqlplan.StateInsufficientPrivilege,
					"%s runs SQL text, which the proxy cannot see (allow_dynamic_sql is off on this listener)", name)
				return false
			}
		}
		return true
	})
	return err
}
