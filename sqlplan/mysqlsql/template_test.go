package mysqlsql_test

import (
	"context"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/dbproxy/dbproxy/sqlplan"
	"github.com/dbproxy/dbproxy/sqlplan/mysqlsql"
)

// templateCorpus are statements whose constants TestPlanTemplates varies.
// Each %s is a string constant's body and each %d an integer.
var templateCorpus = []string{
	"SELECT id, email, ssn FROM users WHERE email = '%s'",
	"SELECT id FROM users WHERE email = '%s' AND id = %d",
	"SELECT id FROM users WHERE email = '%s' AND age = %d LIMIT %d",
	"SELECT * FROM users u WHERE u.email <> '%s' AND u.age IN (%d, NULL)",
	"SELECT id FROM users WHERE email IN ('%s', '%s') OR age = %d",
	"INSERT INTO users (id, email, ssn) VALUES (%d, '%s', '%s')",
	"INSERT INTO users (email, age) VALUES ('%s', %d), (NULL, -%d)",
	"INSERT INTO users SET email = '%s', name = '%s'",
	"INSERT INTO users (id, email) VALUES (%d, '%s') ON DUPLICATE KEY UPDATE email = VALUES(email), ssn = '%s'",
	"INSERT INTO users VALUES (%d, '%s', '%s', %d)",
	"UPDATE users SET ssn = '%s', name = '%s' WHERE email = '%s'",
	"DELETE u FROM users u JOIN orders o ON o.uid = u.id WHERE u.email = '%s' AND o.n = %d",
	"SELECT email AS e FROM users HAVING e = '%s'",
	"SELECT '%s' AS 'x', email FROM users WHERE email = '%s'",
	"SELECT email FROM users WHERE email = '%s' ORDER BY %d",
	"USE app; INSERT INTO users (email) VALUES ('%s')",
	"INSERT INTO users (email) VALUES ('%s'); SELECT * FROM users WHERE age = %d",
	"SELECT `email` FROM `app`.`users` WHERE `email` = '%s' AND @v = %d",
	"SELECT email FROM users WHERE email = _utf8mb4 '%s'",
	"SELECT email FROM users WHERE email = '%s' AND name = '%s'",
	"SET time_zone = '%s'; INSERT INTO users (email) VALUES ('%s')",
	"SELECT * FROM users WHERE ssn = '%s'",
	"SELECT * FROM users WHERE age = '%s'",
	"SELECT * FROM users WHERE email = ?  AND age = %d",
	"PREPARE s FROM '%s'",
	"SELECT email FROM users_copy WHERE email = '%s' UNION SELECT email FROM users WHERE email = '%s'",
	"PREPARE s FROM '%s'; INSERT INTO users (email) VALUES ('%s')",
	"SELECT id FROM users WHERE id = %d",
	"SELECT id, note FROM users WHERE note = '%s' AND id IN (%d, %d, %d) LIMIT %d, %d",
	"INSERT INTO users (id, note) VALUES (%d, '%s')",
	"SELECT email AS '%s' FROM users WHERE email = '%s'",
	"SELECT email FROM users WHERE email = '%s' AND note = '%s' COLLATE utf8mb4_bin",
	"SELECT _latin1 '%s', id FROM users WHERE id = %d",
	"SELECT DATE '%s' FROM users WHERE email = '%s'",
	"SELECT JSON_EXTRACT(note, '%s') FROM users WHERE email = '%s'",
	"SET @a = '%s'; SELECT * FROM users WHERE email = '%s'",
	"SET NAMES '%s'; SELECT * FROM users WHERE email = '%s'",
	"SELECT id FROM users WHERE note = '%s' AND email = '%s' AND id > %d",
	"UPDATE users SET note = '%s', ssn = '%s' WHERE id = %d AND email = '%s'",
	"SELECT id FROM users WHERE id = %d ORDER BY %d",
	"SELECT CAST('%s' AS CHAR), email FROM users WHERE email = '%s'",
	"SELECT email FROM users WHERE email = '%s' INTO OUTFILE '%s'",
	"LOAD DATA INFILE '%s' INTO TABLE users",
	"SELECT * FROM users u JOIN users_copy c ON c.email = '%s' WHERE u.id = %d",
}

