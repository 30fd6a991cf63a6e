package pgsql_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/dbproxy/dbproxy/rules"
	"github.com/dbproxy/dbproxy/sqlplan"
	"github.com/dbproxy/dbproxy/sqlplan/pgsql"
)

// m renders the two match ciphertexts (key versions 2 and 1) of a value.
func m(key, v string) string { return "CT(v2:" + key + ":" + v + "), CT(v1:" + key + ":" + v + ")" }

// in renders the rewritten (col IN (…)) predicate for one value.
func in(col, key, v string) string { return "(" + col + " IN (" + m(key, v) + "))" }

// st renders the store ciphertext of a value.
func st(key, v string) string { return "CT(store:" + key + ":" + v + ")" }

type planCase struct {
	name   string
	sql    string
	want   string   // rewritten SQL (readable); "=" means unchanged
	params []string // describeParams of Plan.Params; nil means none
	kinds  string   // statement kinds, comma separated; "" = not checked
}

// unchanged is a planCase for each name → SQL of cases: planned as kinds
// ("" = not checked) and forwarded as it is.
func unchanged(kinds string, cases map[string]string) []planCase {
	var out []planCase
	for name, sql := range cases {
		out = append(out, planCase{name: name, sql: sql, want: "=", kinds: kinds})
	}
	return out
}

func runPlanCases(t *testing.T, p *pgsql.Planner, searchPath string, cases []planCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			pl, err := p.Plan(context.Background(), tc.sql, searchPath)
			if err != nil {
				t.Fatalf("Plan(%q): %v", tc.sql, err)
			}
			got, err := rewrite(t, pl, tc.sql, &pgsql.Prepared{})
			if err != nil {
				t.Fatalf("Rewrite: %v", err)
			}
			want := tc.want
			if want == "=" {
				want = tc.sql
			}
			if got != want {
				t.Errorf("rewrite\n got: %s\nwant: %s", got, want)
			}
			if gp := describeParams(pl.Params); !slices.Equal(gp, tc.params) {
				t.Errorf("params = %q, want %q", gp, tc.params)
			}
			if tc.kinds != "" && kinds(pl) != tc.kinds {
				t.Errorf("kinds = %s, want %s", kinds(pl), tc.kinds)
			}
			if pl.HasEdits() != (got != tc.sql) {
				t.Errorf("HasEdits = %v but the rewrite %s the SQL", pl.HasEdits(), map[bool]string{true: "changes", false: "keeps"}[got != tc.sql])
			}
		})
	}
}

