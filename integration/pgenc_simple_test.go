package integration

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/dbproxy/dbproxy/rules"
	"github.com/dbproxy/dbproxy/value"
)

const usersDDL = `CREATE TABLE users (id bigserial PRIMARY KEY, email bytea, name bytea, salary bytea, note text)`

func usersSpecs() []rules.Spec {
	return []rules.Spec{
		encSpec("users", "email", rules.ModeDeterministic, value.TypeText, "users_email"),
		encSpec("users", "name", rules.ModeRandomized, value.TypeText, "users_name"),
		encSpec("users", "salary", rules.ModeRandomized, value.TypeBigint, "users_salary"),
	}
}

// startUsersSession starts an encrypting proxy over the users table
// (usersDDL, usersSpecs) and returns it with a test context and a session
// through it in mode.
func startUsersSession(t *testing.T, mode pgx.QueryExecMode) (*encEnv, context.Context, *pgx.Conn) {
	t.Helper()
	e := startEncProxy(t, usersDDL, usersSpecs())
	return e, testCtx(t), e.connectMode(t, mode)
}

type user struct {
	id     int64
	email  string
	name   *string
	salary *int64
	note   string
}

func lookupUser(ctx context.Context, t *testing.T, c *pgx.Conn, email string) (user, error) {
	t.Helper()
	var u user
	err := c.QueryRow(ctx, `SELECT id, email, name, salary, note FROM users WHERE email = $1`, email).
		Scan(&u.id, &u.email, &u.name, &u.salary, &u.note)
	return u, err
}

