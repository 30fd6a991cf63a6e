package pgsql_test

import (
	"context"
	"errors"
	"testing"

	pg "github.com/pganalyze/pg_query_go/v6"

	"github.com/dbproxy/dbproxy/sqlplan"
	"github.com/dbproxy/dbproxy/sqlplan/pgsql"
)

// FuzzPlan plans arbitrary SQL and checks the plan's invariants: no panic;
// statements and edits lie within the SQL, sorted and disjoint; errors are
// refusals or catalog errors; and a statement that parsed still parses, as
// the same number of statements, after Rewrite.
//
// The seed corpus is in testdata/fuzz/FuzzPlan. Run with
//
//	go test -run '^$' -fuzz FuzzPlan -fuzztime 2m ./sqlplan/pgsql/
func FuzzPlan(f *testing.F) {
	cat := newFakeCatalog()
	p := newPlanner(f, cat)
	f.Fuzz(func(t *testing.T, sql, searchPath string) {
		ctx := context.Background()
		pl, err := p.Plan(ctx, sql, searchPath)
		if err != nil {
			var r *sqlplan.Refusal
			if errors.As(err, &r) && (r.SQLState == "" || len(r.SQLState) != 5 || r.Reason == "") {
				t.Fatalf("malformed refusal %+v", r)
			}
			return
		}
		checkPlanShape(t, pl, sql)
		var sess pgsql.Prepared
		out, err := pl.Rewrite(ctx, nil, sql, pgsql.Env{Encrypter: fakeEncrypter{}, Prepared: &sess})
		if err != nil {
			var r *sqlplan.Refusal
			if !errors.As(err, &r) {
				t.Fatalf("Rewrite error is not a refusal: %v", err)
			}
			return
		}
		if !pl.HasEdits() {
			if string(out) != sql {
				t.Fatalf("plan without edits changed the SQL:\n%q\n%q", sql, out)
			}
			return
		}
		before, err := pg.Parse(sql)
		if err != nil {
			t.Fatalf("plan with edits for SQL that does not parse: %q", sql)
		}
		after, err := pg.Parse(string(out))
		if err != nil {
			t.Fatalf("rewritten SQL does not parse:\n in: %q\nout: %q\nerr: %v", sql, out, err)
		}
		if len(before.Stmts) != len(after.Stmts) {
			t.Fatalf("rewrite changed the statement count from %d to %d:\n in: %q\nout: %q", len(before.Stmts), len(after.Stmts), sql, out)
		}
	})
}

func checkPlanShape(t *testing.T, pl *pgsql.Plan, sql string) {
	t.Helper()
	for i, st := range pl.Statements {
		if st.Start < 0 || st.End > len(sql) || st.Start > st.End {
			t.Fatalf("statement %d range %d..%d outside %d bytes", i, st.Start, st.End, len(sql))
		}
		if i > 0 && pl.Statements[i-1].End > st.Start {
			t.Fatalf("statements %d and %d overlap", i-1, i)
		}
		if st.Kind == pgsql.KindInvalid {
			t.Fatalf("statement %d has no kind", i)
		}
		prev := st.Start
		for j, e := range st.Edits {
			if e.Start < prev || e.End < e.Start || e.End > st.End {
				t.Fatalf("statement %d edit %d range %d..%d invalid (statement %d..%d, previous end %d)", i, j, e.Start, e.End, st.Start, st.End, prev)
			}
			if e.Kind == pgsql.EditInvalid || (e.Kind != pgsql.EditText && e.Column == nil) || (e.Kind == pgsql.EditMatch && e.Match == nil) {
				t.Fatalf("statement %d edit %d malformed: %+v", i, j, e)
			}
			prev = e.End
		}
		if st.Execute != nil {
			for _, a := range st.Execute.Args {
				if a.Kind != pgsql.ArgOther && (a.Start < st.Start || a.End > st.End || a.Start > a.End) {
					t.Fatalf("EXECUTE argument range %d..%d outside statement %d..%d", a.Start, a.End, st.Start, st.End)
				}
			}
		}
	}
	for i, p := range pl.Params {
		if p.Role == sqlplan.RoleInvalid || (p.Encrypted() != (p.Column != nil)) {
			t.Fatalf("parameter $%d malformed: %+v", i+1, p)
		}
	}
}
