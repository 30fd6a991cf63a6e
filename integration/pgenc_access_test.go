package integration

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/dbproxy/dbproxy/internal/testkeys"
	"github.com/dbproxy/dbproxy/proxy/postgres/pgcrypt"
)

// startPGAccess starts the users table behind a proxy with the test
// policy (access_helpers_test.go), and creates the four roles.
func startPGAccess(t *testing.T) (*encEnv, accessUsers) {
	t.Helper()
	pol, specs := &lazyPolicy{}, accessSpecs("public")
	e := startEncProxyKeys(t, "CREATE TABLE users (id int PRIMARY KEY, name text, ssn bytea, salary bytea, born bytea)",
		specs, testkeys.ForRules(specs), func(o *pgcrypt.Options) { o.Policy = pol })
	u := newAccessUsers(e.pg.Database)
	pol.set(t, u)
	ctx := testCtx(t)
	for _, role := range u.all() {
		if _, err := e.direct.Exec(ctx, fmt.Sprintf(`CREATE ROLE %s LOGIN PASSWORD '%s'; GRANT SELECT, INSERT, UPDATE ON users TO %[1]s`,
			pgx.Identifier{role}.Sanitize(), accessPassword)); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			_, _ = e.direct.Exec(context.Background(), fmt.Sprintf("DROP OWNED BY %[1]s; DROP ROLE %[1]s", pgx.Identifier{role}.Sanitize()))
		})
	}
	return e, u
}

// pgAs connects through e's proxy as role.
func pgAs(t *testing.T, e *encEnv, role string, mode pgx.QueryExecMode) *pgx.Conn {
	t.Helper()
	return connectMode(t, e.proxy.DSNFor(role, accessPassword, "disable"), mode)
}

// wantPGDenied fails unless err is insufficient_privilege (42501) naming
// column and rule.
func wantPGDenied(t *testing.T, what string, err error, column, rule string) {
	t.Helper()
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != "42501" {
		t.Errorf("%s: got %v, want 42501", what, err)
		return
	}
	wantMentions(t, what, pe.Message, column, rule)
}

// pgModes are the protocols each principal is tried with.
var pgModes = []struct {
	name string
	mode pgx.QueryExecMode
}{{"simple", pgx.QueryExecModeSimpleProtocol}, {"extended", pgx.QueryExecModeCacheStatement}}

// TestPGAccessPolicy: four principals on one table each see exactly what
// the policy says, in the simple and extended protocols (text and binary
// results) and COPY; the stored values stay ciphertext.
func TestPGAccessPolicy(t *testing.T) {
	e, u := startPGAccess(t)
	ctx := testCtx(t)
	born := time.Date(1980, 2, 3, 0, 0, 0, 0, time.UTC)

	app := pgAs(t, e, u.app, pgx.QueryExecModeSimpleProtocol)
	if _, err := app.Exec(ctx, `INSERT INTO users VALUES (1, 'ann', '123-45-6789', 5000, '1980-02-03')`); err != nil {
		t.Fatalf("app insert: %v", err)
	}
	for _, m := range pgModes {
		t.Run("app/"+m.name, func(t *testing.T) {
			c := pgAs(t, e, u.app, m.mode)
			var ssn string
			var salary int64
			var got time.Time
			if err := c.QueryRow(ctx, `SELECT ssn, salary, born FROM users WHERE ssn = $1`, ssnPlain).Scan(&ssn, &salary, &got); err != nil {
				t.Fatal(err)
			}
			if ssn != ssnPlain || salary != 5000 || !got.Equal(born) {
				t.Errorf("app reads %q %d %v", ssn, salary, got)
			}
		})
		t.Run("reporting/"+m.name, func(t *testing.T) { pgReporting(t, e, u, m.mode) })
		t.Run("ingest/"+m.name, func(t *testing.T) { pgIngest(t, e, u, m.mode) })
		t.Run("auditor/"+m.name, func(t *testing.T) { pgAuditor(t, e, u, m.mode) })
	}
	t.Run("binary", func(t *testing.T) { pgAccessBinary(t, e, u) })
	t.Run("copy", func(t *testing.T) { pgAccessCopy(t, e, u) })

	// What ingest stored is encrypted and reads back for app.
	var n int
	if err := app.QueryRow(ctx, `SELECT count(*) FROM users WHERE ssn = '555-00-1111'`).Scan(&n); err != nil || n != 4 {
		t.Fatalf("app counts %d rows ingest stored, %v; want 4", n, err)
	}
	e.checkAtRest(t, []string{ssnPlain, "555-00-1111"})
}

