package integration

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/go-mysql-org/go-mysql/client"
	driver "github.com/go-sql-driver/mysql"

	"github.com/dbproxy/dbproxy/internal/testenv"
	"github.com/dbproxy/dbproxy/internal/testkeys"
	"github.com/dbproxy/dbproxy/internal/testlog"
	"github.com/dbproxy/dbproxy/proxy/mysql/mycrypt"
	"github.com/dbproxy/dbproxy/rules"
	"github.com/dbproxy/dbproxy/value"
)

// The red-team findings against the MySQL side: statements that moved a
// plaintext into an encrypted column (or a ciphertext out to the client)
// without the proxy seeing it. Each test checks the refusal (ER 1235 and
// the words of its message) and reads the tables directly to prove that
// nothing was stored.

const fcDDL = "CREATE TABLE users (id INT PRIMARY KEY, email VARBINARY(512), ssn VARBINARY(512), note VARCHAR(100))"

func fcSpecs() []rules.Spec {
	return []rules.Spec{
		{Table: "users", Column: "email", Key: "email", Mode: rules.ModeDeterministic, Type: value.TypeText},
		{Table: "users", Column: "ssn", Key: "ssn", Mode: rules.ModeRandomized, Type: value.TypeText},
	}
}

type fcOpts struct {
	catalog      bool // a catalog connection (views, triggers, column orders)
	allowDynamic bool
	// before runs directly on the database before the proxy starts.
	before []string
	// catalogGrant, if set, makes the catalog log in as a user of its
	// own with this privilege on the test database only.
	catalogGrant string
}

type fcEnv struct {
	*myEncEnv
	logs *testlog.Buffer // the encryption layer's log
}

// startMyFailClosed starts MariaDB with users (email deterministic, ssn
// randomized) and a plaintext notes table, and an encrypting proxy.
func startMyFailClosed(t *testing.T, o fcOpts) *fcEnv {
	t.Helper()
	ctx := context.Background()
	db := testenv.StartMariaDB(t)
	specs := fcSpecs()
	for i := range specs {
		specs[i].Database = db.Database
	}
	mgr := testkeys.Manager(t, testkeys.ForRules(specs)...)
	set, err := rules.New(rules.DialectMySQL, specs)
	if err != nil {
		t.Fatal(err)
	}
	direct := openDB(t, myConfigAt(t, db.Addr(), db.User, db.Password, db.Database, "multiStatements=true"))
	for _, q := range append([]string{fcDDL, "CREATE TABLE notes (id INT PRIMARY KEY, note VARCHAR(100))"}, o.before...) {
		if _, err := direct.ExecContext(ctx, q); err != nil {
			t.Fatalf("setup %q: %v", q, err)
		}
	}
	logs := &testlog.Buffer{}
	opts := mycrypt.Options{Rules: set, Keys: mgr, AllowDynamicSQL: o.allowDynamic,
		Logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))}
	if o.catalog {
		user, password := db.User, db.Password
		if o.catalogGrant != "" {
			user, password = db.User+"c", "catpw"
			admin := adminDB(t, db)
			for _, q := range []string{
				fmt.Sprintf("CREATE USER '%s'@'%%' IDENTIFIED BY '%s'", user, password),
				fmt.Sprintf("GRANT %s ON `%s`.* TO '%s'@'%%'", o.catalogGrant, db.Database, user),
			} {
				if _, err := admin.ExecContext(ctx, q); err != nil {
					t.Fatalf("%s: %v", q, err)
				}
			}
			t.Cleanup(func() { _, _ = admin.ExecContext(context.Background(), fmt.Sprintf("DROP USER '%s'@'%%'", user)) })
		}
		conn, err := driver.NewConnector(myConfigAt(t, db.Addr(), user, password, db.Database))
		if err != nil {
			t.Fatal(err)
		}
		side := sql.OpenDB(conn)
		t.Cleanup(func() { _ = side.Close() })
		cat := mycrypt.NewCatalog(side)
		opts.Catalog, opts.Zones = cat, cat
	}
	ic, err := mycrypt.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	p := startMyProxy(t, db, myProxyOpts{Interceptor: ic})
	return &fcEnv{myEncEnv: &myEncEnv{db: db, proxy: p, mgr: mgr, direct: direct, specs: specs}, logs: logs}
}

