package integration

import (
	"errors"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/dbproxy/dbproxy/internal/testkeys"
)

// A refused statement behaves as a statement the server failed: outside a
// transaction block the proxy answers it itself (nothing goes upstream);
// inside one the server is made to fail it, so the block is aborted and a
// later COMMIT rolls back what ran before the refusal.

// refusedStatement is refused on the failClosed listener: ssn is
// randomized, so it cannot be compared.
const refusedStatement = `SELECT id FROM users WHERE ssn = 'probe-ssn-4711'`

// TestPGRefusalAnsweredByProxy: between transactions a refused simple
// query is answered by the proxy, the server seeing nothing of it; a
// refused extended-protocol statement has a batch to fail, so the server
// gets a stand-in (a Parse that does not parse) in its place. The session
// goes on.
func TestPGRefusalAnsweredByProxy(t *testing.T) {
	e, c := startSeeded(t)
	ctx := testCtx(t)
	before := len(e.wire.String())
	_, err := c.PgConn().Exec(ctx, refusedStatement).ReadAll()
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != "0A000" {
		t.Fatalf("simple protocol: %v, want the refusal", err)
	}
	if wire := e.wire.String()[before:]; wire != "" {
		t.Errorf("the refused simple query sent %q upstream; want it answered by the proxy", wire)
	}
	before = len(e.wire.String())
	_, err = c.PgConn().ExecParams(ctx, refusedStatement, nil, nil, nil, nil).Close()
	if !errors.As(err, &pe) || pe.Code != "0A000" {
		t.Fatalf("extended protocol: %v, want the refusal", err)
	}
	if wire := e.wire.String()[before:]; !strings.Contains(wire, "dbproxy: refused") {
		t.Errorf("the refused extended-protocol statement was not replaced by a failing Parse: %q", wire)
	}
	ok(t, c, `SELECT 1`)
	e.neverUpstream(t, "probe-ssn-4711")
}

// TestPGRefusalAbortsTransaction: a refusal inside a transaction block
// aborts it, over both protocols, as a server error would: the next
// statement fails with 25P02, COMMIT rolls back, and the row inserted
// before the refusal is not in the table.
func TestPGRefusalAbortsTransaction(t *testing.T) {
	e, c := startSeeded(t)
	ctx := testCtx(t)
	for i, proto := range []string{"simple", "extended"} {
		id := 100 + i
		ok(t, c, `BEGIN`)
		ok(t, c, `INSERT INTO users (id, email, ssn, note) VALUES ($1, 'txn@example.com', 'txn-ssn', 'txn')`, id)
		var err error
		if proto == "simple" {
			_, err = c.PgConn().Exec(ctx, refusedStatement).ReadAll()
		} else {
			_, err = c.PgConn().ExecParams(ctx, refusedStatement, nil, nil, nil, nil).Close()
		}
		var pe *pgconn.PgError
		if !errors.As(err, &pe) || pe.Code != "0A000" || !strings.HasPrefix(pe.Message, "dbproxy: statement refused") {
			t.Fatalf("%s: refusal in a transaction: %v", proto, err)
		}
		if st := c.PgConn().TxStatus(); st != 'E' {
			t.Errorf("%s: transaction status after the refusal is %q, want 'E' (failed)", proto, st)
		}
		_, err = c.Exec(ctx, `SELECT 1`)
		if !errors.As(err, &pe) || pe.Code != "25P02" {
			t.Errorf("%s: statement after the refusal: %v, want 25P02", proto, err)
		}
		tag, err := c.PgConn().Exec(ctx, `COMMIT`).ReadAll()
		if err != nil || len(tag) != 1 || tag[0].CommandTag.String() != "ROLLBACK" {
			t.Errorf("%s: COMMIT of the failed block: %v %v, want ROLLBACK", proto, tag, err)
		}
		if e.directBool(t, `SELECT EXISTS (SELECT 1 FROM users WHERE id = $1)`, id) {
			t.Errorf("%s: the row inserted before the refusal was committed", proto)
		}
	}
	// Outside a block the session is fine.
	var n int
	if err := c.QueryRow(ctx, `SELECT count(*) FROM users`).Scan(&n); err != nil || n != 1 {
		t.Fatalf("after the blocks: %d rows, %v", n, err)
	}
	e.neverUpstream(t, "probe-ssn-4711")
	e.checkSeedAtRest(t)
}

// TestPGRefusalPipelined: refusals pipelined behind other queries come
// back in order (the proxy's answer never overtakes a server's).
func TestPGRefusalPipelined(t *testing.T) {
	e, c := startSeeded(t)
	// Two simple queries written at once: the server's answer to the
	// slow first one must reach the client before the proxy's answer to
	// the refused second one.
	conn := c.PgConn().Conn()
	out, _ := (&pgproto3.Query{String: `SELECT pg_sleep(0.05)::text, 'first'`}).Encode(nil)
	out, _ = (&pgproto3.Query{String: refusedStatement}).Encode(out)
	if _, err := conn.Write(out); err != nil {
		t.Fatal(err)
	}
	fe := pgproto3.NewFrontend(conn, conn)
	var got []string
	for ready := 0; ready < 2; {
		m, err := fe.Receive()
		if err != nil {
			t.Fatal(err)
		}
		switch m := m.(type) {
		case *pgproto3.DataRow:
			got = append(got, "row:"+string(m.Values[1]))
		case *pgproto3.ErrorResponse:
			got = append(got, "error:"+m.Code)
		case *pgproto3.ReadyForQuery:
			got = append(got, "ready")
			ready++
		}
	}
	if want := "row:first ready error:0A000 ready"; strings.Join(got, " ") != want {
		t.Errorf("pipelined answers %q, want %q", strings.Join(got, " "), want)
	}
	ok(t, c, `SELECT 1`)
	e.neverUpstream(t, "probe-ssn-4711")
}

// TestPGKeyUnavailableNotBlamedOnValue: when the data key of a column is
// missing, a lookup (scalar or `= ANY($1)` array) is refused as a key
// failure naming the key, not as an invalid value of the client's.
func TestPGKeyUnavailableNotBlamedOnValue(t *testing.T) {
	specs := usersSpecs()
	e := startEncProxyKeys(t, usersDDL, specs, testkeys.ForRules(specs[1:])) // no users_email key
	c := e.connectMode(t, pgx.QueryExecModeCacheStatement)
	ctx := testCtx(t)
	for _, q := range []struct {
		sql string
		arg any
	}{
		{`SELECT id FROM users WHERE email = $1`, "a@b.c"},
		{`SELECT id FROM users WHERE email = ANY($1)`, []string{"a@b.c", "d@e.f"}},
	} {
		_, err := c.Exec(ctx, q.sql, q.arg)
		var pe *pgconn.PgError
		if !errors.As(err, &pe) {
			t.Fatalf("%s: %v, want a refusal", q.sql, err)
		}
		if pe.Code == "22P02" || !strings.Contains(pe.Message, "users_email") {
			t.Errorf("%s: SQLSTATE %s %q, want a key failure naming users_email", q.sql, pe.Code, pe.Message)
		}
	}
}
