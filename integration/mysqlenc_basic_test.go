package integration

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	driver "github.com/go-sql-driver/mysql"

	"github.com/dbproxy/dbproxy/rules"
	"github.com/dbproxy/dbproxy/value"
)

const myEncDDL = "CREATE TABLE users (id INT PRIMARY KEY, email VARBINARY(512), ssn VARBINARY(512), " +
	"age VARBINARY(256), born VARBINARY(256), balance VARBINARY(256), active VARBINARY(128), note VARCHAR(100))"

func myEncSpecs() []rules.Spec {
	return []rules.Spec{
		{Table: "users", Column: "email", Key: "email", Mode: rules.ModeDeterministic, Type: value.TypeText},
		{Table: "users", Column: "ssn", Key: "ssn", Mode: rules.ModeRandomized, Type: value.TypeText},
		{Table: "users", Column: "age", Key: "age", Mode: rules.ModeDeterministic, Type: value.TypeInt},
		{Table: "users", Column: "born", Key: "born", Mode: rules.ModeRandomized, Type: value.TypeTimestamp},
		{Table: "users", Column: "balance", Key: "balance", Mode: rules.ModeRandomized, Type: value.TypeNumeric},
		{Table: "users", Column: "active", Key: "active", Mode: rules.ModeRandomized, Type: value.TypeBoolean},
	}
}

type myUser struct {
	id      int
	email   string
	ssn     sql.NullString
	age     sql.NullInt64
	born    sql.NullTime
	balance sql.NullString
	active  sql.NullBool
	note    string
}

// usersSelect selects the columns of the users table in myUser's order.
const usersSelect = "SELECT id, email, ssn, age, born, balance, active, note FROM users"

// checkAlice fails the test (the message starting with what) unless got
// is alice's row alone, as inserted, born at born.
func checkAlice(t *testing.T, got []myUser, born time.Time, what string) {
	t.Helper()
	if len(got) != 1 || got[0].id != 1 || got[0].ssn.String != "111-22-3333" || got[0].age.Int64 != 30 ||
		!got[0].born.Time.Equal(born) || got[0].balance.String != "1234.5" || !got[0].active.Bool || got[0].note != "n1" {
		t.Fatalf("%s: %+v", what, got)
	}
}

func scanUsers(t *testing.T) func(rows *sql.Rows, err error) []myUser {
	return func(rows *sql.Rows, err error) []myUser { return scanUsersRows(t, rows, err) }
}

