package integration

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"database/sql"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	driver "github.com/go-sql-driver/mysql"

	"github.com/dbproxy/dbproxy/internal/testenv"
	"github.com/dbproxy/dbproxy/proxy"
	"github.com/dbproxy/dbproxy/proxy/mysql"
)

// myProxy is an in-process dbproxy MySQL listener on 127.0.0.1:0.
type myProxy struct {
	servedProxy

	db *testenv.MariaDB
}

// myProxyOpts select the proxy's TLS legs and options.
type myProxyOpts struct {
	ClientTLS        bool               // offer TLS to clients
	RequireTLS       bool               // refuse plaintext clients
	Upstream         proxy.SSLMode      // default SSLDisable
	UpstreamTLS      *proxy.UpstreamTLS // overrides Upstream
	Interceptor      mysql.Interceptor
	Hide             uint64 // capabilities hidden from clients
	Dial             func(ctx context.Context, network, addr string) (net.Conn, error)
	ListenHost       string // address the proxy listens on; default 127.0.0.1
	UpstreamAddr     string // host:port of the server; default db.Addr()
	Limits           proxy.Limits
	HandshakeTimeout time.Duration
	RelayLoops       int // see legOpts
}

var tlsConfigSeq atomic.Int64

// startMyProxy starts a proxy in front of db and stops it (hard) when the
// test ends.
func startMyProxy(t testing.TB, db *testenv.MariaDB, o myProxyOpts) *myProxy {
	t.Helper()
	p := &myProxy{db: db}
	srv := testServer{addr: db.Addr(), host: db.Host, caFile: db.CAFile}
	p.start(t, o.legs(), "mysql-test", srv, nil, func(lo proxy.ListenerOptions) (proxy.Handler, error) {
		return mysql.NewHandler(mysql.Options{ListenerOptions: lo, Interceptor: o.Interceptor, HideCapabilities: o.Hide})
	})
	return p
}

// legs is o's protocol-independent part.
func (o myProxyOpts) legs() legOpts {
	return legOpts{o.ClientTLS, o.RequireTLS, o.Upstream, o.UpstreamTLS, o.Dial, o.ListenHost, o.UpstreamAddr, o.Limits, o.HandshakeTimeout, o.RelayLoops}
}

// registerTLS registers a go-sql-driver TLS configuration that verifies
// against caFile and returns its name.
func registerTLS(t testing.TB, caFile string) string {
	t.Helper()
	pem, err := os.ReadFile(caFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		t.Fatal("no CA certificate in", caFile)
	}
	name := "dbproxy-test-" + strconv.FormatInt(tlsConfigSeq.Add(1), 10)
	if err := driver.RegisterTLSConfig(name, &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { driver.DeregisterTLSConfig(name) })
	return name
}

// myConfig returns a go-sql-driver configuration for db's user through the
// proxy. params are DSN parameters ("multiStatements=true", "tls=...").
func (p *myProxy) config(t testing.TB, params ...string) *driver.Config {
	t.Helper()
	return myConfigAt(t, p.Addr, p.db.User, p.db.Password, p.db.Database, params...)
}

func myConfigAt(t testing.TB, addr, user, password, database string, params ...string) *driver.Config {
	t.Helper()
	cfg := driver.NewConfig()
	cfg.User, cfg.Passwd, cfg.Net, cfg.Addr, cfg.DBName = user, password, "tcp", addr, database
	cfg.Timeout = 10 * time.Second
	if len(params) > 0 {
		parsed, err := driver.ParseDSN("u:p@tcp(" + addr + ")/d?" + strings.Join(params, "&"))
		if err != nil {
			t.Fatalf("parse DSN parameters %v: %v", params, err)
		}
		parsed.User, parsed.Passwd, parsed.DBName = user, password, database
		parsed.Timeout = cfg.Timeout
		cfg = parsed
	}
	cfg.ParseTime = true
	return cfg
}

