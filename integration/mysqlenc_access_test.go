package integration

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"testing"
	"time"

	driver "github.com/go-sql-driver/mysql"

	"github.com/dbproxy/dbproxy/internal/testkeys"
	"github.com/dbproxy/dbproxy/proxy/mysql/mycrypt"
)

// startMyAccess starts the users table behind a MySQL proxy with the
// test policy (access_helpers_test.go), and creates the four accounts.
func startMyAccess(t *testing.T) (*myEncEnv, accessUsers) {
	t.Helper()
	pol, specs := &lazyPolicy{}, accessSpecs("")
	e := startMyEncProxyKeys(t, []string{"CREATE TABLE users (id INT PRIMARY KEY, name VARCHAR(50), ssn VARBINARY(255), salary VARBINARY(255), born VARBINARY(255))"},
		specs, nil, testkeys.ForRules(specs), func(o *mycrypt.Options) { o.Policy = pol })
	u := newAccessUsers(e.db.User)
	pol.set(t, u)
	admin := adminDB(t, e.db)
	ctx := testCtx(t)
	for _, user := range u.all() {
		for _, q := range []string{
			fmt.Sprintf("CREATE USER '%s'@'%%' IDENTIFIED BY '%s'", user, accessPassword),
			fmt.Sprintf("GRANT SELECT, INSERT, UPDATE ON `%s`.* TO '%s'@'%%'", e.db.Database, user),
		} {
			if _, err := admin.ExecContext(ctx, q); err != nil {
				t.Fatalf("%s: %v", q, err)
			}
		}
		t.Cleanup(func() { _, _ = admin.ExecContext(context.Background(), fmt.Sprintf("DROP USER '%s'@'%%'", user)) })
	}
	return e, u
}

// myAs opens one session through e's proxy as user.
func myAs(t *testing.T, e *myEncEnv, user string) *sql.Conn {
	t.Helper()
	return openConn(t, myConfigAt(t, e.proxy.Addr, user, accessPassword, e.db.Database))
}

// wantMyDenied fails unless err is ER_COLUMNACCESS_DENIED_ERROR (1143)
// naming column and rule.
func wantMyDenied(t *testing.T, what string, err error, column, rule string) {
	t.Helper()
	var me *driver.MySQLError
	if !errors.As(err, &me) || me.Number != 1143 {
		t.Errorf("%s: got %v, want ERR 1143", what, err)
		return
	}
	wantMentions(t, what, me.Message, column, rule)
}

// myProtocols run a query in the text protocol (no arguments) or as a
// prepared statement (binary rows).
var myProtocols = []struct {
	name string
	args []any
	cond string
}{{"text", nil, "id = 1"}, {"prepared", []any{1}, "id = ?"}}

// TestMySQLAccessPolicy is TestPGAccessPolicy on MariaDB: text and binary
// protocol results, refusals as ERR 1143 naming the column and the rule.
func TestMySQLAccessPolicy(t *testing.T) {
	e, u := startMyAccess(t)
	ctx := testCtx(t)
	born := time.Date(1980, 2, 3, 0, 0, 0, 0, time.UTC)
	app := myAs(t, e, u.app)
	if _, err := app.ExecContext(ctx, `INSERT INTO users (id, name, ssn, salary, born) VALUES (1, 'ann', '123-45-6789', 5000, '1980-02-03')`); err != nil {
		t.Fatalf("app insert: %v", err)
	}
	for _, p := range myProtocols {
		t.Run("app/"+p.name, func(t *testing.T) {
			var ssn string
			var salary int64
			var got time.Time
			if err := myAs(t, e, u.app).QueryRowContext(ctx, `SELECT ssn, salary, born FROM users WHERE `+p.cond, p.args...).Scan(&ssn, &salary, &got); err != nil {
				t.Fatal(err)
			}
			if ssn != ssnPlain || salary != 5000 || !got.Equal(born) {
				t.Errorf("app reads %q %d %v", ssn, salary, got)
			}
		})
		t.Run("reporting/"+p.name, func(t *testing.T) { myReporting(t, e, u, p.cond, p.args) })
		t.Run("auditor/"+p.name, func(t *testing.T) { myAuditor(t, e, u, p.cond, p.args) })
	}
	t.Run("ingest", func(t *testing.T) { myIngest(t, e, u) })

	var n int
	if err := app.QueryRowContext(ctx, `SELECT count(*) FROM users WHERE ssn = '555-00-1111'`).Scan(&n); err != nil || n != 2 {
		t.Fatalf("app counts %d rows ingest stored, %v; want 2", n, err)
	}
	e.checkAtRest(t, []string{ssnPlain, "555-00-1111"})
}

