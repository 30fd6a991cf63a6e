package mysqlsql

import (
	"github.com/pingcap/tidb/pkg/parser"
	"github.com/pingcap/tidb/pkg/parser/ast"
)

// Test hooks for the black-box tests.
var (
	MentionsDynamic = mentionsDynamic
	DDLStart        = ddlStart
)

// ParseForTest parses sql and returns, per statement, "dynamic" (PREPARE,
// EXECUTE), "ddl" (CREATE, ALTER, DROP, RENAME of anything) or "".
func ParseForTest(sql string) ([]string, error) {
	stmts, _, err := parser.New().Parse(sql, "", "")
	if err != nil {
		return nil, err
	}
	out := make([]string, len(stmts))
	for i, st := range stmts {
		switch st.(type) {
		case *ast.PrepareStmt, *ast.ExecuteStmt:
			out[i] = "dynamic"
		case *ast.CreateTableStmt, *ast.CreateViewStmt, *ast.AlterTableStmt, *ast.DropTableStmt, *ast.RenameTableStmt,
			*ast.CreateDatabaseStmt, *ast.DropDatabaseStmt, *ast.CreateIndexStmt, *ast.DropIndexStmt, *ast.ProcedureInfo:
			out[i] = "ddl"
		}
	}
	return out, nil
}
