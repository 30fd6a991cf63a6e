package integration

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
	"go.uber.org/goleak"

	"github.com/dbproxy/dbproxy/internal/testenv"
	"github.com/dbproxy/dbproxy/proxy"
)

func TestPGUpstreamTerminated(t *testing.T) {
	pg := testenv.StartPostgres(t)
	p := startPGProxy(t, pg, proxyOpts{})
	admin := testenv.ConnectPG(t, pg.Superuser().DSN())
	c := testenv.ConnectPG(t, p.DSN("disable"))
	done, pid := execBackground(t, c, admin, "select pg_sleep(60)", "to-be-terminated")
	if _, err := admin.Exec(testCtx(t), `select pg_terminate_backend($1)`, pid); err != nil {
		t.Fatal(err)
	}
	err := <-done
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != "57P01" {
		t.Fatalf("client of a terminated backend: %v, want the server's FATAL 57P01", err)
	}
	// The proxy keeps serving.
	c2 := testenv.ConnectPG(t, p.DSN("disable"))
	if _, err := c2.Exec(testCtx(t), `select 1`); err != nil {
		t.Fatal(err)
	}
}

// TestPGUpstreamConnectionLost cuts the upstream TCP connection under a
// running query: the client must get an error (08006), not hang.
func TestPGUpstreamConnectionLost(t *testing.T) {
	pg := testenv.StartPostgres(t)
	var ups upstreamConns
	p := startPGProxy(t, pg, proxyOpts{Dial: ups.dial})
	admin := testenv.ConnectPG(t, pg.Superuser().DSN())
	c := testenv.ConnectPG(t, p.DSN("disable"))
	done, pid := execBackground(t, c, admin, "select pg_sleep(60)", "cut-upstream")
	ups.cut()
	err := <-done
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != "08006" {
		t.Fatalf("client after the upstream connection was cut: %v, want FATAL 08006", err)
	}
	_, _ = admin.Exec(testCtx(t), `select pg_terminate_backend($1)`, pid)
}

// TestPGClientGone: when the client disappears, the proxy ends the upstream
// session.
func TestPGClientGone(t *testing.T) {
	pg := testenv.StartPostgres(t)
	p := startPGProxy(t, pg, proxyOpts{})
	admin := testenv.ConnectPG(t, pg.Superuser().DSN())
	c := testenv.ConnectPG(t, p.DSN("disable")+"&application_name=client-gone")
	go func() { _, _ = c.Exec(context.Background(), `select pg_sleep(0.5)`) }()
	waitForQuery(t, admin, "pg_sleep(0.5)")
	_ = c.PgConn().Conn().Close() // vanish without Terminate
	waitFor(t, "the upstream session to end", func() bool {
		var n int
		err := admin.QueryRow(testCtx(t), `select count(*) from pg_stat_activity where application_name = 'client-gone'`).Scan(&n)
		return err == nil && n == 0
	})
}

// rawSession logs in over a raw socket (trust auth) and returns it after
// the first ReadyForQuery.
func rawSession(t *testing.T, p *pgProxy) (net.Conn, *pgproto3.Frontend) {
	t.Helper()
	conn := dialRaw(t, p.Addr, 30*time.Second)
	fe := pgproto3.NewFrontend(conn, conn)
	fe.Send(&pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersionNumber,
		Parameters: map[string]string{"user": p.pg.User, "database": p.pg.Database}})
	if err := fe.Flush(); err != nil {
		t.Fatal(err)
	}
	receiveUntil[*pgproto3.ReadyForQuery](t, fe)
	return conn, fe
}

// receiveUntil reads backend messages until one of type M, and returns it.
func receiveUntil[M pgproto3.BackendMessage](t testing.TB, fe *pgproto3.Frontend) M {
	t.Helper()
	for {
		msg, err := fe.Receive()
		if err != nil {
			var none M
			t.Fatalf("waiting for %T: %v", none, err)
		}
		if m, ok := msg.(M); ok {
			return m
		}
	}
}

