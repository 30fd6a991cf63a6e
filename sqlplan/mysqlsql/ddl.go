package mysqlsql

import (
	"fmt"
	"strings"

	"github.com/pingcap/tidb/pkg/parser/ast"

	"github.com/dbproxy/dbproxy/rules"
	"github.com/dbproxy/dbproxy/sqlplan"
)

// This file refuses the statements that would let a value reach an
// encrypted column (or a ciphertext leave one) without the proxy seeing
// the statement that moves it: dynamic SQL, stored programs, triggers and
// views over encrypted tables, and renames that change what an encrypted
// table's or column's name means.

const dynamicHint = "set allow_dynamic_sql: true on the listener to allow it"

// dynamicSQLRefusal is the refusal of SQL text the proxy cannot see.
func dynamicSQLRefusal(what string) *sqlplan.Refusal {
	return &sqlplan.Refusal{SQLState: sqlplan.StateInsufficientPrivilege, Reason: what + " is refused on a listener with encryption rules: the proxy cannot see the statement it runs, " +
		"so a value for an encrypted column would be stored as plaintext; " + dynamicHint}
}

// unparsed decides about a string the parser rejects that the planner was
// asked to look at: nil lets it through (it names no encrypted table or
// view, and runs no dynamic SQL, or dynamic SQL is allowed).
func (p *Planner) unparsed(sql string, views *viewSet) *sqlplan.Refusal {
	first, kind := leadingWords(sql)
	what := strings.ToUpper(strings.TrimSpace(first + " " + kind))
	if p.rules.MayTouch(sql) {
		name := encryptedTableIn(p.rules, sql)
		switch {
		case first == "create" && kind == "trigger":
			return &sqlplan.Refusal{SQLState: sqlplan.StateFeatureNotSupported, Table: name, Reason: "CREATE TRIGGER naming an encrypted table is not supported through the proxy: " +
				"a trigger writes values the proxy never sees (it would store them as plaintext)"}
		case (first == "create" || first == "alter") && isProgram(kind):
			return &sqlplan.Refusal{SQLState: sqlplan.StateFeatureNotSupported, Table: name, Reason: what + " of a stored program naming an encrypted table is not supported through the proxy: " +
				"its statements run without the proxy (values would be stored as plaintext, ciphertexts returned undecrypted)"}
		case (first == "create" || first == "alter") && kind == "view":
			return &sqlplan.Refusal{SQLState: sqlplan.StateFeatureNotSupported, Table: name, Reason: what + " over an encrypted table is not supported: the server does not report " +
				"a view's columns as the table's, so the proxy could neither encrypt writes through it nor decrypt reads; query the table"}
		}
		return &sqlplan.Refusal{SQLState: sqlplan.StateSyntaxError, Table: name, Reason: "the statement may touch an encrypted table but could not be parsed"}
	}
	if views != nil && views.filter.MayTouch(sql) {
		return &sqlplan.Refusal{SQLState: sqlplan.StateSyntaxError, Reason: "the statement may name a view over an encrypted table but could not be parsed; query the table"}
	}
	if !p.allowDynamic && mentionsDynamic(sql) {
		switch {
		case (first == "create" || first == "alter") && (isProgram(kind) || kind == "trigger"):
			return dynamicSQLRefusal(what + " with PREPARE/EXECUTE in its body")
		case first == "execute":
			return dynamicSQLRefusal("EXECUTE IMMEDIATE")
		case first == "prepare":
			return dynamicSQLRefusal("PREPARE from anything but one plain string literal")
		}
		return dynamicSQLRefusal("a statement the proxy cannot parse that mentions PREPARE or EXECUTE")
	}
	return nil
}

func isProgram(kind string) bool {
	return kind == "procedure" || kind == "function" || kind == "event" || kind == "package"
}

// encryptedTableIn returns the first word of sql that is the name of an
// encrypted table, for messages ("" if the match was inside a longer word
// or a quoted string).
func encryptedTableIn(set *rules.Set, sql string) string {
	for i := 0; i < len(sql); {
		if !rules.IdentByte(sql[i]) {
			i++
			continue
		}
		j := i
		for j < len(sql) && rules.IdentByte(sql[j]) {
			j++
		}
		if set.HasTableNamed(sql[i:j]) {
			return sql[i:j]
		}
		i = j
	}
	return ""
}