func TestPlanWhere(t *testing.T) {
	const e = "users_email"
	runPlanCases(t, newPlanner(t, nil), "", []planCase{
		{name: "equality literal", sql: "SELECT * FROM users WHERE email = 'a@x'",
			want: "SELECT * FROM users WHERE " + in("email", e, "a@x"), kinds: "query"},
		{name: "alias and parameter", sql: "SELECT * FROM users u WHERE u.email = $1 AND id = $2",
			want:   "SELECT * FROM users u WHERE (u.email = ANY($1::bytea[])) AND id = $2",
			params: []string{"match public.users.email", "plain"}},
		{name: "parameter on the left", sql: "SELECT * FROM users WHERE $1 = email",
			want: "SELECT * FROM users WHERE (email = ANY($1::bytea[]))", params: []string{"match public.users.email"}},
		{name: "not equal in parentheses", sql: "SELECT * FROM users WHERE (email) <> ('a@x')",
			want: "SELECT * FROM users WHERE (email NOT IN (" + m(e, "a@x") + "))"},
		{name: "bang equal", sql: "SELECT * FROM users WHERE email != 'a'",
			want: "SELECT * FROM users WHERE (email NOT IN (" + m(e, "a") + "))"},
		{name: "in list with null and parameter", sql: "SELECT * FROM users WHERE email IN ('a', 'b', NULL, $1)",
			want:   "SELECT * FROM users WHERE (email IN (" + m(e, "a") + ", " + m(e, "b") + ", NULL) OR email = ANY($1::bytea[]))",
			params: []string{"match public.users.email"}},
		{name: "not in", sql: "SELECT * FROM users WHERE email NOT IN ('a', ('b'))",
			want: "SELECT * FROM users WHERE (email NOT IN (" + m(e, "a") + ", " + m(e, "b") + "))"},
		{name: "not in parameters", sql: "SELECT * FROM users WHERE email NOT IN ($1, $2)",
			want:   "SELECT * FROM users WHERE (email <> ALL($1::bytea[]) AND email <> ALL($2::bytea[]))",
			params: []string{"match public.users.email", "match public.users.email"}},
		{name: "in only null", sql: "SELECT * FROM users WHERE email IN (NULL)", want: "="},
		{name: "equals null", sql: "SELECT * FROM users WHERE email = NULL", want: "="},
		{name: "any array parameter", sql: "SELECT * FROM users WHERE email = ANY($1)",
			want: "SELECT * FROM users WHERE (email = ANY($1::bytea[]))", params: []string{"match-array public.users.email"}},
		{name: "all array parameter with cast", sql: "SELECT * FROM users WHERE email <> ALL($1::text[])",
			want: "SELECT * FROM users WHERE (email <> ALL($1::bytea[]))", params: []string{"match-array public.users.email"}},
		{name: "any array constructor", sql: "SELECT * FROM users WHERE email = ANY(ARRAY['a', $2])",
			want:   "SELECT * FROM users WHERE (email IN (" + m(e, "a") + ") OR email = ANY($2::bytea[]))",
			params: []string{"plain", "match public.users.email"}},
		{name: "any array literal", sql: "SELECT * FROM users WHERE email = ANY('{a,\"b c\",NULL}')",
			want: "SELECT * FROM users WHERE (email IN (" + m(e, "a") + ", " + m(e, "b c") + ", NULL))"},
		{name: "all array literal with cast", sql: "SELECT * FROM users WHERE email <> ALL('{a}'::text[])",
			want: "SELECT * FROM users WHERE (email NOT IN (" + m(e, "a") + "))"},
		{name: "any empty array literal", sql: "SELECT * FROM users WHERE email = ANY('{}')", want: "="},
		{name: "is null any mode", sql: "DELETE FROM users WHERE email IS NULL AND ssn IS NOT NULL", want: "=", kinds: "query"},
		{name: "not", sql: "SELECT * FROM users WHERE NOT (email = 'a')",
			want: "SELECT * FROM users WHERE NOT (" + in("email", e, "a") + ")"},
		{name: "is true", sql: "SELECT * FROM users WHERE email = 'a' IS TRUE",
			want: "SELECT * FROM users WHERE " + in("email", e, "a") + " IS TRUE"},
		{name: "comments inside", sql: "SELECT * FROM users /* c */ WHERE email /* c2 */ = /* c3 */ 'a' -- users",
			want: "SELECT * FROM users /* c */ WHERE " + in("email", e, "a") + " -- users"},
		{name: "escape string and doubled quote", sql: `SELECT * FROM users WHERE email = E'\x41' OR email = 'it''s'`,
			want: "SELECT * FROM users WHERE " + in("email", e, "A") + " OR " + in("email", e, "it's")},
		{name: "dollar quoted", sql: "SELECT * FROM users WHERE email = $q$a'b$q$",
			want: "SELECT * FROM users WHERE " + in("email", e, "a'b")},
		{name: "string continuation", sql: "SELECT * FROM users WHERE email = 'con'\n  'tinued' AND id = 1",
			want: "SELECT * FROM users WHERE " + in("email", e, "continued") + " AND id = 1"},
		{name: "unicode escape string", sql: `SELECT * FROM users WHERE email = U&'d\0061t\+000061'`,
			want: "SELECT * FROM users WHERE " + in("email", e, "data")},
		{name: "negative integer", sql: "SELECT * FROM users WHERE age = -5",
			want: "SELECT * FROM users WHERE " + in("age", "users_age", "fffffffb")},
		{name: "typed literal cast", sql: "SELECT * FROM users WHERE age = '42'::int",
			want: "SELECT * FROM users WHERE " + in("age", "users_age", "0000002a")},
		{name: "parameter with cast", sql: "SELECT * FROM users WHERE email = $1::text",
			want: "SELECT * FROM users WHERE (email = ANY($1::bytea[]))", params: []string{"match public.users.email"}},
		{name: "typed literals of many types", sql: "SELECT * FROM docs WHERE flag = true AND born = DATE '2024-01-02' AND at = '2024-01-02 03:04:05+02'::timestamptz AND price = 1.50",
			want: "SELECT * FROM docs WHERE " + in("flag", "flag", "01") + " AND " + in("born", "born", "00004d0c") + " AND " +
				in("at", "at", "00060dec13268b40") + " AND " + in("price", "price", "1.5")},
		{name: "schema qualified column", sql: "SELECT * FROM public.users WHERE public.users.email = 'a'",
			want: "SELECT * FROM public.users WHERE " + in("public.users.email", e, "a")},
		{name: "quoted identifiers", sql: `SELECT * FROM "users" WHERE "email" = 'a'`,
			want: `SELECT * FROM "users" WHERE ` + in(`"email"`, e, "a")},
		{name: "upper case unquoted", sql: "SELECT * FROM USERS WHERE EMAIL = 'a'",
			want: "SELECT * FROM USERS WHERE " + in("EMAIL", e, "a")},
		{name: "mixed case table quoted", sql: `SELECT * FROM "Accounts" WHERE "Secret" IS NULL`, want: "=", kinds: "query"},
		{name: "join same key", sql: "SELECT * FROM users u JOIN admins a ON u.email = a.email WHERE a.email IN ('a', 'b')",
			want: "SELECT * FROM users u JOIN admins a ON u.email = a.email WHERE (a.email IN (" + m(e, "a") + ", " + m(e, "b") + "))"},
		{name: "join using", sql: "SELECT * FROM users JOIN admins USING (email) WHERE email = 'a'",
			want: "SELECT * FROM users JOIN admins USING (email) WHERE " + in("email", e, "a")},
		{name: "left join", sql: "SELECT u.email, a.email FROM users u LEFT JOIN admins a ON a.email = u.email", want: "="},
		{name: "lateral", sql: "SELECT * FROM users u, LATERAL (SELECT * FROM admins a WHERE a.email = u.email) x", want: "="},
		{name: "column alias", sql: "SELECT t.e FROM users AS t(i, e) WHERE e = 'a'",
			want: "SELECT t.e FROM users AS t(i, e) WHERE " + in("e", e, "a")},
		{name: "unqualified with a plain table lacking the column", sql: "SELECT * FROM users u, items i WHERE email = 'a'",
			want: "SELECT * FROM users u, items i WHERE " + in("email", e, "a")},
		{name: "cte", sql: "WITH x AS (SELECT id, email FROM users) SELECT * FROM x WHERE email = 'a'",
			want: "WITH x AS (SELECT id, email FROM users) SELECT * FROM x WHERE " + in("email", e, "a")},
		{name: "cte column aliases", sql: "WITH x(i, e) AS (SELECT id, email FROM users) SELECT e FROM x WHERE e = 'a'",
			want: "WITH x(i, e) AS (SELECT id, email FROM users) SELECT e FROM x WHERE " + in("e", e, "a")},
		{name: "recursive cte", sql: "WITH RECURSIVE r AS (SELECT id, email FROM users UNION ALL SELECT r.id, r.email FROM r WHERE r.email = 'a') SELECT id FROM r",
			want: "WITH RECURSIVE r AS (SELECT id, email FROM users UNION ALL SELECT r.id, r.email FROM r WHERE " + in("r.email", e, "a") + ") SELECT id FROM r"},
		{name: "derived table alias", sql: "SELECT * FROM (SELECT email AS e FROM users) s WHERE e = 'a'",
			want: "SELECT * FROM (SELECT email AS e FROM users) s WHERE " + in("e", e, "a")},
		{name: "derived star", sql: "SELECT * FROM (SELECT * FROM users) s WHERE s.email = $1",
			want: "SELECT * FROM (SELECT * FROM users) s WHERE (s.email = ANY($1::bytea[]))", params: []string{"match public.users.email"}},
		{name: "subquery in where", sql: "SELECT * FROM users WHERE id IN (SELECT id FROM admins WHERE email = 'q')",
			want: "SELECT * FROM users WHERE id IN (SELECT id FROM admins WHERE " + in("email", e, "q") + ")"},
		{name: "correlated exists", sql: "SELECT * FROM users u WHERE EXISTS (SELECT 1 FROM items i WHERE email = 'a')",
			want: "SELECT * FROM users u WHERE EXISTS (SELECT 1 FROM items i WHERE " + in("email", e, "a") + ")"},
		{name: "in subquery same key", sql: "SELECT email FROM users WHERE email IN (SELECT a.email FROM admins a WHERE a.id = users.id)", want: "="},
		{name: "in union subquery same key", sql: "SELECT id FROM users WHERE email IN (SELECT email FROM admins UNION SELECT email FROM admins)", want: "="},
		{name: "scalar subquery same key", sql: "SELECT id FROM users WHERE email = (SELECT email FROM admins WHERE id = 1)", want: "="},
		{name: "having", sql: "SELECT email, count(*) FROM users GROUP BY email HAVING email = 'a'",
			want: "SELECT email, count(*) FROM users GROUP BY email HAVING " + in("email", e, "a")},
		{name: "case when", sql: "SELECT CASE WHEN email = 'a' THEN 1 ELSE 0 END FROM users",
			want: "SELECT CASE WHEN " + in("email", e, "a") + " THEN 1 ELSE 0 END FROM users"},
		{name: "for update", sql: "SELECT * FROM users WHERE email = 'a' FOR UPDATE",
			want: "SELECT * FROM users WHERE " + in("email", e, "a") + " FOR UPDATE"},
		{name: "limit parameters", sql: "SELECT * FROM users WHERE id = 1 LIMIT $1 OFFSET $2", want: "=", params: []string{"plain", "plain"}},
		{name: "same parameter twice same role", sql: "SELECT * FROM users WHERE email = $1 OR email = $1",
			want: "SELECT * FROM users WHERE (email = ANY($1::bytea[])) OR (email = ANY($1::bytea[]))", params: []string{"match public.users.email"}},
		{name: "same key parameter on two columns", sql: "SELECT * FROM users u JOIN admins a ON a.id = u.id WHERE u.email = $1 AND a.email = $1",
			want:   "SELECT * FROM users u JOIN admins a ON a.id = u.id WHERE (u.email = ANY($1::bytea[])) AND (a.email = ANY($1::bytea[]))",
			params: []string{"match public.users.email"}},
		{name: "no spaces", sql: "SELECT * FROM users WHERE email=$1 AND age=ANY($2) AND email IN($3) AND email NOT IN('a')",
			want:   "SELECT * FROM users WHERE (email = ANY($1::bytea[])) AND (age = ANY($2::bytea[])) AND (email = ANY($3::bytea[])) AND (email NOT IN (" + m(e, "a") + "))",
			params: []string{"match public.users.email", "match-array public.users.age", "match public.users.email"}},
		{name: "quoted qualified column", sql: `SELECT * FROM users u WHERE u."email"='a'`, want: `SELECT * FROM users u WHERE ` + in(`u."email"`, e, "a")},
		{name: "nested parentheses", sql: "SELECT * FROM users WHERE ((email)) = (('a'))", want: "SELECT * FROM users WHERE " + in("email", e, "a")},
		{name: "cast forms", sql: "SELECT * FROM users WHERE email = ('a')::text OR email = 'b'::pg_catalog.text OR email = 'c'::\"text\" OR age = '1'::integer",
			want: "SELECT * FROM users WHERE " + in("email", e, "a") + " OR " + in("email", e, "b") + " OR " + in("email", e, "c") + " OR " + in("age", "users_age", "00000001")},
		{name: "timestamp with time zone forms", sql: "SELECT * FROM docs WHERE at = '2024-01-01'::timestamp with time zone OR at = timestamptz '2024-01-01'",
			want: "SELECT * FROM docs WHERE " + in("at", "at", "00060dd710212000") + " OR " + in("at", "at", "00060dd710212000")},
		{name: "signs", sql: "SELECT * FROM docs WHERE price = - 1.5 OR price = - -1.5 OR price = 1.5::numeric",
			want: "SELECT * FROM docs WHERE " + in("price", "price", "-1.5") + " OR " + in("price", "price", "1.5") + " OR " + in("price", "price", "1.5")},
		{name: "comparison in select list and order by", sql: "SELECT email = 'x' AS is_x FROM users ORDER BY email = 'y'",
			want: "SELECT " + in("email", e, "x") + " AS is_x FROM users ORDER BY " + in("email", e, "y")},
		{name: "chained ctes", sql: "WITH a AS (SELECT * FROM users WHERE email = 'q'), b AS (SELECT * FROM a WHERE ssn IS NULL) SELECT id FROM b WHERE email = 'r'",
			want: "WITH a AS (SELECT * FROM users WHERE " + in("email", e, "q") + "), b AS (SELECT * FROM a WHERE ssn IS NULL) SELECT id FROM b WHERE " + in("email", e, "r")},
		{name: "three statements", sql: "SELECT * FROM users WHERE id = 1; SELECT * FROM users WHERE email = 'x'; SELECT 2",
			want: "SELECT * FROM users WHERE id = 1; SELECT * FROM users WHERE " + in("email", e, "x") + "; SELECT 2", kinds: "query,query,pass"},
		{name: "explain analyze", sql: "EXPLAIN ANALYZE SELECT * FROM users WHERE email = 'x'",
			want: "EXPLAIN ANALYZE SELECT * FROM users WHERE " + in("email", e, "x")},
		{name: "declare cursor", sql: "DECLARE c CURSOR FOR SELECT email FROM users WHERE email = 'x'",
			want: "DECLARE c CURSOR FOR SELECT email FROM users WHERE " + in("email", e, "x")},
		{name: "create table as with lookup", sql: "CREATE TABLE t2 AS SELECT id FROM users WHERE email = 'x'",
			want: "CREATE TABLE t2 AS SELECT id FROM users WHERE " + in("email", e, "x")},
	})
}

