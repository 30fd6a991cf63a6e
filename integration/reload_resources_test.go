package integration

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/go-mysql-org/go-mysql/client"
	gomysql "github.com/go-mysql-org/go-mysql/mysql"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/dbproxy/dbproxy/internal/testenv"
)

// reloadEnv is the dbproxy binary serving a PostgreSQL and a MySQL
// listener, both encrypting notes.email (and, in some variants,
// notes.extra), each with its own catalog login, reloaded by SIGHUP.
type reloadEnv struct {
	pg, my           string // listener addresses
	pgDB             *testenv.Postgres
	myDB             *testenv.MariaDB
	pgCat, myCat     string // catalog users
	pgAdmin          *pgx.Conn
	myAdmin          *sql.DB
	proxy            *dbproxyProc
	listenersAndKeys string
}

// Variants of the encryption: section. B adds a column (both listeners
// change); C differs from A only in the PostgreSQL schema (quoted, so
// PostgreSQL reads it as another schema; MySQL has no schemas), so only the
// PostgreSQL listener changes.
const (
	reloadRulesA = `
encryption:
  - table: notes
    columns:
      - name: email
        mode: deterministic
        type: text
        key: notes.email
`
	reloadRulesB = reloadRulesA + `      - name: extra
        type: text
        key: notes.extra
`
	reloadRulesC = `
encryption:
  - table: notes
    schema: '"Public"'
    columns:
      - name: email
        mode: deterministic
        type: text
        key: notes.email
`
)

