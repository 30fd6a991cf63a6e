package integration

import (
	"context"
	"testing"

	"github.com/dbproxy/dbproxy/rules"
	"github.com/dbproxy/dbproxy/value"
)

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
