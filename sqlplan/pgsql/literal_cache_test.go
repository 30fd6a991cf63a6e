package pgsql_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/dbproxy/dbproxy/sqlplan"
	"github.com/dbproxy/dbproxy/sqlplan/pgsql"
)

// outcome summarises everything the wire layer would do with sql under a
// planner: the refusal, or the plan's shape and the rewritten SQL (with the
// deterministic fakeEncrypter, so ciphertext slots show their plaintext).
func outcome(t testing.TB, p *pgsql.Planner, sql string) string {
	t.Helper()
	ctx := context.Background()
	pl, err := p.Plan(ctx, sql, "")
	if err != nil {
		var r *sqlplan.Refusal
		if !errors.As(err, &r) {
			t.Fatalf("Plan(%q): %v", sql, err)
		}
		return "refused " + r.SQLState + ": " + r.Reason
	}
	if _, ok := any(t).(*testing.T); ok {
		checkPlanShape(t.(*testing.T), pl, sql)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "pass=%v edits=%v params=%v\n", pl.Passthrough(), pl.HasEdits(), pl.Params)
	for _, st := range pl.Statements {
		fmt.Fprintf(&b, "%s %d..%d %d edits", st.Kind, st.Start, st.End, len(st.Edits))
		if st.Copy != nil {
			fmt.Fprintf(&b, " copy=%+v", *st.Copy)
		}
		if st.Prepare != nil {
			fmt.Fprintf(&b, " prepare=%+v", *st.Prepare)
		}
		if st.Execute != nil {
			fmt.Fprintf(&b, " execute=%s/%d", st.Execute.Name, len(st.Execute.Args))
		}
		fmt.Fprintf(&b, " dealloc=%q/%v\n", st.Deallocate, st.DeallocateAll)
	}
	var sess pgsql.Prepared
	out, err := pl.Rewrite(ctx, nil, sql, pgsql.Env{Encrypter: fakeEncrypter{}, Prepared: &sess})
	if err != nil {
		var r *sqlplan.Refusal
		if !errors.As(err, &r) {
			t.Fatalf("Rewrite(%q): %v", sql, err)
		}
		return b.String() + "rewrite refused " + r.SQLState + ": " + r.Reason
	}
	return b.String() + string(out)
}

// freshPlanner caches nothing: every Plan parses and analyzes.
func freshPlanner(t testing.TB) *pgsql.Planner {
	t.Helper()
	return plannerWith(t, pgsql.Options{Database: "app", MaxCachedSQL: 1})
}

