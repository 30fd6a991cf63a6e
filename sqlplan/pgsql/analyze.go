package pgsql

import (
	"context"
	"fmt"
	"slices"
	"strings"

	pg "github.com/pganalyze/pg_query_go/v6"

	"github.com/dbproxy/dbproxy/rules"
	"github.com/dbproxy/dbproxy/sqlplan"
)

// analyzer walks the parse tree of one SQL string. It is used by one
// goroutine for one plan.
type analyzer struct {
	ctx        context.Context
	p          *Planner
	sql        string
	searchPath []string
	toks       *tokens

	// Per statement (reset by statement, saved and restored around a
	// PREPARE body).
	edits  []Edit
	params []sqlplan.Param
	// touched: a query of the statement reads or writes a table with
	// encrypted columns (its results may need decrypting).
	touched bool

	// planParams are the parameter roles of the whole string.
	planParams []sqlplan.Param
	// keyless are the writes to encrypted columns of the whole string
	// that use no key (Plan.Keyless).
	keyless []sqlplan.KeylessWrite

	// noCache: the plan depends on catalog state that no purge tracks
	// (where an unqualified CREATE lands, which of two relations an
	// unqualified name of a derived relation denotes); it is not cached.
	noCache bool

	// plainLits are the Literal.Pos of constants used as plaintext values
	// (usePlain); pinned those of constants whose value the plan depends
	// on (ORDER BY 2). Plan templates vary only the former (template.go):
	// any code that decides something from a constant's value must pin it.
	plainLits, pinned []int
}

// pin records that the plan depends on the value of n if it is a
// constant (possibly cast).
func (a *analyzer) pin(n *pg.Node) {
	if tc := n.GetTypeCast(); tc != nil {
		n = tc.Arg
	}
	if c := n.GetAConst(); c != nil {
		a.pinned = append(a.pinned, int(c.Location)+1)
	}
}

func (a *analyzer) tokens() (*tokens, error) {
	if a.toks == nil {
		t, err := scan(a.sql)
		if err != nil {
			return nil, err
		}
		a.toks = t
	}
	return a.toks, nil
}

// exprSpan is the span of expression n in the SQL text.
func (a *analyzer) exprSpan(n *pg.Node) (span, error) {
	ts, err := a.tokens()
	if err != nil {
		return span{}, err
	}
	return ts.exprSpan(n)
}

// tokenAt returns the string's tokens and the index of the token at byte
// offset loc (a parse-tree Location).
func (a *analyzer) tokenAt(loc int32) (*tokens, int, error) {
	ts, err := a.tokens()
	if err != nil {
		return nil, 0, err
	}
	i, err := ts.at(int(loc))
	return ts, i, err
}

// statement plans one statement of the string.
func (a *analyzer) statement(raw *pg.RawStmt) (Statement, error) {
	start := int(raw.StmtLocation)
	end := len(a.sql)
	if raw.StmtLen > 0 {
		end = start + int(raw.StmtLen)
	}
	if start < 0 || end > len(a.sql) || start > end {
		return Statement{}, fmt.Errorf("%w: statement bounds %d..%d", errSpan, start, end)
	}
	st := Statement{Start: start, End: end, Kind: KindPass}
	if raw.Stmt == nil {
		return st, nil
	}
	text := a.sql[start:end]
	touch := a.p.rules.MayTouch(text)
	if d := a.p.derived.Load(); d.mayTouch(text) {
		touch = true
		if err := a.checkDerived(raw.Stmt, d); err != nil {
			return Statement{}, err
		}
	}
	if isGuardedStmt(raw.Stmt) {
		if err := a.guardDDL(raw.Stmt, text); err != nil {
			return Statement{}, err
		}
	}
	if hasSQLRunner(text) || strings.Contains(text, `U&"`) || strings.Contains(text, `u&"`) {
		// (U&"…" can spell a function name without its letters.)
		if err := a.guardSQLRunners(raw.Stmt); err != nil {
			return Statement{}, err
		}
	}
	if !touch && !isSessionStmt(raw.Stmt) {
		return st, nil
	}
	a.edits, a.params, a.touched = nil, nil, false
	if err := a.dispatch(raw.Stmt, &st); err != nil {
		return Statement{}, err
	}
	if err := a.finishParams(); err != nil {
		return Statement{}, err
	}
	if st.Kind == KindPass && (a.touched || len(a.edits) > 0 || slices.ContainsFunc(a.params, sqlplan.Param.Encrypted)) {
		st.Kind = KindQuery
	}
	slices.SortFunc(a.edits, func(x, y Edit) int { return x.Start - y.Start })
	for i, e := range a.edits {
		if e.Start < start || e.End > end || e.Start > e.End || (i > 0 && a.edits[i-1].End > e.Start) {
			return Statement{}, fmt.Errorf("%w: edit %d..%d overlaps another or leaves the statement", errSpan, e.Start, e.End)
		}
	}
	st.Edits = a.edits
	if len(a.params) > 0 {
		merged, err := mergeParams(a.planParams, a.params)
		if err != nil {
			return Statement{}, err
		}
		a.planParams = merged
	}
	return st, nil
}

