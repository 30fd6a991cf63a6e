package integration

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/dbproxy/dbproxy/internal/testenv"
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

// Statements that touch no encrypted column behave behind a listener with
// rules exactly as directly: same rows, same message flow.

const plainAndEncDDL = usersDDL + `; CREATE TABLE items (id int PRIMARY KEY, label text);
INSERT INTO items SELECT n, 'item ' || n FROM generate_series(1, 5) n`

// rawExchange sends msgs (ending with Sync) on a fresh connection to dsn
// and returns what came back up to ReadyForQuery, one line per message:
// its type and, for DataRow, the values.
func rawExchange(t *testing.T, dsn string, setup string, msgs ...pgproto3.FrontendMessage) []string {
	t.Helper()
	ctx := testCtx(t)
	c, err := pgconn.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(context.Background())
	if setup != "" {
		if _, err := c.Exec(ctx, setup).ReadAll(); err != nil {
			t.Fatalf("%s: %v", setup, err)
		}
	}
	return exchange(t, c, msgs...)
}

// exchange sends msgs (ending with Sync) on c and returns what came back
// up to ReadyForQuery, as rawExchange does.
func exchange(t *testing.T, c *pgconn.PgConn, msgs ...pgproto3.FrontendMessage) []string {
	t.Helper()
	ctx := testCtx(t)
	fe := c.Frontend()
	for _, m := range msgs {
		fe.Send(m)
	}
	if err := fe.Flush(); err != nil {
		t.Fatal(err)
	}
	var out []string
	for {
		msg, err := c.ReceiveMessage(ctx)
		if err != nil {
			t.Fatalf("receive: %v (so far %q)", err, out)
		}
		switch m := msg.(type) {
		case *pgproto3.DataRow:
			vals := make([]string, len(m.Values))
			for i, v := range m.Values {
				vals[i] = string(v)
			}
			out = append(out, "D "+strings.Join(vals, ","))
		case *pgproto3.CommandComplete:
			out = append(out, "C "+string(m.CommandTag))
		case *pgproto3.ErrorResponse:
			out = append(out, "E "+m.Code+" "+m.Message)
		case *pgproto3.ReadyForQuery:
			return append(out, "Z "+string(m.TxStatus))
		default:
			out = append(out, fmt.Sprintf("%T", msg))
		}
	}
}

// startThreeUsers starts an encrypting proxy over plainAndEncDDL, and
// inserts users 1 to 3 (user<i>@example.com) through it in a session of
// mode.
func startThreeUsers(t *testing.T, mode pgx.QueryExecMode) *encEnv {
	t.Helper()
	e := startEncProxy(t, plainAndEncDDL, usersSpecs())
	ctx := testCtx(t)
	c := e.connectMode(t, mode)
	for i := 1; i <= 3; i++ {
		if _, err := c.Exec(ctx, `INSERT INTO users (id, email, note) VALUES ($1, $2, 'n')`, i, fmt.Sprintf("user%d@example.com", i)); err != nil {
			t.Fatal(err)
		}
	}
	return e
}

