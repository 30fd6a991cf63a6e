package pgsql

import (
	pg "github.com/pganalyze/pg_query_go/v6"

	"github.com/dbproxy/dbproxy/rules"
	"github.com/dbproxy/dbproxy/sqlplan"
)

// This file plans the statements other than queries: DDL on encrypted
// tables (allowed unless it could put a value into, or compute on, an
// encrypted column), views, CREATE TABLE AS, and SQL-level PREPARE and
// EXECUTE.

// tableRulesNamed returns the rules that could apply to a table created or
// altered by rv (every schema when the name is unqualified: the creation
// schema depends on the search path and on which schemas exist).
func (a *analyzer) tableRulesNamed(rv *pg.RangeVar) []*rules.TableRule {
	if rv == nil {
		return nil
	}
	if rv.Schemaname != "" {
		if t := a.p.rules.Table(a.p.database, rv.Schemaname, rv.Relname); t != nil {
			return []*rules.TableRule{t}
		}
		return nil
	}
	return a.p.rules.TablesNamed(nil, rv.Relname)
}

// configuredColumn returns the rule of column name in any of trs.
func configuredColumn(trs []*rules.TableRule, name string) *rules.ColumnRule {
	for _, t := range trs {
		if c := t.Column(name); c != nil {
			return c
		}
	}
	return nil
}

// refsConfigured returns an encrypted column of trs referenced (by its
// last name part) anywhere inside n, or nil.
func refsConfigured(n *pg.Node, trs []*rules.TableRule) *rules.ColumnRule {
	if n == nil || len(trs) == 0 {
		return nil
	}
	var found *rules.ColumnRule
	check := func(c *pg.Node) bool {
		if found != nil {
			return false
		}
		if cr := c.GetColumnRef(); cr != nil {
			f, _ := stringList(cr.Fields)
			if len(f) > 0 {
				found = configuredColumn(trs, f[len(f)-1])
			}
			return false
		}
		return true
	}
	if check(n) {
		walkNodes(n.ProtoReflect(), check)
	}
	return found
}

// columnDef checks a column definition of a table with rules.
func (a *analyzer) columnDef(cd *pg.ColumnDef, trs []*rules.TableRule) error {
	c := configuredColumn(trs, cd.Colname)
	if c == nil {
		// A plaintext column: its generation or CHECK expression may
		// still read an encrypted column.
		for _, cn := range cd.Constraints {
			if con := cn.GetConstraint(); con != nil {
				if err := constraint(con, trs, nil); err != nil {
					return err
				}
			}
		}
		return nil
	}
	if cd.TypeName != nil {
		if name, ok := castName(cd.TypeName); !ok || name != "bytea" {
			return refuse(c, sqlplan.StateDatatypeMismatch, "an encrypted column must be of type bytea (it holds ciphertext), not %s", typeNameString(cd.TypeName))
		}
	}
	if cd.RawDefault != nil || cd.CookedDefault != nil {
		return unsupported(c, "a DEFAULT on an encrypted column would store a plaintext value")
	}
	for _, cn := range cd.Constraints {
		con := cn.GetConstraint()
		if con == nil {
			continue
		}
		if err := constraint(con, trs, c); err != nil {
			return err
		}
	}
	return nil
}

// constraint refuses constraints that carry a value into, or compute on,
// an encrypted column. c is the column a column constraint belongs to.
func constraint(con *pg.Constraint, trs []*rules.TableRule, c *rules.ColumnRule) error {
	switch con.Contype {
	case pg.ConstrType_CONSTR_DEFAULT:
		if c != nil && con.RawExpr != nil && !isNullConst(con.RawExpr) {
			return unsupported(c, "a DEFAULT on an encrypted column would store a plaintext value")
		}
	case pg.ConstrType_CONSTR_GENERATED:
		return computedConstraint(con, trs, c, "a generated encrypted column would store a computed plaintext value",
			"a generated column computed from an encrypted column would compute on ciphertext")
	case pg.ConstrType_CONSTR_IDENTITY:
		if c != nil {
			return unsupported(c, "an identity column cannot be encrypted")
		}
	case pg.ConstrType_CONSTR_CHECK:
		const check = "a CHECK constraint on an encrypted column would compute on ciphertext"
		return computedConstraint(con, trs, c, check, check)
	}
	return nil
}

// computedConstraint refuses a constraint with an expression (GENERATED,
// CHECK) that belongs to encrypted column c (onEncrypted) or reads one
// (readsEncrypted).
func computedConstraint(con *pg.Constraint, trs []*rules.TableRule, c *rules.ColumnRule, onEncrypted, readsEncrypted string) error {
	if c != nil {
		return unsupported(c, "%s", onEncrypted)
	}
	if cc := refsConfigured(con.RawExpr, trs); cc != nil {
		return unsupported(cc, "%s", readsEncrypted)
	}
	return nil
}

func isNullConst(n *pg.Node) bool {
	if tc := n.GetTypeCast(); tc != nil {
		n = tc.Arg
	}
	c := n.GetAConst()
	return c != nil && c.Isnull
}