// isSessionStmt reports statements that must be planned even when they
// name no encrypted table.
func isSessionStmt(n *pg.Node) bool {
	switch v := n.GetNode().(type) {
	case *pg.Node_PrepareStmt, *pg.Node_ExecuteStmt, *pg.Node_DeallocateStmt:
		return true
	case *pg.Node_DiscardStmt:
		return v.DiscardStmt.Target == pg.DiscardMode_DISCARD_ALL
	case *pg.Node_ExplainStmt:
		return v.ExplainStmt.Query != nil && isSessionStmt(v.ExplainStmt.Query)
	case *pg.Node_CreateTableAsStmt:
		return v.CreateTableAsStmt.Query != nil && isSessionStmt(v.CreateTableAsStmt.Query)
	}
	return false
}

// query analyzes a SELECT, INSERT, UPDATE or DELETE node whose results
// are returned as mode says; ok is false for any other kind of node.
func (a *analyzer) query(n *pg.Node, sc *scope, mode outMode) (out selOut, ok bool, err error) {
	switch q := n.GetNode().(type) {
	case *pg.Node_SelectStmt:
		out, err = a.topSelect(q.SelectStmt, sc, mode)
	case *pg.Node_InsertStmt:
		out, err = a.insert(q.InsertStmt, sc, mode)
	case *pg.Node_UpdateStmt:
		out, err = a.update(q.UpdateStmt, sc, mode)
	case *pg.Node_DeleteStmt:
		out, err = a.delete(q.DeleteStmt, sc, mode)
	default:
		return selOut{}, false, nil
	}
	return out, true, err
}