// guard refuses st if it is one of the statements this file is about. It
// runs before the statement's own analysis, on every parsed statement of
// a string the planner looks at.
func (a *analyzer) guard(st ast.StmtNode, views *viewSet) {
	if a.p.rules.Empty() {
		return
	}
	switch s := st.(type) {
	case *ast.PrepareStmt:
		a.prepare(s, views)
		return
	case *ast.DropTableStmt, *ast.ShowStmt:
		return // dropping a view over an encrypted table is how to fix it; SHOW CREATE VIEW reads no rows
	case *ast.CreateViewStmt:
		a.createView(s, views)
		return
	case *ast.AlterTableStmt:
		a.alterTable(s)
		for _, sp := range s.Specs {
			a.tableOptions(sp.Options, s.Text())
		}
	case *ast.RenameTableStmt:
		for _, tt := range s.TableToTables {
			a.renameTable(tt.OldTable, tt.NewTable.Name.O)
		}
	case *ast.CreateTableStmt:
		a.createTable(s)
		a.tableOptions(s.Options, s.Text())
	case *ast.ProcedureInfo:
		if a.p.rules.MayTouch(s.Text()) {
			a.refuse(&sqlplan.Refusal{SQLState: sqlplan.StateFeatureNotSupported, Table: encryptedTableIn(a.p.rules, s.Text()), Reason: "CREATE PROCEDURE of a stored program naming an encrypted table is not supported through the proxy: " +
				"its statements run without the proxy (values would be stored as plaintext, ciphertexts returned undecrypted)"})
		} else if !a.p.allowDynamic && mentionsDynamic(s.Text()) {
			a.refuse(dynamicSQLRefusal("CREATE PROCEDURE with PREPARE/EXECUTE in its body"))
		}
		return
	}
	if a.err == nil {
		a.noViews(st, views)
	}
}

// prepare: PREPARE … FROM @var runs text the proxy never sees; PREPARE …
// FROM 'literal' is refused when the literal (as the server reads it, with
// escapes resolved) names an encrypted table or such a view: the statement
// would run without the proxy's rewrite.
func (a *analyzer) prepare(s *ast.PrepareStmt, views *viewSet) {
	if s.SQLVar != nil {
		if !a.p.allowDynamic {
			a.refuse(dynamicSQLRefusal("PREPARE … FROM a variable"))
		}
		return
	}
	text := s.SQLText
	if a.p.rules.MayTouch(text) {
		a.refuse(&sqlplan.Refusal{SQLState: sqlplan.StateFeatureNotSupported, Table: encryptedTableIn(a.p.rules, text), Reason: "SQL PREPARE of a statement naming an encrypted table is not supported: " +
			"the proxy does not see it executed; use a client-side prepared statement (the binary protocol) instead"})
		return
	}
	if views != nil && views.filter.MayTouch(text) {
		a.refuse(&sqlplan.Refusal{SQLState: sqlplan.StateFeatureNotSupported, Reason: "SQL PREPARE of a statement that may name a view over an encrypted table is not supported; query the table"})
		return
	}
	if !a.p.allowDynamic && mentionsDynamic(text) {
		a.refuse(dynamicSQLRefusal("PREPARE of a statement that itself runs dynamic SQL"))
	}
}

// createView refuses a view that reads an encrypted table (or a view over
// one): reads through it come back as ciphertext the proxy cannot
// attribute, writes through it (an updatable view) would store plaintext.
func (a *analyzer) createView(s *ast.CreateViewStmt, views *viewSet) {
	tc := &nodesOf[*ast.TableName]{}
	if s.Select != nil {
		s.Select.Accept(tc)
	}
	for _, tn := range tc.list {
		if r := a.resolveTable(tn.Schema.O, tn.Name.O); r != nil {
			a.refuse(&sqlplan.Refusal{SQLState: sqlplan.StateFeatureNotSupported, Table: r.String(), Reason: fmt.Sprintf("CREATE VIEW %s reads an encrypted table: the server reports a view's columns as the view's, "+
				"so the proxy could neither decrypt reads nor encrypt writes through it; query the table", s.ViewName.Name.O)})
			return
		}
		if a.err != nil {
			return
		}
		if base, ok := views.lookup(a.dbOf(tn), tn.Name.O); ok {
			a.refuse(&sqlplan.Refusal{SQLState: sqlplan.StateFeatureNotSupported, Table: tn.Name.O, Reason: fmt.Sprintf("CREATE VIEW %s reads a view over encrypted table %s; query the table", s.ViewName.Name.O, base)})
			return
		}
	}
}