func TestPlanResults(t *testing.T) {
	runPlanCases(t, newPlanner(t, nil), "", slices.Concat(
		unchanged("query", map[string]string{
			"plain select of encrypted columns": "SELECT email, ssn FROM users",
			"star":                              "SELECT * FROM users",
		}),
		unchanged("", map[string]string{
			"group by deterministic":     "SELECT email, count(*) FROM users GROUP BY email",
			"group by position":          "SELECT email, count(*) FROM users GROUP BY 1",
			"rollup and grouping":        "SELECT grouping(email), count(*) FROM users GROUP BY ROLLUP(email)",
			"distinct deterministic":     "SELECT DISTINCT email FROM users",
			"distinct on":                "SELECT DISTINCT ON (email) email, id FROM users",
			"count distinct and count":   "SELECT count(DISTINCT email), count(ssn) FROM users",
			"count in having":            "SELECT 1 FROM users HAVING count(email) > 1",
			"window partition":           "SELECT count(*) OVER (PARTITION BY email) FROM users",
			"cte result":                 "WITH x AS (SELECT email FROM users) SELECT * FROM x",
			"returning":                  "DELETE FROM users u USING admins a WHERE a.email = u.email RETURNING u.email",
			"union in subquery compared": "SELECT id FROM users WHERE email IN (SELECT email FROM admins UNION ALL SELECT email FROM users)",
			"explain of union":           "EXPLAIN SELECT email FROM users UNION SELECT email FROM admins",
		}),
		unchanged("pass", map[string]string{
			"plain table untouched": "SELECT * FROM app_users_log WHERE x = 'users'",
		}),
	))
}