// dispatch plans one statement node into st.
func (a *analyzer) dispatch(n *pg.Node, st *Statement) error {
	if _, ok, err := a.query(n, nil, outReturned); ok {
		return err
	}
	switch v := n.GetNode().(type) {
	case *pg.Node_CopyStmt:
		return a.copyStmt(v.CopyStmt, st)
	case *pg.Node_ExplainStmt:
		return a.explain(v.ExplainStmt, st)
	case *pg.Node_DeclareCursorStmt:
		return a.declareCursor(v.DeclareCursorStmt)
	case *pg.Node_CreateTableAsStmt:
		return a.createTableAs(v.CreateTableAsStmt)
	case *pg.Node_ViewStmt:
		return a.view(v.ViewStmt)
	case *pg.Node_PrepareStmt:
		return a.prepare(v.PrepareStmt, st)
	case *pg.Node_ExecuteStmt:
		return a.execute(v.ExecuteStmt, st)
	case *pg.Node_DeallocateStmt:
		deallocate(v.DeallocateStmt, st)
		return nil
	case *pg.Node_DiscardStmt:
		discard(v.DiscardStmt, st)
		return nil
	case *pg.Node_CreateStmt:
		return a.createTable(v.CreateStmt)
	case *pg.Node_AlterTableStmt:
		return a.alterTable(v.AlterTableStmt)
	case *pg.Node_IndexStmt:
		return a.createIndex(v.IndexStmt)
	case *pg.Node_CreateTrigStmt:
		return a.createTrigger(v.CreateTrigStmt)
	case *pg.Node_TransactionStmt, *pg.Node_VariableSetStmt, *pg.Node_VariableShowStmt,
		*pg.Node_TruncateStmt, *pg.Node_DropStmt, *pg.Node_GrantStmt, *pg.Node_GrantRoleStmt,
		*pg.Node_LockStmt, *pg.Node_VacuumStmt, *pg.Node_ClusterStmt, *pg.Node_ReindexStmt,
		*pg.Node_CommentStmt, *pg.Node_RenameStmt, *pg.Node_AlterOwnerStmt, *pg.Node_CheckPointStmt,
		*pg.Node_ListenStmt, *pg.Node_NotifyStmt, *pg.Node_UnlistenStmt, *pg.Node_FetchStmt,
		*pg.Node_ClosePortalStmt, *pg.Node_CreateStatsStmt, *pg.Node_SecLabelStmt,
		*pg.Node_AlterObjectSchemaStmt, *pg.Node_ConstraintsSetStmt, *pg.Node_LoadStmt,
		*pg.Node_DropOwnedStmt, *pg.Node_ReassignOwnedStmt, *pg.Node_AlterDefaultPrivilegesStmt,
		*pg.Node_RefreshMatViewStmt, *pg.Node_CreateSeqStmt, *pg.Node_AlterSeqStmt,
		*pg.Node_CreateRoleStmt, *pg.Node_AlterRoleStmt, *pg.Node_DropRoleStmt, *pg.Node_AlterRoleSetStmt,
		*pg.Node_CreateExtensionStmt, *pg.Node_AlterExtensionStmt, *pg.Node_CreateDomainStmt,
		*pg.Node_CompositeTypeStmt, *pg.Node_CreateEnumStmt, *pg.Node_AlterEnumStmt,
		*pg.Node_CreateTableSpaceStmt, *pg.Node_DropTableSpaceStmt, *pg.Node_AlterTableSpaceOptionsStmt,
		*pg.Node_CreatedbStmt, *pg.Node_DropdbStmt, *pg.Node_AlterDatabaseStmt, *pg.Node_AlterDatabaseSetStmt,
		*pg.Node_CreatePublicationStmt, *pg.Node_AlterPublicationStmt, *pg.Node_CreateSubscriptionStmt,
		*pg.Node_AlterSubscriptionStmt, *pg.Node_DropSubscriptionStmt, *pg.Node_AlterSystemStmt,
		*pg.Node_AlterStatsStmt, *pg.Node_CreateEventTrigStmt, *pg.Node_AlterEventTrigStmt,
		*pg.Node_AlterCollationStmt:
		// No value of these can reach an encrypted column.
		return nil
	case *pg.Node_CreateSchemaStmt:
		if len(v.CreateSchemaStmt.SchemaElts) > 0 {
			return unsupported(nil, "CREATE SCHEMA with elements in a statement that mentions an encrypted table; create the objects separately")
		}
		return nil
	case *pg.Node_CreatePolicyStmt:
		return a.policy(v.CreatePolicyStmt.Table, v.CreatePolicyStmt.Qual, v.CreatePolicyStmt.WithCheck)
	case *pg.Node_AlterPolicyStmt:
		return a.policy(v.AlterPolicyStmt.Table, v.AlterPolicyStmt.Qual, v.AlterPolicyStmt.WithCheck)
	default:
		return unsupported(nil, "%s on a statement that mentions an encrypted table is not supported (the proxy cannot account for every value in it)",
			stmtName(n))
	}
}

// declareCursor plans DECLARE CURSOR (of a SELECT only).
func (a *analyzer) declareCursor(dc *pg.DeclareCursorStmt) error {
	sel := dc.Query.GetSelectStmt()
	if sel == nil {
		return unsupported(nil, "DECLARE CURSOR for this kind of statement")
	}
	_, err := a.topSelect(sel, nil, outReturned)
	return err
}

// deallocate records in st which prepared statements DEALLOCATE drops.
func deallocate(d *pg.DeallocateStmt, st *Statement) {
	st.Kind = KindDeallocate
	if d.Isall || d.Name == "" {
		st.DeallocateAll = true
	} else {
		st.Deallocate = d.Name
	}
}

// discard records in st that DISCARD ALL drops every prepared statement.
func discard(d *pg.DiscardStmt, st *Statement) {
	if d.Target == pg.DiscardMode_DISCARD_ALL {
		st.Kind = KindDeallocate
		st.DeallocateAll = true
	}
}

