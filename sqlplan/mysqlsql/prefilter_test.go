package mysqlsql_test

import (
	"context"
	"testing"

	"github.com/dbproxy/dbproxy/sqlplan/mysqlsql"
)

// TestPrefilters runs the pre-filters over SQL and the answer wanted.
func TestPrefilters(t *testing.T) {
	for _, f := range []struct {
		name   string
		filter func(string) bool
		cases  map[string]bool
	}{
		{"MentionsDynamic", mysqlsql.MentionsDynamic, map[string]bool{
			"PREPARE s FROM @q":                 true,
			"pRePaRe s FROM @q":                 true,
			"EXECUTE IMMEDIATE @q":              true,
			"/*!PREPARE s FROM @q*/":            true,
			"SELECT 1;prepare s from @q":        true,
			"x\nEXECUTE s":                      true,
			"SELECT preparer FROM jobs":         false,
			"SELECT executed, unprepare FROM j": false,
			"SELECT id FROM users":              false,
			"":                                  false,
		}},
		{"DDLStart", mysqlsql.DDLStart, map[string]bool{
			"CREATE VIEW v AS SELECT 1":                          true,
			"  \n\tcreate trigger t":                             true,
			"-- x\nALTER TABLE t RENAME TO u":                    true,
			"# x\nRENAME TABLE a TO b":                           true,
			"/* c */ DROP VIEW v":                                true,
			"/*!50001 CREATE ALGORITHM=UNDEFINED VIEW v */":      true,
			"/*M!100100 CREATE VIEW v AS SELECT 1 */":            true,
			"SELECT 1; /* x */ /*! CREATE */ VIEW v":             true,
			"SELECT 1 /*!;CREATE VIEW v AS SELECT 1*/":           true,
			"SELECT 'a;create' FROM t":                           true, // false positive: costs a parse
			"SELECT created, altered FROM t":                     false,
			"SELECT 1 -- create":                                 false,
			"INSERT INTO t (create_time) VALUES (1)":             false,
			"SELECT * FROM t WHERE note = 'drop table students'": false,
		}},
	} {
		for sql, want := range f.cases {
			if got := f.filter(sql); got != want {
				t.Errorf("%s(%q) = %v, want %v", f.name, sql, got, want)
			}
		}
	}
}

// BenchmarkPlanPlaintext is the cost of planning a statement that names no
// encrypted table (the pre-filters only).
func BenchmarkPlanPlaintext(b *testing.B) {
	p := newPlanner(b, nil)
	sql := "SELECT c FROM sbtest1 WHERE id BETWEEN 5012 AND 5111 ORDER BY c /* a sysbench-sized statement */"
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if plan, err := p.Plan(ctx, "app", sql); err != nil || !plan.Passthrough {
			b.Fatal(err)
		}
	}
}

// FuzzPrefilterAgreesWithParser checks the byte scans against the parser:
// whenever the parser finds a PREPARE or EXECUTE statement, the text
// mentions PREPARE/EXECUTE, and whenever it finds a CREATE, ALTER, DROP or
// RENAME statement, DDLStart finds it at a statement start.
//
// The seed corpus is in testdata/fuzz/FuzzPrefilterAgreesWithParser.
func FuzzPrefilterAgreesWithParser(f *testing.F) {
	f.Fuzz(func(t *testing.T, sql string) {
		stmts, err := mysqlsql.ParseForTest(sql)
		if err != nil {
			return
		}
		for _, kind := range stmts {
			switch kind {
			case "dynamic":
				if !mysqlsql.MentionsDynamic(sql) {
					t.Fatalf("the parser finds PREPARE/EXECUTE in %q, the scan does not", sql)
				}
			case "ddl":
				if !mysqlsql.DDLStart(sql) {
					t.Fatalf("the parser finds DDL in %q, the scan does not", sql)
				}
			}
		}
	})
}