func TestPlanWrites(t *testing.T) {
	const e = "users_email"
	runPlanCases(t, newPlanner(t, nil), "", []planCase{
		{name: "insert column list multi row", sql: `INSERT INTO users (id, email, ssn) VALUES (1, 'a@x', E'12\'3'), (2, $1, NULL)`,
			want:   "INSERT INTO users (id, email, ssn) VALUES (1, " + st(e, "a@x") + ", " + st("users_ssn", "12'3") + "), (2, $1, NULL)",
			params: []string{"store public.users.email"}, kinds: "query"},
		{name: "insert without column list pins the catalog order", sql: "INSERT INTO users VALUES (1, 'a@x', 'x', 42, -5, 'bob')",
			want: `INSERT INTO users ("id", "email", "ssn", "age", "salary", "name") VALUES (1, ` + st(e, "a@x") + ", " + st("users_ssn", "x") + ", " +
				st("users_age", "0000002a") + ", " + st("users_salary", "fffffffffffffffb") + ", 'bob')"},
		{name: "insert without column list, fewer values", sql: "INSERT INTO public.users AS u VALUES (1, 'a')",
			want: `INSERT INTO public.users AS u ("id", "email") VALUES (1, ` + st(e, "a") + ")"},
		{name: "insert literal forms", sql: "INSERT INTO users (email) VALUES ('a'), (E'multi\\nline'), ($t$dollar's$t$), (CAST('x' AS text)), (text 'y'), ('con'\n'tinued'), ('p'::varchar)",
			want: "INSERT INTO users (email) VALUES (" + st(e, "a") + "), (" + st(e, "multi\nline") + "), (" + st(e, "dollar's") + "), (" +
				st(e, "x") + "), (" + st(e, "y") + "), (" + st(e, "continued") + "), (" + st(e, "p") + ")"},
		{name: "insert overriding and quoted names", sql: `INSERT INTO public."users" AS "U" OVERRIDING USER VALUE VALUES (1, 'x')`,
			want: `INSERT INTO public."users" AS "U" ("id", "email") OVERRIDING USER VALUE VALUES (1, ` + st(e, "x") + ")"},
		{name: "insert other types", sql: "INSERT INTO docs (price, flag, born, at, body) VALUES (-1.5, false, '2024-01-01', '2024-01-01 00:00:00', '{\"a\": 1}')",
			want: "INSERT INTO docs (price, flag, born, at, body) VALUES (" + st("price", "-1.5") + ", " + st("flag", "00") + ", " + st("born", "00004d0b") + ", " +
				st("at", "00060dd710212000") + ", " + st("body", `{"a": 1}`) + ")"},
		{name: "insert signed number with space", sql: "INSERT INTO docs (price) VALUES (- 2)", want: "INSERT INTO docs (price) VALUES (" + st("price", "-2") + ")"},
		{name: "insert defaults and nulls", sql: "INSERT INTO users (email) VALUES (DEFAULT), (NULL), (NULL::text)", want: "=", kinds: "query"},
		{name: "insert default values", sql: "INSERT INTO users DEFAULT VALUES", want: "="},
		{name: "insert plain columns only", sql: "INSERT INTO users (id, name) VALUES (1, 'bob')", want: "="},
		{name: "insert parameter with cast", sql: "INSERT INTO users (email) VALUES ($1::text)",
			want: "INSERT INTO users (email) VALUES ($1::bytea)", params: []string{"store public.users.email"}},
		{name: "insert select same key", sql: "INSERT INTO users (email, ssn) SELECT email, ssn FROM admins", want: "="},
		{name: "insert into plain table", sql: "INSERT INTO items VALUES (1, 'users', 2)", want: "=", kinds: "pass"},
		{name: "returning", sql: "INSERT INTO users (email) VALUES ($1) RETURNING id, email, ssn",
			want: "=", params: []string{"store public.users.email"}},
		{name: "on conflict do update forms", sql: "INSERT INTO users (email) VALUES ('a') ON CONFLICT (email) DO UPDATE SET email = EXCLUDED.email, ssn = 'z', age = $1, salary = users.salary RETURNING email, ssn",
			want:   "INSERT INTO users (email) VALUES (" + st(e, "a") + ") ON CONFLICT (email) DO UPDATE SET email = EXCLUDED.email, ssn = " + st("users_ssn", "z") + ", age = $1, salary = users.salary RETURNING email, ssn",
			params: []string{"store public.users.age"}},
		{name: "on conflict with alias and where", sql: "INSERT INTO users AS u (email) VALUES ('a') ON CONFLICT (email) DO UPDATE SET ssn = u.ssn WHERE u.email = 'b'",
			want: "INSERT INTO users AS u (email) VALUES (" + st(e, "a") + ") ON CONFLICT (email) DO UPDATE SET ssn = u.ssn WHERE " + in("u.email", e, "b")},
		{name: "on conflict do nothing", sql: "INSERT INTO users (email, ssn) VALUES ('a', 'b') ON CONFLICT DO NOTHING",
			want: "INSERT INTO users (email, ssn) VALUES (" + st(e, "a") + ", " + st("users_ssn", "b") + ") ON CONFLICT DO NOTHING"},
		{name: "on conflict excluded of another column under the same key", sql: "INSERT INTO admins (email) VALUES ($1) ON CONFLICT (id) DO UPDATE SET email = EXCLUDED.email",
			want: "=", params: []string{"store public.admins.email"}},
		{name: "update literals and parameters", sql: "UPDATE users SET email = 'n', age = NULL, ssn = $1 WHERE email = 'o'",
			want:   "UPDATE users SET email = " + st(e, "n") + ", age = NULL, ssn = $1 WHERE " + in("email", e, "o"),
			params: []string{"store public.users.ssn"}},
		{name: "update multi assign row", sql: "UPDATE users SET (email, age) = ('x', $1) WHERE id = $2",
			want: "UPDATE users SET (email, age) = (" + st(e, "x") + ", $1) WHERE id = $2", params: []string{"store public.users.age", "plain"}},
		{name: "update multi assign subquery same key", sql: "UPDATE users SET (email, ssn) = (SELECT email, ssn FROM admins LIMIT 1)", want: "="},
		{name: "update from same key", sql: "UPDATE users u SET email = a.email, ssn = a.ssn FROM admins a WHERE a.id = u.id", want: "="},
		{name: "update set default", sql: "UPDATE users SET email = DEFAULT", want: "="},
		{name: "cte insert returning", sql: "WITH ins AS (INSERT INTO users(email) VALUES ('q') RETURNING id, email) SELECT email FROM ins",
			want: "WITH ins AS (INSERT INTO users(email) VALUES (" + st(e, "q") + ") RETURNING id, email) SELECT email FROM ins"},
		{name: "multi statement second touches", sql: "SELECT 1; INSERT INTO users(email) VALUES ('b')",
			want: "SELECT 1; INSERT INTO users(email) VALUES (" + st(e, "b") + ")", kinds: "pass,query"},
		{name: "multi statement both touch", sql: "INSERT INTO users(email) VALUES ('a');UPDATE users SET ssn = 's' WHERE email = 'a';",
			want:  "INSERT INTO users(email) VALUES (" + st(e, "a") + ");UPDATE users SET ssn = " + st("users_ssn", "s") + " WHERE " + in("email", e, "a") + ";",
			kinds: "query,query"},
		{name: "quoted mixed case table", sql: `INSERT INTO "Accounts" ("Secret") VALUES ('x')`,
			want: `INSERT INTO "Accounts" ("Secret") VALUES (` + st("acct", "x") + ")"},
	})
}

