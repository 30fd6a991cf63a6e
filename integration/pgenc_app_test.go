package integration

import (
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/dbproxy/dbproxy/crypto"
)

func TestPGEncKeyRotation(t *testing.T) {
	e, ctx, c := startUsersSession(t, pgx.QueryExecModeSimpleProtocol)
	if _, err := c.Exec(ctx, `INSERT INTO users (email, name) VALUES ('old@example.com', 'Old Version')`); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"users_email", "users_name"} {
		if _, err := e.mgr.Rotate(ctx, k); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.Exec(ctx, `INSERT INTO users (email, name) VALUES ('new@example.com', 'New Version'), ('old@example.com', 'Old Email New Key')`); err != nil {
		t.Fatal(err)
	}
	versions := map[uint32]int{}
	for _, ct := range e.rawColumn(t, "users", "email") {
		h, err := crypto.ParseHeader(ct)
		if err != nil {
			t.Fatal(err)
		}
		versions[h.KeyVersion]++
	}
	if versions[1] != 1 || versions[2] != 2 {
		t.Fatalf("key versions at rest %v, want one v1 and two v2", versions)
	}
	// A lookup matches rows of both versions.
	rows, err := c.Query(ctx, `SELECT name FROM users WHERE email = $1`, "old@example.com")
	if err != nil {
		t.Fatal(err)
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(names, ",") != "Old Version,Old Email New Key" && strings.Join(names, ",") != "Old Email New Key,Old Version" {
		t.Fatalf("lookup after rotation found %q", names)
	}
	var n int
	if err := c.QueryRow(ctx, `SELECT count(*) FROM users WHERE email IN ('old@example.com', 'new@example.com')`).Scan(&n); err != nil || n != 3 {
		t.Fatalf("IN after rotation: %d %v", n, err)
	}
	e.checkAtRest(t, []string{"old@example.com", "new@example.com", "Old Version", "New Version"})
}

func TestPGEncPsql(t *testing.T) {
	e := startEncProxy(t, usersDDL, usersSpecs())
	env := e.proxy.psqlEnv("disable")
	dir := t.TempDir()
	out, errOut, code := runTool(t, env, dir, "psql", "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1",
		"-c", `INSERT INTO users (email, name, salary, note) VALUES ('psql@example.com', 'Psql Person', 123, 'n')`,
		"-c", `SELECT email, name, salary FROM users WHERE email = 'psql@example.com'`)
	if code != 0 {
		t.Fatalf("psql exit %d: %s %s", code, out, errOut)
	}
	if !strings.Contains(out, "psql@example.com|Psql Person|123") {
		t.Fatalf("psql output %q", out)
	}
	out, errOut, code = runTool(t, env, dir, "psql", "-X", "-A", "-t", "-c", `SELECT email FROM users WHERE email LIKE 'p%'`)
	if code == 0 || !strings.Contains(errOut, "dbproxy: statement refused") || !strings.Contains(errOut, "users.email") {
		t.Fatalf("psql LIKE: exit %d out %q err %q", code, out, errOut)
	}
	// \copy in and out (COPY FROM STDIN / TO STDOUT under the hood).
	in := filepath.Join(dir, "in.csv")
	if err := os.WriteFile(in, []byte("psqlcopy@example.com,Psql Copied,5\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out, errOut, code = runTool(t, env, dir, "psql", "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1",
		"-c", `\copy users (email, name, salary) from 'in.csv' with (format csv)`,
		"-c", `\copy (select email, name, salary from users where email = 'psqlcopy@example.com') to stdout with (format csv)`)
	if code != 0 || !strings.Contains(out, "psqlcopy@example.com,Psql Copied,5") {
		t.Fatalf("psql \\copy: exit %d out %q err %q", code, out, errOut)
	}
	e.checkAtRest(t, []string{"psql@example.com", "Psql Person", "psqlcopy@example.com", "Psql Copied"})
}

// TestPGEncORM is an application-shaped workload through database/sql and
// pgx/stdlib (simple protocol): sign-ups, lookups by email, profile
// updates, a transaction with a batch insert, deletion.
func TestPGEncORM(t *testing.T) {
	e := startEncProxy(t, usersDDL, usersSpecs())
	ctx := testCtx(t)
	db, err := sql.Open("pgx", e.proxy.DSN("disable")+"&default_query_exec_mode=simple_protocol")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	db.SetMaxOpenConns(4)
	var plaintexts []string
	for i := range 20 {
		email := fmt.Sprintf("user%02d@shop.example", i)
		name := fmt.Sprintf("Customer Number %02d", i)
		plaintexts = append(plaintexts, email, name)
		var id int64
		if err := db.QueryRowContext(ctx, `INSERT INTO users (email, name, salary, note) VALUES ($1, $2, $3, $4) RETURNING id`,
			email, name, int64(i*1000), "signup").Scan(&id); err != nil {
			t.Fatalf("signup %d: %v", i, err)
		}
	}
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		if _, err := tx.ExecContext(ctx, `INSERT INTO users (email, name, note) VALUES ($1, $2, 'batch')`,
			fmt.Sprintf("batch%d@shop.example", i), fmt.Sprintf("Batch Buyer %d", i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 20; i += 3 {
		email := fmt.Sprintf("user%02d@shop.example", i)
		var name string
		var salary int64
		if err := db.QueryRowContext(ctx, `SELECT name, salary FROM users WHERE email = $1`, email).Scan(&name, &salary); err != nil {
			t.Fatalf("lookup %s: %v", email, err)
		}
		if name != fmt.Sprintf("Customer Number %02d", i) || salary != int64(i*1000) {
			t.Fatalf("lookup %s: %q %d", email, name, salary)
		}
		if _, err := db.ExecContext(ctx, `UPDATE users SET salary = $1 WHERE email = $2`, salary+1, email); err != nil {
			t.Fatal(err)
		}
	}
	// COPY import (csv) through the driver's raw connection.
	conn, err := db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	csv := "import1@shop.example,Imported One,100,import\nimport2@shop.example,\"Imported, Two\",200,import\n"
	plaintexts = append(plaintexts, "import1@shop.example", "Imported One", "Imported, Two")
	if err := conn.Raw(func(dc any) error {
		tag, err := dc.(*stdlib.Conn).Conn().PgConn().CopyFrom(ctx, strings.NewReader(csv),
			`COPY users (email, name, salary, note) FROM STDIN (FORMAT csv)`)
		if err == nil && tag.RowsAffected() != 2 {
			err = fmt.Errorf("imported %d rows", tag.RowsAffected())
		}
		return err
	}); err != nil {
		t.Fatalf("copy import: %v", err)
	}
	conn.Close()
	var imported string
	if err := db.QueryRowContext(ctx, `SELECT name FROM users WHERE email = $1`, "import2@shop.example").Scan(&imported); err != nil || imported != "Imported, Two" {
		t.Fatalf("imported row: %q %v", imported, err)
	}
	res, err := db.ExecContext(ctx, `DELETE FROM users WHERE email = ANY(ARRAY[$1, $2])`, "user01@shop.example", "user02@shop.example")
	if err != nil {
		t.Fatal(err)
	}
	if n, _ := res.RowsAffected(); n != 2 {
		t.Fatalf("deleted %d rows, want 2", n)
	}
	var n int
	if err := db.QueryRowContext(ctx, `SELECT count(*) FROM users WHERE note = 'batch'`).Scan(&n); err != nil || n != 5 {
		t.Fatalf("batch count %d %v", n, err)
	}
	var salary int64
	if err := db.QueryRowContext(ctx, `SELECT salary FROM users WHERE email = $1`, "user03@shop.example").Scan(&salary); err != nil || salary != 3001 {
		t.Fatalf("updated salary %d %v", salary, err)
	}
	if err := db.QueryRowContext(ctx, `SELECT salary FROM users WHERE email = $1`, "user01@shop.example").Scan(&salary); !errors.Is(err, sql.ErrNoRows) {
		t.Fatalf("deleted user still there: %v", err)
	}
	e.checkAtRest(t, plaintexts)
}