func pgReporting(t *testing.T, e *encEnv, u accessUsers, mode pgx.QueryExecMode) {
	ctx := testCtx(t)
	c := pgAs(t, e, u.reporting, mode)
	var name, ssn string
	var born *time.Time
	if err := c.QueryRow(ctx, `SELECT name, ssn, born FROM users WHERE id = $1`, 1).Scan(&name, &ssn, &born); err != nil {
		t.Fatal(err)
	}
	if name != "ann" || ssn != ssnMasked || born != nil {
		t.Errorf("reporting reads %q %q %v, want ann %q NULL", name, ssn, born, ssnMasked)
	}
	var salary int64
	err := c.QueryRow(ctx, `SELECT salary FROM users WHERE id = 1`).Scan(&salary)
	wantPGDenied(t, "reporting reads salary", err, "public.users.salary", `access.rules[1] "reporting-pay"`)
	err = c.QueryRow(ctx, `SELECT id FROM users WHERE ssn = $1`, ssnPlain).Scan(new(int))
	wantPGDenied(t, "reporting looks up ssn", err, "match of column public.users.ssn", "access.rules[0]")
	_, err = c.Exec(ctx, `INSERT INTO users (id, ssn) VALUES (90, '000-00-0000')`)
	wantPGDenied(t, "reporting stores ssn", err, "encrypt of column public.users.ssn", "access.rules[0]")
	// The session goes on.
	if err := c.QueryRow(ctx, `SELECT name FROM users WHERE id = 1`).Scan(&name); err != nil || name != "ann" {
		t.Fatalf("after the refusals: %q %v", name, err)
	}
}

func pgIngest(t *testing.T, e *encEnv, u accessUsers, mode pgx.QueryExecMode) {
	ctx := testCtx(t)
	c := pgAs(t, e, u.ingest, mode)
	id := 10
	if mode == pgx.QueryExecModeSimpleProtocol {
		id = 20
	}
	if _, err := c.Exec(ctx, `INSERT INTO users VALUES ($1, 'ingested', $2, $3, $4)`, id, "555-00-1111", int64(7), time.Date(2001, 1, 2, 0, 0, 0, 0, time.UTC)); err != nil {
		t.Fatalf("ingest insert: %v", err)
	}
	if _, err := c.Exec(ctx, `UPDATE users SET salary = $1 WHERE id = $2`, int64(8), id); err != nil {
		t.Fatalf("ingest update by id: %v", err)
	}
	var s string
	err := c.QueryRow(ctx, `SELECT ssn FROM users WHERE id = $1`, id).Scan(&s)
	wantPGDenied(t, "ingest reads ssn", err, "public.users.ssn", "access.rules[2] (action write_only")
	err = c.QueryRow(ctx, `SELECT ssn FROM users WHERE id = $1`, -1).Scan(&s)
	wantPGDenied(t, "ingest reads no ssn", err, "public.users.ssn", "access.rules[2]")
	err = c.QueryRow(ctx, `SELECT id FROM users WHERE ssn = $1`, "555-00-1111").Scan(new(int))
	wantPGDenied(t, "ingest looks up ssn", err, "match of column public.users.ssn", "access.rules[2]")
	if err := c.QueryRow(ctx, `SELECT name FROM users WHERE id = $1`, id).Scan(&s); err != nil || s != "ingested" {
		t.Fatalf("ingest reads a plaintext column: %q %v", s, err)
	}
}

func pgAuditor(t *testing.T, e *encEnv, u accessUsers, mode pgx.QueryExecMode) {
	ctx := testCtx(t)
	c := pgAs(t, e, u.auditor, mode)
	var ssn []byte
	var salary *int64
	// lookup: true lets the auditor find the row by ssn.
	rows, err := c.Query(ctx, `SELECT ssn, salary FROM users WHERE ssn = $1`, ssnPlain)
	if err != nil {
		t.Fatal(err)
	}
	if !rows.Next() {
		t.Fatalf("no row: %v", rows.Err())
	}
	if oid := rows.FieldDescriptions()[0].DataTypeOID; oid != 17 {
		t.Errorf("ssn presented as type %d, want bytea (17)", oid)
	}
	if err := rows.Scan(&ssn, &salary); err != nil {
		t.Fatal(err)
	}
	rows.Close()
	stored := e.rawColumn(t, "users", "ssn")
	if !bytes.Equal(ssn, pgStoredSSN(t, e)) || salary != nil {
		t.Errorf("auditor reads ssn %x salary %v; want the stored ciphertext and NULL (stored: %d values)", ssn, salary, len(stored))
	}
}