// openDB opens a database/sql pool for cfg, closed when the test ends.
func openDB(t testing.TB, cfg *driver.Config) *sql.DB {
	t.Helper()
	conn, err := driver.NewConnector(cfg)
	if err != nil {
		t.Fatal(err)
	}
	db := sql.OpenDB(conn)
	t.Cleanup(func() { _ = db.Close() })
	return db
}

// openConn opens one dedicated connection for cfg and pings it.
func openConn(t testing.TB, cfg *driver.Config) *sql.Conn {
	t.Helper()
	db := openDB(t, cfg)
	c, err := db.Conn(testCtx(t))
	if err != nil {
		t.Fatalf("connect to %s as %s: %v", cfg.Addr, cfg.User, err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// adminDB opens a pool as the server's administrator (direct).
func adminDB(t testing.TB, db *testenv.MariaDB) *sql.DB {
	t.Helper()
	su := db.Superuser()
	cfg := driver.NewConfig()
	cfg.User, cfg.Passwd, cfg.DBName = su.User, su.Password, su.Database
	if su.Socket != "" {
		cfg.Net, cfg.Addr = "unix", su.Socket
	} else {
		cfg.Net, cfg.Addr = "tcp", su.Addr()
	}
	return openDB(t, cfg)
}

// processList reads SHOW FULL PROCESSLIST, a row as a map from the
// lower-case column name to the value. (Not information_schema.processlist:
// MariaDB 10.11 was seen to segfault, a NULL dereference, while a test
// polled it as new connections logged in.)
func processList(ctx context.Context, admin *sql.DB) ([]map[string]string, error) {
	rows, err := admin.QueryContext(ctx, `SHOW FULL PROCESSLIST`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		return nil, err
	}
	vals := make([]sql.RawBytes, len(cols))
	ptrs := make([]any, len(cols))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	var list []map[string]string
	for rows.Next() {
		if err := rows.Scan(ptrs...); err != nil {
			return nil, err
		}
		row := make(map[string]string, len(cols))
		for i, c := range cols {
			row[strings.ToLower(c)] = string(vals[i])
		}
		list = append(list, row)
	}
	return list, rows.Err()
}

// requireSelect fails the test (what: the connection's state) unless c
// answers SELECT n with n.
func requireSelect(t testing.TB, ctx context.Context, c interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}, n int, what string) {
	t.Helper()
	var got int
	if err := c.QueryRowContext(ctx, fmt.Sprintf("SELECT %d", n)).Scan(&got); err != nil || got != n {
		t.Fatalf("%s: SELECT %d returned %d, %v", what, n, got, err)
	}
}

// execer is a *sql.DB or a *sql.Conn.
type execer interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
}

// execAll runs the statements on c in order, failing the test at the first
// error.
func execAll(t testing.TB, ctx context.Context, c execer, stmts ...string) {
	t.Helper()
	for _, q := range stmts {
		if _, err := c.ExecContext(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
}

// myExecBackground runs query, tagged with the comment marker, on c in a
// goroutine and waits until admin sees it running. It returns the channel
// that receives the statement's error, and the server thread's id.
func myExecBackground(t testing.TB, ctx context.Context, c *sql.Conn, admin *sql.DB, query, marker string) (<-chan error, int64) {
	t.Helper()
	done := make(chan error, 1)
	go func() {
		_, err := c.ExecContext(ctx, query+" /* "+marker+" */")
		done <- err
	}()
	return done, waitForProcess(t, admin, marker)
}

// waitForProcess returns the id of the server thread whose query contains
// marker, polling the process list.
func waitForProcess(t testing.TB, admin *sql.DB, marker string) int64 {
	t.Helper()
	var id int64
	waitFor(t, "query "+marker+" to run", func() bool {
		list, err := processList(testCtx(t), admin)
		if err != nil {
			return false
		}
		for _, row := range list {
			info := row["info"]
			if strings.Contains(info, marker) && !strings.Contains(strings.ToLower(info), "processlist") {
				fmt.Sscan(row["id"], &id)
				return true
			}
		}
		return false
	})
	return id
}
