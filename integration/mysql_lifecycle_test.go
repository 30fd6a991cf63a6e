package integration

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/dbproxy/dbproxy/internal/testenv"
	"github.com/dbproxy/dbproxy/proxy"
	driver "github.com/go-sql-driver/mysql"
	"go.uber.org/goleak"
)

// TestMySQLKillQuery: the client sees the server's thread id as its
// connection id, so KILL QUERY from a second proxied connection interrupts
// the first one's query, which stays usable.
func TestMySQLKillQuery(t *testing.T) {
	db := testenv.StartMariaDB(t)
	p := startMyProxy(t, db, myProxyOpts{})
	ctx := testCtx(t)
	a := openConn(t, p.config(t))
	b := openConn(t, p.config(t))
	var id int64
	if err := a.QueryRowContext(ctx, `SELECT CONNECTION_ID()`).Scan(&id); err != nil {
		t.Fatal(err)
	}
	admin := adminDB(t, db)
	done := make(chan error, 1)
	var slept int
	go func() {
		done <- a.QueryRowContext(ctx, `SELECT SLEEP(30) /* kill-me */`).Scan(&slept)
	}()
	if got := waitForProcess(t, admin, "kill-me"); got != id {
		t.Fatalf("the server runs the query on thread %d, the client's CONNECTION_ID() was %d", got, id)
	}
	if _, err := b.ExecContext(ctx, fmt.Sprintf(`KILL QUERY %d`, id)); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		var me *driver.MySQLError
		// SLEEP returns 1 when interrupted; other servers raise 1317.
		if !(err == nil && slept == 1) && !(errors.As(err, &me) && me.Number == 1317) {
			t.Fatalf("killed query: %v (slept=%d)", err, slept)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("KILL QUERY through the proxy did not interrupt the query")
	}
	requireSelect(t, ctx, a, 7, "connection after KILL QUERY")
}

// TestMySQLUpstreamKilled: KILL CONNECTION on the server ends the proxied
// session with an error for a running query, and closes an idle one so that
// the driver's pool reconnects.
func TestMySQLUpstreamKilled(t *testing.T) {
	db := testenv.StartMariaDB(t)
	p := startMyProxy(t, db, myProxyOpts{})
	ctx := testCtx(t)
	admin := adminDB(t, db)

	t.Run("busy", func(t *testing.T) {
		a := openConn(t, p.config(t))
		done, id := myExecBackground(t, ctx, a, admin, "SELECT SLEEP(60)", "kill-conn")
		if _, err := admin.ExecContext(ctx, fmt.Sprintf(`KILL CONNECTION %d`, id)); err != nil {
			t.Fatal(err)
		}
		select {
		case err := <-done:
			if err == nil {
				t.Fatal("query on a killed connection succeeded")
			}
		case <-time.After(20 * time.Second):
			t.Fatal("client hangs after its upstream connection was killed")
		}
	})
	t.Run("idle", func(t *testing.T) {
		pool := openDB(t, p.config(t))
		pool.SetMaxOpenConns(1)
		var id int64
		if err := pool.QueryRowContext(ctx, `SELECT CONNECTION_ID()`).Scan(&id); err != nil {
			t.Fatal(err)
		}
		before := p.Srv.NumConns()
		if _, err := admin.ExecContext(ctx, fmt.Sprintf(`KILL CONNECTION %d`, id)); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "the proxy to close the killed session", func() bool { return p.Srv.NumConns() < before })
		// The driver notices the closed connection and opens a new one.
		var id2 int64
		if err := pool.QueryRowContext(ctx, `SELECT CONNECTION_ID()`).Scan(&id2); err != nil || id2 == id {
			t.Fatalf("after an idle kill: id %d (was %d), %v", id2, id, err)
		}
	})
}