// pgStoredSSN is row 1's ssn as stored.
func pgStoredSSN(t *testing.T, e *encEnv) []byte {
	t.Helper()
	var ct []byte
	if err := e.direct.QueryRow(testCtx(t), `SELECT ssn FROM users WHERE id = 1`).Scan(&ct); err != nil {
		t.Fatal(err)
	}
	return ct
}

// pgAccessBinary reads binary-format results: the masked text and the
// NULL of a masked date.
func pgAccessBinary(t *testing.T, e *encEnv, u accessUsers) {
	ctx := testCtx(t)
	c := pgAs(t, e, u.reporting, pgx.QueryExecModeExec)
	res := c.PgConn().ExecParams(ctx, `SELECT ssn, born FROM users WHERE id = 1`, nil, nil, nil, []int16{1}).Read()
	if res.Err != nil || len(res.Rows) != 1 {
		t.Fatalf("binary read: %v, %d rows", res.Err, len(res.Rows))
	}
	if f := res.FieldDescriptions; f[0].DataTypeOID != 25 || f[0].Format != 1 || f[1].DataTypeOID != 1082 {
		t.Errorf("binary fields %+v, want text and date", f)
	}
	if row := res.Rows[0]; string(row[0]) != ssnMasked || row[1] != nil {
		t.Errorf("binary row %q %v", row[0], row[1])
	}
	a := pgAs(t, e, u.auditor, pgx.QueryExecModeExec)
	res = a.PgConn().ExecParams(ctx, `SELECT ssn FROM users WHERE id = 1`, nil, nil, nil, []int16{1}).Read()
	if res.Err != nil || len(res.Rows) != 1 || !bytes.Equal(res.Rows[0][0], pgStoredSSN(t, e)) {
		t.Fatalf("auditor binary read: %v %x", res.Err, res.Rows)
	}
}

// pgAccessCopy: COPY TO shows what SELECT shows and refuses a denied
// column; ingest may COPY FROM but not COPY TO.
func pgAccessCopy(t *testing.T, e *encEnv, u accessUsers) {
	ctx := testCtx(t)
	rep := pgAs(t, e, u.reporting, pgx.QueryExecModeSimpleProtocol)
	for _, c := range []struct{ sql, want string }{
		{`COPY (SELECT id, ssn, born FROM users WHERE id = 1) TO STDOUT`, "1\t" + ssnMasked + "\t\\N\n"},
		{`COPY (SELECT id, ssn, born FROM users WHERE id = 1) TO STDOUT (FORMAT csv)`, "1," + ssnMasked + ",\n"},
	} {
		var buf bytes.Buffer
		if _, err := rep.PgConn().CopyTo(ctx, &buf, c.sql); err != nil || buf.String() != c.want {
			t.Errorf("%s: %q %v, want %q", c.sql, buf.String(), err, c.want)
		}
	}
	var buf bytes.Buffer
	_, err := rep.PgConn().CopyTo(ctx, &buf, `COPY users (id, salary) TO STDOUT`)
	wantPGDenied(t, "reporting COPY TO salary", err, "public.users.salary", "reporting-pay")
	if buf.Len() != 0 {
		t.Errorf("refused COPY TO sent %q", buf.String())
	}
	buf.Reset()
	_, err = rep.PgConn().CopyTo(ctx, &buf, `COPY users (id, born) TO STDOUT (FORMAT binary)`)
	if err != nil || !bytes.HasPrefix(buf.Bytes(), []byte("PGCOPY\n")) {
		t.Errorf("reporting binary COPY TO: %v", err)
	}

	ing := pgAs(t, e, u.ingest, pgx.QueryExecModeSimpleProtocol)
	data := "30\tcopied\t555-00-1111\t9\t2002-03-04\n31\tcopied\t555-00-1111\t9\t\\N\n"
	if _, err := ing.PgConn().CopyFrom(ctx, strings.NewReader(data), `COPY users (id, name, ssn, salary, born) FROM STDIN`); err != nil {
		t.Fatalf("ingest COPY FROM: %v", err)
	}
	buf.Reset()
	_, err = ing.PgConn().CopyTo(ctx, &buf, `COPY users TO STDOUT`)
	wantPGDenied(t, "ingest COPY TO", err, "public.users.ssn", "access.rules[2]")
	// Refused before the COPY starts: a principal that may not write ssn
	// may not COPY into it (its NULLs would be written with no key).
	_, err = rep.PgConn().CopyFrom(ctx, strings.NewReader("40\t000-00-0000\n"), `COPY users (id, ssn) FROM STDIN`)
	wantPGDenied(t, "reporting COPY FROM", err, "public.users.ssn", "access.rules[0]")
}
