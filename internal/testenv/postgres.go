package testenv

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Timeouts for server start and per-test setup.
const (
	startTimeout = 2 * time.Minute
	setupTimeout = time.Minute
)

// Postgres is one test's database: a fresh database owned by a fresh role,
// on a (usually shared) PostgreSQL server.
type Postgres struct {
	Host     string // "127.0.0.1" for servers started here
	Port     int
	User     string // per-call role (SUPERUSER on servers started here)
	Password string
	Database string
	DataDir  string // server data directory ("" for an external server)
	// SocketDir holds the server's unix socket (.s.PGSQL.<Port>); unix
	// socket logins are trusted. "" for an external server.
	SocketDir string

	Auth     string // pg_hba method for TCP logins of User; "" if unknown (external)
	TLS      bool   // server has ssl=on
	CAFile   string // PEM of the CA that signed the server certificate (TLS only)
	External bool   // named by DBPROXY_TEST_PG_DSN, not started here

	params    url.Values // extra DSN parameters (external servers)
	super     *Postgres
	srv       *pgServer // the server started here; nil for an external one
	dedicated bool
}

// Addr returns "host:port".
func (p *Postgres) Addr() string { return net.JoinHostPort(p.Host, strconv.Itoa(p.Port)) }

// DSN returns a postgres:// URL for User on Database. It uses
// sslmode=disable, except on TLS servers started here, where it uses
// sslmode=verify-full with sslrootcert=CAFile (the certificate is valid for
// 127.0.0.1 and localhost). For external servers the query parameters of
// DBPROXY_TEST_PG_DSN are kept.
func (p *Postgres) DSN() string {
	q := cloneValues(p.params)
	if q.Get("sslmode") == "" {
		if p.TLS && p.CAFile != "" {
			q.Set("sslmode", "verify-full")
			q.Set("sslrootcert", p.CAFile)
		} else {
			q.Set("sslmode", "disable")
		}
	}
	return p.url(q)
}

// ConnString is DSN with the given sslmode (disable, require, verify-full,
// ...). For verify-ca and verify-full, sslrootcert is set to CAFile.
func (p *Postgres) ConnString(sslmode string) string {
	q := cloneValues(p.params)
	q.Set("sslmode", sslmode)
	if (sslmode == "verify-ca" || sslmode == "verify-full") && p.CAFile != "" {
		q.Set("sslrootcert", p.CAFile)
	}
	return p.url(q)
}

func (p *Postgres) url(q url.Values) string {
	u := url.URL{
		Scheme:   "postgres",
		Host:     p.Addr(),
		Path:     "/" + p.Database,
		RawQuery: q.Encode(),
	}
	if p.Password != "" {
		u.User = url.UserPassword(p.User, p.Password)
	} else {
		u.User = url.User(p.User)
	}
	return u.String()
}

// Superuser returns connection information for a superuser on the same
// server and Database: the postgres role (TCP login trusted, no password)
// on servers started here, the admin of DBPROXY_TEST_PG_DSN otherwise.
func (p *Postgres) Superuser() *Postgres {
	if p.super == nil {
		return p
	}
	return p.super
}

// PGOptions selects the kind of PostgreSQL server. Servers are shared
// between all calls with equal options in one test binary (when the binary
// runs under Main).
type PGOptions struct {
	// Auth is the pg_hba method for TCP logins of the per-call role:
	// "trust" (default), "md5", "scram-sha-256" or "password".
	// password_encryption is md5 for "md5", scram-sha-256 otherwise, so an
	// md5 server really runs the MD5 exchange.
	Auth string
	// TLS turns ssl=on with a certificate for localhost and 127.0.0.1
	// signed by a generated CA (Postgres.CAFile). Plain connections are
	// still accepted unless RequireTLS is set.
	TLS bool
	// Shared is accepted for compatibility and has no effect: servers are
	// shared by default. Set Dedicated for a private server.
	Shared bool
	// RequireTLS accepts TCP logins of the per-call role only over TLS
	// (hostssl). Implies TLS.
	RequireTLS bool
	// Dedicated starts a server for this call alone, stopped by t.Cleanup.
	Dedicated bool
	// NoSuperuser creates the per-call role without SUPERUSER. It still
	// owns its database (and so its public schema). Not part of the
	// server's identity: such calls share the server of equal options.
	NoSuperuser bool
	// Settings are postgresql.conf lines ("max_connections = 6000",
	// "synchronous_commit = on") appended after the harness's own, so they
	// override them. Part of the server's identity.
	Settings []string
}

