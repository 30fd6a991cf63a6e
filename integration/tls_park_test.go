package integration

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/dbproxy/dbproxy/internal/testenv"
	"github.com/dbproxy/dbproxy/proxy"
)

// TestPGParkedTLSSession: a session with a TLS client leg parks both of its
// sockets like a plain one, and after each idle spell still relays
// correctly: a query, a large result, a pipelined batch (several queries in
// one write, so several TLS records in one segment), a notification from
// the server while the client leg is parked; a client that ends with a
// bare close_notify (no Terminate) ends its session.
func TestPGParkedTLSSession(t *testing.T) {
	pg := testenv.StartPostgres(t)
	p := startPGProxy(t, pg, proxyOpts{ClientTLS: true})
	admin := testenv.ConnectPG(t, pg.Superuser().DSN())
	ctx := testCtx(t)
	for _, neg := range []string{"postgres", "direct"} {
		t.Run("sslnegotiation="+neg, func(t *testing.T) {
			c := testenv.ConnectPG(t, p.DSN("verify-full")+"&sslnegotiation="+neg)
			pgParkedRounds(ctx, t, p, c, admin)
			waitParked(t, p, 2)
			if err := c.PgConn().Conn().Close(); err != nil { // close_notify, no Terminate
				t.Fatal(err)
			}
			waitFor(t, "the closed session to end", func() bool { return p.Srv.NumConns() == 0 })
			if p.Srv.Parked() != 0 {
				t.Fatalf("%d sockets still parked", p.Srv.Parked())
			}
		})
	}
}

// pgRelayChecks runs round's checks on c, a session that has just idled.
func pgRelayChecks(ctx context.Context, t *testing.T, c *pgx.Conn, admin *pgx.Conn, round int) {
	t.Helper()
	var v int
	if err := c.QueryRow(ctx, `select $1::int * 2`, round).Scan(&v); err != nil || v != 2*round {
		t.Fatalf("round %d: query after parking: %d, %v", round, v, err)
	}
	var s string
	if err := c.QueryRow(ctx, `select repeat('x', 3000000)`).Scan(&s); err != nil || len(s) != 3000000 {
		t.Fatalf("round %d: large result: %d bytes, %v", round, len(s), err)
	}
	b := &pgx.Batch{}
	for i := range 50 {
		b.Queue(`select $1::int`, i)
	}
	b.Queue(`select repeat('y', 100000)`)
	b.Queue(`select length($1::text)`, strings.Repeat("z", 70000)) // several records in one write
	br := c.SendBatch(ctx, b)
	for i := range 50 {
		if err := br.QueryRow().Scan(&v); err != nil || v != i {
			t.Fatalf("round %d: batch query %d: %d, %v", round, i, v, err)
		}
	}
	if err := br.QueryRow().Scan(&s); err != nil || s != strings.Repeat("y", 100000) {
		t.Fatalf("round %d: batch's large result: %d bytes, %v", round, len(s), err)
	}
	if err := br.QueryRow().Scan(&v); err != nil || v != 70000 {
		t.Fatalf("round %d: batch's large query: %d, %v", round, v, err)
	}
	if err := br.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.Exec(ctx, `select pg_notify('parked_tls', $1)`, fmt.Sprint("n", round)); err != nil {
		t.Fatal(err)
	}
	n, err := c.WaitForNotification(ctx)
	if err != nil || n.Payload != fmt.Sprint("n", round) {
		t.Fatalf("round %d: notification: %+v, %v", round, n, err)
	}
}

// TestPGParkedUpstreamTLS: a session whose leg to the database is TLS
// (verify-full) parks both of its sockets, the upstream one included, and
// relays correctly after each idle spell (queries, large results, a
// pipelined batch, a notification the server sends while that leg is
// parked); the server ending a parked session reaches the client.
func TestPGParkedUpstreamTLS(t *testing.T) {
	pg := testenv.StartPostgres(t, testenv.PGOptions{TLS: true})
	p := startPGProxy(t, pg, proxyOpts{Upstream: proxy.SSLVerifyFull})
	admin := testenv.ConnectPG(t, pg.Superuser().DSN())
	ctx := testCtx(t)
	c := testenv.ConnectPG(t, p.DSN("disable"))
	var ssl bool // the proxy's backend, as the server sees it
	if err := c.QueryRow(ctx, `select ssl from pg_stat_ssl where pid = pg_backend_pid()`).Scan(&ssl); err != nil || !ssl {
		t.Fatalf("the proxy's leg to the server is not TLS: %v, %v", ssl, err)
	}
	pgParkedRounds(ctx, t, p, c, admin)
	pgTerminateParked(ctx, t, p, c, admin)
	if p.Srv.Parked() != 0 {
		t.Fatalf("%d sockets still parked", p.Srv.Parked())
	}
}