// templateValues are the values the constants take, in turn: equal ones,
// empty ones, table names, reserved identifiers, SQL text.
var templateStrings = []string{"a@x", "b", "", "a@x", "users", "dbproxy_slot_0", "x y", "1",
	"SELECT 1", "INSERT INTO users (email) VALUES (?)", "+01:00", "DBPROXY_SLOT_1", "42", "a@x",
	"a`b", "utf8mb4", "latin1", "2020-01-01", "$.a", "%", "a\nb", "a\tb", "x'y", "/tmp/x", "a@x", "b"}
var templateInts = []int64{1, 42, 7, 0, 123456789, 2, 999999999999999999, 42}

// TestPlanTemplates checks that a planner reusing templates returns, for
// every statement, exactly the plan (or refusal) a planner that never saw
// another statement returns: templates change the cost of planning, never
// its result.
func TestPlanTemplates(t *testing.T) {
	ctx := context.Background()
	cat := catalog{"app.users": {"id", "email", "ssn", "age"}}
	cached := newPlanner(t, cat)
	hits := 0
	shapeHits := map[string]int{}
	for _, shape := range templateCorpus {
		for round := range templateStrings {
			s, n := round, round
			sql := fillShape(shape, func() string { s++; return templateStrings[s%len(templateStrings)] },
				func() int64 { n++; return templateInts[n%len(templateInts)] })
			got, src, gerr := cached.PlanLex(ctx, "app", sql, assumedLex)
			want, werr := newPlanner(t, cat).Plan(ctx, "app", sql)
			if fmt.Sprint(gerr) != fmt.Sprint(werr) {
				t.Fatalf("%s\ncached: %v\nfresh:  %v", sql, gerr, werr)
			}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("%s\ncached: %+v\nfresh:  %+v", sql, got, want)
			}
			if gerr == nil && !got.Passthrough {
				a, aerr := got.Rewrite(ctx, fakeEnc{}, nil, nil)
				b, berr := want.Rewrite(ctx, fakeEnc{}, nil, nil)
				if string(a) != string(b) || fmt.Sprint(aerr) != fmt.Sprint(berr) {
					t.Fatalf("%s\ncached rewrite: %s (%v)\nfresh rewrite:  %s (%v)", sql, a, aerr, b, berr)
				}
			}
			if src == sqlplan.SourceTemplate {
				hits++
				shapeHits[shape]++
			}
		}
	}
	t.Logf("%d template hits", hits)
	for _, shape := range templateCorpus {
		t.Logf("%2d %s", shapeHits[shape], shape)
	}
	// Shapes whose constants are all values hit their templates from the
	// third statement on (values repeat, so some are exact-text hits);
	// shapes with a constant that is not a value, or that change session
	// state, never do.
	for _, shape := range []string{templateCorpus[0], templateCorpus[1], templateCorpus[5],
		"SELECT id FROM users WHERE id = %d", "INSERT INTO users (id, note) VALUES (%d, '%s')"} {
		if shapeHits[shape] < len(templateStrings)/2 {
			t.Errorf("%s: %d template hits", shape, shapeHits[shape])
		}
	}
	for _, shape := range []string{"PREPARE s FROM '%s'", "PREPARE s FROM '%s'; INSERT INTO users (email) VALUES ('%s')",
		"SET NAMES '%s'; SELECT * FROM users WHERE email = '%s'", "SELECT id FROM users WHERE id = %d ORDER BY %d"} {
		if shapeHits[shape] != 0 {
			t.Errorf("%s: %d template hits, want none", shape, shapeHits[shape])
		}
	}
}

