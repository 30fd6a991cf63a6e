package mysqlsql_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/dbproxy/dbproxy/rules"
	"github.com/dbproxy/dbproxy/sqlplan"
	"github.com/dbproxy/dbproxy/sqlplan/mysqlsql"
	"github.com/dbproxy/dbproxy/value"
)

// fakeEnc renders ciphertexts as "S<canon>" (store) and "M<v><canon>"
// (match, two live versions), so that tests can read the hex.
type fakeEnc struct{}

func (fakeEnc) AppendStore(_ context.Context, dst []byte, _ *rules.ColumnRule, canon []byte) ([]byte, error) {
	return append(append(dst, 'S'), canon...), nil
}

func (fakeEnc) AppendMatch(_ context.Context, buf []byte, cts [][]byte, c *rules.ColumnRule, canon []byte) ([]byte, [][]byte, error) {
	if !c.Deterministic {
		return nil, nil, rules.ErrRandomizedMatch
	}
	for _, v := range []string{"M2", "M1"} {
		start := len(buf)
		buf = append(append(buf, v...), canon...)
		cts = append(cts, buf[start:len(buf):len(buf)])
	}
	return buf, cts, nil
}

type catalog map[string][]string

func (c catalog) Columns(_ context.Context, db, table string) ([]string, error) {
	cols, ok := c[db+"."+table]
	if !ok {
		return nil, errors.New("no such table")
	}
	return cols, nil
}

func newPlanner(t testing.TB, cat mysqlsql.Catalog) *mysqlsql.Planner {
	t.Helper()
	set, err := rules.New(rules.DialectMySQL, []rules.Spec{
		{Database: "app", Table: "users", Column: "email", Key: "k", Mode: rules.ModeDeterministic, Type: value.TypeText},
		{Database: "app", Table: "users", Column: "ssn", Key: "kr", Mode: rules.ModeRandomized, Type: value.TypeText},
		{Database: "app", Table: "users", Column: "age", Key: "ki", Mode: rules.ModeDeterministic, Type: value.TypeInt},
		{Database: "app", Table: "users_copy", Column: "email", Key: "k", Mode: rules.ModeDeterministic, Type: value.TypeText},
	})
	if err != nil {
		t.Fatal(err)
	}
	if cat == nil {
		return mysqlsql.New(set, nil, mysqlsql.Options{CacheSize: 16})
	}
	return mysqlsql.New(set, cat, mysqlsql.Options{CacheSize: 16})
}

func hx(s string) string { return fmt.Sprintf("X'%x'", s) }