// TestLiteralCacheShared: statements that differ only in constants share
// one plan-cache entry, and each gets its own values in its rewrite.
func TestLiteralCacheShared(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name   string
		a, b   string
		wantA  string
		wantB  string
		sameAs bool // b is the same text as a: the very same *Plan
	}{
		{
			name:  "insert",
			a:     "INSERT INTO users (id, email, ssn, salary) VALUES (1, 'a1@x', '123', 42)",
			b:     "INSERT INTO users (id, email, ssn, salary) VALUES (20, 'bb@example.com', 'it''s', 7)",
			wantA: `INSERT INTO users (id, email, ssn, salary) VALUES (1, '\x73746f72653a75736572735f656d61696c3a61314078'::bytea, '\x73746f72653a75736572735f73736e3a313233'::bytea, '\x73746f72653a75736572735f73616c6172793a30303030303030303030303030303261'::bytea)`,
		},
		{
			name:  "select",
			a:     "SELECT id, email FROM users WHERE email = 'x@y' AND id > 5",
			b:     "SELECT id, email FROM users WHERE email = 'other@example.org' AND id > 123456",
			wantA: `SELECT id, email FROM users WHERE (email IN ('\x76323a75736572735f656d61696c3a784079'::bytea, '\x76313a75736572735f656d61696c3a784079'::bytea)) AND id > 5`,
		},
		{
			name: "in list and any",
			a:    "SELECT * FROM users WHERE email IN ('a', $$b$$) OR email = ANY(ARRAY['c', E'd'])",
			b:    "SELECT * FROM users WHERE email IN ('aaa', $$b'b$$) OR email = ANY(ARRAY['', E'dd'])",
		},
		{
			name: "typed and cast literals",
			a:    "INSERT INTO docs (id, born, price, body) VALUES (1, date '2020-01-01', 1.50, '{}'::json)",
			b:    "INSERT INTO docs (id, born, price, body) VALUES (2, date '1999-12-31', 2.25, '[1]'::json)",
		},
		{
			name: "prepare and execute",
			a:    "PREPARE p AS SELECT * FROM users WHERE email = $1 AND age = 3; EXECUTE p('a@b')",
			b:    "PREPARE p AS SELECT * FROM users WHERE email = $1 AND age = 4; EXECUTE p('c@d')",
		},
		{
			name:   "same text",
			a:      "SELECT * FROM users WHERE email = 'same'",
			b:      "SELECT * FROM users WHERE email = 'same'",
			sameAs: true,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cat := newFakeCatalog()
			p := newPlanner(t, cat)
			fresh := freshPlanner(t)
			gotA := outcome(t, p, tc.a)
			calls := cat.calls.Load()
			if calls == 0 {
				t.Fatal("first plan did not use the catalog")
			}
			plA, _ := p.Plan(ctx, tc.a, "")
			plB, err := p.Plan(ctx, tc.b, "")
			if err != nil {
				t.Fatal(err)
			}
			gotB := outcome(t, p, tc.b)
			if cat.calls.Load() != calls {
				t.Fatalf("%q did not hit the plan of %q", tc.b, tc.a)
			}
			if (plA == plB) != tc.sameAs {
				t.Fatalf("same *Plan = %v, want %v", plA == plB, tc.sameAs)
			}
			if want := outcome(t, fresh, tc.a); gotA != want {
				t.Fatalf("A:\ncached %s\nfresh  %s", gotA, want)
			}
			if want := outcome(t, fresh, tc.b); gotB != want {
				t.Fatalf("B:\ncached %s\nfresh  %s", gotB, want)
			}
			if tc.wantA != "" && !strings.HasSuffix(gotA, "\n"+tc.wantA) {
				t.Fatalf("A rewrote to\n%s\nwant\n%s", gotA, tc.wantA)
			}
			if !tc.sameAs && gotA == gotB {
				t.Fatal("A and B rewrote the same")
			}
		})
	}
	t.Run("ciphertext slots carry the new values", func(t *testing.T) {
		p := newPlanner(t, nil)
		env := pgsql.Env{Encrypter: fakeEncrypter{versions: 1}}
		for i, v := range []struct{ email, ssn, salary string }{{"a1@x", "123", "42"}, {"zz@q", "9", "-8"}, {"o'k", "", "0007"}} {
			sql := fmt.Sprintf("INSERT INTO users (email, ssn, salary) VALUES ('%s', '%s', %s)", strings.ReplaceAll(v.email, "'", "''"), v.ssn, v.salary)
			pl, err := p.Plan(ctx, sql, "")
			if err != nil {
				t.Fatal(err)
			}
			if i > 0 && pl.Statements[0].Edits[0].Literal.Text != v.email {
				t.Fatalf("literal %q, want %q", pl.Statements[0].Edits[0].Literal.Text, v.email)
			}
			out, err := pl.Rewrite(ctx, nil, sql, env)
			if err != nil {
				t.Fatal(err)
			}
			s := decodeBytea(t, string(out))
			for _, want := range []string{"store:users_email:" + v.email, "store:users_ssn:" + v.ssn} {
				if !strings.Contains(s, want) {
					t.Fatalf("%s: rewrite %s lacks %q", sql, s, want)
				}
			}
		}
	})
}