// FuzzPlanTemplate checks, for any string, that planning variants of it
// (its constants replaced) through a planner that builds and reuses
// templates gives exactly what a fresh planner gives.
func FuzzPlanTemplate(f *testing.F) {
	for _, s := range []string{
		"SELECT id FROM users WHERE email = 'a' AND age = 5",
		"INSERT INTO users (id, email, ssn) VALUES (1, 'a', 'b')",
		"UPDATE users SET ssn = 'x' WHERE email = 'y' LIMIT 3",
		"SELECT 'a' AS 'b', email FROM users WHERE email = 'b'",
		"SELECT * FROM users WHERE email IN ('a', 'b') ORDER BY 2",
		"INSERT INTO users SET email = 'q'; SELECT * FROM users_copy WHERE email = 'q'",
	} {
		f.Add(s, "zz", uint32(3))
	}
	ctx := context.Background()
	f.Fuzz(func(t *testing.T, sql, str string, num uint32) {
		lits, ok := mysqlsql.ScanLiterals(sql)
		if !ok || len(lits) == 0 || !mysqlsql.PlainBody(str) || strings.ContainsRune(str, '\'') {
			return
		}
		variant := func(k int) string {
			var b strings.Builder
			prev := 0
			for i, l := range lits {
				b.WriteString(sql[prev:l.Start])
				switch {
				case (i+k)%3 == 0: // unchanged
					b.WriteString(sql[l.Start:l.End])
				case l.String:
					b.WriteString("'" + str + strconv.Itoa(k) + "'")
				default:
					b.WriteString(strconv.FormatUint(uint64(num)+uint64(k)+1, 10))
				}
				prev = l.End
			}
			b.WriteString(sql[prev:])
			return b.String()
		}
		cached := newPlanner(t, nil)
		for k, v := range []string{sql, variant(1), variant(2), variant(3), sql} {
			got, gerr := cached.Plan(ctx, "app", v)
			want, werr := newPlanner(t, nil).Plan(ctx, "app", v)
			if fmt.Sprint(gerr) != fmt.Sprint(werr) || !reflect.DeepEqual(got, want) {
				t.Fatalf("variant %d %q\ncached: %+v %v\nfresh:  %+v %v", k, v, got, gerr, want, werr)
			}
		}
	})
}

// fillShape replaces each %s of shape by str() and each %d by num().
func fillShape(shape string, str func() string, num func() int64) string {
	var b strings.Builder
	for i := 0; i < len(shape); i++ {
		if shape[i] == '%' && i+1 < len(shape) {
			switch shape[i+1] {
			case 's':
				b.WriteString(str())
				i++
				continue
			case 'd':
				fmt.Fprint(&b, num())
				i++
				continue
			}
		}
		b.WriteByte(shape[i])
	}
	return b.String()
}

// TestPlanTemplateBulkInsert: a multi-row INSERT of literals (thousands of
// constants) gets a template like any other shape, equal to a fresh plan.
func TestPlanTemplateBulkInsert(t *testing.T) {
	ctx := context.Background()
	bulk := func(v int) string {
		var b strings.Builder
		b.WriteString("INSERT INTO users (id, email, ssn, note) VALUES ")
		for i := range 1000 {
			if i > 0 {
				b.WriteString(", ")
			}
			fmt.Fprintf(&b, "(%d, 'u%d-%d@x', 'ssn %d', 'note %d')", v*1000+i+1, v, i, v, i)
		}
		return b.String()
	}
	cached := newPlanner(t, nil)
	for v := range 4 {
		sql := bulk(v)
		got, src, gerr := cached.PlanLex(ctx, "app", sql, assumedLex)
		want, werr := newPlanner(t, nil).Plan(ctx, "app", sql)
		if gerr != nil || werr != nil || !reflect.DeepEqual(got, want) {
			t.Fatalf("round %d: cached and fresh plans differ (%v, %v)", v, gerr, werr)
		}
		if hit := src == sqlplan.SourceTemplate; hit != (v >= 2) {
			t.Fatalf("round %d: template hit %v", v, hit)
		}
	}
}