func TestPlanRewrite(t *testing.T) {
	i42 := "\x00\x00\x00\x2a"
	tests := []struct {
		name, db, sql, want string
	}{
		{"insert", "app", "INSERT INTO users (id, email, ssn) VALUES (1, 'a@x', 'secret')",
			"INSERT INTO `users` (`id`,`email`,`ssn`) VALUES (1," + hx("Sa@x") + "," + hx("Ssecret") + ")"},
		{"multi-row and null", "app", "INSERT INTO users (email, age) VALUES ('a', 42), (NULL, -1)",
			"INSERT INTO `users` (`email`,`age`) VALUES (" + hx("Sa") + "," + hx("S"+i42) + "),(NULL," + hx("S\xff\xff\xff\xff") + ")"},
		{"insert set", "app", "INSERT INTO users SET email = 'a'",
			"INSERT INTO `users` SET `email`=" + hx("Sa")},
		{"replace qualified", "", "REPLACE INTO `app`.`USERS` (`Email`) VALUES ('a')",
			"REPLACE INTO `app`.`USERS` (`Email`) VALUES (" + hx("Sa") + ")"},
		{"on duplicate", "app", "INSERT INTO users (id, email) VALUES (1, 'a') ON DUPLICATE KEY UPDATE email = VALUES(email), ssn = 's'",
			"INSERT INTO `users` (`id`,`email`) VALUES (1," + hx("Sa") + ") ON DUPLICATE KEY UPDATE `email`=VALUES(`email`),`ssn`=" + hx("Ss")},
		{"select eq", "app", "SELECT id, email FROM users WHERE email = 'a'",
			"SELECT `id`,`email` FROM `users` WHERE `email` IN (" + hx("M2a") + ", " + hx("M1a") + ")"},
		{"select ne and in", "app", "SELECT * FROM users u WHERE u.email <> 'a' AND u.age IN (42, NULL)",
			"SELECT * FROM `users` AS `u` WHERE `u`.`email` NOT IN (" + hx("M2a") + ", " + hx("M1a") + ") AND `u`.`age` IN (" + hx("M2"+i42) + ", " + hx("M1"+i42) + ",NULL)"},
		{"update", "app", "UPDATE users SET ssn = 'x', name = 'n' WHERE email = 'a'",
			"UPDATE `users` SET `ssn`=" + hx("Sx") + ", `name`=_UTF8MB4'n' WHERE `email` IN (" + hx("M2a") + ", " + hx("M1a") + ")"},
		{"delete multi", "app", "DELETE u FROM users u JOIN orders o ON o.uid = u.id WHERE u.email = 'a'",
			"DELETE `u` FROM `users` AS `u` JOIN `orders` AS `o` ON `o`.`uid`=`u`.`id` WHERE `u`.`email` IN (" + hx("M2a") + ", " + hx("M1a") + ")"},
		{"is null", "app", "SELECT email FROM users WHERE ssn IS NULL AND email = 'a'",
			"SELECT `email` FROM `users` WHERE `ssn` IS NULL AND `email` IN (" + hx("M2a") + ", " + hx("M1a") + ")"},
		{"use then insert", "", "USE app; INSERT INTO users (email) VALUES ('a')",
			"USE app; INSERT INTO `users` (`email`) VALUES (" + hx("Sa") + ")"},
		{"catalog", "app", "INSERT INTO users VALUES (7, 'a', 's', 42)",
			"INSERT INTO `users` (`id`,`email`,`ssn`,`age`) VALUES (7," + hx("Sa") + "," + hx("Ss") + "," + hx("S"+i42) + ")"},
		{"alias in having", "app", "SELECT email AS e FROM users HAVING e = 'a'",
			"SELECT `email` AS `e` FROM `users` HAVING `e` IN (" + hx("M2a") + ", " + hx("M1a") + ")"},
		{"derived alias", "app", "SELECT d.id FROM (SELECT id, email AS e FROM users) AS d WHERE d.e = 'a'",
			"SELECT `d`.`id` FROM (SELECT `id`,`email` AS `e` FROM `users`) AS `d` WHERE `d`.`e` IN (" + hx("M2a") + ", " + hx("M1a") + ")"},
		{"copy same key", "app", "UPDATE users SET email = email WHERE id = 1", ""},
	}
	p := newPlanner(t, catalog{"app.users": {"id", "email", "ssn", "age"}})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			plan, err := p.Plan(context.Background(), tt.db, tt.sql)
			if err != nil {
				t.Fatalf("Plan: %v", err)
			}
			if tt.want == "" {
				if !plan.Passthrough {
					t.Fatalf("want passthrough, got %q", plan.Segments)
				}
				return
			}
			if plan.Passthrough {
				t.Fatal("unexpected passthrough")
			}
			got, err := plan.Rewrite(context.Background(), fakeEnc{}, nil, nil)
			if err != nil {
				t.Fatalf("Rewrite: %v", err)
			}
			if string(got) != tt.want {
				t.Fatalf("got  %s\nwant %s", got, tt.want)
			}
		})
	}
}

func TestPlanParams(t *testing.T) {
	p := newPlanner(t, nil)
	tests := []struct {
		name, sql, want string
		roles           []sqlplan.Role
		server          []mysqlsql.ServerParam
	}{
		{"insert", "INSERT INTO users (id, email, ssn) VALUES (?, ?, ?)", "INSERT INTO `users` (`id`,`email`,`ssn`) VALUES (?,?,?)",
			[]sqlplan.Role{sqlplan.RolePlain, sqlplan.RoleStore, sqlplan.RoleStore},
			[]mysqlsql.ServerParam{{0, 0}, {1, 0}, {2, 0}}},
		{"select", "SELECT id FROM users WHERE email = ? AND id > ?", "SELECT `id` FROM `users` WHERE `email` IN (?, ?, ?, ?) AND `id`>?",
			[]sqlplan.Role{sqlplan.RoleMatch, sqlplan.RolePlain},
			[]mysqlsql.ServerParam{{0, 0}, {0, 1}, {0, 2}, {0, 3}, {1, 0}}},
		{"update", "UPDATE users SET ssn = ? WHERE id = ? AND email IN (?, 'a')", "",
			[]sqlplan.Role{sqlplan.RoleStore, sqlplan.RolePlain, sqlplan.RoleMatch}, nil},
		{"plain", "SELECT email FROM users WHERE id = ?", "",
			[]sqlplan.Role{sqlplan.RolePlain}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			plan, err := p.Plan(context.Background(), "app", tt.sql)
			if err != nil {
				t.Fatalf("Plan: %v", err)
			}
			if len(plan.Params) != len(tt.roles) {
				t.Fatalf("params %+v, want roles %v", plan.Params, tt.roles)
			}
			for i, r := range tt.roles {
				if plan.Params[i].Role != r {
					t.Fatalf("param %d role %d, want %d", i, plan.Params[i].Role, r)
				}
			}
			if tt.want != "" {
				got, err := plan.Rewrite(context.Background(), fakeEnc{}, nil, nil)
				if err != nil {
					t.Fatal(err)
				}
				if string(got) != tt.want {
					t.Fatalf("got  %s\nwant %s", got, tt.want)
				}
			}
			if tt.server != nil && fmt.Sprint(plan.ServerParams) != fmt.Sprint(tt.server) {
				t.Fatalf("server params %v, want %v", plan.ServerParams, tt.server)
			}
			if plan.Passthrough != !plan.HasEncryptedParams() {
				t.Fatalf("passthrough %v with params %+v", plan.Passthrough, plan.Params)
			}
		})
	}
}