func TestPlanUtility(t *testing.T) {
	runPlanCases(t, newPlanner(t, nil), "", slices.Concat(
		unchanged("pass", map[string]string{
			"truncate":                      "TRUNCATE users",
			"drop":                          "DROP TABLE users",
			"add plain column":              "ALTER TABLE users ADD COLUMN nick text",
			"add encrypted column as bytea": "ALTER TABLE admins ADD COLUMN ssn bytea",
			"index":                         "CREATE INDEX ON users (email)",
			"create table":                  "CREATE TABLE users (id int, email bytea, ssn bytea NOT NULL)",
			"grant":                         "GRANT SELECT ON users TO bob",
			"set":                           "SET application_name = 'users'",
			"comment":                       "COMMENT ON TABLE users IS 'users'",
			"sequence named like the table": "CREATE SEQUENCE users_id_seq",
			"policy on plain column":        "CREATE POLICY p ON users USING (name = current_user)",
			"vacuum analyze":                "VACUUM ANALYZE users",
		}),
		unchanged("pass,query,pass", map[string]string{
			"begin and select": "BEGIN; SELECT email FROM users; COMMIT",
		}),
	))
}

type refusalCase struct {
	name   string
	sql    string
	column string // "" = not about one column
	reason string // substring of Reason
	state  string // "" = 0A000
}

func runRefusals(t *testing.T, p *pgsql.Planner, searchPath string, cases []refusalCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			pl, err := p.Plan(context.Background(), tc.sql, searchPath)
			if err == nil {
				// Some refusals (literal values) come from Rewrite.
				_, err = rewrite(t, pl, tc.sql, &pgsql.Prepared{})
			}
			var r *sqlplan.Refusal
			if !errors.As(err, &r) {
				t.Fatalf("%q: got %v, want a refusal", tc.sql, err)
			}
			if r.Column != tc.column {
				t.Errorf("column = %q, want %q (reason %q)", r.Column, tc.column, r.Reason)
			}
			if !strings.Contains(r.Reason, tc.reason) {
				t.Errorf("reason %q does not contain %q", r.Reason, tc.reason)
			}
			state := tc.state
			if state == "" {
				state = sqlplan.StateFeatureNotSupported
			}
			if r.SQLState != state {
				t.Errorf("SQLSTATE = %s, want %s (%s)", r.SQLState, state, r.Reason)
			}
			if !strings.Contains(r.Error(), r.Reason) || (r.Column != "" && !strings.Contains(r.Error(), r.Column)) {
				t.Errorf("Error() %q must name the column and the reason", r.Error())
			}
		})
	}
}