// TestPlanConcurrent: sessions planning different statements at once each
// get the plan of their own statement. The parser's result slice is the
// parser's own, and a parser went back to the pool before its statements
// were analysed: a concurrent parse overwrote them (a literal lookup was
// refused as a comparison with a column, or a statement was rewritten
// into another session's). Without -race this caught that about every
// other run on 2 cores; with -race, every run.
func TestPlanConcurrent(t *testing.T) {
	ctx := context.Background()
	cat := catalog{"app.users": {"id", "email", "ssn", "age"}}
	const workers, per = 8, 4000
	var stmtBody func(w, i int) string
	// A comment keeps statements out of templates: every one is parsed.
	stmt := func(w, i int) string {
		return fmt.Sprintf("/* %d %d */ ", w, i) + stmtBody(w, i)
	}
	stmtBody = func(w, i int) string {
		switch i % 3 {
		case 0:
			return fmt.Sprintf("SELECT id, email FROM users WHERE email = 'w%d-%d' AND id = %d", w, i, w*per+i)
		case 1:
			return fmt.Sprintf("INSERT INTO users (id, email, ssn) VALUES (%d, 'w%d-%d', 's%d')", w*per+i, w, i, i)
		}
		return fmt.Sprintf("UPDATE users SET ssn = 'x%d', age = %d WHERE email = 'w%d-%d'", i, w, w, i)
	}
	want := make([][]string, workers)
	for w := range workers {
		for i := range per {
			plan, err := newPlanner(t, cat).Plan(ctx, "app", stmt(w, i))
			if err != nil {
				t.Fatal(err)
			}
			b, err := plan.Rewrite(ctx, fakeEnc{}, nil, nil)
			if err != nil {
				t.Fatal(err)
			}
			want[w] = append(want[w], string(b))
		}
	}
	shared := newPlanner(t, cat)
	errs := make(chan error, workers)
	for w := range workers {
		go func() {
			for i := range per {
				plan, err := shared.Plan(ctx, "app", stmt(w, i))
				var b []byte
				if err == nil {
					b, err = plan.Rewrite(ctx, fakeEnc{}, nil, nil)
				}
				if err != nil || string(b) != want[w][i] {
					errs <- fmt.Errorf("%s:\ngot  %s (%v)\nwant %s", stmt(w, i), b, err, want[w][i])
					return
				}
			}
			errs <- nil
		}()
	}
	for range workers {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
}

// assumedLex is the lexing state Planner.Plan assumes.
var assumedLex = mysqlsql.Lex{ModeAssumed: true}

// TestPlanSource: PlanLex says how each plan was come by, as the
// plan-cache metric counts it: a template is built on the second miss of
// a statement shape.
func TestPlanSource(t *testing.T) {
	ctx := context.Background()
	p := newPlanner(t, nil)
	for _, c := range []struct {
		sql  string
		want sqlplan.Source
	}{
		{"SELECT 1 FROM other", sqlplan.SourceSkipped},
		{"SELECT id FROM users WHERE email = 'a@x' AND id = 1", sqlplan.SourceParsed},
		{"SELECT id FROM users WHERE email = 'a@x' AND id = 1", sqlplan.SourceCached},
		{"SELECT id FROM users WHERE email = 'b@x' AND id = 2", sqlplan.SourceParsed},
		{"SELECT id FROM users WHERE email = 'c@x' AND id = 3", sqlplan.SourceTemplate},
		{"SELECT id FROM users WHERE email = 'c@x' AND id = 3", sqlplan.SourceTemplate}, // not cached itself
		{"SELECT id FROM users WHERE email = 'c@x' /* a comment */ AND id = 3", sqlplan.SourceParsed},
		{"SELECT id FROM users WHERE ssn = 'x'", sqlplan.SourceParsed}, // refused, still parsed
		{"SELECT id FROM users WHERE ssn = 'x'", sqlplan.SourceCached}, // and its refusal cached
	} {
		_, got, _ := p.PlanLex(ctx, "app", c.sql, assumedLex)
		if got != c.want {
			t.Errorf("%s: source %v, want %v", c.sql, got, c.want)
		}
	}
}