func TestPlanRefusals(t *testing.T) {
	p := newPlanner(t, nil)
	tests := []struct{ name, db, sql, reason string }{
		{"like", "app", "SELECT * FROM users WHERE email LIKE 'a%'", "LIKE"},
		{"less", "app", "SELECT * FROM users WHERE age < 3", "<"},
		{"greater", "app", "DELETE FROM users WHERE age > 3", ">"},
		{"between", "app", "SELECT * FROM users WHERE age BETWEEN 1 AND 3", "BETWEEN"},
		{"order by", "app", "SELECT * FROM users ORDER BY email", "ORDER BY"},
		{"group by", "app", "SELECT count(*) FROM users GROUP BY email", "ORDER BY or GROUP BY"},
		{"function", "app", "SELECT * FROM users WHERE lower(email) = 'a'", "functions"},
		{"function in select", "app", "SELECT upper(email) FROM users", "functions"},
		{"cast", "app", "SELECT CAST(age AS CHAR) FROM users", "casts"},
		{"arithmetic", "app", "UPDATE users SET age = age + 1", "literal"},
		{"arith where", "app", "SELECT * FROM users WHERE age + 1 = 3", "arithmetic"},
		{"randomized eq", "app", "SELECT * FROM users WHERE ssn = 'x'", "randomized"},
		{"randomized in", "app", "SELECT * FROM users WHERE ssn IN ('x')", "randomized"},
		{"insert select", "app", "INSERT INTO users (email) SELECT email FROM other", "INSERT … SELECT"},
		{"insert select copies ciphertext", "app", "INSERT INTO other (x) SELECT email FROM users", "copy its ciphertext"},
		{"insert select wildcard", "app", "INSERT INTO other SELECT * FROM users", "copy its ciphertext"},
		{"insert select union", "app", "INSERT INTO other (x) SELECT id FROM users UNION SELECT 1", "copy its ciphertext"},
		{"insert select subquery", "app", "INSERT INTO other (x) SELECT (SELECT email FROM users LIMIT 1)", "ciphertext"},
		{"insert select into plaintext column", "app", "INSERT INTO users (id) SELECT age FROM users", "plaintext column"},
		{"create table select", "app", "CREATE TABLE c AS SELECT * FROM users", "CREATE TABLE … SELECT"},
		{"into outfile", "app", "SELECT email FROM users INTO OUTFILE '/tmp/x'", "INTO OUTFILE"},
		{"create table select column", "app", "CREATE TABLE c SELECT u.email AS e FROM users u", "CREATE TABLE … SELECT"},
		{"insert expr", "app", "INSERT INTO users (email) VALUES (concat('a','b'))", "literal"},
		{"insert default", "app", "INSERT INTO users (email) VALUES (DEFAULT)", "literal"},
		{"no column list", "app", "INSERT INTO users VALUES (1, 'a')", "column list"},
		{"unparseable", "app", "INSERT INTO users (email) VALUES ('a'", "parsed"},
		{"load data", "app", "LOAD DATA LOCAL INFILE '/tmp/x' INTO TABLE users", "LOAD DATA"},
		{"unknown db", "", "INSERT INTO users (email) VALUES ('a')", "current database"},
		{"pending use", mysqlsql.UnknownDatabase, "SELECT * FROM users WHERE email = 'a'", "current database"},
		{"in subquery", "app", "SELECT * FROM users WHERE email IN (SELECT x FROM t)", "subquery"},
		{"compare plain col", "app", "SELECT * FROM users u JOIN t ON t.x = u.email", "literals or placeholders"},
		{"null safe", "app", "SELECT * FROM users WHERE email <=> 'a'", "<=>"},
		{"regexp", "app", "SELECT * FROM users WHERE email REGEXP 'a'", "REGEXP"},
		{"derived alias", "app", "SELECT d.email FROM (SELECT email FROM users) d WHERE d.email = 'a'", "derived table d"},
		{"explain insert", "app", "EXPLAIN INSERT INTO users (email) VALUES (concat('a'))", "literal"},
		{"marker", "app", "SELECT dbproxy_slot_1 FROM users", "reserved"},
		{"bad literal", "app", "INSERT INTO users (age) VALUES ('nope')", "valid int"},
		{"having alias", "app", "SELECT email AS e FROM users HAVING e LIKE 'x%'", "LIKE"},
		{"order by alias", "app", "SELECT email AS e FROM users ORDER BY e", "ORDER BY"},
		{"order by position", "app", "SELECT id, email FROM users ORDER BY 2", "ORDER BY"},
		{"group by position", "app", "SELECT email, count(*) FROM users GROUP BY 1", "ORDER BY or GROUP BY"},
		{"order by position after star", "app", "SELECT * FROM users ORDER BY 1", "after *"},
		{"order by position in a subquery", "app", "SELECT id FROM users WHERE id IN (SELECT id FROM (SELECT email, id FROM users ORDER BY 1) d)", "ORDER BY"},
		{"cte column list", "app", "WITH x(e) AS (SELECT email FROM users) SELECT * FROM x WHERE e = 'a'", "CTE"},
		{"ddl default", "app", "ALTER TABLE users ALTER COLUMN email SET DEFAULT 'a'", "DEFAULT"},
		{"ddl default create", "app", "CREATE TABLE users (id int, ssn varbinary(10) DEFAULT 'a')", "DEFAULT"},
		{"sql prepare", "app", "PREPARE s FROM 'INSERT INTO users (email) VALUES (?)'", "SQL PREPARE"},
		{"handler", "app", "CALL p((SELECT email FROM users))", "Call"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			plan, err := p.Plan(context.Background(), tt.db, tt.sql)
			if err == nil {
				_, err = plan.Rewrite(context.Background(), fakeEnc{}, nil, nil)
			}
			var r *sqlplan.Refusal
			if !errors.As(err, &r) {
				t.Fatalf("want refusal, got %v", err)
			}
			if !strings.Contains(r.Error(), tt.reason) {
				t.Fatalf("refusal %q does not mention %q", r.Error(), tt.reason)
			}
			if strings.Contains(r.Error(), "'a'") || strings.Contains(r.Error(), "nope") {
				t.Fatalf("refusal leaks a value: %q", r.Error())
			}
		})
	}
}