// expectFatal reads until an ErrorResponse and then requires EOF.
func expectFatal(t *testing.T, fe *pgproto3.Frontend, code string) {
	t.Helper()
	if e := receiveUntil[*pgproto3.ErrorResponse](t, fe); e.Code != code || e.Severity != "FATAL" {
		t.Fatalf("got %s %s %q, want FATAL %s", e.Severity, e.Code, e.Message, code)
	}
	if msg, err := fe.Receive(); err == nil {
		t.Fatalf("connection still open after FATAL: got %T", msg)
	}
}

func TestPGMalformedMessages(t *testing.T) {
	pg := testenv.StartPostgres(t)
	p := startPGProxy(t, pg, proxyOpts{MaxMessageSize: 1 << 20})
	bystander := testenv.ConnectPG(t, p.DSN("disable"))
	cases := []struct {
		name string
		raw  []byte
	}{
		{"length below 4", []byte{'Q', 0, 0, 0, 2}},
		{"negative length", []byte{'Q', 0xff, 0xff, 0xff, 0xf0}},
		{"over 1 GB", []byte{'Q', 0x7f, 0xff, 0xff, 0xff}},
		{"over the configured limit", append([]byte{'Q', 0, 0x20, 0, 4}, make([]byte, 64)...)},
		{"Terminate with a body", []byte{'X', 0, 0, 0, 5, 0}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			conn, fe := rawSession(t, p)
			if _, err := conn.Write(tc.raw); err != nil {
				t.Fatal(err)
			}
			expectFatal(t, fe, "08P01")
			// Other clients are not affected.
			pgRequireSelect(t, testCtx(t), bystander, 3, "bystander")
		})
	}
	t.Run("bad startup packet", func(t *testing.T) {
		// A parameter without a value: the server sends FATAL 08P01
		// (invalid startup packet layout), and so does the proxy.
		conn := dialRaw(t, p.Addr, 30*time.Second)
		if _, err := conn.Write([]byte{0, 0, 0, 13, 0, 3, 0, 0, 'u', 's', 'e', 'r', 0}); err != nil {
			t.Fatal(err)
		}
		expectFatal(t, pgproto3.NewFrontend(conn, conn), "08P01")
	})
	t.Run("bytes after SSLRequest", func(t *testing.T) {
		tp := startPGProxy(t, pg, proxyOpts{ClientTLS: true})
		conn := dialRaw(t, tp.Addr, 30*time.Second)
		req := binary.BigEndian.AppendUint32(nil, 8)
		req = binary.BigEndian.AppendUint32(req, 80877103)
		// SSLRequest and a plaintext StartupMessage in the same write.
		startup, _ := (&pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersionNumber,
			Parameters: map[string]string{"user": pg.User}}).Encode(nil)
		if _, err := conn.Write(append(req, startup...)); err != nil {
			t.Fatal(err)
		}
		if n, err := io.ReadFull(conn, make([]byte, 1)); n != 0 || err == nil {
			t.Fatalf("proxy answered %d bytes (%v); want the connection dropped", n, err)
		}
	})
	t.Run("GSSENCRequest", func(t *testing.T) {
		conn := dialRaw(t, p.Addr, 30*time.Second)
		req := binary.BigEndian.AppendUint32(nil, 8)
		req = binary.BigEndian.AppendUint32(req, 80877104)
		if _, err := conn.Write(req); err != nil {
			t.Fatal(err)
		}
		b := make([]byte, 1)
		if _, err := io.ReadFull(conn, b); err != nil || b[0] != 'N' {
			t.Fatalf("GSSENCRequest answer %q, %v; want N", b, err)
		}
	})
}

