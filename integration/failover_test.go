package integration

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	driver "github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/dbproxy/dbproxy/internal/testenv"
	"github.com/dbproxy/dbproxy/proxy"
)

// The login of PostgreSQL failover tests, created on each server (the
// per-test roles and databases of testenv differ between servers).
const (
	failoverRole     = "failover_app"
	failoverPassword = "failover-pw"
)

// pgFailoverServer starts a dedicated PostgreSQL server (of opts) with the
// failover login; readOnly makes that login's sessions read-only
// (default_transaction_read_only, as on a server that is not the writer).
func pgFailoverServer(t *testing.T, opts testenv.PGOptions, readOnly bool) *testenv.Postgres {
	t.Helper()
	opts.Dedicated = true
	pg := testenv.StartPostgres(t, opts)
	admin := testenv.ConnectPG(t, pg.Superuser().DSN())
	stmts := []string{fmt.Sprintf("CREATE ROLE %s LOGIN PASSWORD '%s'", failoverRole, failoverPassword)}
	if readOnly {
		stmts = append(stmts, "ALTER ROLE "+failoverRole+" SET default_transaction_read_only = on")
	}
	for _, s := range stmts {
		if _, err := admin.Exec(context.Background(), s); err != nil {
			t.Fatalf("%s: %v", s, err)
		}
	}
	return pg
}

// pgSessionPort opens a new session through p and returns the port of the
// server it landed on (inet_server_port(): the server's own, relays
// notwithstanding) and whether it is read-only; the session is closed.
func pgSessionPort(t *testing.T, p *servedProxy) (int, string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, pgFailoverDSN(p))
	if err != nil {
		return 0, "", err
	}
	defer c.Close(ctx)
	var port int
	var ro string
	if err := c.QueryRow(ctx, "select inet_server_port(), current_setting('transaction_read_only')").Scan(&port, &ro); err != nil {
		t.Fatalf("query through the proxy: %v", err)
	}
	return port, ro, nil
}

func pgFailoverDSN(p *servedProxy) string {
	return fmt.Sprintf("postgres://%s:%s@%s/postgres?sslmode=disable&connect_timeout=20", failoverRole, failoverPassword, p.Addr)
}

// wantPGPort fails unless a new session through p lands on port.
func wantPGPort(t *testing.T, p *servedProxy, port int, what string) {
	t.Helper()
	got, _, err := pgSessionPort(t, p)
	if err != nil {
		t.Fatalf("%s: connect: %v", what, err)
	}
	if got != port {
		t.Fatalf("%s: session on the server at port %d, want %d", what, got, port)
	}
}

// TestPGFailoverByDNS: the upstream is a name; sessions go where it
// resolves when they start. After the name moves to a second server and
// the first is killed (an Aurora failover), new sessions reach the
// second, and a session open on the first breaks.
func TestPGFailoverByDNS(t *testing.T) {
	s1, s2 := pgFailoverServer(t, testenv.PGOptions{}, false), pgFailoverServer(t, testenv.PGOptions{}, false)
	upstream, dns, h1 := movableName(t, s1.Addr(), s2.Addr())
	p := startFailoverPG(t, failoverOpts{Upstream: upstream, Resolver: dns})

	wantPGPort(t, p, s1.Port, "before the failover")
	ctx := context.Background()
	open := testenv.ConnectPG(t, pgFailoverDSN(p))

	dns.set("127.0.0.3")
	s1.Kill(t)
	h1.close()
	wantPGPort(t, p, s2.Port, "after the failover")
	if err := open.Ping(ctx); err == nil {
		t.Fatal("a session open on the killed server still answers")
	}
}