func scanUsersRows(t *testing.T, rows *sql.Rows, err error) []myUser {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []myUser
	for rows.Next() {
		var u myUser
		if err := rows.Scan(&u.id, &u.email, &u.ssn, &u.age, &u.born, &u.balance, &u.active, &u.note); err != nil {
			t.Fatal(err)
		}
		out = append(out, u)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestMySQLEncRoundTrip writes and reads encrypted columns through the
// proxy with server-side prepared statements and with interpolated
// parameters (COM_QUERY), then reads the table directly.
func TestMySQLEncRoundTrip(t *testing.T) {
	for _, mode := range []string{"interpolateParams=false", "interpolateParams=true"} {
		t.Run(mode, func(t *testing.T) {
			e := startMyEncProxy(t, []string{myEncDDL}, myEncSpecs())
			db := openDB(t, e.proxy.config(t, mode))
			ctx := testCtx(t)
			born := time.Date(1990, 5, 17, 8, 30, 15, 250000000, time.UTC)
			ins := "INSERT INTO users (id, email, ssn, age, born, balance, active, note) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
			if _, err := db.ExecContext(ctx, ins, 1, "alice@example.com", "111-22-3333", 30, born, "1234.50", true, "n1"); err != nil {
				t.Fatalf("insert: %v", err)
			}
			if _, err := db.ExecContext(ctx, ins, 2, "bob@example.com", nil, nil, nil, nil, nil, "n2"); err != nil {
				t.Fatalf("insert NULLs: %v", err)
			}
			if _, err := db.ExecContext(ctx, "INSERT INTO `users` (id, `Email`, ssn, age, note) VALUES (3, 'carol@example.com', 'ssn-carol', 41, 'n3'), (4, 'dave@example.com', 'ssn-dave', -7, 'n4')"); err != nil {
				t.Fatalf("multi-row literal insert: %v", err)
			}
			got := scanUsers(t)(db.QueryContext(ctx, usersSelect+" WHERE email = ?", "alice@example.com"))
			checkAlice(t, got, born, "lookup by email")
			got = scanUsers(t)(db.QueryContext(ctx, usersSelect+" WHERE email = 'bob@example.com'"))
			if len(got) != 1 || got[0].id != 2 || got[0].ssn.Valid || got[0].age.Valid || got[0].born.Valid || got[0].active.Valid {
				t.Fatalf("NULLs: %+v", got)
			}
			got = scanUsers(t)(db.QueryContext(ctx, "SELECT u.id, u.email, u.ssn, u.age, u.born, u.balance, u.active, u.note FROM users AS u WHERE u.age IN (?, ?) ORDER BY u.id", 41, -7))
			if len(got) != 2 || got[0].email != "carol@example.com" || got[1].age.Int64 != -7 {
				t.Fatalf("IN on int: %+v", got)
			}
			got = scanUsers(t)(db.QueryContext(ctx, fmt.Sprintf("SELECT * FROM `%s`.users WHERE ssn IS NULL", e.db.Database)))
			if len(got) != 1 || got[0].id != 2 {
				t.Fatalf("IS NULL, qualified: %+v", got)
			}
			if _, err := db.ExecContext(ctx, "UPDATE users SET ssn = ?, age = ? WHERE email = ?", "999-99-9999", 31, "alice@example.com"); err != nil {
				t.Fatalf("update: %v", err)
			}
			var ssn string
			var age int
			if err := db.QueryRowContext(ctx, "SELECT ssn, age FROM users WHERE email = ? AND age = ?", "alice@example.com", 31).Scan(&ssn, &age); err != nil || ssn != "999-99-9999" || age != 31 {
				t.Fatalf("after update: %q %d %v", ssn, age, err)
			}
			if _, err := db.ExecContext(ctx, "INSERT INTO users (id, email, ssn) VALUES (1, 'x@example.com', 'dup') ON DUPLICATE KEY UPDATE email = VALUES(email), ssn = 'ssn-upsert'"); err != nil {
				t.Fatalf("upsert: %v", err)
			}
			if err := db.QueryRowContext(ctx, "SELECT ssn FROM users WHERE email <> 'bob@example.com' AND id = 1").Scan(&ssn); err != nil || ssn != "ssn-upsert" {
				t.Fatalf("after upsert: %q %v", ssn, err)
			}
			if _, err := db.ExecContext(ctx, "REPLACE INTO users (id, email, ssn, note) VALUES (4, 'dave2@example.com', 'ssn-dave2', 'n4')"); err != nil {
				t.Fatalf("replace: %v", err)
			}
			res, err := db.ExecContext(ctx, "DELETE FROM users WHERE email = ?", "bob@example.com")
			if err != nil {
				t.Fatalf("delete: %v", err)
			}
			if n, _ := res.RowsAffected(); n != 1 {
				t.Fatalf("delete affected %d rows", n)
			}
			var count int
			if err := e.direct.QueryRowContext(ctx, "SELECT COUNT(*) FROM users").Scan(&count); err != nil || count != 3 {
				t.Fatalf("rows left: %d %v", count, err)
			}
			e.checkAtRest(t, []string{"alice@example.com", "x@example.com", "111-22-3333", "999-99-9999", "ssn-carol",
				"ssn-upsert", "ssn-dave2", "carol@example.com", "dave2@example.com", "1234.5"})
		})
	}
}

// TestMySQLEncRefusals checks the refusal list: an ERR naming the column,
// and the table unchanged.
func TestMySQLEncRefusals(t *testing.T) {
	e := startMyEncProxy(t, []string{myEncDDL, "CREATE TABLE other (email VARCHAR(100))"}, myEncSpecs())
	ctx := testCtx(t)
	if _, err := openDB(t, e.proxy.config(t)).ExecContext(ctx, "INSERT INTO users (id, email, ssn) VALUES (1, 'a@example.com', 's1')"); err != nil {
		t.Fatal(err)
	}
	before := e.rawRows(t, "users")
	for _, mode := range []string{"interpolateParams=false", "interpolateParams=true"} {
		db := openDB(t, e.proxy.config(t, mode, "multiStatements=true"))
		for _, tc := range []struct {
			sql    string
			args   []any
			column string
		}{
			{"SELECT * FROM users WHERE email LIKE ?", []any{"a%"}, "users.email"},
			{"SELECT * FROM users WHERE age < ?", []any{3}, "users.age"},
			{"SELECT * FROM users ORDER BY email", nil, "users.email"},
			{"SELECT id, email FROM users ORDER BY 2", nil, "users.email"},
			{"SELECT email, count(*) FROM users GROUP BY 1", nil, "users.email"},
			{"SELECT * FROM users ORDER BY 1", nil, "after *"},
			{"SELECT lower(email) FROM users", nil, "users.email"},
			{"SELECT * FROM users WHERE ssn = ?", []any{"s1"}, "users.ssn"},
			{"UPDATE users SET ssn = concat('x', ?) WHERE id = 1", []any{"leak-1"}, "users.ssn"},
			{"INSERT INTO users (id, email) SELECT 9, email FROM other", nil, "users.email"},
			{"INSERT INTO users VALUES (9, 'leak-2@example.com', NULL, NULL, NULL, NULL, NULL, 'x')", nil, "users"},
			{"UPDATE users SET age = age + 1", nil, "users.age"},
			{"INSERT INTO users (id, email) VALUES (5, 'leak-3@example.com'", nil, ""},
			{"PREPARE s FROM 'INSERT INTO users (id, email) VALUES (7, ?)'", nil, ""},
			// Ciphertext copied where no rule would decrypt it.
			{"INSERT INTO other (email) SELECT email FROM users", nil, "users.email"},
			{"CREATE TABLE copied AS SELECT * FROM users", nil, "users"},
			{"SELECT email FROM users INTO OUTFILE '/tmp/dbproxy-never-written'", nil, "users.email"},
		} {
			_, err := db.ExecContext(ctx, tc.sql, tc.args...)
			wantRefused(t, err, tc.column)
		}
		_, err := db.ExecContext(ctx, "LOAD DATA LOCAL INFILE '/dev/null' INTO TABLE users")
		wantRefused(t, err, "LOAD DATA")
	}
	after := e.rawRows(t, "users")
	if fmt.Sprint(before) != fmt.Sprint(after) {
		t.Fatal("a refused statement changed the table")
	}
	if other := e.rawRows(t, "other"); len(other) != 0 {
		t.Fatalf("a refused INSERT … SELECT wrote %d rows into other", len(other))
	}
	var copied int
	if err := e.direct.QueryRowContext(ctx, "SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = 'copied'").Scan(&copied); err != nil || copied != 0 {
		t.Fatalf("a refused CREATE TABLE … SELECT created the table (%d, %v)", copied, err)
	}
	e.checkAtRest(t, []string{"leak-1", "leak-2", "leak-3", "a@example.com", "s1"})
}

// TestMySQLEncRotation looks rows up by a deterministic column after a key
// rotation: rows under both versions are found.
func TestMySQLEncRotation(t *testing.T) {
	e := startMyEncProxy(t, []string{myEncDDL}, myEncSpecs())
	ctx := testCtx(t)
	for _, mode := range []string{"interpolateParams=false", "interpolateParams=true"} {
		t.Run(mode, func(t *testing.T) {
			if _, err := e.direct.ExecContext(ctx, "DELETE FROM users"); err != nil {
				t.Fatal(err)
			}
			db := openDB(t, e.proxy.config(t, mode))
			if _, err := db.ExecContext(ctx, "INSERT INTO users (id, email) VALUES (1, ?)", "old@example.com"); err != nil {
				t.Fatal(err)
			}
			if _, err := e.mgr.Rotate(context.Background(), "email"); err != nil {
				t.Fatal(err)
			}
			if _, err := db.ExecContext(ctx, "INSERT INTO users (id, email) VALUES (2, ?)", "new@example.com"); err != nil {
				t.Fatal(err)
			}
			var v1, v2 []byte
			_ = e.direct.QueryRowContext(ctx, "SELECT email FROM users WHERE id = 1").Scan(&v1)
			_ = e.direct.QueryRowContext(ctx, "SELECT email FROM users WHERE id = 2").Scan(&v2)
			h1, err1 := cryptoHeader(v1)
			h2, err2 := cryptoHeader(v2)
			if err1 != nil || err2 != nil || h1 == h2 {
				t.Fatalf("versions: %d %d (%v %v)", h1, h2, err1, err2)
			}
			for _, email := range []string{"old@example.com", "new@example.com"} {
				var n int
				if err := db.QueryRowContext(ctx, "SELECT COUNT(*) FROM users WHERE email = ?", email).Scan(&n); err != nil || n != 1 {
					t.Fatalf("lookup %s after rotation: %d %v", email, n, err)
				}
				if err := db.QueryRowContext(ctx, "SELECT COUNT(*) FROM users WHERE email IN ('"+email+"')").Scan(&n); err != nil || n != 1 {
					t.Fatalf("literal lookup %s after rotation: %d %v", email, n, err)
				}
			}
		})
	}
}

// TestMySQLEncMariadbCLI uses the mariadb command-line client through the
// proxy.
func TestMySQLEncMariadbCLI(t *testing.T) {
	mariadb, err := exec.LookPath("mariadb")
	if err != nil {
		t.Fatalf("mariadb client not found: %v", err)
	}
	e := startMyEncProxy(t, []string{myEncDDL}, myEncSpecs())
	script := "INSERT INTO users (id, email, ssn, age) VALUES (1, 'cli@example.com', 'cli-ssn', 77);" +
		" SELECT id, email, ssn, age FROM users WHERE email = 'cli@example.com';" +
		" SELECT * FROM users WHERE email LIKE 'c%';"
	cmd := exec.Command(mariadb, "--no-defaults", "-h", "127.0.0.1", "-P", strconv.Itoa(e.proxy.Port), "-u", e.db.User,
		"-p"+e.db.Password, "--batch", e.db.Database, "-e", script)
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatalf("the LIKE statement was not refused:\n%s", out)
	}
	if !strings.Contains(string(out), "1\tcli@example.com\tcli-ssn\t77") || !strings.Contains(string(out), "ERROR 1235") {
		t.Fatalf("mariadb output:\n%s", out)
	}
	e.checkAtRest(t, []string{"cli@example.com", "cli-ssn"})
}

// TestMySQLEncDecryptFailure: a value that is not a valid ciphertext of
// its column makes the query fail, in text and binary results, instead of
// returning garbage.
func TestMySQLEncDecryptFailure(t *testing.T) {
	e := startMyEncProxy(t, []string{myEncDDL}, myEncSpecs())
	ctx := testCtx(t)
	if _, err := e.direct.ExecContext(ctx, "INSERT INTO users (id, email, note) VALUES (1, 'not a ciphertext', 'n')"); err != nil {
		t.Fatal(err)
	}
	for _, mode := range []string{"interpolateParams=false", "interpolateParams=true"} {
		db := openDB(t, e.proxy.config(t, mode))
		var email string
		err := db.QueryRowContext(ctx, "SELECT email FROM users WHERE id = ?", 1).Scan(&email)
		var me *driver.MySQLError
		if !errors.As(err, &me) || me.Number != 1105 || !strings.Contains(me.Message, "users.email") {
			t.Fatalf("%s: got %q, %v; want ERR 1105 naming users.email", mode, email, err)
		}
	}
}

// TestMySQLEncMultiTableAndUse covers multi-table UPDATE/DELETE, USE
// tracking and database-qualified names.
func TestMySQLEncMultiTableAndUse(t *testing.T) {
	e := startMyEncProxy(t, []string{myEncDDL, "CREATE TABLE orders (id INT, uid INT, item VARCHAR(20))"}, myEncSpecs())
	ctx := testCtx(t)
	conn := openConn(t, e.proxy.config(t, "multiStatements=true"))
	if _, err := conn.ExecContext(ctx, "INSERT INTO users (id, email, ssn) VALUES (1, 'm1@example.com', 'mt-ssn-1'), (2, 'm2@example.com', 'mt-ssn-2'); INSERT INTO orders VALUES (10, 1, 'book'), (11, 2, 'pen')"); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.ExecContext(ctx, "UPDATE users u JOIN orders o ON o.uid = u.id SET u.ssn = 'mt-ssn-new', o.item = 'x' WHERE u.email = 'm1@example.com'"); err != nil {
		t.Fatalf("multi-table update: %v", err)
	}
	var ssn string
	if err := conn.QueryRowContext(ctx, "SELECT u.ssn FROM users u JOIN orders o ON o.uid = u.id WHERE o.item = 'x'").Scan(&ssn); err != nil || ssn != "mt-ssn-new" {
		t.Fatalf("join read: %q %v", ssn, err)
	}
	if _, err := conn.ExecContext(ctx, "DELETE u, o FROM users u JOIN orders o ON o.uid = u.id WHERE u.email IN ('m2@example.com')"); err != nil {
		t.Fatalf("multi-table delete: %v", err)
	}
	// Switch away: unqualified users now names another database's table
	// (none), qualified names still work.
	if _, err := conn.ExecContext(ctx, "USE information_schema"); err != nil {
		t.Fatal(err)
	}
	var n int
	q := fmt.Sprintf("SELECT COUNT(*) FROM `%s`.users WHERE email = 'm1@example.com'", e.db.Database)
	if err := conn.QueryRowContext(ctx, q).Scan(&n); err != nil || n != 1 {
		t.Fatalf("qualified lookup after USE: %d %v", n, err)
	}
	if _, err := conn.ExecContext(ctx, "USE `"+e.db.Database+"`"); err != nil {
		t.Fatal(err)
	}
	if err := conn.QueryRowContext(ctx, "SELECT COUNT(*) FROM users WHERE email = 'm1@example.com'").Scan(&n); err != nil || n != 1 {
		t.Fatalf("lookup after USE back: %d %v", n, err)
	}
	e.checkAtRest(t, []string{"m1@example.com", "mt-ssn-1", "mt-ssn-new"})
}

// TestMySQLEncPreparedPlainStatements: prepared statements with
// placeholders that cannot touch an encrypted table (the planner does not
// parse them) work through an encrypting listener, as beside them those on
// an encrypted table do. They were refused ("the server counted 1
// parameters where the proxy found 0"): found by the mysql2 test.
func TestMySQLEncPreparedPlainStatements(t *testing.T) {
	e := startMyEncProxy(t, []string{
		"CREATE TABLE pp_enc (id INT PRIMARY KEY, email VARBINARY(255))",
		"CREATE TABLE pp_plain (id INT PRIMARY KEY, note VARCHAR(20))",
	}, []rules.Spec{
		{Table: "pp_enc", Column: "email", Key: "pp_email", Mode: rules.ModeDeterministic, Type: value.TypeText},
	})
	ctx := context.Background()
	db := openDB(t, e.proxy.config(t)) // go-sql-driver prepares statements with arguments
	for _, s := range []struct {
		q    string
		args []any
	}{
		{"INSERT INTO pp_plain (id, note) VALUES (?, ?)", []any{1, "plain note"}},
		{"INSERT INTO pp_enc (id, email) VALUES (?, ?)", []any{1, "pp@example.com"}},
	} {
		if _, err := db.ExecContext(ctx, s.q, s.args...); err != nil {
			t.Fatalf("%s: %v", s.q, err)
		}
	}
	var n int64
	if err := db.QueryRowContext(ctx, "SELECT ? + 1", 41).Scan(&n); err != nil || n != 42 {
		t.Fatalf("SELECT ? + 1: %d %v", n, err)
	}
	var note string
	if err := db.QueryRowContext(ctx, "SELECT note FROM pp_plain WHERE id = ?", 1).Scan(&note); err != nil || note != "plain note" {
		t.Fatalf("plain table: %q %v", note, err)
	}
	var id int
	if err := db.QueryRowContext(ctx, "SELECT id FROM pp_enc WHERE email = ?", "pp@example.com").Scan(&id); err != nil || id != 1 {
		t.Fatalf("encrypted table: %d %v", id, err)
	}
	e.checkAtRest(t, []string{"pp@example.com"})
}
