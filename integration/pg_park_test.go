package integration

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

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
// (which never parks).
func TestPGParkedSession(t *testing.T) {
	pg := testenv.StartPostgres(t, testenv.PGOptions{TLS: true})
	p := startPGProxy(t, pg, proxyOpts{ClientTLS: true})
	admin := connect(t, pg.Superuser().DSN())
	ctx := testCtx(t)

	c := connect(t, p.DSN("disable"))
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

	// A TLS client leg keeps its goroutine; its upstream leg parks.
	tc := connect(t, p.DSN("verify-full"))
	waitParked(t, p, 3)
	time.Sleep(500 * time.Millisecond)
	if err := tc.QueryRow(ctx, `select 7`).Scan(&v); err != nil || v != 7 {
		t.Fatalf("TLS session after parking: %d, %v", v, err)
	}
	waitParked(t, p, 3)

	// The client going away wakes the parked session, which ends.
	if err := c.Close(ctx); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the closed session to end", func() bool { return p.Srv.NumConns() == 1 })
	waitParked(t, p, 1)
	// The server ending a parked session reaches the client.
	var pid int
	if err := tc.QueryRow(ctx, `select pg_backend_pid()`).Scan(&pid); err != nil {
		t.Fatal(err)
	}
	waitParked(t, p, 1)
	if _, err := admin.Exec(ctx, `select pg_terminate_backend($1)`, pid); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the terminated session to end", func() bool { return p.Srv.NumConns() == 0 })
	if _, err := tc.Exec(ctx, `select 1`); err == nil {
		t.Fatal("session survived pg_terminate_backend")
	}
}

// TestPGParkedShutdown: Shutdown drains parked sessions (each client gets
// 57P01) and returns; Close ends parked sessions at once.
func TestPGParkedShutdown(t *testing.T) {
	pg := testenv.StartPostgres(t)
	ctx := testCtx(t)
	for _, hard := range []bool{false, true} {
		t.Run(fmt.Sprintf("hard=%v", hard), func(t *testing.T) {
			p := startPGProxy(t, pg, proxyOpts{})
			const n = 10
			conns := make([]*pgx.Conn, n)
			for i := range conns {
				conns[i] = connect(t, p.DSN("disable"))
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