// TestPGCancelAfterNameMoved: a cancel request goes to the server its
// session is on, not to wherever the name points now.
func TestPGCancelAfterNameMoved(t *testing.T) {
	s1, s2 := pgFailoverServer(t, testenv.PGOptions{}, false), pgFailoverServer(t, testenv.PGOptions{}, false)
	upstream, dns, _ := movableName(t, s1.Addr(), s2.Addr())
	p := startFailoverPG(t, failoverOpts{Upstream: upstream, Resolver: dns})
	c := testenv.ConnectPG(t, pgFailoverDSN(p))
	dns.set("127.0.0.3")

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		_, err := c.Exec(ctx, "select pg_sleep(50)")
		done <- err
	}()
	// Cancel until the sleep ends: a request that arrives before the
	// query starts cancels nothing.
	for {
		if err := c.PgConn().CancelRequest(ctx); err != nil {
			t.Fatalf("cancel request: %v", err)
		}
		select {
		case err := <-done:
			var pe *pgconn.PgError
			if !errors.As(err, &pe) || pe.Code != "57014" {
				t.Fatalf("query ended with %v, want 57014 (canceled on its own server)", err)
			}
			return
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// TestPGFailoverHostsAny: with several hosts and target_session_attrs any,
// sessions take the first host that accepts; once it is killed, the next.
func TestPGFailoverHostsAny(t *testing.T) {
	s1, s2 := pgFailoverServer(t, testenv.PGOptions{}, false), pgFailoverServer(t, testenv.PGOptions{}, false)
	p := startFailoverPG(t, failoverOpts{Upstream: s1.Addr() + "," + s2.Addr()})
	wantPGPort(t, p, s1.Port, "both up")
	s1.Kill(t)
	wantPGPort(t, p, s2.Port, "first host killed")
	wantPGPort(t, p, s2.Port, "first host still down")
}

// TestPGFailoverServerShuttingDown: a server that answers the startup
// with FATAL 57P03 (here: the database system is shutting down, a smart
// shutdown waiting for its last session) is skipped for the next host.
func TestPGFailoverServerShuttingDown(t *testing.T) {
	s1, s2 := pgFailoverServer(t, testenv.PGOptions{}, false), pgFailoverServer(t, testenv.PGOptions{}, false)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	direct := fmt.Sprintf("postgres://%s:%s@%s/postgres?sslmode=disable", failoverRole, failoverPassword, s1.Addr())
	last := testenv.ConnectPG(t, direct) // holds the smart shutdown
	pidFile, err := os.ReadFile(filepath.Join(s1.DataDir, "postmaster.pid"))
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(strings.SplitN(string(pidFile), "\n", 2)[0]))
	if err != nil {
		t.Fatalf("postmaster.pid: %v", err)
	}
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s1.Kill(t) })
	for { // until s1 refuses new sessions
		c, err := pgx.Connect(ctx, direct)
		var pe *pgconn.PgError
		if errors.As(err, &pe) && pe.Code == "57P03" {
			break
		}
		if err == nil {
			_ = c.Close(ctx)
		}
		if ctx.Err() != nil {
			t.Fatalf("the server did not start its shutdown: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}

	p := startFailoverPG(t, failoverOpts{Upstream: s1.Addr() + "," + s2.Addr()})
	wantPGPort(t, p, s2.Port, "first host shutting down")
	if err := last.Ping(ctx); err != nil {
		t.Fatalf("the session holding the shutdown: %v", err)
	}

	// The only host: its own error reaches the client.
	only := startFailoverPG(t, failoverOpts{Upstream: s1.Addr()})
	_, _, err = pgSessionPort(t, only)
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != "57P03" {
		t.Fatalf("single host shutting down: %v, want the server's FATAL 57P03", err)
	}
}

// TestPGFailoverTLSFailure: a host whose TLS fails (here: no TLS at all,
// under verify-full) is skipped like one that is down; each host's
// certificate is verified against its own name.
func TestPGFailoverTLSFailure(t *testing.T) {
	s1 := pgFailoverServer(t, testenv.PGOptions{}, false)
	s2 := pgFailoverServer(t, testenv.PGOptions{TLS: true}, false)
	up := proxy.UpstreamTLS{Mode: proxy.SSLVerifyFull, RootCAs: caPool(t, s2.CAFile)}
	p := startFailoverPG(t, failoverOpts{Upstream: s1.Addr() + "," + s2.Addr(), TLS: &up})
	wantPGPort(t, p, s2.Port, "first host without TLS")
	ctx := context.Background()
	var ssl bool
	c := testenv.ConnectPG(t, pgFailoverDSN(p))
	if err := c.QueryRow(ctx, "select ssl from pg_stat_ssl where pid = pg_backend_pid()").Scan(&ssl); err != nil || !ssl {
		t.Fatalf("upstream leg TLS %t, %v; want TLS", ssl, err)
	}
}

// TestPGFailoverReadWrite: with target_session_attrs read-write a host
// whose sessions are read-only is skipped (the client's login needed no
// password: the proxy moves on by itself); with no read-write host left
// the client gets FATAL 08001 naming each host and why it was skipped.
func TestPGFailoverReadWrite(t *testing.T) {
	s1, s2 := pgFailoverServer(t, testenv.PGOptions{}, true), pgFailoverServer(t, testenv.PGOptions{}, false)
	p := startFailoverPG(t, failoverOpts{Upstream: s1.Addr() + "," + s2.Addr(), Target: proxy.TargetReadWrite})
	for i := range 3 {
		port, ro, err := pgSessionPort(t, p)
		if err != nil || port != s2.Port || ro != "off" {
			t.Fatalf("session %d: port %d read-only %q, %v; want the writer at %d", i, port, ro, err, s2.Port)
		}
	}
	s2.Kill(t)
	_, _, err := pgSessionPort(t, p)
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != "08001" {
		t.Fatalf("with the writer down: %v, want FATAL 08001", err)
	}
	if !strings.Contains(pe.Message, "read-write database server") || strings.Contains(pe.Message, s1.Addr()) {
		t.Errorf("error %q: want it to say a read-write server was wanted, and not to name the hosts", pe.Message)
	}
	// The log names each host and why it was skipped.
	for _, want := range []string{s1.Addr() + " (session is read-only)", s2.Addr() + " (connection refused)"} {
		if !p.Logs.Contains(want) {
			t.Errorf("the log does not say %q", want)
		}
	}
}

// TestPGFailoverReadWritePassword: a client whose password went to a host
// that then turns out read-only cannot be moved (its login cannot be
// replayed): it gets FATAL 08001 asking it to connect again, and the next
// session starts at the next host.
func TestPGFailoverReadWritePassword(t *testing.T) {
	s1, s2 := pgFailoverServer(t, testenv.PGOptions{Auth: "md5"}, true), pgFailoverServer(t, testenv.PGOptions{Auth: "md5"}, false)
	p := startFailoverPG(t, failoverOpts{Upstream: s1.Addr() + "," + s2.Addr(), Target: proxy.TargetReadWrite})
	_, _, err := pgSessionPort(t, p)
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != "08001" || !strings.Contains(pe.Message, s1.Addr()+" is read-only") {
		t.Fatalf("first session: %v, want FATAL 08001 saying %s is read-only", err, s1.Addr())
	}
	wantPGPort(t, p, s2.Port, "second session")
	wantPGPort(t, p, s2.Port, "third session")
}

// mySessionPort opens a new session through p as root and returns the
// server's @@port.
func mySessionPort(t *testing.T, p *servedProxy) (int, error) {
	t.Helper()
	cfg := driver.NewConfig()
	cfg.User, cfg.Net, cfg.Addr, cfg.Timeout = "root", "tcp", p.Addr, 20*time.Second
	conn, err := driver.NewConnector(cfg)
	if err != nil {
		t.Fatal(err)
	}
	db := sql.OpenDB(conn)
	defer db.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var port int
	err = db.QueryRowContext(ctx, "SELECT @@port").Scan(&port)
	return port, err
}

// wantMyPort fails unless a new session through p lands on port.
func wantMyPort(t *testing.T, p *servedProxy, port int, what string) {
	t.Helper()
	got, err := mySessionPort(t, p)
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	if got != port {
		t.Fatalf("%s: session on the server at port %d, want %d", what, got, port)
	}
}

// TestMySQLFailoverByDNS is TestPGFailoverByDNS for MariaDB.
func TestMySQLFailoverByDNS(t *testing.T) {
	s1 := testenv.StartMariaDB(t, testenv.MariaDBOptions{Dedicated: true})
	s2 := testenv.StartMariaDB(t, testenv.MariaDBOptions{Dedicated: true})
	upstream, dns, h1 := movableName(t, s1.Addr(), s2.Addr())
	p := startFailoverMySQL(t, failoverOpts{Upstream: upstream, Resolver: dns})
	wantMyPort(t, p, s1.Port, "before the failover")

	dns.set("127.0.0.3")
	s1.Kill(t)
	h1.close()
	wantMyPort(t, p, s2.Port, "after the failover")
	wantMyPort(t, p, s2.Port, "again")
}

// TestMySQLFailoverHostsAny is TestPGFailoverHostsAny for MariaDB, and
// the error naming every host once none is left.
func TestMySQLFailoverHostsAny(t *testing.T) {
	s1 := testenv.StartMariaDB(t, testenv.MariaDBOptions{Dedicated: true})
	s2 := testenv.StartMariaDB(t, testenv.MariaDBOptions{Dedicated: true})
	p := startFailoverMySQL(t, failoverOpts{Upstream: s1.Addr() + "," + s2.Addr()})
	wantMyPort(t, p, s1.Port, "both up")
	s1.Kill(t)
	wantMyPort(t, p, s2.Port, "first host killed")
	s2.Kill(t)
	_, err := mySessionPort(t, p)
	var me *driver.MySQLError
	if !errors.As(err, &me) || me.Number != 2003 {
		t.Fatalf("with both hosts down: %v, want error 2003", err)
	}
	for _, host := range []string{s1.Addr(), s2.Addr()} {
		if strings.Contains(me.Message, host) {
			t.Errorf("error %q names the internal host %s", me.Message, host)
		}
		if !p.Logs.Contains(host + " (connection refused)") {
			t.Errorf("the log does not name %s", host)
		}
	}
}

// TestMySQLFailoverSilentHost: a host that accepts the connection and
// closes it without a greeting (a fenced old writer), or sends nothing, is
// skipped for the next, for the listener's first session (greeting
// relayed) and later ones (the proxy's own greeting) alike.
func TestMySQLFailoverSilentHost(t *testing.T) {
	my := testenv.StartMariaDB(t)
	closing := testenv.ServeTCP(t, func(net.Conn) {})
	silent := testenv.ServeTCP(t, func(c net.Conn) { _, _ = io.Copy(io.Discard, c) })
	p := startFailoverMySQL(t, failoverOpts{Upstream: closing + "," + silent + "," + my.Addr()})
	wantMyPort(t, p, my.Port, "first session")
	wantMyPort(t, p, my.Port, "second session")
}

// TestPGFailoverSilentHost: a host that accepts the TCP connection and
// then says nothing (a hung old writer, a load balancer without a
// backend) gets its share of the handshake time, not all of it: the
// session moves on to the next host.
func TestPGFailoverSilentHost(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	var held []net.Conn
	var mu sync.Mutex
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			held = append(held, c) // never answered
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		mu.Lock()
		defer mu.Unlock()
		for _, c := range held {
			c.Close()
		}
	})
	s2 := pgFailoverServer(t, testenv.PGOptions{}, false)
	p := startFailoverPG(t, failoverOpts{Upstream: l.Addr().String() + "," + s2.Addr()})
	wantPGPort(t, p, s2.Port, "first host silent")
}