func TestRefusals(t *testing.T) {
	const (
		email  = "public.users.email"
		ssn    = "public.users.ssn"
		age    = "public.users.age"
		mism   = sqlplan.StateDatatypeMismatch
		ambig  = sqlplan.StateAmbiguousColumn
		syntax = sqlplan.StateSyntaxError
	)
	runRefusals(t, newPlanner(t, nil), "", []refusalCase{
		// Pattern matching and ordering.
		{"like", "SELECT * FROM users WHERE email LIKE 'a%'", email, "LIKE", ""},
		{"ilike", "SELECT * FROM users WHERE email ILIKE 'a%'", email, "ILIKE", ""},
		{"like operator", "SELECT * FROM users WHERE email ~~ 'a%'", email, "LIKE", ""},
		{"regex", "SELECT * FROM users WHERE email ~ 'x'", email, "regular expression", ""},
		{"similar", "SELECT * FROM users WHERE email SIMILAR TO 'x'", email, "SIMILAR TO", ""},
		{"less than", "SELECT * FROM users WHERE age < 5", age, "ordering comparison <", ""},
		{"greater equal", "SELECT * FROM users WHERE 5 >= age", age, "ordering comparison >=", ""},
		{"between", "SELECT * FROM users WHERE age BETWEEN 1 AND 5", age, "BETWEEN", ""},
		{"order by", "SELECT * FROM users ORDER BY email", email, "ORDER BY", ""},
		{"order by randomized", "SELECT * FROM users ORDER BY ssn DESC", ssn, "ORDER BY", ""},
		{"order by alias", "SELECT email AS e FROM users ORDER BY e", email, "ORDER BY", ""},
		{"order by position", "SELECT id, email FROM users ORDER BY 2", email, "ORDER BY", ""},
		{"order by in window", "SELECT count(*) OVER (ORDER BY email) FROM users", email, "ORDER BY", ""},
		{"order by in aggregate", "SELECT string_agg(name, ',' ORDER BY email) FROM users", email, "ORDER BY", ""},
		// Aggregates, functions, arithmetic, casts.
		{"min", "SELECT min(email) FROM users", email, "aggregate min()", ""},
		{"max", "SELECT max(email) FROM users", email, "aggregate max()", ""},
		{"sum", "SELECT sum(salary) FROM users", "public.users.salary", "aggregate sum()", ""},
		{"avg", "SELECT avg(age) FROM users", age, "aggregate avg()", ""},
		{"arithmetic", "SELECT age + 1 FROM users", age, "arithmetic (+)", ""},
		{"arithmetic in where", "SELECT * FROM users WHERE age * 2 = 4", age, "arithmetic (*)", ""},
		{"unary minus", "SELECT -age FROM users", age, "arithmetic (-)", ""},
		{"concatenation", "SELECT * FROM users WHERE email || 'x' = 'ax'", email, "concatenation", ""},
		{"function in select list", "SELECT upper(email) FROM users", email, "function upper()", ""},
		{"function in where", "SELECT * FROM users WHERE lower(email) = 'a'", email, "function lower()", ""},
		{"cast in select list", "SELECT email::text FROM users", email, "cast", ""},
		{"cast in where", "SELECT * FROM users WHERE CAST(age AS text) = '1'", age, "cast", ""},
		{"coalesce", "SELECT COALESCE(email, 'none') FROM users", email, "COALESCE", ""},
		{"nullif", "SELECT NULLIF(email, 'x') FROM users", email, "NULLIF", ""},
		{"case result", "SELECT CASE WHEN id = 1 THEN email END FROM users", email, "CASE result", ""},
		{"simple case", "SELECT CASE email WHEN 'a' THEN 1 END FROM users", email, "CASE", ""},
		{"collate", "SELECT * FROM users WHERE email COLLATE \"C\" = 'a'", email, "COLLATE", ""},
		{"is distinct from", "SELECT * FROM users WHERE email IS DISTINCT FROM 'x'", email, "DISTINCT FROM", ""},
		{"boolean test", "SELECT * FROM docs WHERE flag IS TRUE", "public.docs.flag", "IS TRUE", ""},
		{"bare boolean condition", "SELECT * FROM docs WHERE flag", "public.docs.flag", "WHERE condition", ""},
		{"row comparison", "SELECT * FROM users WHERE (email, id) = ('a', 1)", email, "row constructor", ""},
		{"generic expression node", "SELECT xmlelement(name x, email) FROM users", email, "XmlExpr", ""},
		{"json function", "SELECT json_build_object('e', email) FROM users", email, "json_build_object", ""},
		{"whole row", "SELECT u FROM users u", "", "whole-row", ""},
		{"whole row star in function", "SELECT row_to_json(u.*) FROM users u", "", "whole-row", ""},
		{"array of encrypted", "SELECT ARRAY[email] FROM users", email, "ARRAY", ""},
		// Equality that cannot be evaluated.
		{"equality on randomized", "SELECT * FROM users WHERE ssn = 'x'", ssn, "randomized", ""},
		{"in on randomized", "SELECT * FROM users WHERE ssn IN ('x')", ssn, "randomized", ""},
		{"any on randomized", "SELECT * FROM users WHERE ssn = ANY($1)", ssn, "randomized", ""},
		{"group by randomized", "SELECT ssn, count(*) FROM users GROUP BY ssn", ssn, "GROUP BY", ""},
		{"group by randomized position", "SELECT ssn FROM users GROUP BY 1", ssn, "GROUP BY", ""},
		{"grouping sets randomized", "SELECT count(*) FROM users GROUP BY GROUPING SETS ((email), (ssn))", ssn, "GROUP BY", ""},
		{"distinct randomized", "SELECT DISTINCT ssn FROM users", ssn, "DISTINCT", ""},
		{"distinct star with randomized", "SELECT DISTINCT * FROM users", ssn, "DISTINCT", ""},
		{"count distinct randomized", "SELECT count(DISTINCT ssn) FROM users", ssn, "COUNT(DISTINCT", ""},
		{"partition by randomized", "SELECT count(*) OVER (PARTITION BY ssn) FROM users", ssn, "PARTITION BY", ""},
		{"union randomized dedupes", "SELECT id FROM users WHERE ssn IN (SELECT ssn FROM admins UNION SELECT ssn FROM users)", "public.admins.ssn", "UNION compares", ""},
		{"unary plus is an expression", "SELECT * FROM docs WHERE price = +1.5", "public.docs.price", "plaintext expression", mism},
		{"cast with typmod", "SELECT * FROM docs WHERE at = '2024-01-01'::timestamp(3) with time zone", "public.docs.at", "cast", ""},
		{"equal all", "SELECT * FROM users WHERE email = ALL(ARRAY['a'])", email, "= ALL", ""},
		{"malformed array literal", "SELECT * FROM users WHERE email = ANY('{a,b')", email, "malformed", sqlplan.StateInvalidText},
		{"array literal cast to another type", "SELECT * FROM users WHERE email = ANY('{a}'::bytea[])", email, "cast", ""},
		{"compare with expression", "SELECT * FROM users WHERE email = lower($1)", email, "plaintext expression", mism},
		{"compare with concatenated parameter", "SELECT * FROM users WHERE email = $1 || ''", email, "plaintext expression", mism},
		{"compare with plain column", "SELECT * FROM users u JOIN plain_emails p ON u.email = p.email", email, "plaintext expression", mism},
		{"compare with subquery plain", "SELECT * FROM users WHERE email = (SELECT 'x')", email, "plaintext expression", mism},
		{"in subquery plain", "SELECT * FROM users u WHERE u.email IN (SELECT p.email FROM plain_emails p)", email, "plaintext value", mism},
		{"join different keys", "SELECT * FROM users u JOIN orders o ON u.email = o.card", email, "another key", mism},
		{"join randomized", "SELECT * FROM users u JOIN admins a ON u.email = a.email AND u.ssn = a.ssn", ssn, "randomized", ""},
		{"join using plain", "SELECT * FROM users JOIN plain_emails USING (email)", email, "plaintext column", mism},
		{"natural join with randomized", "SELECT * FROM users NATURAL JOIN admins", ssn, "randomized", ""},
		{"union with plain", "SELECT email FROM users UNION ALL SELECT email FROM plain_emails", email, "UNION combines", mism},
		// Results that would come back as ciphertext.
		{"union result", "SELECT email FROM users UNION SELECT email FROM admins", email, "returned as ciphertext", ""},
		{"union result via subquery", "SELECT * FROM (SELECT email FROM users UNION ALL SELECT email FROM admins) s", email, "returned as ciphertext", ""},
		{"scalar subquery result", "SELECT (SELECT email FROM admins LIMIT 1) FROM users", "public.admins.email", "returned as ciphertext", ""},
		{"full join using result", "SELECT email FROM users FULL JOIN admins USING (email)", email, "returned as ciphertext", ""},
		{"returning scalar subquery", "DELETE FROM users WHERE email = $1 RETURNING (SELECT email FROM admins LIMIT 1)", "public.admins.email", "returned as ciphertext", ""},
		// Writes that would move plaintext into an encrypted column.
		{"insert select plain", "INSERT INTO users (email) SELECT email FROM plain_emails", email, "INSERT … SELECT", mism},
		{"insert select literal", "INSERT INTO users (email) SELECT 'x'", email, "INSERT … SELECT", mism},
		{"insert select other key", "INSERT INTO users (email) SELECT card FROM orders", email, "INSERT … SELECT", mism},
		{"insert select star", "INSERT INTO users SELECT * FROM plain_emails", email, "INSERT … SELECT", mism},
		{"insert function value", "INSERT INTO users (email) VALUES (lower('A'))", email, "computed or plaintext", mism},
		{"insert subquery value", "INSERT INTO users (email) VALUES ((SELECT 'x'))", email, "computed or plaintext", mism},
		{"insert same parameter twice", "INSERT INTO users (email, name) VALUES ($1, $1)", email, "parameter $1", mism},
		{"insert bit string", "INSERT INTO users (age) VALUES (b'0101')", age, "bit-string", ""},
		{"insert lossy cast", "INSERT INTO users (age) VALUES ('1.5'::numeric)", age, "cast to pg_catalog.numeric", ""},
		{"insert typmod cast", "INSERT INTO users (email) VALUES ('abc'::varchar(2))", email, "cast", ""},
		{"insert into element", "INSERT INTO users (email[1]) VALUES ('x')", email, "element or field", ""},
		{"insert ciphertext into plain table", "INSERT INTO plain_emails (email) SELECT email FROM users", email, "copy its ciphertext", ""},
		{"insert invalid int", "INSERT INTO users (age) VALUES ('abc')", age, "not a valid int", sqlplan.StateInvalidText},
		{"insert int out of range", "INSERT INTO users (age) VALUES (99999999999)", age, "not a valid int", sqlplan.StateOutOfRange},
		{"lookup invalid int", "SELECT * FROM users WHERE age = 1.5", age, "not a valid int", sqlplan.StateInvalidText},
		{"update from plain column", "UPDATE users SET email = name", email, "computed or plaintext", mism},
		{"update from expression", "UPDATE users SET email = email || 'x'", email, "concatenation", ""},
		{"update from other key", "UPDATE users u SET email = o.card FROM orders o WHERE o.user_id = u.id", email, "another key", mism},
		{"update plain from encrypted", "UPDATE users SET name = email", email, "plaintext column \"name\"", ""},
		{"update multi assign plain subquery", "UPDATE users SET (email, age) = (SELECT name, 1 FROM items)", email, "plaintext value", mism},
		{"on conflict function", "INSERT INTO users (email) VALUES ('a') ON CONFLICT (email) DO UPDATE SET email = lower(EXCLUDED.email)", email, "function lower()", ""},
		{"on conflict plain column", "INSERT INTO users (email) VALUES ('a') ON CONFLICT (email) DO UPDATE SET email = EXCLUDED.name", email, "computed or plaintext", mism},
		{"create table as", "CREATE TABLE t2 AS SELECT email FROM users", email, "CREATE TABLE AS", ""},
		{"select into", "SELECT email INTO t3 FROM users", email, "SELECT INTO", ""},
		{"materialized view", "CREATE MATERIALIZED VIEW mv AS SELECT id FROM users WHERE email = 'x'", email, "MATERIALIZED VIEW", ""},
		{"view", "CREATE VIEW v AS SELECT email FROM users", email, "views over encrypted columns", ""},
		{"view star", "CREATE VIEW v AS SELECT * FROM users", email, "views over encrypted columns", ""},
		{"view constant", "CREATE VIEW v AS SELECT id FROM users WHERE email = 'x'", email, "view comparing", ""},
		// DDL that would carry a value.
		{"set default", "ALTER TABLE users ALTER COLUMN email SET DEFAULT 'x'", email, "DEFAULT", ""},
		{"alter type", "ALTER TABLE users ALTER COLUMN email TYPE text", email, "type of an encrypted column", ""},
		{"check constraint", "ALTER TABLE users ADD CONSTRAINT c CHECK (email <> '')", email, "CHECK", ""},
		{"create table default", "CREATE TABLE users (id int, email bytea, ssn bytea DEFAULT 'x')", ssn, "DEFAULT", ""},
		{"create table text column", "CREATE TABLE users (id int, email text)", email, "bytea", mism},
		{"create table generated", "CREATE TABLE users (id int, email bytea GENERATED ALWAYS AS ('x'::bytea) STORED)", email, "generated", ""},
		{"add column with default", "ALTER TABLE admins ADD COLUMN ssn bytea DEFAULT '\\x00'", "public.admins.ssn", "DEFAULT", ""},
		{"index expression", "CREATE INDEX ON users (lower(email))", email, "index expression", ""},
		{"partial index", "CREATE INDEX ON users (id) WHERE email = 'x'", email, "partial index", ""},
		{"trigger when", "CREATE TRIGGER t BEFORE UPDATE ON users FOR EACH ROW WHEN (NEW.email = 'x') EXECUTE FUNCTION f()", "", "a trigger on encrypted table public.users", ""},
		{"policy", "CREATE POLICY p ON users USING (email = 'x')", email, "row-security", ""},
		// Statements the proxy cannot account for.
		{"call", "CALL add_users('x')", "", "CallStmt", ""},
		{"rule", "CREATE RULE r AS ON INSERT TO v DO INSTEAD INSERT INTO users (email) VALUES (NEW.e)", "", "a rule whose actions name an encrypted table", ""},
		{"do block", "DO $$ BEGIN INSERT INTO users(email) VALUES ('x'); END $$", "", "DO block whose body names an encrypted table", "0A000"},
		{"function body", "CREATE FUNCTION f() RETURNS void AS $$ INSERT INTO users(email) VALUES ('x') $$ LANGUAGE sql", "", "CREATE FUNCTION whose body names an encrypted table", ""},
		{"view without encrypted columns", "CREATE VIEW v AS SELECT id, name FROM users", "", "a view over an encrypted table", ""},
		{"merge", "MERGE INTO users u USING admins a ON u.id = a.id WHEN MATCHED THEN UPDATE SET email = 'x'", "", "MergeStmt", ""},
		{"copy from file", "COPY users FROM '/tmp/x'", email, "server-side COPY FROM", ""},
		{"copy to program", "COPY users TO PROGRAM 'cat'", email, "server-side COPY TO", ""},
		{"copy option unknown encoding", "COPY users FROM STDIN WITH (ENCODING 'LATIN1')", "", "encoding", ""},
		{"copy query function", "COPY (SELECT upper(email) FROM users) TO STDOUT", email, "function upper()", ""},
		{"parse failure", "INSERT INTO users (email) VALUES ('x'", "", "could not be parsed", syntax},
		{"parse failure in second statement", "SELECT 1; INSERT INTO users (email) VALUES ('x'", "", "could not be parsed", syntax},
		{"parse failure mentioning table in a string", "SELECT 'users' FROM items WHERE", "", "could not be parsed", syntax},
		// Names.
		{"quoted upper case table", `SELECT * FROM "Users" WHERE email = 'a'`, "", "only when case is ignored", sqlplan.StateInvalidName},
		{"quoted upper case column", `SELECT * FROM users WHERE "Email" = 'a'`, email, "only when case is ignored", sqlplan.StateInvalidName},
		{"unquoted name of a quoted rule", `SELECT * FROM accounts`, "", "only when case is ignored", sqlplan.StateInvalidName},
		{"unquoted column of a quoted rule", `SELECT secret FROM "Accounts"`, "public.Accounts.Secret", "only when case is ignored", sqlplan.StateInvalidName},
		{"ambiguous unqualified", "SELECT * FROM users u, plain_emails p WHERE email = 'a'", email, "qualify it", ambig},
		{"ambiguous correlated", "SELECT * FROM users u WHERE EXISTS (SELECT 1 FROM plain_emails p WHERE email = 'a')", email, "qualify it", ambig},
		{"ambiguous with function", "SELECT * FROM generate_series(1,3) g, users WHERE email = 'a'", email, "qualify it", ambig},
		{"table name instead of its alias", "SELECT * FROM users u WHERE users.email = 'x'", email, "names no relation in scope", sqlplan.StateUndefinedTable},
		{"table not in from", "SELECT 1 FROM items WHERE users.email = 'x'", email, "names no relation in scope", sqlplan.StateUndefinedTable},
		{"aliased join", "SELECT * FROM (users u JOIN admins a ON u.id = a.id) AS j", "", "aliased JOIN", ""},
		// Parameters.
		{"parameter used plain and encrypted", "SELECT * FROM users WHERE email = $1 OR ssn IS NULL AND $1 IS NOT NULL", email, "parameter $1", mism},
		{"parameter on two keys", "SELECT * FROM users WHERE email = $1 AND age = $1", age, "parameter $1", mism},
		{"parameter with incompatible cast", "SELECT * FROM users WHERE email = $1::int", email, "cast", ""},
		{"parameters across statements", "SELECT * FROM users WHERE email = $1; SELECT * FROM users WHERE age = $1", age, "conflicting roles", mism},
	})
}

