package pgsql

import (
	"strings"

	pg "github.com/pganalyze/pg_query_go/v6"
)

// SessionEffect is what one statement may do to the session state a plan
// depends on, as read with the server's own grammar.
type SessionEffect uint8

const (
	// EffectSearchPath: the statement may change the session's search_path
	// or the role "$user" in it stands for: SET, SET LOCAL or RESET of
	// search_path (also SET SCHEMA), role (SET ROLE) or
	// session_authorization (SET SESSION AUTHORIZATION), RESET ALL, DISCARD,
	// a statement naming set_config, DO and CALL (their code may run any
	// of those). Parameter names are compared case-insensitively, as the
	// server does.
	EffectSearchPath SessionEffect = 1 << iota
	// EffectRole: the statement may change current_user, which "$user"
	// stands for (set with EffectSearchPath): SET or RESET of role or
	// session_authorization, RESET ALL, DISCARD, set_config, DO, CALL.
	EffectRole
)

// SessionEffects parses sql (read with standard_conforming_strings on, as
// the planner does) and returns what each of its statements may do to the
// session state, in order. An error means the text cannot be read: the
// caller must assume the worst.
func SessionEffects(sql string) ([]SessionEffect, error) {
	tree, err := pg.Parse(sql)
	if err != nil {
		return nil, err
	}
	effects := make([]SessionEffect, len(tree.Stmts))
	for i, raw := range tree.Stmts {
		effects[i] = statementEffect(raw.Stmt)
		if mentionsSetConfig(sql, raw) {
			effects[i] = EffectSearchPath | EffectRole
		}
	}
	return effects, nil
}

// statementEffect reports what a statement node may do to search_path and
// the role (set_config aside).
func statementEffect(n *pg.Node) SessionEffect {
	switch v := n.GetNode().(type) {
	case *pg.Node_VariableSetStmt:
		s := v.VariableSetStmt
		name := strings.ToLower(s.Name)
		switch {
		case s.Kind == pg.VariableSetKind_VAR_RESET_ALL || name == "role" || name == "session_authorization":
			return EffectSearchPath | EffectRole
		case name == "search_path":
			return EffectSearchPath
		}
	case *pg.Node_DiscardStmt, *pg.Node_DoStmt, *pg.Node_CallStmt:
		return EffectSearchPath | EffectRole
	}
	return 0
}

// mentionsSetConfig reports whether the text of raw names set_config
// anywhere (a call may sit in any expression; a mention in a string
// counts too).
func mentionsSetConfig(sql string, raw *pg.RawStmt) bool {
	start, end := int(raw.StmtLocation), int(raw.StmtLocation+raw.StmtLen)
	if raw.StmtLen == 0 || end > len(sql) { // the last statement runs to the end
		end = len(sql)
	}
	if start < 0 || start > end {
		return true
	}
	return strings.Contains(strings.ToLower(sql[start:end]), "set_config")
}