// conn returns one session through the proxy (session variables and
// prepared statements live in it).
func (e *fcEnv) conn(t *testing.T, params ...string) *sql.Conn {
	t.Helper()
	c, err := openDB(t, e.proxy.config(t, params...)).Conn(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// seed stores one row through the proxy.
func (e *fcEnv) seed(t *testing.T) {
	t.Helper()
	if _, err := e.conn(t).ExecContext(testCtx(t), "INSERT INTO users (id, email, ssn, note) VALUES (1, 'a@x', 'ssn-a', 'n1')"); err != nil {
		t.Fatal(err)
	}
}

// count returns a number read directly from the database.
func (e *fcEnv) count(t *testing.T, q string, args ...any) int {
	t.Helper()
	var n int
	if err := e.direct.QueryRowContext(testCtx(t), q, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	return n
}

// wantRefusedAll is wantRefused for every word of want.
func wantRefusedAll(t *testing.T, err error, want ...string) {
	t.Helper()
	for _, w := range want {
		wantRefused(t, err, w)
	}
}

// TestMySQLFailClosedDynamicSQL: PREPARE from a variable built so that the
// text never spells the table name, then EXECUTE, stored plaintext before.
func TestMySQLFailClosedDynamicSQL(t *testing.T) {
	e := startMyFailClosed(t, fcOpts{})
	e.seed(t)
	ctx := testCtx(t)
	c := e.conn(t)
	if _, err := c.ExecContext(ctx, "SET @q = CONCAT('INSERT INTO us', 'ers (id, email, ssn) VALUES (2, ''leak-email'', ''leak-ssn'')')"); err != nil {
		t.Fatalf("SET @q: %v", err)
	}
	_, err := c.ExecContext(ctx, "PREPARE s FROM @q")
	wantRefusedAll(t, err, "PREPARE … FROM a variable", "allow_dynamic_sql")
	_, err = c.ExecContext(ctx, "EXECUTE s")
	var me *driver.MySQLError
	if !errors.As(err, &me) || me.Number != 1243 { // ER_UNKNOWN_STMT_HANDLER: nothing was prepared
		t.Fatalf("EXECUTE s: %v", err)
	}
	for _, q := range []string{
		"EXECUTE IMMEDIATE @q",
		"/*!PREPARE s FROM @q*/",
		"SET STATEMENT max_statement_time=10 FOR PREPARE s FROM @q",
		"BEGIN NOT ATOMIC PREPARE s FROM @q; EXECUTE s; END",
		"PREPARE s FROM 'INSERT INTO us' 'ers (id, email, ssn) VALUES (3, ''leak-email'', ''leak-ssn'')'",
		"CREATE PROCEDURE leak_proc() BEGIN PREPARE s FROM @q; EXECUTE s; END",
	} {
		_, err := c.ExecContext(ctx, q)
		wantRefused(t, err, "allow_dynamic_sql")
	}
	// The literal form is planned: naming the table, however it is spelt,
	// is refused; a stored program naming it too.
	_, err = c.ExecContext(ctx, `PREPARE s FROM 'INSERT INTO u\sers (id, email, ssn) VALUES (4, ''leak-email'', ''leak-ssn'')'`)
	wantRefusedAll(t, err, "users", "SQL PREPARE")
	_, err = c.ExecContext(ctx, "CREATE PROCEDURE leak_proc(x TEXT) INSERT INTO users (id, ssn) VALUES (5, x)")
	wantRefusedAll(t, err, "users", "stored program")
	_, err = c.ExecContext(ctx, "CREATE EVENT leak_ev ON SCHEDULE AT CURRENT_TIMESTAMP DO INSERT INTO users (id, ssn) VALUES (6, 'leak-ssn')")
	wantRefusedAll(t, err, "users", "stored program")
	// What stays allowed: a literal PREPARE of a plaintext statement, and
	// a stored program on plaintext tables.
	execAll(t, ctx, c,
		"PREPARE p FROM 'INSERT INTO notes (id, note) VALUES (?, ?)'",
		"SET @i = 1, @n = 'hello'",
		"EXECUTE p USING @i, @n",
		"CREATE PROCEDURE ok_proc() SELECT COUNT(*) FROM notes",
	)
	if n := e.count(t, "SELECT COUNT(*) FROM users"); n != 1 {
		t.Fatalf("users has %d rows, want 1", n)
	}
	if n := e.count(t, "SELECT COUNT(*) FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = DATABASE() AND ROUTINE_NAME LIKE 'leak%'"); n != 0 {
		t.Fatalf("%d refused routines exist", n)
	}
	if n := e.count(t, "SELECT COUNT(*) FROM information_schema.EVENTS WHERE EVENT_SCHEMA = DATABASE()"); n != 0 {
		t.Fatalf("%d refused events exist", n)
	}
	e.checkAtRest(t, []string{"leak-email", "leak-ssn", "a@x", "ssn-a"})

	// The opt-in lets dynamic SQL through (here a harmless statement).
	allowed := startMyFailClosed(t, fcOpts{allowDynamic: true})
	ac := allowed.conn(t)
	if _, err := ac.ExecContext(ctx, "SET @q = 'SELECT 1'"); err != nil {
		t.Fatal(err)
	}
	if _, err := ac.ExecContext(ctx, "PREPARE s FROM @q"); err != nil {
		t.Fatalf("PREPARE with allow_dynamic_sql: %v", err)
	}
	if _, err := ac.ExecContext(ctx, "EXECUTE s"); err != nil {
		t.Fatalf("EXECUTE with allow_dynamic_sql: %v", err)
	}
}

// TestMySQLFailClosedViews: an updatable view over users, created through
// the proxy or directly, let INSERT store plaintext and SELECT … WHERE
// send the plaintext email to the server.
func TestMySQLFailClosedViews(t *testing.T) {
	e := startMyFailClosed(t, fcOpts{catalog: true, before: []string{
		"CREATE VIEW v AS SELECT id, email, ssn FROM users",
		"CREATE VIEW vv AS SELECT id, email FROM v",
		"CREATE VIEW plain_v AS SELECT id, note FROM notes",
	}})
	e.seed(t)
	ctx := testCtx(t)
	c := e.conn(t, "multiStatements=true")

	_, err := c.ExecContext(ctx, "CREATE VIEW v2 AS SELECT id, email, ssn FROM users")
	wantRefusedAll(t, err, "CREATE VIEW v2 reads an encrypted table", "query the table")
	_, err = c.ExecContext(ctx, "CREATE OR REPLACE VIEW v2 AS SELECT id FROM users WHERE email = 'a@x'")
	wantRefused(t, err, "CREATE VIEW v2")
	_, err = c.ExecContext(ctx, "ALTER VIEW plain_v AS SELECT id, ssn AS note FROM users")
	wantRefused(t, err, "ALTER VIEW over an encrypted table")
	if n := e.count(t, "SELECT COUNT(*) FROM information_schema.VIEWS WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = 'v2'"); n != 0 {
		t.Fatal("the refused view was created")
	}

	// Views made directly in the database, known through the catalog.
	for _, tc := range []struct{ sql, want string }{
		{"INSERT INTO v (id, email, ssn) VALUES (2, 'leak-email', 'leak-ssn')", "v is a view over encrypted table users; query the table"},
		{"SELECT id FROM v WHERE email = 'b@x'", "v is a view over encrypted table users"},
		{"SELECT email FROM v", "v is a view over encrypted table users"},
		{"UPDATE v SET ssn = 'leak-ssn' WHERE id = 1", "v is a view"},
		{"INSERT INTO vv (id, email) VALUES (3, 'leak-email')", "vv is a view over encrypted table users"},
		{"SELECT 1; INSERT INTO `V` (id, ssn) VALUES (4, 'leak-ssn')", "is a view over encrypted table users"},
	} {
		_, err := c.ExecContext(ctx, tc.sql)
		wantRefused(t, err, tc.want)
	}
	// A view over a plaintext table is not affected; dropping the view
	// over users is how to fix it.
	if _, err := c.ExecContext(ctx, "INSERT INTO plain_v (id, note) VALUES (1, 'fine')"); err != nil {
		t.Fatal(err)
	}

	// A view created directly after the proxy read the list is seen after
	// DDL through the proxy.
	if _, err := e.direct.ExecContext(ctx, "CREATE VIEW late AS SELECT id, ssn FROM users"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.ExecContext(ctx, "CREATE TABLE unrelated (a INT)"); err != nil {
		t.Fatal(err)
	}
	_, err = c.ExecContext(ctx, "INSERT INTO late (id, ssn) VALUES (5, 'leak-ssn')")
	wantRefused(t, err, "late is a view over encrypted table users")
	if _, err := c.ExecContext(ctx, "DROP VIEW vv"); err != nil {
		t.Fatalf("DROP VIEW: %v", err)
	}

	if n := e.count(t, "SELECT COUNT(*) FROM users"); n != 1 {
		t.Fatalf("users has %d rows, want 1", n)
	}
	e.checkAtRest(t, []string{"leak-email", "leak-ssn", "a@x", "ssn-a"})
}

// TestMySQLFailClosedViewsRestrictedCatalog: a catalog user that may read
// the tables but not the view definitions (no SHOW VIEW) still makes the
// proxy refuse the view: a definition it cannot read counts as one over
// an encrypted table.
func TestMySQLFailClosedViewsRestrictedCatalog(t *testing.T) {
	e := startMyFailClosed(t, fcOpts{catalog: true, catalogGrant: "SELECT", before: []string{
		"CREATE VIEW v AS SELECT id, email, ssn FROM users",
	}})
	e.seed(t)
	ctx := testCtx(t)
	c := e.conn(t)
	_, err := c.ExecContext(ctx, "INSERT INTO v (id, email, ssn) VALUES (2, 'leak-email', 'leak-ssn')")
	wantRefused(t, err, "v is a view over encrypted table")
	var def sql.NullString
	side := openDB(t, myConfigAt(t, e.db.Addr(), e.db.User+"c", "catpw", e.db.Database))
	if err := side.QueryRowContext(ctx, "SELECT VIEW_DEFINITION FROM information_schema.VIEWS WHERE TABLE_NAME = 'v'").Scan(&def); err != nil {
		t.Fatal(err)
	}
	if def.String != "" {
		t.Fatalf("the catalog user reads the definition (%q): this test no longer covers an unreadable one", def.String)
	}
	if n := e.count(t, "SELECT COUNT(*) FROM users"); n != 1 {
		t.Fatalf("users has %d rows, want 1", n)
	}
	e.checkAtRest(t, []string{"leak-email", "leak-ssn"})
}

// TestMySQLFailClosedUnattributedResults: results whose column definitions
// do not name the encrypted column (checked here: MariaDB's org_table is
// empty through UNION and scalar subqueries, the derived table's alias or
// the base table without its database through derived tables and CTEs)
// are refused rather than returned as ciphertext; the plaintext email of a
// lookup through them never reaches the server.
func TestMySQLFailClosedUnattributedResults(t *testing.T) {
	e := startMyFailClosed(t, fcOpts{})
	e.seed(t)
	ctx := testCtx(t)
	c := e.conn(t)
	for _, tc := range []struct{ sql, want string }{
		{"SELECT email FROM users UNION SELECT 'x'", "through UNION;"},
		{"SELECT id FROM notes INTERSECT SELECT ssn FROM users", "through INTERSECT;"},
		{"SELECT note FROM notes UNION ALL SELECT ssn FROM users", "users.ssn"},
		{"SELECT (SELECT email FROM users LIMIT 1) AS e", "scalar subquery"},
		{"SELECT x FROM (SELECT email AS x FROM users) t", "derived table t"},
		{"SELECT t.* FROM (SELECT DISTINCT email FROM users LIMIT 5) t", "derived table t"},
		{"WITH c AS (SELECT email FROM users) SELECT email FROM c", "WITH query c"},
		{"SET @x = (SELECT ssn FROM users LIMIT 1)", "SET of a variable"},
	} {
		rows, err := c.QueryContext(ctx, tc.sql)
		if err == nil {
			_ = rows.Close()
		}
		wantRefusedAll(t, err, tc.want, "select the column directly")
	}
	// Shapes the proxy can attribute keep working, with the plaintext
	// lookup encrypted.
	var id int
	if err := c.QueryRowContext(ctx, "SELECT t.id FROM (SELECT id, email AS e FROM users) t WHERE t.e = 'a@x'").Scan(&id); err != nil || id != 1 {
		t.Fatalf("derived table filter: %d %v", id, err)
	}
	var email string
	if err := c.QueryRowContext(ctx, "SELECT email FROM users WHERE id IN (SELECT id FROM notes UNION SELECT 1)").Scan(&email); err != nil || email != "a@x" {
		t.Fatalf("UNION in a subquery: %q %v", email, err)
	}
	// Randomized equality names the setting that enables it.
	_, err := c.ExecContext(ctx, "SELECT id FROM users WHERE ssn = 'ssn-a'")
	wantRefusedAll(t, err, "users.ssn", "cannot be evaluated on a randomized column; configure it as deterministic")
	// So does a column-less INSERT without a catalog connection.
	_, err = c.ExecContext(ctx, "INSERT INTO users VALUES (9, 'leak-email', 'leak-ssn', 'n')")
	wantRefusedAll(t, err, "users", "DBPROXY_MYSQL_CATALOG_USER")
	e.checkAtRest(t, []string{"leak-email", "leak-ssn", "a@x", "ssn-a"})
}

// TestMySQLFailClosedTriggers: a trigger copying a plaintext column into an
// encrypted one is refused through the proxy; one made directly in the
// database is reported once in the log.
func TestMySQLFailClosedTriggers(t *testing.T) {
	e := startMyFailClosed(t, fcOpts{catalog: true, before: []string{
		"CREATE TABLE audit (id INT, ssn VARBINARY(512))",
		"CREATE TRIGGER direct_trg AFTER INSERT ON users FOR EACH ROW INSERT INTO audit VALUES (NEW.id, NEW.ssn)",
	}})
	ctx := testCtx(t)
	c := e.conn(t)
	for _, q := range []string{
		"CREATE TRIGGER leak_trg BEFORE INSERT ON users FOR EACH ROW SET NEW.ssn = NEW.note",
		"CREATE DEFINER = CURRENT_USER TRIGGER leak_trg2 AFTER INSERT ON notes FOR EACH ROW UPDATE users SET ssn = NEW.note WHERE id = NEW.id",
	} {
		_, err := c.ExecContext(ctx, q)
		wantRefusedAll(t, err, "users", "CREATE TRIGGER", "plaintext")
	}
	if n := e.count(t, "SELECT COUNT(*) FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = DATABASE() AND TRIGGER_NAME LIKE 'leak%'"); n != 0 {
		t.Fatalf("%d refused triggers exist", n)
	}
	// A trigger on a plaintext table that names no encrypted table is fine.
	execAll(t, ctx, c,
		"CREATE TRIGGER ok_trg BEFORE INSERT ON notes FOR EACH ROW SET NEW.note = UPPER(NEW.note)",
		"INSERT INTO users (id, email, ssn, note) VALUES (1, 'a@x', 'ssn-a', 'secret-note')",
		"INSERT INTO users (id, email, ssn, note) VALUES (2, 'b@x', 'ssn-b', 'n2')",
	)
	logs := e.logs.String()
	if n := strings.Count(logs, "trigger=direct_trg"); n != 1 {
		t.Fatalf("trigger warnings: %d, want 1; log:\n%s", n, logs)
	}
	if !strings.Contains(logs, "table=users") || strings.Contains(logs, "ssn-a") {
		t.Fatalf("log:\n%s", logs)
	}
	e.checkAtRest(t, []string{"ssn-a", "ssn-b", "a@x"}) // and every ssn is a ciphertext: no trigger copied the note into it
}

// TestMySQLFailClosedDDL: renames and type changes that would change what
// the rules' names mean, and copies of an encrypted table's structure.
func TestMySQLFailClosedDDL(t *testing.T) {
	e := startMyFailClosed(t, fcOpts{})
	e.seed(t)
	ctx := testCtx(t)
	other := e.db.Database + "_other"
	admin := adminDB(t, e.db)
	for _, q := range []string{
		"CREATE DATABASE `" + other + "`",
		fmt.Sprintf("GRANT ALL PRIVILEGES ON `%s`.* TO '%s'@'%%'", other, e.db.User),
		fmt.Sprintf("GRANT ALL PRIVILEGES ON `%s`.* TO '%s'@'localhost'", other, e.db.User),
	} {
		if _, err := admin.ExecContext(ctx, q); err != nil && !strings.Contains(q, "GRANT") {
			t.Fatalf("%s: %v", q, err)
		}
	}
	t.Cleanup(func() { _, _ = admin.ExecContext(context.Background(), "DROP DATABASE IF EXISTS `"+other+"`") })
	c := e.conn(t)
	columnsBefore := e.count(t, "SELECT COUNT(*) FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = 'users' AND COLUMN_NAME IN ('email', 'ssn')")
	for _, tc := range []struct{ sql, want string }{
		{"RENAME TABLE users TO people", "renaming an encrypted table"},
		{"ALTER TABLE users RENAME TO people", "renaming an encrypted table"},
		{"ALTER TABLE users RENAME COLUMN ssn TO ssn_old", "renaming an encrypted column"},
		{"ALTER TABLE users RENAME COLUMN note TO ssn", "to the name of an encrypted column"},
		{"ALTER TABLE users CHANGE ssn ssn2 VARBINARY(512)", "CHANGE COLUMN of an encrypted column"},
		{"ALTER TABLE users MODIFY email VARCHAR(10)", "MODIFY COLUMN of an encrypted column"},
		{"CREATE TABLE copy_of_users LIKE users", "LIKE an encrypted table"},
		{"ALTER TABLE users EXCHANGE PARTITION p0 WITH TABLE notes", "EXCHANGE PARTITION"},
		{"CREATE TABLE merged (id INT, ssn VARBINARY(512)) ENGINE=MERGE UNION=(users)", "MERGE table over an encrypted table"},
		{"RENAME TABLE notes TO `" + other + "`.users", "to the name of an encrypted table"},
		{"CREATE TABLE `" + other + "`.users (id INT, ssn TEXT)", "in a database its rule does not cover"},
	} {
		_, err := c.ExecContext(ctx, tc.sql)
		wantRefused(t, err, tc.want)
	}
	if n := e.count(t, "SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA IN (DATABASE(), ?) AND TABLE_NAME IN ('people', 'copy_of_users') OR (TABLE_SCHEMA = ? AND TABLE_NAME = 'users')", other, other); n != 0 {
		t.Fatalf("%d refused tables exist", n)
	}
	if n := e.count(t, "SELECT COUNT(*) FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = 'users' AND COLUMN_NAME IN ('email', 'ssn')"); n != columnsBefore {
		t.Fatalf("encrypted columns changed: %d, was %d", n, columnsBefore)
	}
	// DROP COLUMN and other changes stay allowed.
	for _, q := range []string{"ALTER TABLE users ADD COLUMN extra INT", "ALTER TABLE users RENAME COLUMN note TO remark", "ALTER TABLE users DROP COLUMN extra"} {
		if _, err := c.ExecContext(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	e.checkAtRest(t, []string{"a@x", "ssn-a"})
}

// TestMySQLFailClosedMariaDBOrigins pins down why those results are
// refused: the column definitions MariaDB sends for them (read with a raw
// client, directly) do not carry the encrypted column's schema, org_table
// and org_name, so the proxy could not tell what to decrypt. If a server
// starts reporting them, this test fails and the refusal can be revisited.
func TestMySQLFailClosedMariaDBOrigins(t *testing.T) {
	db := testenv.StartMariaDB(t)
	c, err := client.Connect(db.Addr(), db.User, db.Password, db.Database)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for _, q := range []string{fcDDL, "INSERT INTO users VALUES (1, 'e', 's', 'n')", "CREATE VIEW v AS SELECT id, email FROM users"} {
		if _, err := c.Execute(q); err != nil {
			t.Fatal(err)
		}
	}
	for _, q := range []string{
		"SELECT email FROM users UNION SELECT 'x'",
		"SELECT email FROM users UNION ALL SELECT email FROM users",
		"SELECT (SELECT email FROM users LIMIT 1) AS s",
		"SELECT x FROM (SELECT email AS x FROM users) t",
		"SELECT x FROM (SELECT DISTINCT email AS x FROM users LIMIT 5) t",
		"WITH c AS (SELECT email FROM users) SELECT email FROM c",
		"SELECT email FROM v",
	} {
		r, err := c.Execute(q)
		if err != nil {
			t.Fatalf("%s: %v", q, err)
		}
		f := r.Fields[0]
		if string(f.Schema) == db.Database && string(f.OrgTable) == "users" && string(f.OrgName) == "email" {
			t.Errorf("%s: MariaDB now reports the origin (%s.%s.%s)", q, f.Schema, f.OrgTable, f.OrgName)
		}
	}
	// The plain select does report it (what the proxy relies on).
	r, err := c.Execute("SELECT email FROM users")
	if err != nil {
		t.Fatal(err)
	}
	if f := r.Fields[0]; string(f.Schema) != db.Database || string(f.OrgTable) != "users" || string(f.OrgName) != "email" {
		t.Fatalf("plain select origin: %s.%s.%s", f.Schema, f.OrgTable, f.OrgName)
	}
}