func startReloadEnv(t *testing.T) *reloadEnv {
	t.Helper()
	e := &reloadEnv{pgDB: testenv.StartPostgres(t), myDB: testenv.StartMariaDB(t)}
	ctx := testCtx(t)
	// The catalog logins are other users of the same servers.
	pgCat, myCat := testenv.StartPostgres(t), testenv.StartMariaDB(t)
	e.pgCat, e.myCat = pgCat.User, myCat.User
	e.pgAdmin = testenv.ConnectPG(t, e.pgDB.Superuser().DSN())
	e.myAdmin = adminDB(t, e.myDB)
	e.myAdmin.SetMaxOpenConns(1)
	if _, err := e.pgAdmin.Exec(ctx, `CREATE TABLE notes (id serial PRIMARY KEY, email bytea, extra bytea)`); err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{
		"CREATE TABLE notes (id INT AUTO_INCREMENT PRIMARY KEY, email VARBINARY(512), extra VARBINARY(512))",
		"GRANT SELECT ON `" + e.myDB.Database + "`.* TO '" + myCat.User + "'@'%'",
		"GRANT SELECT ON `" + e.myDB.Database + "`.* TO '" + myCat.User + "'@'localhost'",
	} {
		if _, err := e.myAdmin.ExecContext(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}

	e.pg, e.my = freeListenAddr(t), freeListenAddr(t)
	e.listenersAndKeys = listenersYAML(
		listenerYAML{name: "pg", protocol: "postgres", listen: e.pg, upstream: e.pgDB.Addr(), catalogUser: pgCat.User, passwordEnv: "RELOAD_PG_CATALOG_PASSWORD"},
		listenerYAML{name: "my", protocol: "mysql", listen: e.my, upstream: e.myDB.Addr(), catalogUser: myCat.User, passwordEnv: "RELOAD_MY_CATALOG_PASSWORD"},
	) + localKeysYAML + `  cache:
    ttl: 1s
shutdown_timeout: 5s
`
	// keys init creates the keys of every variant
	e.proxy = newDBProxy(t, buildDBProxy(t), "", e.listenersAndKeys+reloadRulesB,
		[]string{"RELOAD_PG_CATALOG_PASSWORD=" + pgCat.Password, "RELOAD_MY_CATALOG_PASSWORD=" + myCat.Password},
		e.pg, e.my)
	e.proxy.keysInit(t)
	e.proxy.writeConfig(t, e.listenersAndKeys+reloadRulesA)
	e.proxy.start(t)
	e.proxy.stopAtCleanup(t)
	return e
}

// reload writes rules into the config, sends SIGHUP and waits for the
// proxy to log the outcome; it returns that log line.
func (e *reloadEnv) reload(t *testing.T, rules string) string {
	t.Helper()
	return e.proxy.reload(t, e.listenersAndKeys+rules)
}

func (e *reloadEnv) pgDSN() string {
	return fmt.Sprintf("postgres://%s:%s@%s/%s?sslmode=disable", e.pgDB.User, e.pgDB.Password, e.pg, e.pgDB.Database)
}

// pgSession opens a session through the PostgreSQL listener, writes and
// reads back an encrypted value, and closes it.
func (e *reloadEnv) pgSession(t *testing.T, v string) {
	t.Helper()
	ctx := testCtx(t)
	c, err := pgx.Connect(ctx, e.pgDSN())
	if err != nil {
		t.Fatalf("connect through the PostgreSQL listener: %v", err)
	}
	defer c.Close(context.Background())
	var got string
	if err := c.QueryRow(ctx, `INSERT INTO notes (email) VALUES ($1) RETURNING email`, v).Scan(&got); err != nil || got != v {
		t.Fatalf("PostgreSQL session: %q, %v; want %q", got, err, v)
	}
}

// myConnect opens a raw client session through the MySQL listener (a raw
// client reads the error a drained session gets, which database/sql would
// turn into a retry).
func (e *reloadEnv) myConnect(t *testing.T) *client.Conn {
	t.Helper()
	c, err := client.Connect(e.my, e.myDB.User, e.myDB.Password, e.myDB.Database)
	if err != nil {
		t.Fatalf("connect through the MySQL listener: %v", err)
	}
	if _, err := c.Execute("SET NAMES utf8mb4"); err != nil {
		c.Close()
		t.Fatalf("SET NAMES through the MySQL listener: %v", err)
	}
	return c
}

// mySession is pgSession through the MySQL listener.
func (e *reloadEnv) mySession(t *testing.T, v string) {
	t.Helper()
	c := e.myConnect(t)
	// COM_QUIT, as drivers end a session. (A client that only closes its
	// socket after a prepared statement can leave the proxy's session,
	// and its server connection, open: a relay issue outside this test.)
	defer c.Quit()
	if _, err := c.Execute(`INSERT INTO notes (email) VALUES (?)`, v); err != nil {
		t.Fatalf("MySQL session: insert: %v", err)
	}
	r, err := c.Execute(`SELECT email FROM notes WHERE email = ?`, v)
	if err != nil {
		t.Fatalf("MySQL session: select: %v", err)
	}
	if got, _ := r.GetString(0, 0); r.RowNumber() != 1 || got != v {
		t.Fatalf("MySQL session read %d rows, %q; want %q", r.RowNumber(), got, v)
	}
}

// backends counts the proxy's connections to each server, read directly:
// the catalog logins, and the sessions (as the test's user).
type backends struct{ pgCatalog, pgSessions, myCatalog, mySessions int }

func (e *reloadEnv) backends(t *testing.T) backends {
	t.Helper()
	ctx := testCtx(t)
	var b backends
	if err := e.pgAdmin.QueryRow(ctx, `SELECT count(*) FILTER (WHERE usename = $1), count(*) FILTER (WHERE usename = $2)
		FROM pg_stat_activity WHERE pid <> pg_backend_pid()`, e.pgCat, e.pgDB.User).Scan(&b.pgCatalog, &b.pgSessions); err != nil {
		t.Fatal(err)
	}
	list, err := processList(ctx, e.myAdmin)
	if err != nil {
		t.Fatal(err)
	}
	for _, row := range list {
		switch row["user"] {
		case e.myCat:
			b.myCatalog++
		case e.myDB.User:
			b.mySessions++
		}
	}
	return b
}

// TestReloadReleasesResources: 50 reloads that change the rules of both
// listeners, each followed by a session through each, leave the proxy with
// no more connections to either server than after the first: a retired
// encryption layer closes its catalog connections once its last session
// has ended.
func TestReloadReleasesResources(t *testing.T) {
	e := startReloadEnv(t)
	e.pgSession(t, "start@pg")
	e.mySession(t, "start@my")
	var first backends
	for i := 1; i <= 50; i++ {
		rules := reloadRulesB
		if i%2 == 0 {
			rules = reloadRulesA
		}
		if line := e.reload(t, rules); !strings.Contains(line, "listeners=\"[pg my]\"") {
			t.Fatalf("reload #%d did not change both listeners: %s", i, line)
		}
		e.pgSession(t, fmt.Sprintf("r%d@pg", i))
		e.mySession(t, fmt.Sprintf("r%d@my", i))
		if i == 1 {
			// Each listener's current layer has its catalog connection;
			// the sessions are gone once the server has seen them end.
			waitFor(t, "the sessions after the first reload to end", func() bool {
				first = e.backends(t)
				return first.pgSessions == 0 && first.mySessions == 0
			})
			if first.pgCatalog != 1 || first.myCatalog != 1 {
				t.Fatalf("after the first reload: %+v; want one catalog connection to each server", first)
			}
		}
	}
	var last backends
	waitFor(t, "the proxy's connections to settle at their count after the first reload", func() bool {
		last = e.backends(t)
		return last.pgCatalog <= first.pgCatalog && last.myCatalog <= first.myCatalog && last.pgSessions == 0 && last.mySessions == 0
	})
	t.Logf("proxy connections after reload 1: %+v; after reload 50: %+v", first, last)
}

// TestReloadDrainsOnlyChangedListeners: a reload that changes only what
// the PostgreSQL listener encrypts ends its open sessions with the "rules
// changed" error at their next statement, while the MySQL listener's
// session goes on; a reload changing nothing ends nothing; one changing
// both ends the MySQL session too.
func TestReloadDrainsOnlyChangedListeners(t *testing.T) {
	e := startReloadEnv(t)
	ctx := testCtx(t)
	pgc := testenv.ConnectPG(t, e.pgDSN())
	myc := e.myConnect(t)
	defer myc.Close()
	if _, err := pgc.Exec(ctx, `INSERT INTO notes (email) VALUES ($1)`, "a@pg"); err != nil {
		t.Fatal(err)
	}
	if _, err := myc.Execute(`INSERT INTO notes (email) VALUES (?)`, "a@my"); err != nil {
		t.Fatal(err)
	}

	if line := e.reload(t, reloadRulesA); !strings.Contains(line, "no listener's encryption rules or keys changed") {
		t.Fatalf("reload to the same rules: %s", line)
	}
	if _, err := pgc.Exec(ctx, `INSERT INTO notes (email) VALUES ($1)`, "b@pg"); err != nil {
		t.Fatalf("PostgreSQL session after a reload that changed nothing: %v", err)
	}

	if line := e.reload(t, reloadRulesC); !strings.Contains(line, `listeners=[pg] `) {
		t.Fatalf("schema-only reload should change the PostgreSQL listener only: %s", line)
	}
	// Idle, it is ended at once with a FATAL: read it without sending
	// anything.
	err := pgc.PgConn().WaitForNotification(ctx)
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != "57P01" || !strings.Contains(pe.Message, "encryption rules changed") {
		t.Fatalf("PostgreSQL session after its rules changed: %v; want FATAL 57P01 saying the encryption rules changed", err)
	}
	if _, err := myc.Execute(`INSERT INTO notes (email) VALUES (?)`, "b@my"); err != nil {
		t.Fatalf("MySQL session after a reload that left its rules alone: %v", err)
	}

	if line := e.reload(t, reloadRulesB); !strings.Contains(line, `listeners="[pg my]"`) {
		t.Fatalf("reload adding a column should change both listeners: %s", line)
	}
	// The idle session is ended at once with an ERR packet the server
	// itself would send unasked (sequence 0), which the raw client reads.
	myc.ResetSequence()
	pkt, err := myc.ReadPacket()
	if err != nil || len(pkt) == 0 || pkt[0] != gomysql.ERR_HEADER {
		t.Fatalf("MySQL session after its rules changed: packet %q, %v; want an ERR packet", pkt, err)
	}
	var me *gomysql.MyError
	if err := myc.HandleErrorPacket(pkt); !errors.As(err, &me) || me.Code != 1927 || !strings.Contains(me.Message, "encryption rules changed") {
		t.Fatalf("MySQL session after its rules changed: %v; want error 1927 saying the encryption rules changed", err)
	}
	e.pgSession(t, "c@pg")
	e.mySession(t, "c@my")
}

// TestKeysFailClosedWithinTTL: with cache.ttl 1s, removing the master key
// file while serving makes encrypted INSERTs fail within a few seconds,
// with an error naming the file, and nothing reaches the table; restoring
// the file makes them work again, without a restart.
func TestKeysFailClosedWithinTTL(t *testing.T) {
	e := startReloadEnv(t)
	ctx := testCtx(t)
	master := filepath.Join(e.proxy.dir, "master.key")
	saved, err := os.ReadFile(master)
	if err != nil {
		t.Fatal(err)
	}
	pgc := testenv.ConnectPG(t, e.pgDSN())
	myc := e.myConnect(t)
	defer myc.Close()
	rowsPG := func() (n int) {
		if err := e.pgAdmin.QueryRow(ctx, `SELECT count(*) FROM notes`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	rowsMy := func() (n int) {
		if err := e.myAdmin.QueryRowContext(ctx, `SELECT count(*) FROM notes`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	if _, err := pgc.Exec(ctx, `INSERT INTO notes (email) VALUES ($1)`, "before@pg"); err != nil {
		t.Fatal(err)
	}
	if _, err := myc.Execute(`INSERT INTO notes (email) VALUES (?)`, "before@my"); err != nil {
		t.Fatal(err)
	}

	if err := os.Remove(master); err != nil {
		t.Fatal(err)
	}
	// Inserts go on while the cached key lives (at most 1s), then fail.
	// Every insert that succeeds adds exactly its row; a failing one adds
	// none.
	for _, l := range []struct {
		name   string
		insert func(v string) error
		rows   func() int
		want   string // in the error
	}{
		{"PostgreSQL", func(v string) error {
			_, err := pgc.Exec(ctx, `INSERT INTO notes (email) VALUES ($1)`, v)
			return err
		}, rowsPG, master},
		// The MySQL layer tells the client which column it could not
		// encrypt, not why.
		{"MySQL", func(v string) error { _, err := myc.Execute(`INSERT INTO notes (email) VALUES (?)`, v); return err }, rowsMy,
			"cannot encrypt a parameter for notes.email"},
	} {
		var failure error
		i := 0
		waitFor(t, l.name+" inserts to fail without the master key file", func() bool {
			i++
			before := l.rows()
			failure = l.insert(fmt.Sprintf("during%d", i))
			after := l.rows()
			if failure == nil && after != before+1 || failure != nil && after != before {
				t.Fatalf("%s insert (%v) changed the row count from %d to %d", l.name, failure, before, after)
			}
			return failure != nil
		})
		if !strings.Contains(failure.Error(), l.want) {
			t.Fatalf("%s insert without the master key file: %v; want an error containing %q", l.name, failure, l.want)
		}
	}
	var plain int
	if err := e.pgAdmin.QueryRow(ctx, `SELECT count(*) FROM notes WHERE position('during'::bytea in email) > 0`).Scan(&plain); err != nil || plain != 0 {
		t.Fatalf("plaintext rows in PostgreSQL: %d, %v", plain, err)
	}
	if err := e.myAdmin.QueryRowContext(ctx, `SELECT count(*) FROM notes WHERE LOCATE('during', email) > 0`).Scan(&plain); err != nil || plain != 0 {
		t.Fatalf("plaintext rows in MySQL: %d, %v", plain, err)
	}

	if err := os.WriteFile(master, saved, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := pgc.Exec(ctx, `INSERT INTO notes (email) VALUES ($1)`, "after@pg"); err != nil {
		t.Fatalf("PostgreSQL insert with the master key file restored: %v", err)
	}
	if _, err := myc.Execute(`INSERT INTO notes (email) VALUES (?)`, "after@my"); err != nil {
		t.Fatalf("MySQL insert with the master key file restored: %v", err)
	}
	var got string
	if err := pgc.QueryRow(ctx, `SELECT email FROM notes WHERE email = $1`, "after@pg").Scan(&got); err != nil || got != "after@pg" {
		t.Fatalf("read back through the proxy: %q, %v", got, err)
	}
}
