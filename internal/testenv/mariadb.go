package testenv

import (
	"context"
	"database/sql"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
)

// MariaDB is one test's database on a (usually shared) MariaDB server:
// a fresh database and a user u_<x>, defined for both '%' and 'localhost',
// with all privileges on it.
type MariaDB struct {
	Host     string // "127.0.0.1" for servers started here
	Port     int
	User     string
	Password string
	Database string
	DataDir  string // "" for an external server
	// Socket is the server's unix socket ("" for an external server).
	Socket   string
	External bool // named by DBPROXY_TEST_MYSQL_DSN, not started here
	// CAFile verifies the server's TLS certificate (for 127.0.0.1 and
	// localhost); "" for an external server. TLS is optional for clients.
	CAFile string

	super     *MariaDB
	srv       *mariaDBServer // the server started here; nil for an external one
	dedicated bool
}

// MariaDBOptions selects the kind of MariaDB server. Servers are shared
// between all calls with equal options in one test binary (when the binary
// runs under Main).
type MariaDBOptions struct {
	// Dedicated starts a server for this call alone, stopped by t.Cleanup
	// (needed for Kill and Restart).
	Dedicated bool
	// Args are mariadbd options ("--max-connections=6000",
	// "--innodb-flush-log-at-trx-commit=1") placed after the harness's own,
	// so they override them. Part of the server's identity.
	Args []string
}

func (o MariaDBOptions) key() string { return fmt.Sprintf("mariadb args=%q", o.Args) }

// DSN returns a go-sql-driver DSN: "user:pass@tcp(host:port)/db".
func (m *MariaDB) DSN() string {
	return fmt.Sprintf("%s:%s@tcp(%s)/%s", m.User, m.Password, m.Addr(), m.Database)
}

// Addr returns "host:port".
func (m *MariaDB) Addr() string { return net.JoinHostPort(m.Host, strconv.Itoa(m.Port)) }

// Superuser returns connection information for an administrator on the
// same server and Database: root@127.0.0.1 without password on servers
// started here, the admin of DBPROXY_TEST_MYSQL_DSN otherwise.
func (m *MariaDB) Superuser() *MariaDB {
	if m.super == nil {
		return m
	}
	return m.super
}

// StartMariaDB returns a fresh database and user on a MariaDB server that is
// started on first use and shared by the whole test binary (when it runs
// under Main). The database and user are dropped by t.Cleanup. With
// DBPROXY_TEST_MYSQL_DSN set they are created on that server instead.
// Without server binaries or that variable the test fails with an install
// hint.
func StartMariaDB(t testing.TB, opts ...MariaDBOptions) *MariaDB {
	t.Helper()
	var o MariaDBOptions
	switch len(opts) {
	case 0:
	case 1:
		o = opts[0]
	default:
		t.Fatalf("testenv: StartMariaDB takes at most one MariaDBOptions, got %d", len(opts))
	}
	var (
		connect func() (*sql.DB, error)
		m       *MariaDB
	)
	if dsn := os.Getenv(EnvMySQLDSN); dsn != "" {
		cfg, err := mysql.ParseDSN(dsn)
		if err != nil {
			t.Fatalf("testenv: parse %s: %v", EnvMySQLDSN, err) // the driver's errors do not echo the DSN
		}
		cfg.DBName = ""
		host, portStr, err := net.SplitHostPort(cfg.Addr)
		if err != nil || cfg.Net != "tcp" {
			t.Fatalf("testenv: %s must name a tcp(host:port) address", EnvMySQLDSN)
		}
		port, _ := strconv.Atoi(portStr)
		connect = func() (*sql.DB, error) { return openMySQL(cfg) }
		m = &MariaDB{Host: host, Port: port, External: true,
			super: &MariaDB{Host: host, Port: port, User: cfg.User, Password: cfg.Passwd, External: true}}
	} else {
		srv := mariaDBServerFor(t, o)
		connect = srv.adminConnect
		m = &MariaDB{Host: "127.0.0.1", Port: srv.port, DataDir: srv.dataDir, Socket: srv.socket, CAFile: srv.caFile,
			srv: srv, dedicated: o.Dedicated || !mainCalled.Load(),
			super: &MariaDB{Host: "127.0.0.1", Port: srv.port, User: "root", DataDir: srv.dataDir, Socket: srv.socket}}
	}

	ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
	defer cancel()
	db, err := connect()
	if err != nil {
		t.Fatalf("testenv: MariaDB admin connection: %v", err)
	}
	defer db.Close()
	suffix := randomHex(6)
	m.User, m.Password, m.Database = "u_"+suffix, randomHex(16), "t_"+suffix
	m.super.Database = m.Database
	stmts := []string{"CREATE DATABASE `" + m.Database + "`"}
	for _, host := range []string{"%", "localhost"} {
		account := "'" + m.User + "'@'" + host + "'"
		stmts = append(stmts,
			"CREATE USER "+account+" IDENTIFIED BY '"+m.Password+"'",
			"GRANT ALL PRIVILEGES ON `"+m.Database+"`.* TO "+account)
	}
	t.Cleanup(func() { dropMariaDB(t, connect, m.User, m.Database) })
	for _, s := range stmts {
		if _, err := db.ExecContext(ctx, s); err != nil {
			// Statements hold the password: name only what failed.
			stmt, _, _ := strings.Cut(s, " IDENTIFIED")
			t.Fatalf("testenv: MariaDB %s: %v", stmt, err)
		}
	}
	return m
}