func TestPGGracefulShutdown(t *testing.T) {
	pg := testenv.StartPostgres(t)
	p := startPGProxy(t, pg, proxyOpts{})
	admin := testenv.ConnectPG(t, pg.Superuser().DSN())
	busy := testenv.ConnectPG(t, p.DSN("disable"))
	idle := testenv.ConnectPG(t, p.DSN("disable"))
	inTx := testenv.ConnectPG(t, p.DSN("disable"))
	ctx := testCtx(t)
	if _, err := inTx.Exec(ctx, `create table shut (id int)`); err != nil {
		t.Fatal(err)
	}
	tx, err := inTx.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, `insert into shut values (1)`); err != nil {
		t.Fatal(err)
	}
	type result struct {
		s   string
		err error
	}
	busyDone := make(chan result, 1)
	go func() {
		var r result
		r.err = busy.QueryRow(ctx, `select 'finished' from pg_sleep(2) /* in-flight */`).Scan(&r.s)
		busyDone <- r
	}()
	waitForQuery(t, admin, "in-flight")

	shutDone := make(chan error, 1)
	go func() {
		sctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		shutDone <- p.Srv.Shutdown(sctx)
	}()
	waitFor(t, "the listener to close", func() bool {
		c, err := net.DialTimeout("tcp", p.Addr, time.Second)
		if err == nil {
			c.Close()
		}
		return err != nil
	})
	// The idle session is closed with 57P01. The listener closes first and
	// the drain reaches idle sessions right after, so poll (bounded).
	waitFor(t, "the idle session to be closed by the drain", func() bool {
		_, err = idle.Exec(ctx, `select 1`)
		return err != nil
	})
	var pe *pgconn.PgError
	if errors.As(err, &pe) && pe.Code != "57P01" {
		t.Fatalf("idle session: %v, want 57P01 or a closed connection", err)
	}
	// The open transaction may finish.
	if _, err := tx.Exec(ctx, `insert into shut values (2)`); err != nil {
		t.Fatalf("statement in an open transaction during shutdown: %v", err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatalf("commit during shutdown: %v", err)
	}
	// The in-flight query finishes.
	if r := <-busyDone; r.err != nil || r.s != "finished" {
		t.Fatalf("in-flight query: %q, %v", r.s, r.err)
	}
	if err := <-shutDone; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	var n int
	if err := admin.QueryRow(ctx, `select count(*) from shut`).Scan(&n); err != nil || n != 2 {
		t.Fatalf("committed rows = %d, %v; want 2", n, err)
	}
	if _, err := inTx.Exec(ctx, `select 1`); err == nil {
		t.Fatal("session still works after Shutdown returned")
	}
}

func TestPGShutdownTimeout(t *testing.T) {
	pg := testenv.StartPostgres(t)
	p := startPGProxy(t, pg, proxyOpts{})
	c := testenv.ConnectPG(t, p.DSN("disable"))
	if _, err := c.Exec(testCtx(t), `begin`); err != nil {
		t.Fatal(err)
	}
	sctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if err := p.Srv.Shutdown(sctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shutdown with a session stuck in a transaction: %v, want deadline exceeded", err)
	}
	if _, err := c.Exec(testCtx(t), `select 1`); err == nil {
		t.Fatal("session survived the hard close")
	}
	waitFor(t, "connections to be gone", func() bool { return p.Srv.NumConns() == 0 })
}

func countFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

// TestPGNoLeaks runs a mixed workload through a proxy and requires that no
// goroutine survives it and that file descriptors return to where they were
// after 200 connect/disconnect cycles.
func TestPGNoLeaks(t *testing.T) {
	pg := testenv.StartPostgres(t, testenv.PGOptions{Auth: "scram-sha-256", TLS: true})
	admin := testenv.ConnectPG(t, pg.Superuser().DSN())
	_ = admin
	ignore := goleak.IgnoreCurrent()
	fdsBefore := countFDs(t)

	p := startPGProxy(t, pg, proxyOpts{ClientTLS: true, Upstream: proxy.SSLVerifyFull})
	ctx := testCtx(t)
	for i := range 200 {
		var dsn string
		switch i % 4 {
		case 0:
			dsn = p.DSN("disable")
		case 1:
			dsn = p.DSN("verify-full")
		case 2:
			dsn = p.DSNFor(pg.User, "wrong", "disable")
		case 3:
			dsn = p.DSN("verify-full") + "&sslnegotiation=direct"
		}
		c, err := pgx.Connect(ctx, dsn)
		if i%4 == 2 {
			if err == nil {
				t.Fatal("wrong password accepted")
			}
			continue
		}
		if err != nil {
			t.Fatalf("cycle %d: %v", i, err)
		}
		if i%10 == 1 {
			cctx, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
			_, _ = c.Exec(cctx, `select pg_sleep(10)`)
			cancel()
		} else if _, err := c.Exec(ctx, `select 1`); err != nil {
			t.Fatalf("cycle %d: %v", i, err)
		}
		if i%3 == 0 {
			_ = c.PgConn().Conn().Close() // no Terminate
		}
		_ = c.Close(ctx)
	}
	waitFor(t, "proxy connections to end", func() bool { return p.Srv.NumConns() == 0 })
	// The listener, and the poller of parked idle sessions (until Shutdown).
	waitFor(t, fmt.Sprintf("file descriptors back to %d", fdsBefore+2), func() bool {
		return countFDs(t) <= fdsBefore+2
	})
	p.shutdown(t, ctx)
	p.verifyNoLeaks(t, ignore)
}

