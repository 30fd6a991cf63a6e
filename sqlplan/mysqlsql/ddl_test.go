package mysqlsql_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dbproxy/dbproxy/rules"
	"github.com/dbproxy/dbproxy/sqlplan"
	"github.com/dbproxy/dbproxy/sqlplan/mysqlsql"
	"github.com/dbproxy/dbproxy/value"
)

func testRules(t testing.TB) *rules.Set {
	t.Helper()
	set, err := rules.New(rules.DialectMySQL, []rules.Spec{
		{Database: "app", Table: "users", Column: "email", Key: "k", Mode: rules.ModeDeterministic, Type: value.TypeText},
		{Database: "app", Table: "users", Column: "ssn", Key: "kr", Mode: rules.ModeRandomized, Type: value.TypeText},
	})
	if err != nil {
		t.Fatal(err)
	}
	return set
}

// wantRefusal asserts that sql is refused with a message containing every
// one of want.
func wantRefusal(t *testing.T, p *mysqlsql.Planner, sql string, want ...string) {
	t.Helper()
	_, err := p.Plan(context.Background(), "app", sql)
	var r *sqlplan.Refusal
	if !errors.As(err, &r) {
		t.Errorf("%s: not refused (err %v)", sql, err)
		return
	}
	if len(r.SQLState) != 5 {
		t.Errorf("%s: refusal without an SQLSTATE: %q", sql, r.SQLState)
	}
	for _, w := range want {
		if !strings.Contains(r.Error(), w) {
			t.Errorf("%s: refusal %q does not mention %q", sql, r.Error(), w)
		}
	}
}

// wantRefusals asserts that every statement of cases (SQL → what its
// refusal must mention) is refused.
func wantRefusals(t *testing.T, p *mysqlsql.Planner, cases map[string]string) {
	t.Helper()
	for sql, want := range cases {
		wantRefusal(t, p, sql, want)
	}
}

// wantPassthrough asserts that every one of sqls is forwarded unchanged.
func wantPassthrough(t *testing.T, p *mysqlsql.Planner, sqls ...string) {
	t.Helper()
	for _, sql := range sqls {
		plan, err := p.Plan(context.Background(), "app", sql)
		if err != nil {
			t.Errorf("%s: %v", sql, err)
			continue
		}
		if !plan.Passthrough {
			t.Errorf("%s: rewritten", sql)
		}
	}
}

// wantAllowed asserts that every one of sqls is planned and rewritten
// without a refusal.
func wantAllowed(t *testing.T, p *mysqlsql.Planner, sqls ...string) {
	t.Helper()
	for _, sql := range sqls {
		plan, err := p.Plan(context.Background(), "app", sql)
		if err == nil {
			_, err = plan.Rewrite(context.Background(), fakeEnc{}, nil, nil)
		}
		if err != nil {
			t.Errorf("%s: %v", sql, err)
		}
	}
}