func TestPGEncSimpleCRUD(t *testing.T) {
	e, ctx, c := startUsersSession(t, pgx.QueryExecModeSimpleProtocol)

	emails := []string{"alice@example.com", "bob@example.com", "zoë@exämple.org"}
	for i, em := range emails {
		if _, err := c.Exec(ctx, `INSERT INTO users (email, name, salary, note) VALUES ($1, $2, $3, 'n')`,
			em, fmt.Sprintf("Name Number %d", i), int64(1000+i)); err != nil {
			t.Fatalf("insert %d: %v", i, err)
		}
	}
	// Multi-row literal insert, NULLs, and a multi-statement string.
	if _, err := c.Exec(ctx, `INSERT INTO users (email, name, salary, note) VALUES ('carol@example.com', NULL, -9223372036854775808, 'x'), ('dave@example.com', '', 9223372036854775807, 'y'); SELECT 1`); err != nil {
		t.Fatalf("multi insert: %v", err)
	}

	u, err := lookupUser(ctx, t, c, "bob@example.com")
	if err != nil {
		t.Fatalf("lookup: %v", err)
	}
	if u.email != "bob@example.com" || u.name == nil || *u.name != "Name Number 1" || u.salary == nil || *u.salary != 1001 {
		t.Fatalf("lookup got %+v", u)
	}
	u, err = lookupUser(ctx, t, c, "carol@example.com")
	if err != nil || u.name != nil || u.salary == nil || *u.salary != -9223372036854775808 {
		t.Fatalf("carol: %+v, %v", u, err)
	}
	u, err = lookupUser(ctx, t, c, "dave@example.com")
	if err != nil || u.name == nil || *u.name != "" || *u.salary != 9223372036854775807 {
		t.Fatalf("dave: %+v, %v", u, err)
	}
	if u, err = lookupUser(ctx, t, c, "zoë@exämple.org"); err != nil || u.email != "zoë@exämple.org" {
		t.Fatalf("unicode: %+v, %v", u, err)
	}
	// IN, <>, IS NULL, count.
	var n int
	if err := c.QueryRow(ctx, `SELECT count(*) FROM users WHERE email IN ('alice@example.com', 'bob@example.com', 'nobody@x')`).Scan(&n); err != nil || n != 2 {
		t.Fatalf("IN count %d, %v", n, err)
	}
	if err := c.QueryRow(ctx, `SELECT count(*) FROM users WHERE email <> 'alice@example.com'`).Scan(&n); err != nil || n != 4 {
		t.Fatalf("<> count %d, %v", n, err)
	}
	if err := c.QueryRow(ctx, `SELECT count(*) FROM users WHERE name IS NULL`).Scan(&n); err != nil || n != 1 {
		t.Fatalf("IS NULL count %d, %v", n, err)
	}
	// Aliases, *, RETURNING decrypt.
	var em, nm string
	if err := c.QueryRow(ctx, `SELECT u.email AS e, u.name AS m FROM users u WHERE u.email = 'alice@example.com'`).Scan(&em, &nm); err != nil || em != "alice@example.com" || nm != "Name Number 0" {
		t.Fatalf("alias: %q %q %v", em, nm, err)
	}
	rows, err := c.Query(ctx, `SELECT * FROM users WHERE email = 'alice@example.com'`)
	if err != nil {
		t.Fatal(err)
	}
	vals, err := pgx.CollectOneRow(rows, func(r pgx.CollectableRow) ([]any, error) { return r.Values() })
	if err != nil || vals[1] != "alice@example.com" {
		t.Fatalf("select *: %v %v", vals, err)
	}
	// Update and delete by deterministic email.
	if err := c.QueryRow(ctx, `UPDATE users SET name = $1, salary = 5 WHERE email = $2 RETURNING name`, "Renamed Person", "alice@example.com").Scan(&nm); err != nil || nm != "Renamed Person" {
		t.Fatalf("update returning %q, %v", nm, err)
	}
	if u, err = lookupUser(ctx, t, c, "alice@example.com"); err != nil || *u.name != "Renamed Person" || *u.salary != 5 {
		t.Fatalf("after update %+v %v", u, err)
	}
	tag, err := c.Exec(ctx, `DELETE FROM users WHERE email = 'bob@example.com'`)
	if err != nil || tag.RowsAffected() != 1 {
		t.Fatalf("delete: %v %v", tag, err)
	}
	if _, err := lookupUser(ctx, t, c, "bob@example.com"); !errors.Is(err, pgx.ErrNoRows) {
		t.Fatalf("deleted row still found: %v", err)
	}
	// SQL-level PREPARE / EXECUTE.
	if _, err := c.Exec(ctx, `PREPARE byemail(text) AS SELECT name FROM users WHERE email = $1`); err != nil {
		t.Fatalf("prepare: %v", err)
	}
	if err := c.QueryRow(ctx, `EXECUTE byemail('alice@example.com')`).Scan(&nm); err != nil || nm != "Renamed Person" {
		t.Fatalf("execute: %q %v", nm, err)
	}
	if _, err := c.Exec(ctx, `PREPARE ins(text, text) AS INSERT INTO users (email, name, note) VALUES ($1, $2, 'p')`); err != nil {
		t.Fatalf("prepare insert: %v", err)
	}
	if _, err := c.Exec(ctx, `EXECUTE ins('erin@example.com', 'Erin Prepared')`); err != nil {
		t.Fatalf("execute insert: %v", err)
	}
	if u, err = lookupUser(ctx, t, c, "erin@example.com"); err != nil || *u.name != "Erin Prepared" {
		t.Fatalf("prepared insert %+v %v", u, err)
	}
	// Plaintext tables still pass through.
	if err := c.QueryRow(ctx, `SELECT count(*) FROM pg_class WHERE relname = 'users'`).Scan(&n); err != nil || n != 1 {
		t.Fatalf("passthrough: %d %v", n, err)
	}

	e.checkAtRest(t, append(emails, "carol@example.com", "dave@example.com", "erin@example.com",
		"Name Number", "Renamed Person", "Erin Prepared"))
}

