package integration

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	driver "github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/dbproxy/dbproxy/internal/testenv"
	"github.com/dbproxy/dbproxy/proxy"
)

// pgConnectErr connects with pgx and returns the error (closing a
// connection that unexpectedly succeeds).
func pgConnectErr(t *testing.T, cfg *pgx.ConnConfig) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := pgx.ConnectConfig(ctx, cfg)
	if err == nil {
		_ = c.Close(context.Background())
	}
	return err
}

func pgConfig(t *testing.T, dsn string) *pgx.ConnConfig {
	t.Helper()
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// fromSource makes cfg connect from the loopback address ip (Linux routes
// all of 127.0.0.0/8 to lo): another client source for the proxy.
func fromSource(cfg *pgx.ConnConfig, ip string) *pgx.ConnConfig {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: 10 * time.Second}
	cfg.DialFunc = d.DialContext
	return cfg
}

func wantPgError(t *testing.T, what string, err error, code, text string) {
	t.Helper()
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != code || !strings.Contains(pe.Message, text) || pe.Severity != "FATAL" {
		t.Fatalf("%s: %v, want FATAL %s naming %q", what, err, code, text)
	}
}

// myConnectErr opens one go-sql-driver connection (no database/sql retry)
// and returns the error.
func myConnectErr(t *testing.T, cfg *driver.Config) error {
	t.Helper()
	conn, err := driver.NewConnector(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := conn.Connect(ctx)
	if err == nil {
		_ = c.Close()
	}
	return err
}

func wantMyError(t *testing.T, what string, err error, code uint16, state, text string) {
	t.Helper()
	var me *driver.MySQLError
	if !errors.As(err, &me) || me.Number != code || string(me.SQLState[:]) != state || !strings.Contains(me.Message, text) {
		t.Fatalf("%s: %v, want ERROR %d (%s) naming %q", what, err, code, state, text)
	}
}

// TestPGLimitConnections: past limits.max_connections a pgx client gets
// FATAL 53300 naming the setting; per source the same with
// max_connections_per_source, and another address still gets in.
func TestPGLimitConnections(t *testing.T) {
	pg := testenv.StartPostgres(t)
	t.Run("max_connections", func(t *testing.T) {
		p := startPGProxy(t, pg, proxyOpts{Limits: proxy.Limits{MaxConnections: 2}})
		c1 := testenv.ConnectPG(t, p.DSN("disable"))
		_ = testenv.ConnectPG(t, p.DSN("disable"))
		err := pgConnectErr(t, pgConfig(t, p.DSN("disable")))
		wantPgError(t, "third connection", err, "53300", "limits.max_connections = 2")
		if !strings.Contains(p.Logs.String(), "setting=limits.max_connections") {
			t.Errorf("refusal not logged")
		}
		// A closed session frees its place.
		_ = c1.Close(context.Background())
		waitFor(t, "the closed session to end", func() bool { return p.Srv.NumConns() == 1 })
		c3 := testenv.ConnectPG(t, p.DSN("disable"))
		if _, err := c3.Exec(testCtx(t), "select 1"); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("max_connections_per_source", func(t *testing.T) {
		p := startPGProxy(t, pg, proxyOpts{Limits: proxy.Limits{MaxConnectionsPerSource: 2}})
		_ = testenv.ConnectPG(t, p.DSN("disable"))
		_ = testenv.ConnectPG(t, p.DSN("disable"))
		err := pgConnectErr(t, pgConfig(t, p.DSN("disable")))
		wantPgError(t, "third connection from 127.0.0.1", err, "53300", "limits.max_connections_per_source = 2")
		if err := pgConnectErr(t, fromSource(pgConfig(t, p.DSN("disable")), "127.0.0.2")); err != nil {
			t.Fatalf("a connection from another address: %v", err)
		}
	})
}

// TestMySQLLimitConnections: the same for MySQL: ERROR 1040 (08004)
// instead of the greeting.
func TestMySQLLimitConnections(t *testing.T) {
	db := testenv.StartMariaDB(t)
	t.Run("max_connections", func(t *testing.T) {
		p := startMyProxy(t, db, myProxyOpts{Limits: proxy.Limits{MaxConnections: 2}})
		conn, err := driver.NewConnector(p.config(t))
		if err != nil {
			t.Fatal(err)
		}
		c1, err := conn.Connect(testCtx(t)) // not pooled: Close closes it
		if err != nil {
			t.Fatal(err)
		}
		_ = openConn(t, p.config(t))
		err = myConnectErr(t, p.config(t))
		wantMyError(t, "third connection", err, 1040, "08004", "limits.max_connections = 2")
		_ = c1.Close()
		waitFor(t, "the closed session to end", func() bool { return p.Srv.NumConns() == 1 })
		if err := myConnectErr(t, p.config(t)); err != nil {
			t.Fatalf("after a close: %v", err)
		}
	})
	t.Run("max_connections_per_source", func(t *testing.T) {
		p := startMyProxy(t, db, myProxyOpts{Limits: proxy.Limits{MaxConnectionsPerSource: 1}})
		_ = openConn(t, p.config(t))
		err := myConnectErr(t, p.config(t))
		wantMyError(t, "second connection from 127.0.0.1", err, 1040, "08004", "limits.max_connections_per_source = 1")
	})
}

// TestPGHandshakeTimeoutFATAL: a client that sends its startup message and
// never answers the password request, and a client whose server never
// answers, both get FATAL 57014 naming limits.handshake_timeout when it
// expires — not a closed connection.
func TestPGHandshakeTimeoutFATAL(t *testing.T) {
	pg := testenv.StartPostgres(t, testenv.PGOptions{Auth: "scram-sha-256"})
	t.Run("client stalls", func(t *testing.T) {
		p := startPGProxy(t, pg, proxyOpts{HandshakeTimeout: time.Second})
		nc := dialRaw(t, p.Addr, 30*time.Second)
		fe := pgproto3.NewFrontend(nc, nc)
		fe.Send(&pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersionNumber,
			Parameters: map[string]string{"user": pg.User, "database": pg.Database}})
		if err := fe.Flush(); err != nil {
			t.Fatal(err)
		}
		msg, err := fe.Receive()
		if err != nil {
			t.Fatal(err)
		}
		switch msg.(type) {
		case *pgproto3.AuthenticationSASL, *pgproto3.AuthenticationMD5Password, *pgproto3.AuthenticationCleartextPassword:
		default:
			t.Fatalf("first answer %T, want a password request (the test role has a password)", msg)
		}
		// Never answer it.
		msg, err = fe.Receive()
		if err != nil {
			t.Fatalf("after the handshake timeout: %v, want an ErrorResponse", err)
		}
		er, ok := msg.(*pgproto3.ErrorResponse)
		if !ok || er.Severity != "FATAL" || er.Code != "57014" || !strings.Contains(er.Message, "limits.handshake_timeout (1s)") {
			t.Fatalf("after the handshake timeout: %#v, want FATAL 57014 naming limits.handshake_timeout", msg)
		}
	})
	t.Run("server stalls", func(t *testing.T) {
		// An upstream that accepts and never says a word.
		hole, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer hole.Close()
		var held []net.Conn
		var mu sync.Mutex
		go func() {
			for {
				c, err := hole.Accept()
				if err != nil {
					return
				}
				mu.Lock()
				held = append(held, c)
				mu.Unlock()
			}
		}()
		defer func() {
			mu.Lock()
			defer mu.Unlock()
			for _, c := range held {
				_ = c.Close()
			}
		}()
		p := startPGProxy(t, pg, proxyOpts{HandshakeTimeout: time.Second, UpstreamAddr: hole.Addr().String()})
		err = pgConnectErr(t, pgConfig(t, p.DSN("disable")))
		wantPgError(t, "pgx through a stalled server", err, "57014", "limits.handshake_timeout (1s)")
	})
}

// TestPGIdleTimeout: limits.idle_timeout ends an idle session with FATAL
// 57P05 (delivered without the client asking anything) and leaves a
// session inside a transaction alone.
func TestPGIdleTimeout(t *testing.T) {
	pg := testenv.StartPostgres(t)
	const timeout = 3 * time.Second
	p := startPGProxy(t, pg, proxyOpts{Limits: proxy.Limits{IdleTimeout: timeout}})
	inTx := testenv.ConnectPG(t, p.DSN("disable"))
	tx, err := inTx.Begin(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	idle := testenv.ConnectPG(t, p.DSN("disable"))
	err = idle.PgConn().WaitForNotification(testCtx(t))
	wantPgError(t, "idle session", err, "57P05", "limits.idle_timeout")

	time.Sleep(2 * timeout) // the transaction stays open past the timeout
	var one int
	if err := tx.QueryRow(testCtx(t), "select 1").Scan(&one); err != nil {
		t.Fatalf("query in a transaction open longer than idle_timeout: %v", err)
	}
	if err := tx.Commit(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	if n := p.Srv.Counters().IdleTimeouts; n != 1 {
		t.Fatalf("IdleTimeouts = %d, want 1", n)
	}
}

// TestMySQLIdleTimeout: the same for MySQL: ERROR 4031 on an idle
// session, nothing on one inside a transaction.
func TestMySQLIdleTimeout(t *testing.T) {
	db := testenv.StartMariaDB(t)
	const timeout = 3 * time.Second
	p := startMyProxy(t, db, myProxyOpts{Limits: proxy.Limits{IdleTimeout: timeout}})
	ctx := testCtx(t)
	inTx := openConn(t, p.config(t))
	if _, err := inTx.ExecContext(ctx, `BEGIN`); err != nil {
		t.Fatal(err)
	}
	idle := rawConnect(t, p.Addr, db.User, db.Password, db.Database, 0)
	idle.c.ResetSequence() // an unsolicited packet has sequence id 0
	pkt, err := idle.tryRead()
	if err != nil || errCode(pkt) != 4031 || !strings.Contains(string(pkt), "limits.idle_timeout") {
		t.Fatalf("idle session got %q %v, want ERR 4031 naming limits.idle_timeout", pkt, err)
	}

	time.Sleep(2 * timeout)
	var one int
	if err := inTx.QueryRowContext(ctx, `SELECT 1`).Scan(&one); err != nil {
		t.Fatalf("query in a transaction open longer than idle_timeout: %v", err)
	}
	if _, err := inTx.ExecContext(ctx, `COMMIT`); err != nil {
		t.Fatal(err)
	}
}

// TestHandshakeFlood: 600 raw TCP connections that never finish a
// handshake, from one address, against max_handshakes 100: each beyond
// the hundredth closes the oldest of them, and pgx and go-sql-driver
// clients from another address connect and query throughout.
func TestHandshakeFlood(t *testing.T) {
	pg := testenv.StartPostgres(t)
	db := testenv.StartMariaDB(t)
	limits := proxy.Limits{MaxHandshakes: 100}
	pp := startPGProxy(t, pg, proxyOpts{Limits: limits})
	mp := startMyProxy(t, db, myProxyOpts{Limits: limits})
	const stalled = 600

	flood := func(addr string) (done chan error) {
		done = make(chan error, 1)
		go func() {
			d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.2")}, Timeout: 10 * time.Second}
			var conns []net.Conn
			t.Cleanup(func() {
				for _, c := range conns {
					_ = c.Close()
				}
			})
			for range stalled {
				c, err := d.Dial("tcp", addr)
				if err != nil {
					done <- err
					return
				}
				conns = append(conns, c)
			}
			done <- nil
		}()
		return done
	}
	pgDone, myDone := flood(pp.Addr), flood(mp.Addr)
	waitFor(t, "handshake slots to fill", func() bool {
		return pp.Srv.Counters().Evicted > 0 && mp.Srv.Counters().Evicted > 0
	})

	var slowest time.Duration // reported, not asserted
	legit := func() {
		t.Helper()
		start := time.Now()
		defer func() { slowest = max(slowest, time.Since(start)) }()
		ctx := testCtx(t)
		c, err := pgx.Connect(ctx, pp.DSN("disable"))
		if err != nil {
			t.Fatalf("pgx during the flood: %v", err)
		}
		var one int
		if err := c.QueryRow(ctx, "select 1").Scan(&one); err != nil {
			t.Fatalf("pgx query during the flood: %v", err)
		}
		_ = c.Close(ctx)
		conn, err := driver.NewConnector(mp.config(t))
		if err != nil {
			t.Fatal(err)
		}
		mc, err := conn.Connect(ctx)
		if err != nil {
			t.Fatalf("go-sql-driver during the flood: %v", err)
		}
		_ = mc.Close()
	}
	rounds := 0
	for pgDone != nil || myDone != nil || rounds < 3 {
		legit()
		rounds++
		select {
		case err := <-pgDone:
			if err != nil {
				t.Fatalf("flood: %v", err)
			}
			pgDone = nil
		case err := <-myDone:
			if err != nil {
				t.Fatalf("flood: %v", err)
			}
			myDone = nil
		default:
		}
	}
	waitFor(t, "every stalled connection beyond the limit to be evicted", func() bool {
		return pp.Srv.Counters().Evicted >= stalled-100 && mp.Srv.Counters().Evicted >= stalled-100
	})
	legit()
	t.Logf("%d legitimate pgx + go-sql-driver connections during the flood (slowest pair %v); evicted %d (postgres), %d (mysql)",
		rounds+1, slowest, pp.Srv.Counters().Evicted, mp.Srv.Counters().Evicted)
}
