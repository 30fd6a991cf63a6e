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

// LitSpan is a constant found by the literal scan (template.go).
type LitSpan struct {
	Start, End int
	String     bool // a string constant, else an integer
}

// ScanLiterals is scanLiterals for the black-box tests.
func ScanLiterals(sql string) ([]LitSpan, bool) {
	lits, ok := scanLiterals(sql, nil)
	out := make([]LitSpan, len(lits))
	for i, l := range lits {
		out[i] = LitSpan{Start: l.start, End: l.end, String: l.class == litString}
	}
	return out, ok
}

// PlainBody is plainBody for the black-box tests.
var PlainBody = plainBody
