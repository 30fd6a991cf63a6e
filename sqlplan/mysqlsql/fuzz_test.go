package mysqlsql_test

import (
	"context"
	"strings"
	"testing"

	"github.com/dbproxy/dbproxy/sqlplan/mysqlsql"
)

// FuzzPlan checks that the planner never panics and that whatever it lets
// through carries no plaintext for an encrypted column: planning the
// forwarded text again must find only values that are already (fake)
// ciphertexts, which start with S (store) or M (match).
//
// The seed corpus is in testdata/fuzz/FuzzPlan.
func FuzzPlan(f *testing.F) {
	p := newPlanner(f, nil)
	ctx := context.Background()
	f.Fuzz(func(t *testing.T, sql string) {
		plan, err := p.Plan(ctx, "app", sql)
		if err != nil {
			return
		}
		out := sql
		if !plan.Passthrough {
			b, err := plan.Rewrite(ctx, fakeEnc{}, nil, nil)
			if err != nil {
				return
			}
			out = string(b)
		}
		again, err := p.Plan(ctx, "app", out)
		if err != nil {
			if plan.Passthrough {
				t.Fatalf("passthrough text refused on replanning: %v", err)
			}
			return
		}
		for _, s := range again.Slots {
			if s.Kind == mysqlsql.SlotStore || s.Kind == mysqlsql.SlotMatch {
				if !strings.HasPrefix(s.Literal.Text, "S") && !strings.HasPrefix(s.Literal.Text, "M") {
					t.Fatalf("plaintext for %s forwarded:\nin:  %q\nout: %q", s.Column, sql, out)
				}
			}
		}
	})
}