func myReporting(t *testing.T, e *myEncEnv, u accessUsers, cond string, args []any) {
	ctx := testCtx(t)
	c := myAs(t, e, u.reporting)
	var name, ssn string
	var born sql.NullTime
	if err := c.QueryRowContext(ctx, `SELECT name, ssn, born FROM users WHERE `+cond, args...).Scan(&name, &ssn, &born); err != nil {
		t.Fatal(err)
	}
	if name != "ann" || ssn != ssnMasked || born.Valid {
		t.Errorf("reporting reads %q %q %v, want ann %q NULL", name, ssn, born, ssnMasked)
	}
	err := c.QueryRowContext(ctx, `SELECT salary FROM users WHERE `+cond, args...).Scan(new(int64))
	wantMyDenied(t, "reporting reads salary", err, "users.salary", `access.rules[1] "reporting-pay"`)
	err = c.QueryRowContext(ctx, `SELECT id FROM users WHERE ssn = ?`, ssnPlain).Scan(new(int))
	wantMyDenied(t, "reporting looks up ssn", err, "match of column users.ssn", "access.rules[0]")
	_, err = c.ExecContext(ctx, `INSERT INTO users (id, ssn) VALUES (90, '000-00-0000')`)
	wantMyDenied(t, "reporting stores ssn", err, "encrypt of column users.ssn", "access.rules[0]")
	if err := c.QueryRowContext(ctx, `SELECT name FROM users WHERE `+cond, args...).Scan(&name); err != nil || name != "ann" {
		t.Fatalf("after the refusals: %q %v", name, err)
	}
}

func myAuditor(t *testing.T, e *myEncEnv, u accessUsers, cond string, args []any) {
	ctx := testCtx(t)
	c := myAs(t, e, u.auditor)
	rows, err := c.QueryContext(ctx, `SELECT ssn, salary FROM users WHERE `+cond, args...)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	types, err := rows.ColumnTypes()
	if err != nil {
		t.Fatal(err)
	}
	if name := types[0].DatabaseTypeName(); name != "VARBINARY" {
		t.Errorf("ssn presented as %s, want VARBINARY as stored", name)
	}
	if !rows.Next() {
		t.Fatalf("no row: %v", rows.Err())
	}
	var ssn []byte
	var salary sql.NullInt64
	if err := rows.Scan(&ssn, &salary); err != nil {
		t.Fatal(err)
	}
	rows.Close()
	stored := myByteColumn(t, e.direct, "SELECT ssn FROM users WHERE id = 1")
	if !bytes.Equal(ssn, stored[0]) || salary.Valid {
		t.Errorf("auditor reads ssn %x salary %v; want the stored %x and NULL", ssn, salary, stored[0])
	}
	// lookup: true lets the auditor find the row by ssn.
	var id int
	if err := c.QueryRowContext(ctx, `SELECT id FROM users WHERE ssn = ?`, ssnPlain).Scan(&id); err != nil || id != 1 {
		t.Errorf("auditor lookup: %d %v", id, err)
	}
}

func myIngest(t *testing.T, e *myEncEnv, u accessUsers) {
	ctx := testCtx(t)
	c := myAs(t, e, u.ingest)
	if _, err := c.ExecContext(ctx, `INSERT INTO users (id, name, ssn, salary, born) VALUES (10, 'ingested', '555-00-1111', 7, '2001-01-02')`); err != nil {
		t.Fatalf("ingest insert (text): %v", err)
	}
	if _, err := c.ExecContext(ctx, `INSERT INTO users (id, name, ssn, salary, born) VALUES (?, ?, ?, ?, ?)`, 11, "ingested", "555-00-1111", 7, "2001-01-02"); err != nil {
		t.Fatalf("ingest insert (prepared): %v", err)
	}
	if _, err := c.ExecContext(ctx, `UPDATE users SET salary = ? WHERE id = ?`, 8, 11); err != nil {
		t.Fatalf("ingest update by id: %v", err)
	}
	for _, p := range myProtocols {
		err := c.QueryRowContext(ctx, `SELECT ssn FROM users WHERE `+p.cond, p.args...).Scan(new(string))
		wantMyDenied(t, "ingest reads ssn ("+p.name+")", err, "users.ssn", "access.rules[2] (action write_only")
	}
	// A result without rows is refused too (at its end).
	for _, q := range []struct {
		sql  string
		args []any
	}{{"SELECT ssn FROM users WHERE id = 999", nil}, {"SELECT ssn FROM users WHERE id = ?", []any{999}}} {
		err := c.QueryRowContext(ctx, q.sql, q.args...).Scan(new(string))
		wantMyDenied(t, "ingest reads no ssn: "+q.sql, err, "users.ssn", "access.rules[2]")
	}
	err := c.QueryRowContext(ctx, `SELECT id FROM users WHERE ssn = ?`, "555-00-1111").Scan(new(int))
	wantMyDenied(t, "ingest looks up ssn", err, "match of column users.ssn", "access.rules[2]")
	err = c.QueryRowContext(ctx, `SELECT id FROM users WHERE ssn = '555-00-1111'`).Scan(new(int))
	wantMyDenied(t, "ingest looks up ssn (literal)", err, "match of column users.ssn", "access.rules[2]")
	var name string
	if err := c.QueryRowContext(ctx, `SELECT name FROM users WHERE id = 10`).Scan(&name); err != nil || name != "ingested" {
		t.Fatalf("ingest reads a plaintext column: %q %v", name, err)
	}
}