// TestPlanAllowed: statements that name no encrypted column are forwarded
// unchanged; copying plaintext columns out of an encrypted table, with a
// lookup on an encrypted column, is rewritten, not refused.
func TestPlanAllowed(t *testing.T) {
	p := newPlanner(t, nil)
	wantPassthrough(t, p,
		"SELECT 1",
		"SELECT * FROM orders WHERE note LIKE 'x%'",
		"SELECT email, id FROM users WHERE id = 3 ORDER BY id",
		"SELECT email, id FROM users WHERE id = 3 ORDER BY 2",
		"SELECT id, count(*) FROM users GROUP BY 1 ORDER BY 2 DESC",
		"SELECT id FROM users UNION SELECT id FROM orders ORDER BY 1",
		"CREATE TABLE users (id int, email varbinary(300))",
		"SELECT * FROM users WHERE email IS NOT NULL",
		"INSERT INTO orders (a) VALUES ('users')",
		"this is not sql",
	)
	wantAllowed(t, p,
		"INSERT INTO other (x) SELECT id FROM users WHERE email = 'a'",
		"CREATE TABLE c AS SELECT id, id + 1 AS n FROM users WHERE email IN ('a', 'b')",
		"INSERT INTO other SELECT * FROM t2",
		"SELECT id FROM users WHERE email = 'a' INTO OUTFILE '/tmp/x'",
		"SELECT id FROM orders UNION SELECT id FROM users WHERE email = 'a' ORDER BY 1",
	)
	plan, err := p.Plan(context.Background(), "", "use app")
	if err != nil || !plan.HasUse || plan.Use != "app" {
		t.Fatalf("USE not tracked: %+v %v", plan, err)
	}
}

func TestPlanCacheKeyedByDatabase(t *testing.T) {
	p := newPlanner(t, nil)
	sql := "INSERT INTO users (email) VALUES ('a')"
	if plan, err := p.Plan(context.Background(), "other", sql); err != nil || !plan.Passthrough {
		t.Fatalf("other db: %+v %v", plan, err)
	}
	plan, err := p.Plan(context.Background(), "app", sql)
	if err != nil || plan.Passthrough {
		t.Fatalf("app db must rewrite: %+v %v", plan, err)
	}
}