// createTable checks CREATE TABLE of a table with rules.
func (a *analyzer) createTable(cs *pg.CreateStmt) error {
	trs := a.tableRulesNamed(cs.Relation)
	for _, el := range cs.TableElts {
		switch v := el.GetNode().(type) {
		case *pg.Node_ColumnDef:
			if err := a.columnDef(v.ColumnDef, trs); err != nil {
				return err
			}
		case *pg.Node_Constraint:
			if err := constraint(v.Constraint, trs, nil); err != nil {
				return err
			}
		}
	}
	return nil
}

// alterTable checks ALTER TABLE of a table with rules.
func (a *analyzer) alterTable(at *pg.AlterTableStmt) error {
	trs := a.tableRulesNamed(at.Relation)
	if len(trs) == 0 {
		return nil
	}
	for _, n := range at.Cmds {
		cmd := n.GetAlterTableCmd()
		if cmd == nil {
			continue
		}
		c := configuredColumn(trs, cmd.Name)
		switch cmd.Subtype {
		case pg.AlterTableType_AT_AddColumn:
			if cd := cmd.Def.GetColumnDef(); cd != nil {
				if err := a.columnDef(cd, trs); err != nil {
					return err
				}
			}
		case pg.AlterTableType_AT_ColumnDefault:
			if c != nil && cmd.Def != nil && !isNullConst(cmd.Def) {
				return unsupported(c, "a DEFAULT on an encrypted column would store a plaintext value")
			}
		case pg.AlterTableType_AT_AlterColumnType:
			if c != nil {
				return unsupported(c, "changing the type of an encrypted column would convert its ciphertext")
			}
		case pg.AlterTableType_AT_SetExpression, pg.AlterTableType_AT_AddIdentity, pg.AlterTableType_AT_SetIdentity:
			if c != nil {
				return unsupported(c, "a generated or identity value cannot be encrypted")
			}
		case pg.AlterTableType_AT_AddConstraint:
			if con := cmd.Def.GetConstraint(); con != nil {
				if err := constraint(con, trs, nil); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// createIndex refuses index expressions and predicates over encrypted
// columns (they would compute on ciphertext, and a predicate would keep a
// plaintext constant in the catalog). Plain indexes on them are fine.
func (a *analyzer) createIndex(ix *pg.IndexStmt) error {
	trs := a.tableRulesNamed(ix.Relation)
	for _, p := range ix.IndexParams {
		if el := p.GetIndexElem(); el != nil && el.Expr != nil {
			if c := refsConfigured(el.Expr, trs); c != nil {
				return unsupported(c, "an index expression over an encrypted column would compute on ciphertext")
			}
		}
	}
	if c := refsConfigured(ix.WhereClause, trs); c != nil {
		return unsupported(c, "a partial index condition on an encrypted column is not supported")
	}
	return nil
}

// createTrigger refuses a WHEN condition on an encrypted column.
func (a *analyzer) createTrigger(ct *pg.CreateTrigStmt) error {
	if c := refsConfigured(ct.WhenClause, a.tableRulesNamed(ct.Relation)); c != nil {
		return unsupported(c, "a trigger WHEN condition on an encrypted column is not supported")
	}
	return nil
}

// policy refuses row-security expressions over encrypted columns (they
// would compute on ciphertext, or keep a plaintext constant in the
// catalog).
func (a *analyzer) policy(rv *pg.RangeVar, exprs ...*pg.Node) error {
	trs := a.tableRulesNamed(rv)
	for _, e := range exprs {
		if c := refsConfigured(e, trs); c != nil {
			return unsupported(c, "a row-security policy expression on an encrypted column is not supported")
		}
	}
	return nil
}

// createTableAs plans CREATE TABLE AS, SELECT INTO and CREATE MATERIALIZED
// VIEW: no encrypted output may land in the new relation, and a
// materialized view may not keep rewritten constants (they are bound to
// the key versions of today).
func (a *analyzer) createTableAs(c *pg.CreateTableAsStmt) error {
	sel := c.Query.GetSelectStmt()
	if sel == nil {
		return unsupported(nil, "CREATE TABLE AS of a %s in a statement touching an encrypted table", stmtName(c.Query))
	}
	what := "CREATE TABLE AS"
	if c.Objtype == pg.ObjectType_OBJECT_MATVIEW {
		what = "CREATE MATERIALIZED VIEW"
	}
	n := len(a.edits)
	out, err := a.selectStmt(sel, nil, outStored)
	if err != nil {
		return err
	}
	if err := checkStored(out, what); err != nil {
		return err
	}
	if c.Objtype == pg.ObjectType_OBJECT_MATVIEW && len(a.edits) > n {
		return unsupported(a.edits[n].Column, "%s would keep a comparison with encrypted values that breaks after key rotation", what)
	}
	if c.Objtype == pg.ObjectType_OBJECT_MATVIEW && a.touched {
		return unsupported(nil, "a materialized view over an encrypted table would keep its rows under a name without encryption rules; query the table")
	}
	return nil
}

// view plans CREATE VIEW: views over encrypted columns are refused (their
// rows would come back as ciphertext from the view's OID, and rewritten
// constants would be frozen into the definition).
func (a *analyzer) view(v *pg.ViewStmt) error {
	sel := v.Query.GetSelectStmt()
	if sel == nil {
		return unsupported(nil, "a view of unknown shape")
	}
	n := len(a.edits)
	out, err := a.selectStmt(sel, nil, outStored)
	if err != nil {
		return err
	}
	for _, c := range out.cols {
		if c.prov != nil {
			return unsupported(c.prov.rule, "views over encrypted columns are not supported through the proxy (create them directly and configure the view's columns)")
		}
	}
	if !out.known {
		return unsupported(nil, "CREATE VIEW with * over a table with encrypted columns; list the columns")
	}
	if len(a.edits) > n {
		return unsupported(a.edits[n].Column, "a view comparing an encrypted column with a constant is not supported")
	}
	if a.touched {
		return unsupported(nil, "a view over an encrypted table would return its rows under a name without encryption rules; query the table")
	}
	for _, p := range a.params {
		if p.Encrypted() {
			return unsupported(p.Column, "a view with parameters")
		}
	}
	return nil
}

// prepare plans PREPARE name [(types)] AS statement: the body is planned
// like a Parse message, with its own parameters; declared parameter types
// of encrypted parameters become bytea or bytea[].
func (a *analyzer) prepare(ps *pg.PrepareStmt, st *Statement) error {
	outer := a.params
	a.params = nil
	_, ok, err := a.query(ps.Query, nil, outReturned)
	if !ok && a.p.touches(a.sql[st.Start:st.End]) {
		err = unsupported(nil, "PREPARE of a %s in a statement touching an encrypted table", stmtName(ps.Query))
	}
	if err != nil {
		return err
	}
	if err := a.finishParams(); err != nil {
		return err
	}
	inner := a.params
	a.params = outer
	for len(inner) < len(ps.Argtypes) {
		inner = append(inner, sqlplan.Param{Role: sqlplan.RolePlain})
	}
	for i, n := range ps.Argtypes {
		tn := n.GetTypeName()
		if tn == nil || !inner[i].Encrypted() {
			continue
		}
		ts, first, err := a.tokenAt(tn.Location)
		if err != nil {
			return err
		}
		last, err := ts.typeNameEnd(tn)
		if err != nil {
			return err
		}
		text := "bytea"
		if inner[i].Role != sqlplan.RoleStore {
			text = "bytea[]"
		}
		a.addEdit(Edit{Start: ts.t[first].start, End: ts.t[last].end, Kind: EditText, Text: text})
	}
	st.Kind = KindPrepare
	st.Prepare = &PreparedStatement{Name: ps.Name, Params: inner}
	return nil
}

// execute plans EXECUTE name(args): the arguments are located and read
// now; which of them get encrypted is decided at Rewrite time from the
// session's prepared statements.
func (a *analyzer) execute(es *pg.ExecuteStmt, st *Statement) error {
	ex := &Execute{Name: es.Name}
	sc := &scope{}
	for _, p := range es.Params {
		arg, err := a.executeArg(p, sc)
		if err != nil {
			return err
		}
		ex.Args = append(ex.Args, arg)
	}
	st.Kind = KindExecute
	st.Execute = ex
	return nil
}

func (a *analyzer) executeArg(p *pg.Node, sc *scope) (Arg, error) {
	in, err := a.expr(p, sc)
	if err != nil {
		return Arg{}, err
	}
	arg := Arg{Kind: ArgOther}
	switch {
	case in.kind == exLiteral && !in.bits:
		arg.Kind, arg.Literal = ArgLiteral, in.lit
	case in.kind == exNull:
		arg.Kind = ArgNull
	case in.kind == exParam && in.cast == nil:
		arg.Kind, arg.Param = ArgParam, in.param
	case p.GetAArrayExpr() != nil:
		arg.Kind = ArgArray
		for _, el := range p.GetAArrayExpr().Elements {
			ei, err := a.expr(el, sc)
			if err != nil {
				return Arg{}, err
			}
			switch {
			case ei.kind == exLiteral && !ei.bits && ei.cast == nil:
				arg.Elems = append(arg.Elems, ei.lit)
			case ei.kind == exNull:
				arg.Elems = append(arg.Elems, sqlplan.Literal{Null: true})
			default:
				arg.Kind = ArgOther
			}
		}
	}
	if err := a.usePlain(in); err != nil {
		return Arg{}, err
	}
	if arg.Kind == ArgLiteral && in.cast != nil {
		name, ok := castName(in.cast)
		if !ok {
			arg.Kind = ArgOther
		}
		arg.Cast = name
	}
	if arg.Kind != ArgOther {
		sp, err := a.exprSpan(in.node)
		if err != nil {
			return Arg{}, err
		}
		arg.Start, arg.End = sp.start, sp.end
	}
	return arg, nil
}
