package integration

import (
	"errors"
	"testing"

	driver "github.com/go-sql-driver/mysql"
)

// TestMySQLEncPlaintextPrepared: behind a listener with encryption rules,
// server-side prepared statements with placeholders on a table that has no
// encrypted column work as directly (they failed with "the server counted
// 2 parameters where the proxy found 0": a statement that names no
// encrypted table is not planned, and its placeholder count was taken as
// zero). The statements' effects are read back directly.
func TestMySQLEncPlaintextPrepared(t *testing.T) {
	e := startMyEncProxy(t, []string{myEncDDL, "CREATE TABLE test (id INT PRIMARY KEY, value VARCHAR(50))"}, myEncSpecs())
	ctx := testCtx(t)
	db := openDB(t, e.proxy.config(t)) // go-sql-driver prepares every statement with arguments on the server

	for i, v := range []string{"one", "two", "three"} {
		if _, err := db.ExecContext(ctx, "INSERT INTO test VALUES (?, ?)", i+1, v); err != nil {
			t.Fatalf("prepared INSERT: %v", err)
		}
	}
	res, err := db.ExecContext(ctx, "UPDATE test SET value = ? WHERE value = ?", "deux", "two")
	if err != nil {
		t.Fatalf("prepared UPDATE: %v", err)
	}
	if n, err := res.RowsAffected(); err != nil || n != 1 {
		t.Fatalf("UPDATE affected %d rows (%v), want 1", n, err)
	}
	stmt, err := db.PrepareContext(ctx, "SELECT id, value FROM test WHERE id > ? AND value <> ? ORDER BY id")
	if err != nil {
		t.Fatalf("prepare SELECT: %v", err)
	}
	defer stmt.Close()
	for range 2 { // a prepared statement executed twice
		var got []string
		rows, err := stmt.QueryContext(ctx, 0, "one")
		if err != nil {
			t.Fatalf("prepared SELECT: %v", err)
		}
		for rows.Next() {
			var id int
			var v string
			if err := rows.Scan(&id, &v); err != nil {
				t.Fatal(err)
			}
			got = append(got, v)
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		_ = rows.Close()
		if len(got) != 2 || got[0] != "deux" || got[1] != "three" {
			t.Fatalf("prepared SELECT returned %q, want [deux three]", got)
		}
	}
	// A server error on a prepared statement is the server's, as directly.
	_, err = db.ExecContext(ctx, "INSERT INTO test VALUES (?, ?)", 1, "dup")
	var me *driver.MySQLError
	if !errors.As(err, &me) || me.Number != 1062 {
		t.Fatalf("duplicate key: got %v, want the server's ERR 1062", err)
	}

	var v string
	if err := e.direct.QueryRowContext(ctx, "SELECT value FROM test WHERE id = 2").Scan(&v); err != nil || v != "deux" {
		t.Fatalf("stored value %q (%v), want deux", v, err)
	}
	// The encrypted table still gets ciphertext from a prepared INSERT on
	// the same listener.
	if _, err := db.ExecContext(ctx, "INSERT INTO users (id, email, note) VALUES (?, ?, ?)", 1, "alice@example.com", "n"); err != nil {
		t.Fatal(err)
	}
	e.checkAtRest(t, []string{"alice@example.com"})
	var email string
	if err := db.QueryRowContext(ctx, "SELECT email FROM users WHERE email = ?", "alice@example.com").Scan(&email); err != nil || email != "alice@example.com" {
		t.Fatalf("lookup through the proxy: %q, %v", email, err)
	}
}
