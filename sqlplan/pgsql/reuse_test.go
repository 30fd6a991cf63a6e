package pgsql_test

import (
	"context"
	"testing"
	"unsafe"

	"github.com/dbproxy/dbproxy/sqlplan"
	"github.com/dbproxy/dbproxy/sqlplan/pgsql"
)

// reusingTexts differ in their constants only: after the first, each is a
// template hit.
var reusingTexts = []string{
	"SELECT id, email FROM users WHERE email = 'a@x' AND id = 1",
	"SELECT id, email FROM users WHERE email = 'bb@example.com' AND id = 20",
	"SELECT id, email FROM users WHERE email = 'c' AND id = 300",
	"INSERT INTO users (id, email, ssn, salary) VALUES (1, 'a1@x', '123', 42)",
	"INSERT INTO users (id, email, ssn, salary) VALUES (20, 'bb@example.com', 'it''s', 7)",
	"PREPARE q(text) AS SELECT id FROM users WHERE email = $1; EXECUTE q('d@x')",
	"PREPARE q(text) AS SELECT id FROM users WHERE email = $1; EXECUTE q('eee@x')",
}

// TestPlanReusing: PlanReusing with a text in a buffer that is overwritten
// after each call, and one PlanScratch, rewrites every text as Plan does,
// and Shared keeps the statements after both are reused.
func TestPlanReusing(t *testing.T) {
	ctx := context.Background()
	p := newPlanner(t, nil)
	fresh := freshPlanner(t)
	var sc pgsql.PlanScratch
	buf := make([]byte, 0, 256)
	var kept []*pgsql.Plan
	for round := range 2 {
		for i, sql := range reusingTexts {
			buf = append(buf[:0], sql...)
			text := unsafe.String(&buf[0], len(buf))
			pl, _, err := p.PlanReusing(ctx, text, "", &sc)
			if err != nil {
				t.Fatalf("%s: %v", sql, err)
			}
			var sess pgsql.Prepared
			got, err := pl.Rewrite(ctx, nil, text, pgsql.Env{Encrypter: fakeEncrypter{}, Prepared: &sess})
			if err != nil {
				t.Fatalf("%s: %v", sql, err)
			}
			want, err := fresh.Plan(ctx, sql, "")
			if err != nil {
				t.Fatal(err)
			}
			wantOut, err := want.Rewrite(ctx, nil, sql, pgsql.Env{Encrypter: fakeEncrypter{}, Prepared: &sess})
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != string(wantOut) {
				t.Errorf("round %d, %s:\n got %s\nwant %s", round, sql, got, wantOut)
			}
			kept = append(kept, pl.Shared())
			clear(buf) // the caller reuses its buffer
			if round == 1 && i > 0 {
				assertSameStatements(t, sql, kept[len(kept)-1], want)
			}
		}
	}
	for i, pl := range kept {
		want, _ := fresh.Plan(ctx, reusingTexts[i%len(reusingTexts)], "")
		assertSameStatements(t, reusingTexts[i%len(reusingTexts)], pl, want)
	}
}

func assertSameStatements(t *testing.T, sql string, got, want *pgsql.Plan) {
	t.Helper()
	if len(got.Statements) != len(want.Statements) || len(got.Params) != len(want.Params) {
		t.Fatalf("%s: shared plan has %d statements, %d params; want %d, %d", sql,
			len(got.Statements), len(got.Params), len(want.Statements), len(want.Params))
	}
	for i := range got.Statements {
		g, w := &got.Statements[i], &want.Statements[i]
		if g.Kind != w.Kind || (g.Prepare == nil) != (w.Prepare == nil) || (g.Execute == nil) != (w.Execute == nil) {
			t.Errorf("%s: statement %d is %s, want %s", sql, i, g.Kind, w.Kind)
		}
		if g.Prepare != nil && g.Prepare.Name != w.Prepare.Name {
			t.Errorf("%s: statement %d prepares %q, want %q", sql, i, g.Prepare.Name, w.Prepare.Name)
		}
	}
}

// TestPlanReusingAllocs: a template hit through PlanReusing allocates
// nothing.
func TestPlanReusingAllocs(t *testing.T) {
	ctx := context.Background()
	p := newPlanner(t, nil)
	var sc pgsql.PlanScratch
	texts := reusingTexts[:3]
	for _, sql := range texts {
		if _, _, err := p.PlanReusing(ctx, sql, "", &sc); err != nil {
			t.Fatal(err)
		}
	}
	i := 0
	allocs := testing.AllocsPerRun(100, func() {
		// The first text is the template's own: the others instantiate it.
		if _, _, err := p.PlanReusing(ctx, texts[1+i%2], "", &sc); err != nil {
			t.Fatal(err)
		}
		i++
	})
	if allocs != 0 {
		t.Errorf("template hit: %v allocations, want 0", allocs)
	}
}

// TestPlanReusingCopiesKey: the cache keeps its own copy of a text planned
// through PlanReusing, so that the caller's buffer can be reused: the same
// text, planned again once the buffer holds something else, is an exact
// cache hit (the very plan made the first time).
func TestPlanReusingCopiesKey(t *testing.T) {
	ctx := context.Background()
	p := newPlanner(t, nil)
	var sc pgsql.PlanScratch
	// Texts without constants have no template: only their exact key
	// finds them.
	texts := append([]string{"SELECT id, email FROM users WHERE email IS NULL",
		"UPDATE users SET email = NULL WHERE email IS NOT NULL"}, reusingTexts...)
	for _, sql := range texts {
		buf := []byte(sql)
		first, _, err := p.PlanReusing(ctx, unsafe.String(&buf[0], len(buf)), "", &sc)
		if err != nil {
			t.Fatal(err)
		}
		for i := range buf {
			buf[i] = 'x'
		}
		again, err := p.Plan(ctx, sql, "")
		if err != nil {
			t.Fatal(err)
		}
		if again.Shared() != first.Shared() {
			t.Errorf("%s: planned again after the caller's buffer changed: the cache kept the caller's memory", sql)
		}
	}
}

// TestPlanSource: PlanReusing says how each plan was come by, as the
// plan-cache metric counts it.
func TestPlanSource(t *testing.T) {
	ctx := context.Background()
	p := newPlanner(t, nil)
	var sc pgsql.PlanScratch
	for _, c := range []struct {
		sql  string
		want sqlplan.Source
	}{
		{"SELECT 1 FROM other", sqlplan.SourceSkipped},
		{"SELECT id FROM users WHERE email = 'a@x' AND id = 1", sqlplan.SourceParsed},
		{"SELECT id FROM users WHERE email = 'a@x' AND id = 1", sqlplan.SourceCached},
		{"SELECT id FROM users WHERE email = 'b@x' AND id = 2", sqlplan.SourceTemplate},
		{"SELECT id FROM users WHERE email = 'b@x' AND id = 2", sqlplan.SourceTemplate}, // not cached itself
		{"SELECT id FROM users WHERE email = 'b@x' /* a comment */ AND id = 2", sqlplan.SourceParsed},
		{"SELECT id FROM users WHERE ssn = 'x'", sqlplan.SourceParsed}, // refused, still parsed
	} {
		_, got, _ := p.PlanReusing(ctx, c.sql, "", &sc)
		if got != c.want {
			t.Errorf("%s: source %v, want %v", c.sql, got, c.want)
		}
	}
	if _, got, _ := p.PlanReusing(ctx, "SELECT id FROM users WHERE email = 'c@x' AND id = 3", "", nil); got != sqlplan.SourceTemplate {
		t.Errorf("without a scratch: source %v, want template", got)
	}
}