func TestSearchPath(t *testing.T) {
	ctx := context.Background()
	cat := newFakeCatalog()
	p := newPlanner(t, cat)
	sql := "SELECT * FROM users WHERE email = 'x'"
	tests := []struct {
		name, path, user string
		wantKey          string // key of the match, "" for plaintext
		refuse           string
	}{
		{"default path", "", "alice", "users_email", ""},
		{"explicit public", "public", "alice", "users_email", ""},
		{"app first", "app, public", "alice", "app_email", ""},
		{"quoted app", `"app", "public"`, "alice", "app_email", ""},
		{"user schema shadows an encrypted table", `"$user", public`, "bob", "", "search_path"},
		{"unquoted $user", `$user, public`, "bob", "", "search_path"},
		{"path without the rule's schema", "logs_only", "alice", "", ""},
		{"user schema without the table", `"$user", public`, "carol", "users_email", ""},
		{"expanded user schema that shadows", `"bob", public`, "alice", "", "search_path"},
		{"expanded user schema without the table", `"carol", public`, "alice", "users_email", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cat.user = tt.user
			p.Purge()
			pl, err := p.Plan(ctx, sql, tt.path)
			if tt.refuse != "" {
				var r *sqlplan.Refusal
				if !errors.As(err, &r) || !strings.Contains(r.Reason, tt.refuse) {
					t.Fatalf("Plan = %v, want a refusal mentioning %q", err, tt.refuse)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got, err := rewrite(t, pl, sql, nil)
			if err != nil {
				t.Fatal(err)
			}
			want := sql
			if tt.wantKey != "" {
				want = "SELECT * FROM users WHERE " + in("email", tt.wantKey, "x")
			}
			if got != want {
				t.Fatalf("got  %s\nwant %s", got, want)
			}
		})
	}
	t.Run("expanding $user avoids refusing a plaintext table", func(t *testing.T) {
		set := oneTextRule(t, rules.ModeDeterministic, "", "app", "users", "email")
		p := plannerWith(t, pgsql.Options{Rules: set})
		pl, err := p.Plan(ctx, sql, `"alice", public`)
		if err != nil || kinds(pl) != "pass" {
			t.Fatalf("public.users under an expanded path: %v, %v; want a plaintext plan", kinds(pl), err)
		}
		if _, err := p.Plan(ctx, sql, `"$user", public`); err == nil {
			t.Fatal("a literal $user could name schema app; want a refusal")
		}
	})
	t.Run("table not yet in the catalog takes the first schema with a rule", func(t *testing.T) {
		cat := newFakeCatalog()
		delete(cat.tables, "public.users")
		p := newPlanner(t, cat)
		pl, err := p.Plan(ctx, "CREATE TABLE users (id int, email bytea); INSERT INTO users (email) VALUES ('n')", "")
		if err != nil {
			t.Fatal(err)
		}
		got, _ := rewrite(t, pl, "CREATE TABLE users (id int, email bytea); INSERT INTO users (email) VALUES ('n')", nil)
		if !strings.Contains(got, st("users_email", "n")) {
			t.Fatalf("value not encrypted: %s", got)
		}
	})
	t.Run("insert without a column list needs the table", func(t *testing.T) {
		cat := newFakeCatalog()
		delete(cat.tables, "public.users")
		p := newPlanner(t, cat)
		_, err := p.Plan(ctx, "INSERT INTO users VALUES (1, 'x')", "")
		var r *sqlplan.Refusal
		if !errors.As(err, &r) || r.SQLState != sqlplan.StateUndefinedTable {
			t.Fatalf("Plan = %v, want an undefined-table refusal", err)
		}
	})
}