func TestPGEncRefusals(t *testing.T) {
	e := startEncProxy(t, usersDDL+`; CREATE TABLE plain (v text)`, usersSpecs())
	ctx := testCtx(t)
	c := e.connectMode(t, pgx.QueryExecModeSimpleProtocol)
	if _, err := c.Exec(ctx, `INSERT INTO users (email, name, salary) VALUES ('a@b.c', 'Some Name', 7)`); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Exec(ctx, `INSERT INTO plain VALUES ('Leaky Secret Value')`); err != nil {
		t.Fatal(err)
	}
	before := e.tableDump(t, "users")
	tests := []struct {
		name, sql, column, code string
	}{
		{"like", `SELECT id FROM users WHERE email LIKE 'a%'`, "email", "0A000"},
		{"less than", `SELECT id FROM users WHERE email < 'b'`, "email", "0A000"},
		{"order by", `SELECT id FROM users ORDER BY email`, "email", "0A000"},
		{"function", `SELECT id FROM users WHERE lower(email) = 'a@b.c'`, "email", ""},
		{"equality on randomized", `SELECT id FROM users WHERE name = 'Some Name'`, "name", ""},
		{"insert select", `INSERT INTO users (email) SELECT v FROM plain`, "email", ""},
		{"update from other expr", `UPDATE users SET name = note`, "name", ""},
		{"delete with like", `DELETE FROM users WHERE email LIKE '%'`, "email", "0A000"},
		{"multi statement second refused", `SELECT 1; UPDATE users SET name = 'x' WHERE email ILIKE '%'`, "email", "0A000"},
		{"server-side copy", `COPY users TO '/tmp/x'`, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := c.Exec(ctx, tt.sql)
			var pgErr *pgconn.PgError
			if !errors.As(err, &pgErr) {
				t.Fatalf("want a PostgreSQL error, got %v", err)
			}
			if !strings.HasPrefix(pgErr.Message, "dbproxy: statement refused") {
				t.Errorf("message %q is not a proxy refusal", pgErr.Message)
			}
			if tt.column != "" && !strings.Contains(pgErr.Message, "users."+tt.column) {
				t.Errorf("message %q does not name column %s", pgErr.Message, tt.column)
			}
			if tt.code != "" && pgErr.Code != tt.code {
				t.Errorf("code %s, want %s", pgErr.Code, tt.code)
			}
			if strings.Contains(pgErr.Message, "Some Name") || strings.Contains(pgErr.Message, "a@b.c") {
				t.Errorf("message leaks a value: %q", pgErr.Message)
			}
			// The session is still usable and nothing changed.
			var one int
			if err := c.QueryRow(ctx, `SELECT 1`).Scan(&one); err != nil || one != 1 {
				t.Fatalf("session after refusal: %v", err)
			}
			if got := e.tableDump(t, "users"); got != before {
				t.Errorf("table changed after a refused statement")
			}
		})
	}
	e.checkAtRest(t, []string{"Some Name", "a@b.c"})
}

func TestPGEncViewRefused(t *testing.T) {
	e := startEncProxy(t, usersDDL+`; CREATE VIEW people AS SELECT email, note FROM users; CREATE VIEW people2 AS SELECT * FROM people`, usersSpecs())
	ctx := testCtx(t)
	s := e.connectMode(t, pgx.QueryExecModeSimpleProtocol)
	if _, err := s.Exec(ctx, `INSERT INTO users (email, note) VALUES ('view@example.com', 'n')`); err != nil {
		t.Fatal(err)
	}
	for _, mode := range []pgx.QueryExecMode{pgx.QueryExecModeSimpleProtocol, pgx.QueryExecModeCacheStatement} {
		for _, view := range []string{"people", "people2"} {
			t.Run(mode.String()+"/"+view, func(t *testing.T) {
				c := e.connectMode(t, mode)
				// Every statement naming a view over an encrypted table is
				// refused, even one reading only its plaintext columns: a
				// lookup through the view would send its value in clear.
				for _, col := range []string{"email", "note"} {
					var got []byte
					err := c.QueryRow(ctx, `SELECT `+col+` FROM `+view).Scan(&got)
					var pgErr *pgconn.PgError
					if !errors.As(err, &pgErr) || !strings.Contains(pgErr.Message, "relation public."+view+" is a view over encrypted table public.users") {
						t.Fatalf("view read of %s returned %q, %v; want a refusal", col, got, err)
					}
				}
			})
		}
	}
}