// pgParkedRounds listens on c, a session through p whose two sockets park
// when idle, then runs three rounds: each waits for both to park, idles
// past the park delay and runs pgRelayChecks.
func pgParkedRounds(ctx context.Context, t *testing.T, p *pgProxy, c, admin *pgx.Conn) {
	t.Helper()
	if _, err := c.Exec(ctx, `listen parked_tls`); err != nil {
		t.Fatal(err)
	}
	for round := range 3 {
		waitParked(t, p, 2)
		time.Sleep(300 * time.Millisecond) // idle past the park delay
		pgRelayChecks(ctx, t, c, admin, round)
	}
}

// pgTerminateParked ends c's backend with pg_terminate_backend once its
// sockets are parked, the last session through p: the session must end
// and the client see it.
func pgTerminateParked(ctx context.Context, t *testing.T, p *pgProxy, c, admin *pgx.Conn) {
	t.Helper()
	var pid int
	if err := c.QueryRow(ctx, `select pg_backend_pid()`).Scan(&pid); err != nil {
		t.Fatal(err)
	}
	waitParked(t, p, 2)
	if _, err := admin.Exec(ctx, `select pg_terminate_backend($1)`, pid); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the terminated session to end", func() bool { return p.Srv.NumConns() == 0 })
	if _, err := c.Exec(ctx, `select 1`); err == nil {
		t.Fatal("session survived pg_terminate_backend")
	}
}

// TestMySQLParkedTLSSession is the MySQL counterpart: a TLS client leg
// parks, and queries, large results and a transaction spanning parks
// work after each idle spell.
func TestMySQLParkedTLSSession(t *testing.T) {
	db := testenv.StartMariaDB(t)
	if db.CAFile == "" {
		t.Skip("external server without a known CA")
	}
	p := startMyProxy(t, db, myProxyOpts{ClientTLS: true})
	ctx := testCtx(t)
	c := openConn(t, p.config(t, "tls="+registerTLS(t, p.CAFile)))
	myParkedRounds(ctx, t, p, c)
}

// myParkedRounds runs three rounds on c, a session through p whose two
// sockets park when idle: each waits for both to park, then checks a
// query, a large result and a transaction that spans a park.
func myParkedRounds(ctx context.Context, t *testing.T, p *myProxy, c *sql.Conn) {
	t.Helper()
	for round := range 3 {
		myWaitParked(t, p, 2)
		time.Sleep(300 * time.Millisecond)
		var v int
		if err := c.QueryRowContext(ctx, `SELECT ? * 2`, round).Scan(&v); err != nil || v != 2*round {
			t.Fatalf("round %d: query after parking: %d, %v", round, v, err)
		}
		var s string
		if err := c.QueryRowContext(ctx, `SELECT REPEAT('x', 3000000)`).Scan(&s); err != nil || len(s) != 3000000 {
			t.Fatalf("round %d: large result: %d bytes, %v", round, len(s), err)
		}
		if _, err := c.ExecContext(ctx, `BEGIN`); err != nil {
			t.Fatal(err)
		}
		myWaitParked(t, p, 2)
		if err := c.QueryRowContext(ctx, `SELECT ? + 1`, round).Scan(&v); err != nil || v != round+1 {
			t.Fatalf("round %d: query in a transaction after parking: %d, %v", round, v, err)
		}
		if _, err := c.ExecContext(ctx, `COMMIT`); err != nil {
			t.Fatal(err)
		}
	}
}

// myWaitParked waits until p has n sockets parked.
func myWaitParked(t *testing.T, p *myProxy, n int) {
	t.Helper()
	waitFor(t, fmt.Sprintf("%d parked sockets", n), func() bool { return p.Srv.Parked() == n })
}

// TestMySQLParkedUpstreamTLS: a MySQL session whose leg to the database is
// TLS (verify-full) parks both sockets, the upstream one included, and
// queries, large results and a transaction spanning parks work after each
// idle spell; the server killing a parked session reaches the client.
func TestMySQLParkedUpstreamTLS(t *testing.T) {
	db := testenv.StartMariaDB(t)
	if db.CAFile == "" {
		t.Skip("external server without a known CA")
	}
	p := startMyProxy(t, db, myProxyOpts{Upstream: proxy.SSLVerifyFull})
	ctx := testCtx(t)
	c := openConn(t, p.config(t))
	var cipher, name string
	if err := c.QueryRowContext(ctx, `SHOW SESSION STATUS LIKE 'Ssl_cipher'`).Scan(&name, &cipher); err != nil || cipher == "" {
		t.Fatalf("the proxy's leg to the server is not TLS: %q, %v", cipher, err)
	}
	myParkedRounds(ctx, t, p, c)
	var id int64
	if err := c.QueryRowContext(ctx, `SELECT CONNECTION_ID()`).Scan(&id); err != nil {
		t.Fatal(err)
	}
	myWaitParked(t, p, 2)
	if _, err := adminDB(t, db).ExecContext(ctx, fmt.Sprintf("KILL %d", id)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the killed session to end", func() bool { return p.Srv.NumConns() == 0 })
	if p.Srv.Parked() != 0 {
		t.Fatalf("%d sockets still parked", p.Srv.Parked())
	}
}