func pgOptions(opts []PGOptions) (PGOptions, error) {
	var o PGOptions
	switch len(opts) {
	case 0:
	case 1:
		o = opts[0]
	default:
		return o, fmt.Errorf("StartPostgres takes at most one PGOptions, got %d", len(opts))
	}
	if o.Auth == "" {
		o.Auth = "trust"
	}
	switch o.Auth {
	case "trust", "md5", "scram-sha-256", "password":
	default:
		return o, fmt.Errorf("PGOptions.Auth %q: want trust, md5, scram-sha-256 or password", o.Auth)
	}
	if o.RequireTLS {
		o.TLS = true
	}
	o.Shared = false // no effect
	return o, nil
}

func (o PGOptions) key() string {
	return fmt.Sprintf("postgres bindir=%q auth=%s tls=%t requiretls=%t settings=%q",
		os.Getenv(EnvPostgresBinDir), o.Auth, o.TLS, o.RequireTLS, o.Settings)
}

// StartPostgres returns a fresh database, owned by a fresh role with a
// random name and password (SUPERUSER unless opts.NoSuperuser), on a PostgreSQL server matching opts
// (at most one). The server is started on first use and shared with later
// calls with equal options; the database and role are dropped by
// t.Cleanup. With DBPROXY_TEST_PG_DSN set, the database and role are
// created on that server instead, and opts are not enforced. Without
// server binaries or that variable the test fails with an install hint.
func StartPostgres(t testing.TB, opts ...PGOptions) *Postgres {
	t.Helper()
	o, err := pgOptions(opts)
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	if dsn := os.Getenv(EnvPostgresDSN); dsn != "" {
		return externalPostgres(t, dsn, o)
	}
	srv := pgServerFor(t, o)

	ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
	defer cancel()
	role, password, db, err := createPGDatabase(ctx, srv.adminConnect, !o.NoSuperuser)
	if err != nil {
		// No log tail here: the server logs failed statements, and CREATE
		// ROLE carries the password.
		t.Fatalf("testenv: create PostgreSQL database (server log: %s): %v", srv.logPath, err)
	}
	t.Cleanup(func() { dropPGDatabase(t, srv.adminConnect, role, db) })
	p := &Postgres{
		Host:      "127.0.0.1",
		Port:      srv.port,
		User:      role,
		Password:  password,
		Database:  db,
		DataDir:   srv.dataDir,
		SocketDir: srv.sockDir,
		Auth:      o.Auth,
		TLS:       o.TLS,
		CAFile:    srv.caFile,
		srv:       srv,
		dedicated: o.Dedicated || !mainCalled.Load(),
	}
	super := *p
	super.User, super.Password = "postgres", ""
	p.super = &super
	return p
}

// pgServerFor returns the shared server for o, or a private one.
func pgServerFor(t testing.TB, o PGOptions) *pgServer {
	t.Helper()
	return serverFor(t, o.key(), o.Dedicated, fmt.Sprintf("PostgreSQL (auth=%s tls=%t)", o.Auth, o.TLS), func(ctx context.Context) (*pgServer, error) {
		return startPGServer(ctx, o)
	})
}

// pgServer is a PostgreSQL server started here.
type pgServer struct {
	bin     string // the postgres binary
	cred    *syscall.Credential
	dir     string // everything lives under here; removed on stop
	dataDir string
	sockDir string
	logPath string
	caFile  string
	port    int
	proc    *child
}

func startPGServer(ctx context.Context, o PGOptions) (*pgServer, error) {
	bindir, err := pgBinDir()
	if err != nil {
		return nil, err
	}
	cred, err := postgresCredential()
	if err != nil {
		return nil, err
	}
	s := &pgServer{bin: filepath.Join(bindir, "postgres"), cred: cred}
	err = inServerDir("pg", func(dir string) error {
		s.dir, s.dataDir = dir, filepath.Join(dir, "data")
		s.sockDir, s.logPath = filepath.Join(dir, "sock"), filepath.Join(dir, "postgres.log")
		return s.launch(ctx, filepath.Join(bindir, "initdb"), o)
	})
	if err != nil {
		return nil, err
	}
	return s, nil
}

// launch fills s's data directory from the cached template made by initdb,
// writes its configuration and starts s.bin on it, on a free port.
func (s *pgServer) launch(ctx context.Context, initdb string, o PGOptions) error {
	if err := os.Mkdir(s.sockDir, 0o755); err != nil {
		return fmt.Errorf("create socket dir: %w", err)
	}
	var certFile, keyFile string
	if o.TLS {
		var err error
		s.caFile, certFile, keyFile, err = generateCert(filepath.Join(s.dir, "tls"), "localhost", "127.0.0.1")
		if err != nil {
			return fmt.Errorf("server certificate: %w", err)
		}
	}
	if err := s.copyDataTemplate(initdb); err != nil {
		return err
	}
	if err := writePGConfig(s, o, certFile, keyFile); err != nil {
		return err
	}
	return startOnFreePort(ctx, launch{
		name: "postgres", logPath: s.logPath, stop: quitGroup,
		portTaken: []string{"could not create any TCP/IP sockets"},
		start: func(port int) (*child, error) {
			proc, err := startChild(s.bin,
				[]string{"-D", s.dataDir, "-p", strconv.Itoa(port)},
				childOpts{logPath: s.logPath, cred: s.cred, dir: s.dir})
			if err != nil {
				return nil, err
			}
			s.port, s.proc = port, proc
			return proc, nil
		},
		ready: s.waitReady,
	})
}