// TestPGEncPortalRowLimit: Execute with a row limit answers PortalSuspended
// and the next Execute of the same portal goes on, on a plaintext table as
// directly, and on an encrypted table with decrypted rows.
func TestPGEncPortalRowLimit(t *testing.T) {
	e := startThreeUsers(t, pgx.QueryExecModeCacheDescribe)
	limited := func(sql string) []pgproto3.FrontendMessage {
		return []pgproto3.FrontendMessage{
			&pgproto3.Parse{Query: sql},
			&pgproto3.Bind{},
			&pgproto3.Execute{MaxRows: 2},
			&pgproto3.Execute{MaxRows: 2},
			&pgproto3.Execute{MaxRows: 2},
			&pgproto3.Sync{},
		}
	}
	plainSQL := `SELECT id, label FROM items ORDER BY id`
	direct := rawExchange(t, e.pg.DSN(), "BEGIN", limited(plainSQL)...)
	through := rawExchange(t, e.proxy.DSN("disable"), "BEGIN", limited(plainSQL)...)
	want := []string{"*pgproto3.ParseComplete", "*pgproto3.BindComplete",
		"D 1,item 1", "D 2,item 2", "*pgproto3.PortalSuspended",
		"D 3,item 3", "D 4,item 4", "*pgproto3.PortalSuspended",
		"D 5,item 5", "C SELECT 1", "Z T"}
	if strings.Join(direct, "|") != strings.Join(want, "|") {
		t.Fatalf("direct exchange %q, want %q", direct, want)
	}
	if strings.Join(through, "|") != strings.Join(direct, "|") {
		t.Fatalf("through the encrypting listener %q, directly %q", through, direct)
	}
	// Outside a transaction block too (the unnamed portal lives until Sync).
	if got, want := rawExchange(t, e.proxy.DSN("disable"), "", limited(plainSQL)...), rawExchange(t, e.pg.DSN(), "", limited(plainSQL)...); strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("through the encrypting listener %q, directly %q", got, want)
	}

	encSQL := `SELECT id, email FROM users ORDER BY id`
	got := rawExchange(t, e.proxy.DSN("disable"), "", limited(encSQL)...)
	// Same message flow as directly, with the rows decrypted.
	directEnc := rawExchange(t, e.pg.DSN(), "", limited(encSQL)...)
	if len(got) != len(directEnc) {
		t.Fatalf("through the encrypting listener %q, directly %q (shape)", got, directEnc)
	}
	for i := range got {
		if strings.HasPrefix(got[i], "D ") {
			if !strings.Contains(got[i], "@example.com") {
				t.Fatalf("row %d %q: not decrypted", i, got[i])
			}
			continue
		}
		if got[i] != directEnc[i] {
			t.Fatalf("message %d: %q through the listener, %q directly (all: %q)", i, got[i], directEnc[i], got)
		}
	}
	e.checkAtRest(t, []string{"user1@example.com", "user2@example.com", "user3@example.com"})
}

// TestPGEncCursorFetchPrepared: a FETCH prepared before its cursor exists
// is described as returning no rows; executed with a Describe of its
// portal (as pgx does) its rows are attributed by that description:
// plaintext rows pass, rows of an encrypted column are decrypted. Without
// a client Describe the proxy describes the portal itself.
func TestPGEncCursorFetchPrepared(t *testing.T) {
	e := startThreeUsers(t, pgx.QueryExecModeCacheStatement)
	ctx := testCtx(t)
	pc, err := pgconn.Connect(ctx, e.proxy.DSN("disable"))
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close(context.Background())
	fetch := func(cursor, query string) *pgconn.Result {
		t.Helper()
		sd, err := pc.Prepare(ctx, "fetch_"+cursor, `FETCH ALL IN `+cursor, nil)
		if err != nil {
			t.Fatal(err)
		}
		if len(sd.Fields) != 0 {
			t.Fatalf("FETCH described with fields %v", sd.Fields)
		}
		if _, err := pc.Exec(ctx, "BEGIN; DECLARE "+cursor+" CURSOR FOR "+query).ReadAll(); err != nil {
			t.Fatal(err)
		}
		defer func() { _, _ = pc.Exec(ctx, "ROLLBACK").ReadAll() }()
		return pc.ExecStatement(ctx, sd, nil, nil, nil).Read()
	}
	res := fetch("plain_cur", `SELECT id, label FROM items ORDER BY id`)
	if res.Err != nil || len(res.Rows) != 5 || string(res.Rows[4][1]) != "item 5" {
		t.Fatalf("plaintext FETCH: %v, %d rows", res.Err, len(res.Rows))
	}
	res = fetch("enc_cur", `SELECT id, email FROM users ORDER BY id`)
	if res.Err != nil || len(res.Rows) != 3 {
		t.Fatalf("encrypted FETCH: %v, %d rows", res.Err, len(res.Rows))
	}
	for i, r := range res.Rows {
		if want := fmt.Sprintf("user%d@example.com", i+1); string(r[1]) != want {
			t.Fatalf("row %d: %q, want %q", i, r[1], want)
		}
	}
	if res.FieldDescriptions[1].DataTypeOID != 25 {
		t.Fatalf("email described as type %d, want text (25)", res.FieldDescriptions[1].DataTypeOID)
	}

	// Without a Describe of the portal from the client the proxy describes
	// it itself (and swallows the answer): plaintext rows as directly,
	// encrypted ones decrypted. The client sees the server's own messages.
	for _, q := range []string{`SELECT id, email FROM users ORDER BY id`, `SELECT id, label FROM items ORDER BY id`} {
		if _, err := pc.Prepare(ctx, "raw_fetch", "/* a /* nested */ comment */\n  fetch ALL IN raw_cur", nil); err != nil {
			t.Fatal(err)
		}
		if _, err := pc.Exec(ctx, "BEGIN; DECLARE raw_cur CURSOR FOR "+q).ReadAll(); err != nil {
			t.Fatal(err)
		}
		got := exchange(t, pc, &pgproto3.Bind{PreparedStatement: "raw_fetch"},
			&pgproto3.Execute{MaxRows: 2}, &pgproto3.Execute{}, &pgproto3.Sync{})
		want := []string{"*pgproto3.BindComplete", "D 1,item 1", "D 2,item 2", "*pgproto3.PortalSuspended",
			"D 3,item 3", "D 4,item 4", "D 5,item 5", "C FETCH 3", "Z T"}
		if strings.Contains(q, "users") {
			want = []string{"*pgproto3.BindComplete", "D 1,user1@example.com", "D 2,user2@example.com", "*pgproto3.PortalSuspended",
				"D 3,user3@example.com", "C FETCH 1", "Z T"}
		}
		if strings.Join(got, "|") != strings.Join(want, "|") {
			t.Fatalf("FETCH without a portal Describe: %q, want %q", got, want)
		}
		if _, err := pc.Exec(ctx, "ROLLBACK; DEALLOCATE raw_fetch").ReadAll(); err != nil {
			t.Fatal(err)
		}
	}
}