func dropMariaDB(t testing.TB, connect func() (*sql.DB, error), user, database string) {
	ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
	defer cancel()
	db, err := connect()
	if err != nil {
		t.Logf("testenv: drop MariaDB database %s: %v", database, err)
		return
	}
	defer db.Close()
	for _, s := range []string{
		"DROP DATABASE IF EXISTS `" + database + "`",
		"DROP USER IF EXISTS '" + user + "'@'%', '" + user + "'@'localhost'",
	} {
		if _, err := db.ExecContext(ctx, s); err != nil {
			t.Logf("testenv: %s: %v", s, err)
		}
	}
}

func openMySQL(cfg *mysql.Config) (*sql.DB, error) {
	conn, err := mysql.NewConnector(cfg)
	if err != nil {
		return nil, fmt.Errorf("mysql connector: %w", err)
	}
	db := sql.OpenDB(conn)
	db.SetMaxOpenConns(1)
	return db, nil
}

func mariaDBServerFor(t testing.TB, o MariaDBOptions) *mariaDBServer {
	t.Helper()
	return serverFor(t, o.key(), o.Dedicated, "MariaDB", func(ctx context.Context) (*mariaDBServer, error) {
		return startMariaDBServer(ctx, o)
	})
}

// mariaDBServer is a MariaDB server started here, running as root with
// everything under dir.
type mariaDBServer struct {
	dir     string
	dataDir string
	socket  string
	logPath string
	caFile  string
	port    int
	bin     string   // mariadbd
	args    []string // its command line, for Restart
	proc    *child
}

func startMariaDBServer(ctx context.Context, o MariaDBOptions) (*mariaDBServer, error) {
	installDB, err := lookBin("mariadb-install-db", "mysql_install_db")
	if err != nil {
		return nil, err
	}
	mariadbd, err := lookBin("mariadbd", "mysqld")
	if err != nil {
		return nil, err
	}
	s := &mariaDBServer{bin: mariadbd}
	err = inServerDir("mariadb", func(dir string) error {
		s.dir, s.dataDir = dir, filepath.Join(dir, "data")
		s.socket, s.logPath = filepath.Join(dir, "sock"), filepath.Join(dir, "mariadb.log")
		return s.launch(ctx, installDB, o)
	})
	if err != nil {
		return nil, err
	}
	// Anonymous users (''@'localhost', ''@'<hostname>') would shadow a
	// 'u'@'%' login from 127.0.0.1.
	if err := s.dropAnonymousUsers(ctx); err != nil {
		s.stop()
		return nil, logError("drop anonymous users", err, s.logPath)
	}
	return s, nil
}