// decodeBytea replaces every '\x…'::bytea in s with its bytes.
func decodeBytea(t *testing.T, s string) string {
	t.Helper()
	var b strings.Builder
	for {
		i := strings.Index(s, `'\x`)
		if i < 0 {
			return b.String() + s
		}
		j := strings.Index(s[i:], `'::bytea`)
		if j < 0 {
			t.Fatalf("unterminated bytea in %q", s)
		}
		b.WriteString(s[:i])
		var raw []byte
		if _, err := fmt.Sscanf(s[i+3:i+j], "%x", &raw); err != nil && j > 3 {
			t.Fatalf("bad hex in %q: %v", s, err)
		}
		b.Write(raw)
		s = s[i+j+len(`'::bytea`):]
	}
}

// TestLiteralCacheLexing: after planning a, planning b hits a's template
// (hit) or not; either way b's outcome equals a fresh planner's.
func TestLiteralCacheLexing(t *testing.T) {
	const maybe = -1 // refused before the catalog is asked: hit or not, it does not show
	for _, tc := range []struct {
		name string
		a, b string
		hit  int
	}{
		{"integers", "SELECT * FROM users WHERE id = 1 AND email = 'a'", "SELECT * FROM users WHERE id = 22 AND email = 'b'", 1},
		{"leading zeros", "INSERT INTO users (age) VALUES (7)", "INSERT INTO users (age) VALUES (007)", 1},
		{"negative store", "INSERT INTO users (age) VALUES (-5)", "INSERT INTO users (age) VALUES (-61)", 1},
		{"negative match", "SELECT * FROM users WHERE age = -5", "SELECT * FROM users WHERE age = -0", 1},
		{"negative with space stays fixed", "INSERT INTO users (age) VALUES (- 5)", "INSERT INTO users (age) VALUES (- 6)", 0},
		{"binary minus", "SELECT * FROM users WHERE id = id-1 OR email = 'a'", "SELECT * FROM users WHERE id = id-2 OR email = 'b'", 1},
		{"int32 overflow is another token", "INSERT INTO users (salary) VALUES (5)", "INSERT INTO users (salary) VALUES (99999999999)", 0},
		{"overflow both", "INSERT INTO users (salary) VALUES (-2147483648)", "INSERT INTO users (salary) VALUES (-99999999999)", 1},
		{"float", "INSERT INTO docs (price) VALUES (1.5)", "INSERT INTO docs (price) VALUES (.25e3)", 1},
		{"int vs float", "INSERT INTO docs (price) VALUES (1)", "INSERT INTO docs (price) VALUES (1.0)", 0},
		{"string vs number", "INSERT INTO users (email) VALUES ('1')", "INSERT INTO users (email) VALUES (1)", 0},
		{"E string", "INSERT INTO users (email) VALUES (E'a')", "INSERT INTO users (email) VALUES (E'b''c')", 1},
		{"E string escapes are fixed", `INSERT INTO users (email) VALUES (E'a\n')`, `INSERT INTO users (email) VALUES (E'a\t')`, 0},
		{"E string escaped quote", `INSERT INTO users (email) VALUES (E'a\'x')`, `INSERT INTO users (email) VALUES (E'a\'x')`, 1},
		{"backslash in plain string is fixed", `INSERT INTO users (email) VALUES ('a\')`, `INSERT INTO users (email) VALUES ('b\')`, 0},
		{"plain vs E string: both SCONST", "INSERT INTO users (email) VALUES ('a')", "INSERT INTO users (email) VALUES (E'b')", 1},
		{"dollar quotes", "INSERT INTO users (email) VALUES ($$a$$)", "INSERT INTO users (email) VALUES ($t$a$$b'$t$)", 1},
		{"dollar quotes same tag", "INSERT INTO users (email) VALUES ($t$a$t$)", "INSERT INTO users (email) VALUES ($t$x$$y$t$)", 1},
		{"string continuation gives up", "INSERT INTO users (email) VALUES ('a'\n'b')", "INSERT INTO users (email) VALUES ('c'\n'd')", 0},
		{"comments", "SELECT * FROM users -- it's\n WHERE /* 'x' /* nested */ */ email = 'a'", "SELECT * FROM users -- it's\n WHERE /* 'x' /* nested */ */ email = 'b'", 1},
		{"comment text differs", "SELECT * FROM users WHERE email = 'a' -- one", "SELECT * FROM users WHERE email = 'b' -- two", 0},
		{"quoted identifier", `SELECT "it's" FROM users WHERE email = 'a'`, `SELECT "it's" FROM users WHERE email = 'b'`, 1},
		{"U& string is fixed", "INSERT INTO users (email) VALUES (U&'a')", "INSERT INTO users (email) VALUES (U&'b')", 0},
		{"bit string is fixed", "SELECT * FROM users WHERE id = 1 AND B'1' = B'1'", "SELECT * FROM users WHERE id = 1 AND B'1' = B'0'", 0},
		{"hex integer gives up", "SELECT * FROM users WHERE id = 0x1F", "SELECT * FROM users WHERE id = 0x2F", 0},
		{"underscore integer gives up", "SELECT * FROM users WHERE id = 1_000", "SELECT * FROM users WHERE id = 2_000", 0},
		{"trailing junk gives up", "SELECT * FROM users WHERE id = 1a", "SELECT * FROM users WHERE id = 2a", maybe},
		{"unterminated quote gives up", "SELECT * FROM users WHERE email = 'a", "SELECT * FROM users WHERE email = 'b", maybe},
		{"NUL gives up", "SELECT * FROM users WHERE email = 'a\x00'", "SELECT * FROM users WHERE email = 'b\x00'", maybe},
		{"parameter", "SELECT * FROM users WHERE email = $1 AND id = 3", "SELECT * FROM users WHERE email = $1 AND id = 4", 1},
		{"cast literal", "SELECT * FROM users WHERE email = 'a'::text", "SELECT * FROM users WHERE email = 'b'::text", 1},
		{"typmod stays fixed", "SELECT * FROM users WHERE id = 1 AND name = 'a'::varchar(3)", "SELECT * FROM users WHERE id = 1 AND name = 'a'::varchar(4)", 0},
		{"ORDER BY position is pinned", "SELECT id, email FROM users WHERE id = 1 ORDER BY 1", "SELECT id, email FROM users WHERE id = 1 ORDER BY 2", 0},
		{"GROUP BY position is pinned", "SELECT email, count(*) FROM users GROUP BY 1", "SELECT ssn, count(*) FROM users GROUP BY 1", 0},
		{"LIMIT varies", "SELECT * FROM users WHERE email = 'a' LIMIT 10", "SELECT * FROM users WHERE email = 'a' LIMIT 20", 1},
		{"invalid value refused at rewrite", "INSERT INTO users (age) VALUES ('5')", "INSERT INTO users (age) VALUES ('five')", 1},
		{"bad date refused at rewrite", "INSERT INTO docs (born) VALUES (date '2020-01-01')", "INSERT INTO docs (born) VALUES (date 'nope')", 1},
		{"DO body is fixed", "SELECT * FROM users WHERE email = 'a'; DO $$ BEGIN NULL; END $$",
			"SELECT * FROM users WHERE email = 'a'; DO $$ BEGIN INSERT INTO users (ssn) VALUES ('plain'); END $$", 0},
		{"table name in a literal", "SELECT * FROM users WHERE email = 'a'; SELECT * FROM items WHERE name = 'users'",
			"SELECT * FROM users WHERE email = 'a'; SELECT * FROM items WHERE name = 'other'", 0},
		{"no table name in a literal", "SELECT * FROM users WHERE email = 'a'; SELECT * FROM items WHERE name = 'users'",
			"SELECT * FROM users WHERE email = 'a'; SELECT * FROM items WHERE name = 'admins'", 1},
		{"execute argument", "PREPARE q AS INSERT INTO users (email) VALUES ($1); EXECUTE q('a')",
			"PREPARE q AS INSERT INTO users (email) VALUES ($1); EXECUTE q('b')", 1},
		{"execute array argument", "PREPARE q AS SELECT * FROM users WHERE email = ANY($1); EXECUTE q(ARRAY['a', NULL])",
			"PREPARE q AS SELECT * FROM users WHERE email = ANY($1); EXECUTE q(ARRAY['bb', NULL])", 1},
		{"COPY options are fixed", "COPY users (email) FROM STDIN WITH (FORMAT csv, DELIMITER ',')",
			"COPY users (email) FROM STDIN WITH (FORMAT csv, DELIMITER ';')", 0},
		{"SET value is fixed", "SET search_path = 'a'; SELECT * FROM users WHERE email = 'a'",
			"SET search_path = 'b'; SELECT * FROM users WHERE email = 'a'", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cat := newFakeCatalog()
			p := newPlanner(t, cat)
			fresh := freshPlanner(t)
			if got, want := outcome(t, p, tc.a), outcome(t, fresh, tc.a); got != want {
				t.Fatalf("A:\ncached %s\nfresh  %s", got, want)
			}
			outcome(t, p, tc.a) // cached now, if cacheable
			calls := cat.calls.Load()
			got, want := outcome(t, p, tc.b), outcome(t, fresh, tc.b)
			if got != want {
				t.Fatalf("B:\ncached %s\nfresh  %s", got, want)
			}
			if hit := cat.calls.Load() == calls; tc.hit != maybe && hit != (tc.hit == 1) {
				t.Fatalf("hit = %v, want %v (outcome %s)", hit, tc.hit, got)
			}
		})
	}
}