// TestPGListenerBackendPID: the process ID a client gets in BackendKeyData
// is its server process's, through a plain and an encrypting listener, so
// pg_terminate_backend of it ends that session (FATAL 57P01 to the
// client, connection closed), as directly; cancellation still works.
func TestPGListenerBackendPID(t *testing.T) {
	e := startEncProxy(t, usersDDL, usersSpecs())
	plain := startPGProxy(t, e.pg, proxyOpts{})
	for name, dsn := range map[string]string{"plain": plain.DSN("disable"), "encrypting": e.proxy.DSN("disable")} {
		t.Run(name, func(t *testing.T) {
			ctx := testCtx(t)
			victim, err := pgx.Connect(ctx, dsn)
			if err != nil {
				t.Fatal(err)
			}
			defer victim.Close(context.Background())
			var pid uint32
			if err := victim.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&pid); err != nil {
				t.Fatal(err)
			}
			if pid != victim.PgConn().PID() {
				t.Fatalf("pg_backend_pid() %d, BackendKeyData %d", pid, victim.PgConn().PID())
			}
			other := testenv.ConnectPG(t, dsn)
			var ok bool
			if err := other.QueryRow(ctx, "SELECT pg_terminate_backend($1)", victim.PgConn().PID()).Scan(&ok); err != nil || !ok {
				t.Fatalf("pg_terminate_backend: %v %v", ok, err)
			}
			err = victim.QueryRow(ctx, "SELECT 1").Scan(new(int))
			var pe *pgconn.PgError
			if err == nil {
				t.Fatal("query on a terminated session succeeded")
			}
			if errors.As(err, &pe) && (pe.Severity != "FATAL" || pe.Code != "57P01") {
				t.Fatalf("got %v, want FATAL 57P01 or a closed connection", err)
			}
			if !victim.IsClosed() {
				t.Fatal("connection not closed after its backend was terminated")
			}
			// Cancellation with the issued key still reaches the server.
			cctx, cancel := context.WithCancel(ctx)
			done := make(chan error, 1)
			go func() { _, err := other.Exec(cctx, "SELECT pg_sleep(30)"); done <- err }()
			waitForQuery(t, e.direct, "pg_sleep(30)")
			cancel()
			if err := <-done; err == nil {
				t.Fatal("pg_sleep(30) was not cancelled")
			}
		})
	}
}