func (a *analyzer) dbOf(tn *ast.TableName) string {
	if tn.Schema.O != "" {
		return tn.Schema.O
	}
	return a.db
}

// noViews refuses a statement that names a view over an encrypted table.
func (a *analyzer) noViews(st ast.StmtNode, views *viewSet) {
	if views == nil || len(views.base) == 0 {
		return
	}
	tc := &nodesOf[*ast.TableName]{}
	st.Accept(tc)
	for _, tn := range tc.list {
		if base, ok := views.lookup(a.dbOf(tn), tn.Name.O); ok {
			a.refuse(&sqlplan.Refusal{SQLState: sqlplan.StateFeatureNotSupported, Table: tn.Name.O, Reason: fmt.Sprintf("%s is a view over encrypted table %s; query the table "+
				"(the server reports a view's columns as the view's, so the proxy can neither decrypt reads nor encrypt writes through it)", tn.Name.O, base)})
			return
		}
	}
}

// alterTable refuses renames of encrypted tables and columns, renames to
// their names, and CHANGE/MODIFY of an encrypted column (the rules name
// the table and column; the server would convert ciphertexts as the new
// type). DROP COLUMN and everything else pass (ddlDefaults checks
// defaults).
func (a *analyzer) alterTable(s *ast.AlterTableStmt) {
	t := a.resolveTable(s.Table.Schema.O, s.Table.Name.O)
	if a.err != nil {
		return
	}
	for _, sp := range s.Specs {
		switch sp.Tp {
		case ast.AlterTableRenameTable:
			if sp.NewTable != nil {
				a.renameTable(s.Table, sp.NewTable.Name.O)
			}
		case ast.AlterTableExchangePartition:
			// Swaps rows between the tables: plaintext rows would land
			// in the encrypted table, ciphertexts in a table without rules.
			other := ""
			if sp.NewTable != nil {
				other = sp.NewTable.Name.O
			}
			if t != nil || a.p.rules.HasTableNamed(other) {
				name := s.Table.Name.O
				if t == nil {
					name = other
				}
				a.refuse(&sqlplan.Refusal{SQLState: sqlplan.StateFeatureNotSupported, Table: name, Reason: "EXCHANGE PARTITION with an encrypted table is not supported: it swaps rows with a table whose columns have other (or no) encryption rules"})
			}
		case ast.AlterTableRenameColumn:
			if t == nil {
				continue
			}
			if c := t.Column(sp.OldColumnName.Name.O); c != nil {
				a.refuse(refusef(c, "renaming an encrypted column is not supported: the encryption rules name it; add a new column and copy the values through the proxy"))
			} else if c := t.Column(sp.NewColumnName.Name.O); c != nil {
				a.refuse(refusef(c, "renaming a column to the name of an encrypted column is not supported: its plaintext values would be read as ciphertexts"))
			}
		case ast.AlterTableChangeColumn, ast.AlterTableModifyColumn:
			if t == nil {
				continue
			}
			verb := "CHANGE COLUMN"
			if sp.Tp == ast.AlterTableModifyColumn {
				verb = "MODIFY COLUMN"
			}
			if sp.OldColumnName != nil {
				if c := t.Column(sp.OldColumnName.Name.O); c != nil {
					a.refuse(refusef(c, "%s of an encrypted column is not supported: the server would convert or truncate its ciphertexts, or rename it away from its rule", verb))
					continue
				}
			}
			for _, cd := range sp.NewColumns {
				if cd.Name == nil {
					continue
				}
				if c := t.Column(cd.Name.Name.O); c != nil {
					a.refuse(refusef(c, "%s of an encrypted column is not supported: the server would convert or truncate its ciphertexts, or rename it away from its rule", verb))
				}
			}
		}
	}
}