func TestPlanDynamicSQL(t *testing.T) {
	set := testRules(t)
	p := mysqlsql.New(set, nil, mysqlsql.Options{CacheSize: 16})
	allow := mysqlsql.New(set, nil, mysqlsql.Options{CacheSize: 16, AllowDynamicSQL: true})
	for _, sql := range []string{
		"PREPARE s FROM @q",
		"prepare s from @q",
		"PREPARE s FROM @`q`",
		"/*!PREPARE s FROM @q*/",
		"SELECT 1; PREPARE s FROM @q",
		"SET STATEMENT max_statement_time=1 FOR PREPARE s FROM @q",
		"EXECUTE IMMEDIATE @q",
		"EXECUTE IMMEDIATE CONCAT('INSERT INTO us', 'ers (ssn) VALUES (1)')",
		"BEGIN NOT ATOMIC PREPARE s FROM @q; EXECUTE s; END",
		"IF 1 THEN PREPARE s FROM @q; EXECUTE s; END IF",
		"CREATE PROCEDURE p() BEGIN PREPARE s FROM @q; EXECUTE s; END",
		"CREATE DEFINER=`root`@`%` PROCEDURE p(x TEXT) BEGIN SET @q = x; PREPARE s FROM @q; EXECUTE s; END",
		"CREATE EVENT e ON SCHEDULE EVERY 1 HOUR DO EXECUTE IMMEDIATE @q",
		"PREPARE s FROM 'INSERT INTO us' 'ers (ssn) VALUES (1)'", // adjacent literals concatenate
		"PREPARE s FROM X'53454c454354'",
		"PREPARE s FROM 'PREPARE t FROM @q'",
	} {
		wantRefusal(t, p, sql, "allow_dynamic_sql")
		if _, err := allow.Plan(context.Background(), "app", sql); err != nil {
			t.Errorf("%s with AllowDynamicSQL: %v", sql, err)
		}
	}
	// Without a server version (Plan, not PlanLex) a versioned executable
	// comment cannot be read as the server reads it.
	wantRefusal(t, p, "/*M!100100 PREPARE s FROM @q */", "exactly as the server will")
	wantRefusal(t, p, "/*!50000 PREPARE s FROM @q */", "exactly as the server will")
	// A literal naming an encrypted table, however it is spelt, is
	// refused with or without the opt-in.
	for _, pl := range []*mysqlsql.Planner{p, allow} {
		wantRefusal(t, pl, "PREPARE s FROM 'INSERT INTO users (ssn) VALUES (?)'", "users", "SQL PREPARE")
		wantRefusal(t, pl, `PREPARE s FROM 'INSERT INTO u\sers (ssn) VALUES (?)'`, "users", "SQL PREPARE")
		wantRefusal(t, pl, "CREATE PROCEDURE p(x TEXT) INSERT INTO users (ssn) VALUES (x)", "users", "stored program")
		wantRefusal(t, pl, "CREATE FUNCTION f() RETURNS TEXT READS SQL DATA RETURN (SELECT email FROM users LIMIT 1)", "users", "stored program")
		wantRefusal(t, pl, "CREATE TRIGGER t BEFORE INSERT ON users FOR EACH ROW SET NEW.ssn = NEW.note", "users", "CREATE TRIGGER")
		wantRefusal(t, pl, "CREATE TRIGGER t AFTER INSERT ON notes FOR EACH ROW INSERT INTO app.users (ssn) VALUES (NEW.note)", "users", "CREATE TRIGGER")
	}
	// What stays allowed.
	wantPassthrough(t, p,
		"PREPARE s FROM 'SELECT id FROM notes WHERE id = ?'",
		"EXECUTE s USING @a",
		"DEALLOCATE PREPARE s",
		"SELECT 'prepare the report' FROM notes",
		"SELECT preparer, executed FROM jobs",
		"CREATE PROCEDURE p() SELECT id FROM notes",
		"CREATE TRIGGER t BEFORE INSERT ON notes FOR EACH ROW SET NEW.a = 1",
	)
}

