package main

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/dbproxy/dbproxy/config"
	"github.com/dbproxy/dbproxy/crypto"
	"github.com/dbproxy/dbproxy/crypto/keys"
	"github.com/dbproxy/dbproxy/internal/testenv"
	"github.com/dbproxy/dbproxy/internal/testlog"
	"github.com/dbproxy/dbproxy/value"
)

// runCLI runs one dbproxy invocation in-process.
func runCLI(t *testing.T, environ map[string]string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	e := env{stdout: &out, stderr: &errb, getenv: func(k string) string { return environ[k] }}
	code = run(context.Background(), args, e)
	return code, out.String(), errb.String()
}

// keysInit runs `dbproxy keys init` on the config at cfgPath and fails the
// test unless it succeeds.
func keysInit(t *testing.T, cfgPath string) {
	t.Helper()
	if code, out, errs := runCLI(t, nil, "keys", "init", "--config", cfgPath); code != 0 {
		t.Fatalf("keys init: exit %d\n%s%s", code, out, errs)
	}
}

// localKeys is a keys section with a local master key file and a file
// keystore next to the config.
const localKeys = `
keys:
  master_key: {provider: local, file: master.key}
  store: {type: file, path: keys.json}
`

// localConfig is localKeys with rules for three columns of table users.
const localConfig = localKeys + `encryption:
  - table: users
    columns:
      - name: email
        mode: deterministic
        type: text
      - name: ssn
        type: text
      - name: salary
        type: bigint
`

// listenerYAML is a listeners section with one listener of protocol on
// addr in front of upstream, without TLS to it; each of extra is one more
// line of the listener's settings.
func listenerYAML(protocol, addr, upstream string, extra ...string) string {
	s := fmt.Sprintf(`
listeners:
  - protocol: %s
    listen: %s
    upstream: %s
    upstream_tls: {mode: disable}
`, protocol, addr, upstream)
	for _, line := range extra {
		s += "    " + line + "\n"
	}
	return s
}