// launch fills s's data directory from the cached template made by
// installDB and starts s.bin on it, on a free port.
func (s *mariaDBServer) launch(ctx context.Context, installDB string, o MariaDBOptions) error {
	user := "--user=" + currentUserName()
	installArgs := []string{user, "--auth-root-authentication-method=normal", "--skip-test-db",
		"--innodb-log-file-size=16M", "--innodb-buffer-pool-size=64M", "--skip-log-bin"}
	identity := []string{binaryIdentity(installDB), binaryIdentity(s.bin), strings.Join(installArgs, " ")}
	tmpl, err := cachedTemplate("mariadb", identity, func(tdir string) error {
		args := append([]string{"--no-defaults", "--datadir=" + filepath.Join(tdir, "data")}, installArgs...)
		if err := runAs(nil, tdir, installDB, args...); err != nil {
			return fmt.Errorf("mariadb-install-db: %w", err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	if err := copyTree(filepath.Join(tmpl, "data"), s.dataDir, nil); err != nil {
		return fmt.Errorf("copy data directory template: %w", err)
	}
	tlsArgs, caFile, err := mariaDBTLSArgs(filepath.Join(s.dir, "tls"))
	if err != nil {
		return err
	}
	s.caFile = caFile
	return startOnFreePort(ctx, launch{
		name: "mariadbd", logPath: s.logPath, stop: killGroup,
		portTaken: []string{"Address already in use", "Can't start server: Bind"},
		start: func(port int) (*child, error) {
			args := append(s.serverArgs(user, port), tlsArgs...)
			args = append(args, o.Args...)
			proc, err := startChild(s.bin, args, childOpts{logPath: s.logPath, dir: s.dir})
			if err != nil {
				return nil, err
			}
			s.port, s.proc, s.args = port, proc, args
			return proc, nil
		},
		ready: s.waitReady,
	})
}

// serverArgs are mariadbd's options for s on port, run as user.
func (s *mariaDBServer) serverArgs(user string, port int) []string {
	return []string{
		"--no-defaults",
		"--datadir=" + s.dataDir,
		user,
		"--port=" + strconv.Itoa(port),
		"--bind-address=127.0.0.1",
		"--socket=" + s.socket,
		"--pid-file=" + filepath.Join(s.dir, "mariadbd.pid"),
		"--tmpdir=" + s.dir, // its own internal temporary tables, away from /tmp
		"--skip-log-bin",
		"--skip-name-resolve",
		"--innodb-buffer-pool-size=64M",
		"--innodb-log-file-size=16M",
		"--innodb-flush-log-at-trx-commit=0",
		"--max-connections=200",
	}
}

func currentUserName() string {
	if os.Geteuid() == 0 {
		return "root"
	}
	if u := os.Getenv("USER"); u != "" {
		return u
	}
	return strconv.Itoa(os.Geteuid())
}

func (s *mariaDBServer) adminConfig() *mysql.Config {
	cfg := mysql.NewConfig()
	cfg.User = "root"
	cfg.Net = "unix"
	cfg.Addr = s.socket
	cfg.Timeout = 5 * time.Second
	return cfg
}

func (s *mariaDBServer) adminConnect() (*sql.DB, error) { return openMySQL(s.adminConfig()) }

func (s *mariaDBServer) waitReady(ctx context.Context) error {
	db, err := s.adminConnect()
	if err != nil {
		return err
	}
	defer db.Close()
	return s.proc.waitSocket(ctx, s.socket, func(ctx context.Context) error {
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		return db.PingContext(pctx)
	})
}

func (s *mariaDBServer) dropAnonymousUsers(ctx context.Context) error {
	db, err := s.adminConnect()
	if err != nil {
		return err
	}
	defer db.Close()
	rows, err := db.QueryContext(ctx, "SELECT Host FROM mysql.user WHERE User = ''")
	if err != nil {
		return fmt.Errorf("list anonymous users: %w", err)
	}
	var hosts []string
	for rows.Next() {
		var h string
		if err := rows.Scan(&h); err != nil {
			rows.Close()
			return fmt.Errorf("list anonymous users: %w", err)
		}
		hosts = append(hosts, h)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("list anonymous users: %w", err)
	}
	for _, h := range hosts {
		if _, err := db.ExecContext(ctx, "DROP USER ''@'"+strings.ReplaceAll(h, "'", "''")+"'"); err != nil {
			return fmt.Errorf("drop anonymous user @%s: %w", h, err)
		}
	}
	return nil
}

func (s *mariaDBServer) stop() {
	if s.proc != nil {
		killGroup(s.proc) // the data is thrown away
	}
	_ = os.RemoveAll(s.dir)
}