// renameTable refuses renaming an encrypted table, and renaming any table
// to the name of one (in any database: where the rule names a database,
// the renamed table would hold plaintext under a name that reads as
// encrypted elsewhere; where it does not, the table's plaintext rows would
// be read as ciphertexts).
func (a *analyzer) renameTable(old *ast.TableName, newName string) {
	if a.p.rules.HasTableNamed(old.Name.O) {
		a.refuse(&sqlplan.Refusal{SQLState: sqlplan.StateFeatureNotSupported, Table: old.Name.O, Reason: "renaming an encrypted table is not supported: the encryption rules name it; change the rules first"})
		return
	}
	if a.p.rules.HasTableNamed(newName) {
		a.refuse(&sqlplan.Refusal{SQLState: sqlplan.StateFeatureNotSupported, Table: newName, Reason: "renaming a table to the name of an encrypted table is not supported: its plaintext rows would be read as ciphertexts, or shadow the encrypted table"})
	}
}

// createTable refuses CREATE TABLE … LIKE an encrypted table (a copy of
// its ciphertext columns without rules) and a table named like an
// encrypted table in a database its rule does not cover (the same
// unqualified name would then store plaintext for a session using that
// database). With no database in the rule, every database's table of that
// name is encrypted, and the table is allowed.
func (a *analyzer) createTable(s *ast.CreateTableStmt) {
	if s.ReferTable != nil {
		if r := a.resolveTable(s.ReferTable.Schema.O, s.ReferTable.Name.O); r != nil {
			a.refuse(&sqlplan.Refusal{SQLState: sqlplan.StateFeatureNotSupported, Table: r.String(), Reason: "CREATE TABLE … LIKE an encrypted table is not supported: the copy's columns would have no encryption rules"})
			return
		}
	}
	name := s.Table.Name.O
	if !a.p.rules.HasTableNamed(name) {
		return
	}
	db := a.dbOf(s.Table)
	if db == "" || db == UnknownDatabase {
		return // resolveTable refuses the unqualified name
	}
	if a.p.rules.Table(db, "", name) == nil {
		a.refuse(&sqlplan.Refusal{SQLState: sqlplan.StateFeatureNotSupported, Table: db + "." + name, Reason: "creating a table with the name of an encrypted table in a database its rule does not cover is not supported: " +
			"it would hold plaintext under a name the application uses for encrypted data; add the database to the rules"})
	}
}

// tableOptions refuses a table whose storage engine reads and writes the
// rows of another table (MERGE's UNION=, FEDERATED/CONNECT/SPIDER's
// CONNECTION=) when that may be an encrypted table: its rows would move
// without the proxy.
func (a *analyzer) tableOptions(opts []*ast.TableOption, text string) {
	if a.err != nil || len(opts) == 0 {
		return
	}
	engine := ""
	for _, o := range opts {
		switch o.Tp {
		case ast.TableOptionEngine:
			engine = strings.ToLower(o.StrValue)
		case ast.TableOptionUnion:
			for _, tn := range o.TableNames {
				if a.p.rules.HasTableNamed(tn.Name.O) {
					a.refuse(&sqlplan.Refusal{SQLState: sqlplan.StateFeatureNotSupported, Table: tn.Name.O, Reason: "a MERGE table over an encrypted table is not supported: its rows would be read and written without the proxy"})
					return
				}
			}
		case ast.TableOptionConnection:
			if a.p.rules.MayTouch(o.StrValue) {
				a.refuse(&sqlplan.Refusal{SQLState: sqlplan.StateFeatureNotSupported, Table: encryptedTableIn(a.p.rules, o.StrValue), Reason: "a table whose CONNECTION names an encrypted table is not supported: its rows would be read and written without the proxy"})
				return
			}
		}
	}
	switch engine {
	case "merge", "mrg_myisam", "federated", "federatedx", "connect", "spider":
		if a.p.rules.MayTouch(text) {
			a.refuse(&sqlplan.Refusal{SQLState: sqlplan.StateFeatureNotSupported, Table: encryptedTableIn(a.p.rules, text), Reason: "a " + strings.ToUpper(engine) + " table that may reach an encrypted table is not supported: its rows would be read and written without the proxy"})
		}
	}
}