// TestPGBinary runs the real dbproxy binary: serve with a config file,
// relay a query, exit 0 on SIGTERM.
func TestPGBinary(t *testing.T) {
	pg := testenv.StartPostgres(t)
	addr := freeListenAddr(t)
	cfg := listenersYAML(listenerYAML{protocol: "postgres", listen: addr, upstream: pg.Addr()}) + "shutdown_timeout: 5s\n"
	d := newDBProxy(t, buildDBProxy(t), "", cfg, nil, addr)
	d.start(t)
	dsn := fmt.Sprintf("postgres://%s:%s@%s/%s?sslmode=disable", pg.User, pg.Password, addr, pg.Database)
	c := testenv.ConnectPG(t, dsn)
	var s string
	if err := c.QueryRow(testCtx(t), `select 'through the binary'`).Scan(&s); err != nil || s != "through the binary" {
		t.Fatalf("query: %q %v\n%s", s, err, d.logs.String())
	}
	_ = c.Close(testCtx(t))
	d.stop(t)
	if strings.Contains(d.logs.String(), pg.Password) {
		t.Fatalf("password in the logs:\n%s", d.logs.String())
	}
}

// TestPGStartupClosedSilently: a first packet that is no startup packet
// (node-postgres sends Terminate when a connection is ended before its
// startup; scanners send anything) or a connection closed before one makes
// the server close without a word; the proxy does the same, checked side by
// side with the server itself.
func TestPGStartupClosedSilently(t *testing.T) {
	pg := testenv.StartPostgres(t)
	p := startPGProxy(t, pg, proxyOpts{})
	cases := []struct {
		name string
		raw  []byte
	}{
		{"Terminate before startup", []byte{'X', 0, 0, 0, 4}},
		{"length over the limit", []byte{0, 0, 0x7f, 0xff, 0, 3, 0, 0}},
		{"length below 8", []byte{0, 0, 0, 4}},
		{"negative length", []byte{0xff, 0xff, 0xff, 0xf0}},
		{"partial length word", []byte{0, 0}},
		{"nothing", nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			for _, target := range []struct{ name, addr string }{{"server", pg.Addr()}, {"proxy", p.Addr}} {
				conn, err := net.Dial("tcp", target.addr)
				if err != nil {
					t.Fatal(err)
				}
				_ = conn.SetDeadline(time.Now().Add(30 * time.Second))
				if _, err := conn.Write(tc.raw); err != nil {
					t.Fatal(err)
				}
				_ = conn.(*net.TCPConn).CloseWrite()
				got, err := io.ReadAll(conn)
				_ = conn.Close()
				if errors.Is(err, syscall.ECONNRESET) {
					err = nil // closed with unread bytes in its buffer
				}
				if err != nil || len(got) != 0 {
					t.Fatalf("%s answered %q (%v), want the connection closed without a message", target.name, got, err)
				}
			}
		})
	}
	if logs := p.Logs.String(); strings.Contains(logs, "level=WARN") || strings.Contains(logs, "level=ERROR") {
		t.Fatalf("routine disconnects logged as problems:\n%s", logs)
	}
}