// TestPlanGuards: DDL that would take an encrypted table or column out from
// under its rules, and result columns whose encrypted origin MariaDB does
// not report, are refused; what touches neither is let through.
func TestPlanGuards(t *testing.T) {
	p := newPlanner(t, nil)
	wantRefusals(t, p, map[string]string{
		"CREATE VIEW v AS SELECT id, email FROM users":                                                       "CREATE VIEW v reads an encrypted table",
		"CREATE OR REPLACE VIEW v AS SELECT id FROM users WHERE email = 'a'":                                 "CREATE VIEW v",
		"CREATE VIEW v AS SELECT n.id FROM notes n JOIN app.users u ON u.id = n.id":                          "users",
		"ALTER VIEW v AS SELECT email FROM users":                                                            "ALTER VIEW over an encrypted table",
		"RENAME TABLE users TO users_old":                                                                    "renaming an encrypted table",
		"RENAME TABLE notes TO n2, users TO u2":                                                              "renaming an encrypted table",
		"RENAME TABLE users_new TO users":                                                                    "to the name of an encrypted table",
		"ALTER TABLE users RENAME TO people":                                                                 "renaming an encrypted table",
		"ALTER TABLE users RENAME COLUMN email TO mail":                                                      "renaming an encrypted column",
		"ALTER TABLE users RENAME COLUMN note TO email":                                                      "to the name of an encrypted column",
		"ALTER TABLE users CHANGE email mail VARBINARY(600)":                                                 "CHANGE COLUMN of an encrypted column",
		"ALTER TABLE users CHANGE note email VARBINARY(600)":                                                 "CHANGE COLUMN",
		"ALTER TABLE users MODIFY email VARCHAR(10)":                                                         "MODIFY COLUMN of an encrypted column",
		"ALTER TABLE notes RENAME TO users":                                                                  "to the name of an encrypted table",
		"CREATE TABLE leak LIKE users":                                                                       "LIKE an encrypted table",
		"CREATE TABLE m (id INT, ssn TEXT) ENGINE=MERGE UNION=(users) INSERT_METHOD=LAST":                    "MERGE table over an encrypted table",
		"ALTER TABLE notes ENGINE=MERGE UNION=(app.users)":                                                   "MERGE table",
		"CREATE TABLE f (id INT, ssn TEXT) ENGINE=FEDERATED CONNECTION='mysql://u@127.0.0.1:3306/app/users'": "CONNECTION names an encrypted table",
		"ALTER TABLE users EXCHANGE PARTITION p0 WITH TABLE notes":                                           "EXCHANGE PARTITION",
		"ALTER TABLE parts EXCHANGE PARTITION p0 WITH TABLE users":                                           "EXCHANGE PARTITION",
		"CREATE TABLE other.users (email TEXT)":                                                              "other.users",
		"/*!50001 CREATE ALGORITHM=UNDEFINED VIEW v AS SELECT email FROM users */":                           "exactly as the server will", // no server version known
	})
	wantPassthrough(t, p,
		"ALTER TABLE users DROP COLUMN email",
		"ALTER TABLE users ADD COLUMN extra INT",
		"ALTER TABLE users RENAME COLUMN note TO remark",
		"CREATE TABLE users (id INT, email VARBINARY(300))",
		"CREATE TABLE notes2 LIKE notes",
		"CREATE VIEW v AS SELECT id FROM notes",
		"RENAME TABLE notes TO notes_old",
		"DROP VIEW v",
	)
	// Result columns of unknown origin.
	wantRefusals(t, p, map[string]string{
		"SELECT email FROM users UNION SELECT 'x'":                                              "UNION",
		"SELECT id FROM notes UNION ALL SELECT email FROM users":                                "users.email: result column would be returned as ciphertext: MariaDB does not report its origin through UNION ALL;",
		"SELECT * FROM users UNION SELECT * FROM users_copy":                                    "UNION",
		"SELECT id FROM notes INTERSECT SELECT ssn FROM users":                                  "users.ssn",
		"SELECT (SELECT email FROM users LIMIT 1) AS e":                                         "scalar subquery",
		"SELECT id, (SELECT u.ssn FROM users u WHERE u.id = n.id) FROM notes n":                 "users.ssn",
		"SELECT x FROM (SELECT email AS x FROM users) t":                                        "derived table t",
		"SELECT t.* FROM (SELECT email FROM users) t":                                           "derived table t",
		"SELECT * FROM (SELECT * FROM users) t":                                                 "derived table t",
		"SELECT x FROM (SELECT email AS x FROM users UNION ALL SELECT email FROM users_copy) t": "email",
		"WITH c AS (SELECT email FROM users) SELECT email FROM c":                               "WITH query c",
		"SET @x = (SELECT ssn FROM users LIMIT 1)":                                              "SET of a variable",
		"SELECT @x := email FROM users":                                                         "users.email",
	})
	wantAllowed(t, p,
		"SELECT id FROM users WHERE email = 'a' UNION SELECT id FROM notes",
		"SELECT id, email FROM users WHERE id IN (SELECT id FROM notes UNION SELECT 1)",
		"SELECT t.id FROM (SELECT id, email AS e FROM users) t WHERE t.e = 'a'",
		"SELECT EXISTS (SELECT * FROM users WHERE email = 'a')",
		"SELECT (SELECT COUNT(*) FROM users) AS n",
		"SET @n = (SELECT COUNT(*) FROM users WHERE email = 'a')",
	)
	// Without a database in the rule, a table of that name is encrypted in
	// every database: creating one elsewhere is allowed.
	set, err := rules.New(rules.DialectMySQL, []rules.Spec{{Table: "users", Column: "email", Key: "k", Mode: rules.ModeDeterministic, Type: value.TypeText}})
	if err != nil {
		t.Fatal(err)
	}
	wantPassthrough(t, mysqlsql.New(set, nil, mysqlsql.Options{}), "CREATE TABLE other.users (email VARBINARY(300))")
}

func TestPlanRefusalWording(t *testing.T) {
	p := newPlanner(t, nil)
	wantRefusal(t, p, "SELECT id FROM users WHERE ssn = 'x'", "users.ssn", "cannot be evaluated on a randomized column; configure it as deterministic")
	wantRefusal(t, p, "SELECT id FROM users WHERE ssn IN ('x', 'y')", "users.ssn", "IN (…) cannot be evaluated on a randomized column")
	wantRefusal(t, p, "INSERT INTO users VALUES (1, 'a', 'b', 3)", "users", "DBPROXY_MYSQL_CATALOG_USER")
}

// fakeRelations is a RelationSource whose views a test changes.
type fakeRelations struct {
	mu    sync.Mutex
	views []mysqlsql.View
	calls int
	err   error
}

func (f *fakeRelations) Relations(context.Context) (mysqlsql.Relations, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	return mysqlsql.Relations{Views: append([]mysqlsql.View(nil), f.views...)}, f.err
}

func (f *fakeRelations) set(v ...mysqlsql.View) {
	f.mu.Lock()
	f.views = v
	f.mu.Unlock()
}