// TestLiteralCacheProperty substitutes random constants into statement
// shapes and checks that a caching planner (which mostly hits templates)
// gives exactly what a planner without a cache gives.
func TestLiteralCacheProperty(t *testing.T) {
	shapes := []string{
		"INSERT INTO users (id, email, ssn, age, salary) VALUES (%n, %s, %s, %n, %n)",
		"INSERT INTO users (id, email, ssn) VALUES (%n, %s, %s), (%n, %s, %s) RETURNING id",
		"SELECT id, email FROM users WHERE email = %s AND age <> %n",
		"SELECT * FROM users WHERE email IN (%s, %s, NULL) AND id < %n LIMIT %n",
		"SELECT * FROM users WHERE email <> ALL(ARRAY[%s, %s]) OR age = ANY(ARRAY[%n])",
		"UPDATE users SET email = %s, ssn = %s, name = %s WHERE age = %n",
		"DELETE FROM users WHERE email = %s OR id = %n",
		"INSERT INTO docs (id, born, price, flag, body) VALUES (%n, date %s, %n, true, %s)",
		"SELECT * FROM docs WHERE price = %n AND born = %s::date",
		"PREPARE p AS SELECT * FROM users WHERE email = $1 AND id = %n; EXECUTE p(%s)",
		"SELECT * FROM users WHERE email = %s; SELECT %s; SELECT * FROM admins WHERE ssn IS NULL AND id = %n",
		"SELECT id FROM users WHERE id = %n ORDER BY %n",
		"SELECT * FROM users u JOIN admins a ON a.email = u.email WHERE u.email = %s AND a.id > %n",
		"INSERT INTO users (email) VALUES (%s) ON CONFLICT (id) DO UPDATE SET name = %s",
	}
	strs := []func(r *rand.Rand) string{
		func(r *rand.Rand) string { return "'" + randText(r) + "'" },
		func(r *rand.Rand) string { return "'" + strings.ReplaceAll(randText(r), "'", "''") + "'" },
		func(r *rand.Rand) string { return "E'" + strings.ReplaceAll(randText(r), "'", "''") + "'" },
		func(r *rand.Rand) string { return "$$" + strings.ReplaceAll(randText(r), "$", "") + "$$" },
		func(r *rand.Rand) string { return "$q$" + randText(r) + "$q$" },
		func(r *rand.Rand) string {
			return "'" + []string{"2020-01-01", "1999-12-31", "x", "", "users", "1.5", "42"}[r.IntN(7)] + "'"
		},
		func(r *rand.Rand) string { return "NULL" },
	}
	nums := []func(r *rand.Rand) string{
		func(r *rand.Rand) string { return fmt.Sprint(r.IntN(1000)) },
		func(r *rand.Rand) string { return fmt.Sprint(-r.IntN(1000)) },
		func(r *rand.Rand) string { return fmt.Sprintf("%03d", r.IntN(100)) },
		func(r *rand.Rand) string { return fmt.Sprint(r.Int64()) },
		func(r *rand.Rand) string { return fmt.Sprintf("%d.%d", r.IntN(100), r.IntN(100)) },
		func(r *rand.Rand) string { return fmt.Sprintf("%de%d", r.IntN(10), r.IntN(5)) },
		func(r *rand.Rand) string { return "- " + fmt.Sprint(r.IntN(10)) },
		func(r *rand.Rand) string {
			return []string{"2147483647", "2147483648", "-2147483648", "0", "-0", "1"}[r.IntN(6)]
		},
	}
	r := rand.New(rand.NewPCG(1, 2))
	cat := newFakeCatalog()
	p := newPlanner(t, cat)
	fresh := freshPlanner(t)
	hits, n := 0, 3000
	if testing.Short() {
		n = 500
	}
	for range n {
		shape := shapes[r.IntN(len(shapes))]
		var b strings.Builder
		for i := 0; i < len(shape); i++ {
			if shape[i] == '%' && i+1 < len(shape) {
				switch shape[i+1] {
				case 's':
					b.WriteString(strs[r.IntN(len(strs))](r))
				case 'n':
					b.WriteString(nums[r.IntN(len(nums))](r))
				}
				i++
				continue
			}
			b.WriteByte(shape[i])
		}
		sql := b.String()
		calls := cat.calls.Load()
		got := outcome(t, p, sql)
		if cat.calls.Load() == calls {
			hits++
		}
		if want := outcome(t, fresh, sql); got != want {
			t.Fatalf("%q:\ncached %s\nfresh  %s", sql, got, want)
		}
	}
	if hits < n/4 {
		t.Fatalf("only %d of %d plans hit the cache", hits, n)
	}
	t.Logf("%d of %d plans hit the cache", hits, n)
}