func writeConfig(t *testing.T, body string) string {
	t.Helper()
	dir := t.TempDir()
	path := filepath.Join(dir, "dbproxy.yaml")
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func loadConfig(t *testing.T, path string) *config.Config {
	t.Helper()
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// openTestManager opens the key manager of cfg as the CLI does, with no
// environment and no logs; the caller closes it.
func openTestManager(t *testing.T, cfg *config.Config) (mgr *keys.Manager, closeFn func()) {
	t.Helper()
	e := env{stdout: &bytes.Buffer{}, stderr: &bytes.Buffer{}, getenv: func(string) string { return "" }}
	mgr, _, closeFn, err := openManager(context.Background(), cfg, e, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	return mgr, closeFn
}

// encryptText encrypts pt as text under the primary version of data key
// name.
func encryptText(t *testing.T, mgr *keys.Manager, name, pt string) []byte {
	t.Helper()
	k, err := mgr.Primary(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	ct, err := k.Encrypt(nil, []byte(pt), value.TypeText)
	if err != nil {
		t.Fatal(err)
	}
	return ct
}

// freeAddr returns a loopback address that was free a moment ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// waitLog waits until logs contain want.
func waitLog(t *testing.T, logs *testlog.Buffer, want string) {
	t.Helper()
	for range 200 {
		if logs.Contains(want) {
			return
		}
		time.Sleep(50 * time.Millisecond) // waiting for serve's start-up checks, not asserting a duration
	}
	t.Fatalf("logs lack %q:\n%s", want, logs.String())
}

// serveInBackground runs `dbproxy keys init` and then `dbproxy serve` on
// the config at cfgPath, in-process, until the test ends; then it checks
// that serve exited 0, and shows its logs if the test failed. The logs may
// be read while serve runs.
func serveInBackground(t *testing.T, cfgPath string, getenv func(string) string) *testlog.Buffer {
	t.Helper()
	keysInit(t, cfgPath)
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan int, 1)
	logs := &testlog.Buffer{}
	go func() {
		done <- run(ctx, []string{"serve", "--config", cfgPath}, env{stdout: logs, stderr: logs, getenv: getenv})
	}()
	t.Cleanup(func() {
		stop()
		if code := <-done; code != 0 {
			t.Errorf("serve exit %d", code)
		}
		if t.Failed() {
			t.Logf("serve logs:\n%s", logs.String())
		}
	})
	return logs
}

// usersTablePG and usersTableMySQL create the table of localConfig's rules.
const (
	usersTablePG    = `CREATE TABLE users (id serial PRIMARY KEY, email bytea, ssn bytea, salary bytea)`
	usersTableMySQL = `CREATE TABLE users (id INT AUTO_INCREMENT PRIMARY KEY, email VARBINARY(200), ssn VARBINARY(200), salary VARBINARY(100))`
)

// startPostgresWith starts a PostgreSQL for the test and runs create on it
// through direct, a connection straight to it. ctx ends with the test, two
// minutes at the most.
func startPostgresWith(t *testing.T, create string, opts ...testenv.PGOptions) (pg *testenv.Postgres, ctx context.Context, direct *pgx.Conn) {
	t.Helper()
	pg = testenv.StartPostgres(t, opts...)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	direct, err := pgx.Connect(ctx, pg.DSN())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { direct.Close(context.Background()) })
	if _, err := direct.Exec(ctx, create); err != nil {
		t.Fatal(err)
	}
	return pg, ctx, direct
}

// startMariaDBWith is startPostgresWith for MariaDB.
func startMariaDBWith(t *testing.T, create string) (my *testenv.MariaDB, ctx context.Context, direct *sql.DB) {
	t.Helper()
	my = testenv.StartMariaDB(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	direct, err := sql.Open("mysql", my.DSN())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { direct.Close() })
	if _, err := direct.ExecContext(ctx, create); err != nil {
		t.Fatal(err)
	}
	return my, ctx, direct
}

// pgURL is the URL of pg's database as its user through a proxy on addr.
func pgURL(pg *testenv.Postgres, addr string) string {
	u := url.URL{Scheme: "postgres", User: url.UserPassword(pg.User, pg.Password), Host: addr, Path: "/" + pg.Database, RawQuery: "sslmode=disable"}
	return u.String()
}

// untilListening calls try until it reports done, every 50 ms while the
// listener binds, 100 times at the most; it returns try's last error.
func untilListening(try func() (done bool, err error)) error {
	var err error
	for range 100 {
		var done bool
		if done, err = try(); done {
			return err
		}
		time.Sleep(50 * time.Millisecond) // waiting for the listener to bind, not asserting a duration
	}
	return err
}

// connectRetry connects to dsn once the listener answers; the connection
// is closed when the test ends.
func connectRetry(ctx context.Context, t *testing.T, dsn string) *pgx.Conn {
	t.Helper()
	var c *pgx.Conn
	err := untilListening(func() (bool, error) {
		var err error
		c, err = pgx.Connect(ctx, dsn)
		return err == nil, err
	})
	if err != nil {
		t.Fatalf("connect through serve: %v", err)
	}
	t.Cleanup(func() { _ = c.Close(context.Background()) })
	return c
}

// openMySQLRetry opens my's database as its user through a proxy on addr,
// once the listener answers; the handle is closed when the test ends.
func openMySQLRetry(ctx context.Context, t *testing.T, my *testenv.MariaDB, addr string) *sql.DB {
	t.Helper()
	db, err := sql.Open("mysql", fmt.Sprintf("%s:%s@tcp(%s)/%s", my.User, my.Password, addr, my.Database))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if err := untilListening(func() (bool, error) { err := db.PingContext(ctx); return err == nil, err }); err != nil {
		t.Fatalf("connect through serve: %v", err)
	}
	return db
}

// assertCiphertexts fails the test unless every value of stored is a
// ciphertext that holds none of plaintexts.
func assertCiphertexts(t *testing.T, stored [][]byte, plaintexts ...string) {
	t.Helper()
	for _, ct := range stored {
		leaks := false
		for _, p := range plaintexts {
			leaks = leaks || bytes.Contains(ct, []byte(p))
		}
		if !crypto.IsCiphertext(ct) || leaks {
			t.Errorf("stored value is not a ciphertext: %x", ct)
		}
	}
}

// insertWithoutColumns empties table users (usersTableMySQL) through
// direct, then inserts one row through db with no column list, and returns
// how many rows the table holds after and the INSERT's error.
func insertWithoutColumns(ctx context.Context, t *testing.T, db, direct *sql.DB) (n int, err error) {
	t.Helper()
	if _, err := direct.ExecContext(ctx, `DELETE FROM users`); err != nil {
		t.Fatal(err)
	}
	_, err = db.ExecContext(ctx, `INSERT INTO users VALUES (NULL, ?, ?, ?)`, "serve@example.com", "123-45-6789", int64(99))
	if err := direct.QueryRowContext(ctx, `SELECT COUNT(*) FROM users`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n, err
}