func TestPlanViews(t *testing.T) {
	src := &fakeRelations{}
	src.set(
		mysqlsql.View{Database: "app", Name: "v", Definition: "select `app`.`users`.`id` AS `id`,`app`.`users`.`email` AS `email` from `app`.`users`"},
		mysqlsql.View{Database: "app", Name: "v2", Definition: "select `app`.`v`.`id` AS `id` from `app`.`v`"},
		mysqlsql.View{Database: "app", Name: "hidden", Definition: ""},
		mysqlsql.View{Database: "app", Name: "safe", Definition: "select `app`.`users_archive`.`id` AS `id` from `app`.`users_archive`"},
		// Unparseable (MariaDB syntax), naming the view v.
		mysqlsql.View{Database: "app", Name: "odd", Definition: "select `x`.`id` AS `id` from `app`.`v` `x` RETURNING nothing"},
	)
	p := mysqlsql.New(testRules(t), nil, mysqlsql.Options{CacheSize: 16, Relations: src, RelationsMaxAge: time.Hour})
	wantRefusal(t, p, "SELECT id FROM v WHERE email = 'b@x'", "v is a view over encrypted table users; query the table")
	wantRefusal(t, p, "INSERT INTO v (id, email) VALUES (1, 'a@x')", "v is a view over encrypted table users")
	wantRefusal(t, p, "UPDATE app.v2 SET id = 2", "v2 is a view over encrypted table users")
	wantRefusal(t, p, "SELECT * FROM hidden", "hidden is a view over encrypted table")
	wantRefusal(t, p, "SELECT * FROM odd", "odd is a view over encrypted table")
	wantRefusal(t, p, "CREATE VIEW v3 AS SELECT id FROM v2", "reads a view over encrypted table users")
	wantRefusal(t, p, "SELECT id FROM notes JOIN v USING (id) WHERE 'a' LIKE 'b' RETURNING id", "view over an encrypted table")
	wantPassthrough(t, p, "SELECT id FROM safe")
	wantPassthrough(t, p, "SELECT id FROM other.v") // another database's v
	wantPassthrough(t, p, "DROP VIEW v")
	if src.calls != 1 {
		t.Fatalf("relations read %d times, want 1 (cached)", src.calls)
	}

	// A view created behind the proxy's back is seen after DDL through
	// the proxy (Purge), and the cached plan naming it is dropped.
	wantPassthrough(t, p, "SELECT id FROM w")
	src.set(mysqlsql.View{Database: "app", Name: "w", Definition: "select `app`.`users`.`ssn` AS `ssn` from `app`.`users`"})
	p.Purge()
	wantRefusal(t, p, "SELECT id FROM w", "w is a view over encrypted table users")
	wantPassthrough(t, p, "SELECT id FROM v") // dropped meanwhile

	// A failed read keeps the last list.
	src.mu.Lock()
	src.err = errors.New("down")
	src.mu.Unlock()
	p.Purge()
	wantRefusal(t, p, "SELECT id FROM w", "w is a view")

	// The staleness bound.
	src2 := &fakeRelations{}
	p2 := mysqlsql.New(testRules(t), nil, mysqlsql.Options{CacheSize: 16, Relations: src2, RelationsMaxAge: 50 * time.Millisecond})
	wantPassthrough(t, p2, "SELECT id FROM w")
	src2.set(mysqlsql.View{Database: "app", Name: "w", Definition: "select `app`.`users`.`ssn` AS `ssn` from `app`.`users`"})
	time.Sleep(60 * time.Millisecond)
	wantRefusal(t, p2, "SELECT id FROM w", "w is a view")
}

// TestPlanViewsWholeWords: a short view name does not make every statement
// containing its letters a candidate (they would be parsed, and refused
// when the parser cannot read them).
func TestPlanViewsWholeWords(t *testing.T) {
	src := &fakeRelations{}
	src.set(mysqlsql.View{Database: "app", Name: "v", Definition: "select `app`.`users`.`email` AS `email` from `app`.`users`"})
	p := mysqlsql.New(testRules(t), nil, mysqlsql.Options{CacheSize: 16, Relations: src, RelationsMaxAge: time.Hour})
	wantPassthrough(t, p, "INSERT INTO events (kind) VALUES ('visit') RETURNING id") // unparseable, no v as a word
	for _, sql := range []string{
		"SELECT * FROM v",
		"SELECT * FROM `v`",
		"SELECT * FROM app.V",
		"SELECT * FROM app.`v` RETURNING x",
		"/*!SELECT*/ * FROM v",
	} {
		wantRefusal(t, p, sql, "view over")
	}
}