// copyDataTemplate copies the data directory initdb made once for these
// binaries and options (see cachedTemplate) into s.dataDir.
func (s *pgServer) copyDataTemplate(initdb string) error {
	initdbArgs := []string{"-A", "trust", "--auth-local=trust", "-U", "postgres",
		"-E", "UTF8", "--locale=C", "--no-sync", "--no-instructions"}
	identity := []string{binaryIdentity(initdb), binaryIdentity(s.bin), strings.Join(initdbArgs, " "), fmt.Sprint(s.cred)}
	tmpl, err := cachedTemplate("pg", identity, func(tdir string) error {
		if err := chownTree(tdir, s.cred); err != nil {
			return err
		}
		if err := runAs(s.cred, tdir, initdb, append([]string{"-D", filepath.Join(tdir, "data")}, initdbArgs...)...); err != nil {
			return fmt.Errorf("initdb: %w", err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	if err := chownTree(s.dir, s.cred); err != nil { // before the copy: only sock/ and tls/ so far
		return err
	}
	if err := copyTree(filepath.Join(tmpl, "data"), s.dataDir, s.cred); err != nil {
		return fmt.Errorf("copy data directory template: %w", err)
	}
	return nil
}

// ConnectPG connects to dsn with pgx, failing the test when it cannot;
// the connection is closed when the test ends.
func ConnectPG(t testing.TB, dsn string) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(func() { _ = c.Close(context.Background()) })
	return c
}

// quitGroup stops a postmaster and its backends with SIGQUIT,
// PostgreSQL's immediate shutdown.
func quitGroup(proc *child) { proc.stop(syscall.SIGQUIT, 10*time.Second) }

func writePGConfig(s *pgServer, o PGOptions, certFile, keyFile string) error {
	encryption := "scram-sha-256"
	if o.Auth == "md5" {
		encryption = "md5"
	}
	conf := []string{
		"",
		"# dbproxy testenv",
		"listen_addresses = '127.0.0.1'",
		"unix_socket_directories = " + pgQuote(s.sockDir),
		"fsync = off",
		"synchronous_commit = off",
		"full_page_writes = off",
		"wal_level = minimal",
		"max_wal_senders = 0",
		"max_connections = 200",
		"shared_buffers = 64MB",
		"timezone = 'UTC'",
		"log_timezone = 'UTC'",
		"password_encryption = " + pgQuote(encryption),
	}
	conf = append(conf, o.Settings...)
	if o.TLS {
		conf = append(conf,
			"ssl = on",
			"ssl_cert_file = "+pgQuote(certFile),
			"ssl_key_file = "+pgQuote(keyFile),
		)
	}
	f, err := os.OpenFile(filepath.Join(s.dataDir, "postgresql.conf"), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return fmt.Errorf("open postgresql.conf: %w", err)
	}
	_, err = f.WriteString(strings.Join(conf, "\n") + "\n")
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("write postgresql.conf: %w", err)
	}

	hostType := "host"
	if o.RequireTLS {
		hostType = "hostssl"
	}
	hba := strings.Join([]string{
		"# dbproxy testenv: admin work goes over the unix socket",
		"local all all trust",
		"host all postgres 127.0.0.1/32 trust",
		hostType + " all all 127.0.0.1/32 " + o.Auth,
		"",
	}, "\n")
	// The file exists (initdb made it), so WriteFile keeps its owner.
	if err := os.WriteFile(filepath.Join(s.dataDir, "pg_hba.conf"), []byte(hba), 0o600); err != nil {
		return fmt.Errorf("write pg_hba.conf: %w", err)
	}
	return nil
}

func pgQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

// waitReady polls the unix socket until the server accepts a login.
func (s *pgServer) waitReady(ctx context.Context) error {
	sock := filepath.Join(s.sockDir, ".s.PGSQL."+strconv.Itoa(s.port))
	return s.proc.waitSocket(ctx, sock, func(ctx context.Context) error {
		conn, err := s.adminConnect(ctx)
		if err != nil {
			return err
		}
		defer conn.Close(ctx)
		return conn.Ping(ctx)
	})
}

// adminConnect logs in as postgres over the unix socket.
func (s *pgServer) adminConnect(ctx context.Context) (*pgx.Conn, error) {
	cs := fmt.Sprintf("host=%s port=%d user=postgres dbname=postgres sslmode=disable connect_timeout=5",
		pgQuote(s.sockDir), s.port)
	return pgx.Connect(ctx, cs)
}

func (s *pgServer) stop() {
	if s.proc != nil {
		quitGroup(s.proc) // the data is thrown away
	}
	_ = os.RemoveAll(s.dir)
}

// createPGDatabase creates role u_<x> with a random password (SUPERUSER if
// super and the admin may grant it) and database t_<x> owned by it.
func createPGDatabase(ctx context.Context, connect func(context.Context) (*pgx.Conn, error), super bool) (role, password, db string, err error) {
	conn, err := connect(ctx)
	if err != nil {
		return "", "", "", fmt.Errorf("admin connection: %w", err)
	}
	defer conn.Close(context.Background())
	suffix := randomHex(6)
	role, db, password = "u_"+suffix, "t_"+suffix, randomHex(16)
	roleID, dbID := pgx.Identifier{role}.Sanitize(), pgx.Identifier{db}.Sanitize()
	attrs := "LOGIN"
	if super {
		attrs += " SUPERUSER"
	}
	_, err = conn.Exec(ctx, "CREATE ROLE "+roleID+" "+attrs+" PASSWORD "+pgQuote(password))
	var pgErr *pgconn.PgError
	if super && errors.As(err, &pgErr) && pgErr.Code == "42501" { // insufficient_privilege: not a superuser admin
		_, err = conn.Exec(ctx, "CREATE ROLE "+roleID+" LOGIN CREATEDB PASSWORD "+pgQuote(password))
		if err == nil {
			_, err = conn.Exec(ctx, "GRANT "+roleID+" TO CURRENT_USER")
		}
	}
	if err != nil {
		return "", "", "", fmt.Errorf("create role %s: %w", role, err)
	}
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+dbID+" OWNER "+roleID); err != nil {
		_, _ = conn.Exec(ctx, "DROP ROLE "+roleID)
		return "", "", "", fmt.Errorf("create database %s: %w", db, err)
	}
	return role, password, db, nil
}

// dropPGDatabase drops what createPGDatabase made. Failures are logged, not
// fatal: the server is thrown away at the end anyway.
func dropPGDatabase(t testing.TB, connect func(context.Context) (*pgx.Conn, error), role, db string) {
	ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
	defer cancel()
	conn, err := connect(ctx)
	if err != nil {
		t.Logf("testenv: drop database %s: admin connection: %v", db, err)
		return
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{db}.Sanitize()+" WITH (FORCE)"); err != nil {
		t.Logf("testenv: drop database %s: %v", db, err)
	}
	if _, err := conn.Exec(ctx, "DROP ROLE IF EXISTS "+pgx.Identifier{role}.Sanitize()); err != nil {
		t.Logf("testenv: drop role %s: %v", role, err)
	}
}

// externalPostgres provisions a database on the server named by
// DBPROXY_TEST_PG_DSN.
func externalPostgres(t testing.TB, dsn string, o PGOptions) *Postgres {
	t.Helper()
	u, err := url.Parse(dsn)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		t.Fatalf("testenv: %s must be a postgres:// URL", EnvPostgresDSN) // no echo: it holds a password
	}
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		t.Fatalf("testenv: parse %s: %v", EnvPostgresDSN, err) // pgx redacts the password
	}
	if o.Auth != "trust" || o.TLS || o.Dedicated {
		t.Logf("testenv: %s is set: options %+v are not applied to the external server", EnvPostgresDSN, o)
	}
	connect := func(ctx context.Context) (*pgx.Conn, error) { return pgx.Connect(ctx, dsn) }
	ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
	defer cancel()
	role, password, db, err := createPGDatabase(ctx, connect, !o.NoSuperuser)
	if err != nil {
		t.Fatalf("testenv: on the server of %s: %v", EnvPostgresDSN, err)
	}
	t.Cleanup(func() { dropPGDatabase(t, connect, role, db) })
	params := u.Query()
	p := &Postgres{
		Host:     cfg.Host,
		Port:     int(cfg.Port),
		User:     role,
		Password: password,
		Database: db,
		TLS:      cfg.TLSConfig != nil,
		CAFile:   params.Get("sslrootcert"),
		External: true,
		params:   params,
	}
	super := *p
	super.User, super.Password = cfg.User, cfg.Password
	p.super = &super
	return p
}

func cloneValues(v url.Values) url.Values {
	out := make(url.Values, len(v)+2)
	for k, vs := range v {
		out[k] = append([]string(nil), vs...)
	}
	return out
}
