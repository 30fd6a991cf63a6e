package integration

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/dbproxy/dbproxy/internal/testenv"
	"github.com/dbproxy/dbproxy/proxy"
	"github.com/dbproxy/dbproxy/proxy/postgres"
)

// pgProxy is an in-process dbproxy PostgreSQL listener on 127.0.0.1:0.
type pgProxy struct {
	servedProxy

	pg *testenv.Postgres
}

// proxyOpts select the proxy's TLS legs.
type proxyOpts struct {
	ClientTLS        bool               // offer TLS to clients
	RequireTLS       bool               // refuse plaintext clients
	Upstream         proxy.SSLMode      // default SSLDisable (SSLVerifyFull needs a TLS server)
	UpstreamTLS      *proxy.UpstreamTLS // overrides Upstream
	Interceptor      postgres.Interceptor
	MaxMessageSize   int
	Dial             func(ctx context.Context, network, addr string) (net.Conn, error)
	ListenHost       string // address the proxy listens on; default 127.0.0.1
	UpstreamAddr     string // host:port of the server; default pg.Addr()
	Limits           proxy.Limits
	HandshakeTimeout time.Duration
	RelayLoops       int // see legOpts
}

// startPGProxyUpstream starts a proxy with an explicit upstream TLS setup.
func startPGProxyUpstream(t testing.TB, pg *testenv.Postgres, up proxy.UpstreamTLS) *pgProxy {
	return startPGProxy(t, pg, proxyOpts{UpstreamTLS: &up})
}

// startPGProxy starts a proxy in front of pg and stops it (hard) when the
// test ends.
func startPGProxy(t testing.TB, pg *testenv.Postgres, o proxyOpts) *pgProxy {
	t.Helper()
	p := &pgProxy{pg: pg}
	srv := testServer{addr: pg.Addr(), host: pg.Host, caFile: pg.CAFile}
	p.start(t, o.legs(), "pg-test", srv, []string{postgres.ALPN}, func(lo proxy.ListenerOptions) (proxy.Handler, error) {
		return postgres.NewHandler(postgres.Options{ListenerOptions: lo, Interceptor: o.Interceptor, MaxMessageSize: o.MaxMessageSize})
	})
	return p
}

// legs is o's protocol-independent part.
func (o proxyOpts) legs() legOpts {
	return legOpts{o.ClientTLS, o.RequireTLS, o.Upstream, o.UpstreamTLS, o.Dial, o.ListenHost, o.UpstreamAddr, o.Limits, o.HandshakeTimeout, o.RelayLoops}
}

// DSN returns a connection string for pg's user and database through the
// proxy, with the given sslmode (verify-full uses the proxy's CA).
func (p *pgProxy) DSN(sslmode string) string {
	return p.DSNFor(p.pg.User, p.pg.Password, sslmode)
}

// DSNFor is DSN with another user and password.
func (p *pgProxy) DSNFor(user, password, sslmode string) string {
	q := url.Values{}
	q.Set("sslmode", sslmode)
	if sslmode == "verify-full" || sslmode == "verify-ca" {
		q.Set("sslrootcert", p.CAFile)
	}
	u := url.URL{Scheme: "postgres", Host: p.Addr, Path: "/" + p.pg.Database, RawQuery: q.Encode()}
	if password != "" {
		u.User = url.UserPassword(user, password)
	} else {
		u.User = url.User(user)
	}
	return u.String()
}

// psqlEnv returns the environment for psql/pgbench through the proxy.
func (p *pgProxy) psqlEnv(sslmode string) []string {
	env := []string{
		"PGHOST=" + p.Host, "PGPORT=" + strconv.Itoa(p.Port),
		"PGUSER=" + p.pg.User, "PGPASSWORD=" + p.pg.Password,
		"PGDATABASE=" + p.pg.Database, "PGSSLMODE=" + sslmode,
		"PGCONNECT_TIMEOUT=10", "LANG=C.UTF-8", "PATH=/usr/bin:/bin",
	}
	if p.CAFile != "" {
		env = append(env, "PGSSLROOTCERT="+p.CAFile)
	}
	return env
}

// connectMode connects to dsn with the given exec mode; the connection is
// closed when the test ends.
func connectMode(t testing.TB, dsn string, mode pgx.QueryExecMode) *pgx.Conn {
	t.Helper()
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		t.Fatal(err)
	}
	cfg.DefaultQueryExecMode = mode
	c, err := pgx.ConnectConfig(context.Background(), cfg)
	if err != nil {
		t.Fatalf("connect (%s): %v", mode, err)
	}
	t.Cleanup(func() { _ = c.Close(context.Background()) })
	return c
}

// pgRequireSelect fails the test (what: the session's state) unless c
// answers select n with n.
func pgRequireSelect(t testing.TB, ctx context.Context, c *pgx.Conn, n int, what string) {
	t.Helper()
	var got int
	if err := c.QueryRow(ctx, fmt.Sprintf("select %d", n)).Scan(&got); err != nil || got != n {
		t.Fatalf("%s: select %d returned %d, %v", what, n, got, err)
	}
}