func randText(r *rand.Rand) string {
	const alphabet = "ab@.-' $\\é\n0"
	runes := []rune(alphabet)
	n := r.IntN(8)
	var b strings.Builder
	for range n {
		b.WriteRune(runes[r.IntN(len(runes))])
	}
	s := b.String()
	return strings.ReplaceAll(s, "'", "''")
}

// FuzzLiteralCache plans a, then b, with one caching planner, and checks
// that b's outcome equals a fresh planner's: whatever a left in the cache
// (a template, an exact plan) must not change what b does.
//
//	go test -run '^$' -fuzz FuzzLiteralCache -fuzztime 1m ./sqlplan/pgsql/
func FuzzLiteralCache(f *testing.F) {
	for _, s := range [][2]string{
		{"INSERT INTO users (email, ssn, salary) VALUES ('a1@x', '123', 42)", "INSERT INTO users (email, ssn, salary) VALUES ('b', '4', -1)"},
		{"SELECT * FROM users WHERE email = 'x@y'", "SELECT * FROM users WHERE email = E'z'"},
		{"SELECT * FROM users WHERE email IN ('a', 'b') AND id = 1", "SELECT * FROM users WHERE email IN ('c', $$d$$) AND id = 2"},
		{"SELECT id, email FROM users ORDER BY 2", "SELECT id, email FROM users ORDER BY 1"},
		{"SELECT 1; DO $$ $$; SELECT * FROM users WHERE email = 'a'", "SELECT 1; DO $$ insert into users values (1) $$; SELECT * FROM users WHERE email = 'a'"},
		{"PREPARE p AS SELECT * FROM users WHERE email = $1; EXECUTE p('x')", "PREPARE p AS SELECT * FROM users WHERE email = $1; EXECUTE p('yy')"},
	} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, a, b string) {
		p := newPlanner(t, nil)
		fresh := freshPlanner(t)
		outcome(t, p, a)
		if got, want := outcome(t, p, b), outcome(t, fresh, b); got != want {
			t.Fatalf("after %q, %q:\ncached %s\nfresh  %s", a, b, got, want)
		}
	})
}