// stmtName is a readable name of a statement node type, e.g. "DoStmt".
func stmtName(n *pg.Node) string {
	name := fmt.Sprintf("%T", n.GetNode())
	name = strings.TrimPrefix(name, "*pg_query.Node_")
	return name
}

func (a *analyzer) explain(e *pg.ExplainStmt, st *Statement) error {
	switch q := e.Query.GetNode().(type) {
	case *pg.Node_SelectStmt:
		_, err := a.topSelect(q.SelectStmt, nil, outIgnored)
		return err
	case *pg.Node_InsertStmt:
		_, err := a.insert(q.InsertStmt, nil, outIgnored)
		return err
	case *pg.Node_UpdateStmt:
		_, err := a.update(q.UpdateStmt, nil, outIgnored)
		return err
	case *pg.Node_DeleteStmt:
		_, err := a.delete(q.DeleteStmt, nil, outIgnored)
		return err
	case *pg.Node_ExecuteStmt:
		return a.execute(q.ExecuteStmt, st)
	case *pg.Node_CreateTableAsStmt:
		return a.createTableAs(q.CreateTableAsStmt)
	case *pg.Node_DeclareCursorStmt:
		sel := q.DeclareCursorStmt.Query.GetSelectStmt()
		if sel == nil {
			return unsupported(nil, "EXPLAIN of this statement")
		}
		_, err := a.topSelect(sel, nil, outIgnored)
		return err
	default:
		return unsupported(nil, "EXPLAIN of %s", stmtName(e.Query))
	}
}

// addEdit records an edit of the current statement.
func (a *analyzer) addEdit(e Edit) { a.edits = append(a.edits, e) }

// bindParam records the role of parameter n in the current statement. A
// parameter may be used several times only with the same role and column
// (plain uses with plain uses).
func (a *analyzer) bindParam(n int, role sqlplan.Role, col *rules.ColumnRule) error {
	if n <= 0 || n > 65535 {
		return refuse(col, sqlplan.StateSyntaxError, "parameter number %d out of range", n)
	}
	for len(a.params) < n {
		a.params = append(a.params, sqlplan.Param{})
	}
	cur := &a.params[n-1]
	np := sqlplan.Param{Role: role, Column: col}
	if cur.Role == sqlplan.RoleInvalid {
		*cur = np
		return nil
	}
	if cur.Role == np.Role && (cur.Column == np.Column || (np.Role != sqlplan.RolePlain && rules.Interchangeable(cur.Column, np.Column))) {
		return nil
	}
	c := col
	if c == nil {
		c = cur.Column
	}
	return refuse(c, sqlplan.StateDatatypeMismatch,
		"parameter $%d is used both as %s and as %s; use a separate parameter for each", n, describeRole(*cur), describeRole(np))
}

func describeRole(p sqlplan.Param) string {
	switch p.Role {
	case sqlplan.RolePlain:
		return "a plaintext value"
	case sqlplan.RoleStore:
		return "a value stored in " + p.Column.String()
	case sqlplan.RoleMatch, sqlplan.RoleMatchArray:
		return "a value compared with " + p.Column.String()
	}
	return "an unknown role"
}

// finishParams makes every parameter number below the highest one used
// explicit (RolePlain when not bound for an encrypted column).
func (a *analyzer) finishParams() error {
	for i := range a.params {
		if a.params[i].Role == sqlplan.RoleInvalid {
			a.params[i] = sqlplan.Param{Role: sqlplan.RolePlain}
		}
	}
	return nil
}

// mergeParams merges the parameter roles of a statement into the string's.
// Parameters only exist in a single-statement string (the extended
// protocol), so any disagreement is refused.
func mergeParams(into, add []sqlplan.Param) ([]sqlplan.Param, error) {
	out := slices.Clone(into)
	for len(out) < len(add) {
		out = append(out, sqlplan.Param{})
	}
	for i, p := range add {
		cur := out[i]
		switch {
		case cur.Role == sqlplan.RoleInvalid:
			out[i] = p
		case cur.Role == p.Role && (cur.Column == p.Column || rules.Interchangeable(cur.Column, p.Column)):
		default:
			return nil, refuse(p.Column, sqlplan.StateDatatypeMismatch, "parameter $%d has conflicting roles in different statements", i+1)
		}
	}
	return out, nil
}
