package integration

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/go-mysql-org/go-mysql/client"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/dbproxy/dbproxy/internal/testenv"
)

// waitParked waits until n sockets are parked on the proxy's poller: the
// sessions' relays hold no goroutine.
func waitParked(t *testing.T, p *pgProxy, n int) {
	t.Helper()
	waitFor(t, fmt.Sprintf("%d parked sockets", n), func() bool { return p.Srv.Parked() == n })
}

// TestPGParkedSession: an idle plaintext session parks both of its sockets;
// a NOTIFY from another connection wakes it and reaches the client, and
// queries after an idle spell work, with and without a client TLS leg
// (which parks too).
func TestPGParkedSession(t *testing.T) {
	pg := testenv.StartPostgres(t, testenv.PGOptions{TLS: true})
	p := startPGProxy(t, pg, proxyOpts{ClientTLS: true, RelayLoops: -1})
	admin := testenv.ConnectPG(t, pg.Superuser().DSN())
	ctx := testCtx(t)

	c := testenv.ConnectPG(t, p.DSN("disable"))
	if _, err := c.Exec(ctx, `listen parked_ch`); err != nil {
		t.Fatal(err)
	}
	waitParked(t, p, 2)

	for i := range 3 {
		if _, err := admin.Exec(ctx, `select pg_notify('parked_ch', $1)`, fmt.Sprint("hello ", i)); err != nil {
			t.Fatal(err)
		}
		n, err := c.WaitForNotification(ctx)
		if err != nil {
			t.Fatalf("waiting for a notification on a parked session: %v", err)
		}
		if n.Channel != "parked_ch" || n.Payload != fmt.Sprint("hello ", i) {
			t.Fatalf("notification %d: %+v", i, n)
		}
		waitParked(t, p, 2)
	}

	// A session that stays idle a while, then queries.
	time.Sleep(2 * time.Second)
	var v int
	if err := c.QueryRow(ctx, `select 42`).Scan(&v); err != nil || v != 42 {
		t.Fatalf("query after an idle spell: %d, %v", v, err)
	}
	// Extended protocol, a transaction spanning parks.
	tx, err := c.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	waitParked(t, p, 2) // idle in a transaction parks too
	if err := tx.QueryRow(ctx, `select $1::int + 1`, 1).Scan(&v); err != nil || v != 2 {
		t.Fatalf("query in a transaction after parking: %d, %v", v, err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}

	// A TLS client leg parks too, and so does its upstream leg.
	tc := testenv.ConnectPG(t, p.DSN("verify-full"))
	waitParked(t, p, 4)
	time.Sleep(500 * time.Millisecond)
	if err := tc.QueryRow(ctx, `select 7`).Scan(&v); err != nil || v != 7 {
		t.Fatalf("TLS session after parking: %d, %v", v, err)
	}
	waitParked(t, p, 4)

	// The client going away wakes the parked session, which ends.
	if err := c.Close(ctx); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the closed session to end", func() bool { return p.Srv.NumConns() == 1 })
	waitParked(t, p, 2)
	// The server ending a parked session reaches the client.
	pgTerminateParked(ctx, t, p, tc, admin)
}

// TestPGParkedShutdown: Shutdown drains parked sessions (each client gets
// 57P01) and returns; Close ends parked sessions at once.
func TestPGParkedShutdown(t *testing.T) {
	pg := testenv.StartPostgres(t)
	ctx := testCtx(t)
	for _, hard := range []bool{false, true} {
		t.Run(fmt.Sprintf("hard=%v", hard), func(t *testing.T) {
			p := startPGProxy(t, pg, proxyOpts{RelayLoops: -1})
			const n = 10
			conns := make([]*pgx.Conn, n)
			for i := range conns {
				conns[i] = testenv.ConnectPG(t, p.DSN("disable"))
				if _, err := conns[i].Exec(ctx, `select 1`); err != nil {
					t.Fatal(err)
				}
			}
			waitParked(t, p, 2*n)
			if hard {
				if err := p.Srv.Close(); err != nil {
					t.Fatal(err)
				}
			} else {
				sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
				defer cancel()
				if err := p.Srv.Shutdown(sctx); err != nil {
					t.Fatalf("Shutdown with parked sessions: %v", err)
				}
			}
			waitFor(t, "connections to end", func() bool { return p.Srv.NumConns() == 0 })
			for i, c := range conns {
				_, err := c.Exec(ctx, `select 1`)
				if err == nil {
					t.Fatalf("session %d survived", i)
				}
				var pe *pgconn.PgError
				if !hard && errors.As(err, &pe) && pe.Code != "57P01" {
					t.Fatalf("session %d: %v, want 57P01", i, err)
				}
			}
			if p.Srv.Parked() != 0 {
				t.Fatalf("%d sockets still parked", p.Srv.Parked())
			}
		})
	}
}

// TestMySQLParkedSession: idle MySQL sessions park both sockets; queries
// after an idle spell, inside a transaction spanning parks, work; a
// graceful shutdown ends parked sessions (ERR 1053 to an idle one) and
// returns.
func TestMySQLParkedSession(t *testing.T) {
	db := testenv.StartMariaDB(t)
	p := startMyProxy(t, db, myProxyOpts{RelayLoops: -1})
	ctx := testCtx(t)
	parked := func(n int) {
		t.Helper()
		waitFor(t, fmt.Sprintf("%d parked sockets", n), func() bool { return p.Srv.Parked() == n })
	}
	c := openConn(t, p.config(t))
	var v int
	if err := c.QueryRowContext(ctx, `SELECT 1`).Scan(&v); err != nil {
		t.Fatal(err)
	}
	parked(2)
	time.Sleep(time.Second)
	if err := c.QueryRowContext(ctx, `SELECT 42`).Scan(&v); err != nil || v != 42 {
		t.Fatalf("query after an idle spell: %d, %v", v, err)
	}
	if _, err := c.ExecContext(ctx, `BEGIN`); err != nil {
		t.Fatal(err)
	}
	parked(2) // idle inside a transaction parks too
	if err := c.QueryRowContext(ctx, `SELECT ? + 1`, 1).Scan(&v); err != nil || v != 2 {
		t.Fatalf("prepared query in a transaction after parking: %d, %v", v, err)
	}
	if _, err := c.ExecContext(ctx, `COMMIT`); err != nil {
		t.Fatal(err)
	}

	idle := rawConnect(t, p.Addr, db.User, db.Password, db.Database, 0)
	parked(4)
	sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := p.Srv.Shutdown(sctx); err != nil {
		t.Fatalf("Shutdown with parked sessions: %v", err)
	}
	idle.c.ResetSequence() // an unsolicited packet has sequence id 0
	pkt, err := idle.tryRead()
	if err != nil || len(pkt) == 0 || pkt[0] != 0xff || errCode(pkt) != 1053 {
		t.Fatalf("parked session during a drain got %x %v, want ERR 1053", pkt, err)
	}
	if p.Srv.NumConns() != 0 || p.Srv.Parked() != 0 {
		t.Fatalf("after Shutdown: %d connections, %d parked", p.Srv.NumConns(), p.Srv.Parked())
	}
}

// TestMySQLAbruptCloseEndsSession: a client that closes its socket without
// COM_QUIT right after a command that has no response (COM_STMT_CLOSE) —
// or after anything else — leaves no session behind: the proxy ends its
// server connection too. (The command and the FIN reach the proxy in one
// burst; a read loop that parked after the short read never saw the FIN.)
func TestMySQLAbruptCloseEndsSession(t *testing.T) {
	db := testenv.StartMariaDB(t)
	p := startMyProxy(t, db, myProxyOpts{})
	admin := adminDB(t, db)
	for _, c := range []struct {
		name string
		run  func(*client.Conn) error
	}{
		{"nothing", func(*client.Conn) error { return nil }},
		{"query", func(c *client.Conn) error { _, err := c.Execute("SELECT 1"); return err }},
		{"prepare", func(c *client.Conn) error { _, err := c.Prepare("SELECT ?"); return err }},
		{"prepare execute", func(c *client.Conn) error {
			st, err := c.Prepare("SELECT ?")
			if err != nil {
				return err
			}
			_, err = st.Execute(1)
			return err
		}},
		{"prepare close", func(c *client.Conn) error {
			st, err := c.Prepare("SELECT ?")
			if err != nil {
				return err
			}
			return st.Close() // COM_STMT_CLOSE: no response
		}},
		{"execute with args", func(c *client.Conn) error { _, err := c.Execute("SELECT ?", 1); return err }},
	} {
		t.Run(c.name, func(t *testing.T) {
			before := threadsConnected(t, admin)
			for i := range 10 {
				conn, err := client.Connect(p.Addr, db.User, db.Password, db.Database)
				if err != nil {
					t.Fatal(err)
				}
				if err := c.run(conn); err != nil {
					t.Fatalf("round %d: %v", i, err)
				}
				_ = conn.Conn.Conn.Close() // the socket, no COM_QUIT
			}
			waitFor(t, "the proxy's server connections to end", func() bool {
				return threadsConnected(t, admin) <= before
			})
		})
	}
}

// TestPGAbruptCloseEndsSession is the PostgreSQL counterpart: a Parse and
// a Close sent without Sync (nothing is answered yet) and the socket
// closed at once.
func TestPGAbruptCloseEndsSession(t *testing.T) {
	pg := testenv.StartPostgres(t)
	p := startPGProxy(t, pg, proxyOpts{})
	admin := testenv.ConnectPG(t, pg.Superuser().DSN())
	for i := range 10 {
		c := testenv.ConnectPG(t, p.DSN("disable")+"&application_name=abrupt-close")
		fe := c.PgConn().Frontend()
		fe.Send(&pgproto3.Parse{Name: "s", Query: "select 1"})
		fe.Send(&pgproto3.Close{ObjectType: 'S', Name: "s"})
		if err := fe.Flush(); err != nil {
			t.Fatalf("round %d: %v", i, err)
		}
		_ = c.PgConn().Conn().Close()
	}
	waitFor(t, "the upstream sessions to end", func() bool {
		var n int
		err := admin.QueryRow(testCtx(t), `select count(*) from pg_stat_activity where application_name = 'abrupt-close'`).Scan(&n)
		return err == nil && n == 0
	})
}