// TestMySQLUpstreamConnectionLost cuts the upstream TCP connection under a
// running query: the client must get an error (2013), not hang.
func TestMySQLUpstreamConnectionLost(t *testing.T) {
	db := testenv.StartMariaDB(t)
	var ups upstreamConns
	p := startMyProxy(t, db, myProxyOpts{Dial: ups.dial})
	ctx := testCtx(t)
	admin := adminDB(t, db)
	a := openConn(t, p.config(t))
	done, _ := myExecBackground(t, ctx, a, admin, "SELECT SLEEP(60)", "cut-upstream")
	ups.cut()
	select {
	case err := <-done:
		var me *driver.MySQLError
		if !errors.As(err, &me) || me.Number != 2013 {
			t.Fatalf("query whose upstream was cut: %v, want ERR 2013", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("client hangs after the upstream connection was cut")
	}
}

// TestMySQLUpstreamUnreachable: the client gets ERR 2003 at once.
func TestMySQLUpstreamUnreachable(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	host, port, _ := net.SplitHostPort(addr)
	dead := &testenv.MariaDB{Host: host, User: "u", Password: "p", Database: "d"}
	fmt.Sscan(port, &dead.Port)
	p := startMyProxy(t, dead, myProxyOpts{})
	err = openDB(t, p.config(t)).PingContext(testCtx(t))
	var me *driver.MySQLError
	if !errors.As(err, &me) || me.Number != 2003 {
		t.Fatalf("unreachable upstream: %v, want ERR 2003", err)
	}
}

// TestMySQLMalformed sends broken packets: only the offending connection
// closes, with an ERR where the client can read one.
func TestMySQLMalformed(t *testing.T) {
	db := testenv.StartMariaDB(t)
	p := startMyProxy(t, db, myProxyOpts{})
	ctx := testCtx(t)
	other := openConn(t, p.config(t))

	cases := []struct {
		name string
		send func(t *testing.T, c *rawConn)
	}{
		{"empty-command", func(t *testing.T, c *rawConn) { c.writeRaw(t, []byte{0, 0, 0, 0}) }},
		{"unknown-command-then-more", func(t *testing.T, c *rawConn) {
			c.command(t, []byte{0xee, 1, 2, 3})
			if p := c.read(t); p[0] != 0xff || errCode(p) != 1047 {
				t.Fatalf("unknown command answered %x", p)
			}
			c.writeRaw(t, []byte{0, 0, 0, 0})
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := rawConnect(t, p.Addr, db.User, db.Password, db.Database, 0)
			tc.send(t, c)
			pkt, err := c.tryRead()
			if err != nil || len(pkt) == 0 || pkt[0] != 0xff || errCode(pkt) != 1835 {
				t.Fatalf("after a malformed packet: %x %v, want ERR 1835", pkt, err)
			}
			if _, err := c.tryRead(); !isClosed(err) {
				t.Fatalf("connection not closed: %v", err)
			}
		})
	}
	t.Run("garbage-handshake", func(t *testing.T) {
		nc := dialRaw(t, p.Addr, 20*time.Second)
		buf := make([]byte, 4096)
		if _, err := nc.Read(buf); err != nil { // the handshake
			t.Fatal(err)
		}
		if _, err := nc.Write([]byte{3, 0, 0, 1, 0xff, 0xff, 0xff}); err != nil {
			t.Fatal(err)
		}
		n, err := nc.Read(buf)
		if err != nil || n < 7 || buf[4] != 0xff || errCode(buf[4:n]) != 1043 {
			t.Fatalf("garbage handshake response answered %x %v, want ERR 1043", buf[:n], err)
		}
	})
	requireSelect(t, ctx, other, 5, "another connection after the malformed ones")
}

// TestMySQLGracefulShutdown: an idle session is closed at once (ERR 1053),
// a running query finishes, a session inside a transaction is kept until
// the transaction ends.
func TestMySQLGracefulShutdown(t *testing.T) {
	db := testenv.StartMariaDB(t)
	p := startMyProxy(t, db, myProxyOpts{})
	ctx := testCtx(t)
	idle := rawConnect(t, p.Addr, db.User, db.Password, db.Database, 0)
	busy := openConn(t, p.config(t))
	inTx := openConn(t, p.config(t))
	if _, err := inTx.ExecContext(ctx, `BEGIN`); err != nil {
		t.Fatal(err)
	}
	admin := adminDB(t, db)
	busyDone := make(chan error, 1)
	var slept int
	go func() { busyDone <- busy.QueryRowContext(ctx, `SELECT SLEEP(1) /* drain-busy */`).Scan(&slept) }()
	waitForProcess(t, admin, "drain-busy")

	shutdownDone := make(chan error, 1)
	go func() {
		sctx, cancel := context.WithTimeout(ctx, 60*time.Second)
		defer cancel()
		shutdownDone <- p.Srv.Shutdown(sctx)
	}()
	idle.c.ResetSequence() // an unsolicited packet has sequence id 0
	pkt, err := idle.tryRead()
	if err != nil || len(pkt) == 0 || pkt[0] != 0xff || errCode(pkt) != 1053 {
		t.Fatalf("idle session during a drain got %x %v, want ERR 1053", pkt, err)
	}
	if err := <-busyDone; err != nil || slept != 0 {
		t.Fatalf("query running during the drain: %v (slept=%d)", err, slept)
	}
	// The transaction can still finish; then the session ends.
	var v int
	if err := inTx.QueryRowContext(ctx, `SELECT 1`).Scan(&v); err != nil {
		t.Fatalf("query inside an open transaction during the drain: %v", err)
	}
	if _, err := inTx.ExecContext(ctx, `COMMIT`); err != nil {
		t.Fatal(err)
	}
	if err := <-shutdownDone; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if err := <-p.serveErr; !errors.Is(err, proxy.ErrServerClosed) {
		t.Fatalf("Serve: %v", err)
	}
	p.serveErr <- proxy.ErrServerClosed // for the cleanup
}

// TestMySQLNoLeaks runs a mixed workload through a proxy and requires that
// no goroutine survives it and that file descriptors return to where they
// were.
func TestMySQLNoLeaks(t *testing.T) {
	db := testenv.StartMariaDB(t)
	admin := adminDB(t, db)
	if err := admin.PingContext(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	ignore := goleak.IgnoreCurrent()
	fdsBefore := countFDs(t)

	p := startMyProxy(t, db, myProxyOpts{ClientTLS: true, Upstream: proxy.SSLVerifyFull})
	tlsName := registerTLS(t, p.CAFile)
	ctx := testCtx(t)
	for i := range 120 {
		var cfg *driver.Config
		switch i % 4 {
		case 0:
			cfg = p.config(t)
		case 1:
			cfg = p.config(t, "tls="+tlsName)
		case 2:
			cfg = myConfigAt(t, p.Addr, db.User, "wrong", db.Database)
		case 3:
			cfg = p.config(t, "tls="+tlsName, "interpolateParams=true")
		}
		connector, err := driver.NewConnector(cfg)
		if err != nil {
			t.Fatal(err)
		}
		pool := sql.OpenDB(connector)
		err = pool.PingContext(ctx)
		if i%4 == 2 {
			pool.Close()
			if err == nil {
				t.Fatal("wrong password accepted")
			}
			continue
		}
		if err != nil {
			t.Fatalf("cycle %d: %v", i, err)
		}
		var v int
		if err := pool.QueryRowContext(ctx, `SELECT ?`, i).Scan(&v); err != nil || v != i {
			t.Fatalf("cycle %d: %v %v", i, v, err)
		}
		if i%10 == 1 {
			qctx, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
			_, _ = pool.ExecContext(qctx, `SELECT SLEEP(10)`)
			cancel()
		}
		pool.Close()
	}
	waitFor(t, "proxy connections to end", func() bool { return p.Srv.NumConns() == 0 })
	p.shutdown(t, ctx)
	waitFor(t, fmt.Sprintf("file descriptors back to %d", fdsBefore), func() bool {
		return countFDs(t) <= fdsBefore
	})
	p.verifyNoLeaks(t, ignore)
}
