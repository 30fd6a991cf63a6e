package integration

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	driver "github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5"

	"github.com/dbproxy/dbproxy/internal/testenv"
)

// The RSS tests run the real `dbproxy serve` binary and sample its resident
// set from /proc while it streams a large result of encrypted columns:
// 100k rows and 5 reloads in `make test`, 500k rows and 20 reloads (the
// figures the budgets are set for) with DBPROXY_RELIABILITY=1 (make
// reliability):
//
//	DBPROXY_RELIABILITY=1 go test -count=1 -timeout 30m -v -run 'TestRSS' ./integration/
const (
	// rssStreamBudget bounds the proxy's RSS growth while one client
	// streams the whole result.
	rssStreamBudget = 64 << 20
	// rssReloadBudget bounds the proxy's RSS while four clients stream it
	// at once after rssReloads() rule-changing reloads, above its RSS before
	// the reloads.
	rssReloadBudget = 128 << 20
	// rssSeedRows are written through the proxy (encrypted); the rest are
	// copies of their ciphertexts made by the server.
	rssSeedRows = 1000
	rssSSN      = "123-45-6789"
)

// rssRows is the size of the streamed result: 500k in the long suite,
// 100k in `make test`.
func rssRows() int {
	if reliabilityLong() {
		return 500_000
	}
	return 100_000
}

// rssReloads is how many rule-changing reloads come before the four
// concurrent reads: 20 in the long suite, 5 in `make test`.
func rssReloads() int {
	if reliabilityLong() {
		return 20
	}
	return 5
}

func needProc(t *testing.T) {
	t.Helper()
	if _, err := os.Stat("/proc/self/status"); err != nil {
		t.Fatal("the RSS tests read /proc/<pid>/status")
	}
}

// startRSSProxy runs `dbproxy keys init` in dir with the configuration
// of every rule the test will load, then `dbproxy serve` with the first
// one; cfg(extra) is rssConfig with its listen address filled in.
func startRSSProxy(t *testing.T, bin, dir, listener string, env []string) (d *dbproxyProc, cfg func(extra bool) string) {
	t.Helper()
	addr := freeListenAddr(t)
	cfg = func(extra bool) string { return fmt.Sprintf(rssConfig(listener, extra), addr) }
	d = newDBProxy(t, bin, dir, cfg(true), env, addr)
	d.keysInit(t)
	d.writeConfig(t, cfg(false))
	d.start(t)
	d.stopAtCleanup(t)
	return d, cfg
}

// rssReader reads the whole result through the proxy; slow readers pause
// every 200 rows so that the proxy's writes block on the client.
type rssReader func(ctx context.Context, addr string, slow bool) error

// rssConfig is the serve configuration of an RSS test: one listener
// (%[1]s is its address), users encrypted, and an extra rule for table
// audit when extra is set (the reloads toggle it).
func rssConfig(listener string, extra bool) string {
	rules := `
encryption:
  - table: users
    columns:
      - {name: email, mode: deterministic, type: text}
      - {name: ssn, type: text}
      - {name: salary, type: bigint}
`
	if extra {
		rules += `  - table: audit
    columns:
      - {name: note, type: text}
`
	}
	return listener + localKeysYAML + "log: {level: info}\n" + rules
}

// runRSS streams the result with a fast and a slow reader, each measured
// against the RSS before it; then, in a fresh proxy, does rssReloads()
// rule-changing reloads (each followed by a query in a new session) and
// streams with four readers at once.
func runRSS(t *testing.T, listener string, env []string, read rssReader, small func(ctx context.Context, addr string) error) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	dir := t.TempDir() // one keystore for both proxies: the rows stay readable
	bin := buildDBProxy(t)
	t.Run("stream", func(t *testing.T) {
		d, _ := startRSSProxy(t, bin, dir, listener, env)
		addr := d.listens[0]
		if err := small(ctx, addr); err != nil {
			t.Fatalf("warm-up query: %v", err)
		}
		for _, slow := range []bool{false, true} {
			name := map[bool]string{false: "fast", true: "slow"}[slow]
			before := procRSSKB(t, d.pid()) << 10
			var err error
			start := time.Now()
			peak := peakRSS(d.pid(), func() { err = read(ctx, addr, slow) })
			if err != nil {
				t.Fatalf("%s reader: %v", name, err)
			}
			growth := peak - before
			t.Logf("%s reader: %d rows in %v; RSS %.1f MB before, peak %.1f MB (+%.1f MB; budget %d MB)",
				name, rssRows(), time.Since(start).Round(time.Millisecond), mb(before), mb(peak), mb(growth), rssStreamBudget>>20)
			if growth > rssStreamBudget {
				t.Errorf("%s reader: RSS grew by %.1f MB while streaming %d rows, over the %d MB budget",
					name, mb(growth), rssRows(), rssStreamBudget>>20)
			}
		}
	})
	t.Run("after reloads", func(t *testing.T) {
		d, cfg := startRSSProxy(t, bin, dir, listener, env)
		addr := d.listens[0]
		if err := small(ctx, addr); err != nil {
			t.Fatalf("warm-up query: %v", err)
		}
		before := procRSSKB(t, d.pid()) << 10
		for i := range rssReloads() {
			if line := d.reload(t, cfg(i%2 == 0)); !strings.Contains(line, "new encryption rules apply") {
				t.Fatalf("reload %d did not change the rules: %s", i+1, line)
			}
			if err := small(ctx, addr); err != nil {
				t.Fatalf("query after reload %d: %v", i+1, err)
			}
		}
		afterReloads := procRSSKB(t, d.pid()) << 10
		errs := make(chan error, 4)
		start := time.Now()
		peak := peakRSS(d.pid(), func() {
			var wg sync.WaitGroup
			for i := range 4 {
				wg.Go(func() { errs <- read(ctx, addr, i%2 == 1) })
			}
			wg.Wait()
		})
		close(errs)
		for err := range errs {
			if err != nil {
				t.Fatalf("reader: %v", err)
			}
		}
		t.Logf("%d reloads: RSS %.1f MB before, %.1f MB after; four readers (%v): peak %.1f MB (+%.1f MB over before the reloads; budget %d MB)",
			rssReloads(), mb(before), mb(afterReloads), time.Since(start).Round(time.Millisecond), mb(peak), mb(peak-before), rssReloadBudget>>20)
		if peak-before > rssReloadBudget {
			t.Errorf("after %d reloads, four readers took RSS %.1f MB above its level before the reloads, over the %d MB budget",
				rssReloads(), mb(peak-before), rssReloadBudget>>20)
		}
	})
}

// rssPace makes a slow reader pause for 1 ms after every 200th row (n
// rows read so far).
func rssPace(slow bool, n int) {
	if slow && n%200 == 0 {
		time.Sleep(time.Millisecond)
	}
}

// rssReadAll is a reader's outcome after n rows and the result's error:
// that error, or a wrong count of rows.
func rssReadAll(n int, err error) error {
	if err != nil {
		return err
	}
	if n != rssRows() {
		return fmt.Errorf("%d rows, want %d", n, rssRows())
	}
	return nil
}

func mb(n int64) float64 { return float64(n) / (1 << 20) }

// TestRSSStreamPostgres: 500k encrypted rows through `dbproxy serve` to a
// PostgreSQL client (see runRSS).
func TestRSSStreamPostgres(t *testing.T) {
	needProc(t)
	pg := testenv.StartPostgres(t)
	ctx := context.Background()
	direct, err := pgx.Connect(ctx, pg.DSN())
	if err != nil {
		t.Fatal(err)
	}
	defer direct.Close(ctx)
	if _, err := direct.Exec(ctx, `CREATE TABLE users (id bigserial PRIMARY KEY, email bytea, ssn bytea, salary bytea);
		CREATE TABLE audit (id bigserial PRIMARY KEY, note bytea)`); err != nil {
		t.Fatal(err)
	}
	listener := listenersYAML(listenerYAML{protocol: "postgres", listen: "%[1]s", upstream: pg.Addr(),
		catalogUser: pg.User, passwordEnv: "DBPROXY_RSS_CATALOG_PW"})
	env := []string{"DBPROXY_RSS_CATALOG_PW=" + pg.Password}
	connect := func(ctx context.Context, addr string) (*pgx.Conn, error) {
		host, port, _ := net.SplitHostPort(addr)
		return pgx.Connect(ctx, fmt.Sprintf("host=%s port=%s user=%s password=%s dbname=%s sslmode=disable",
			host, port, pg.User, pg.Password, pg.Database))
	}
	seeded := false
	small := func(ctx context.Context, addr string) error {
		c, err := connect(ctx, addr)
		if err != nil {
			return err
		}
		defer c.Close(ctx)
		if !seeded {
			rows := make([][]any, rssSeedRows)
			for i := range rows {
				rows[i] = []any{fmt.Sprintf("user%d@example.com", i), rssSSN, int64(i)}
			}
			if _, err := c.CopyFrom(ctx, pgx.Identifier{"users"}, []string{"email", "ssn", "salary"}, pgx.CopyFromRows(rows)); err != nil {
				return fmt.Errorf("seed: %w", err)
			}
			// Copies of the ciphertexts, made by the server.
			if _, err := direct.Exec(ctx, fmt.Sprintf(`INSERT INTO users (email, ssn, salary)
				SELECT email, ssn, salary FROM users, generate_series(1, %d)`, rssRows()/rssSeedRows-1)); err != nil {
				return fmt.Errorf("multiply: %w", err)
			}
			seeded = true
		}
		var ssn string
		return c.QueryRow(ctx, `SELECT ssn FROM users WHERE email = $1 LIMIT 1`, "user7@example.com").Scan(&ssn)
	}
	read := func(ctx context.Context, addr string, slow bool) error {
		c, err := connect(ctx, addr)
		if err != nil {
			return err
		}
		defer c.Close(ctx)
		rows, err := c.Query(ctx, `SELECT id, email, ssn, salary FROM users`, pgx.QueryExecModeSimpleProtocol)
		if err != nil {
			return err
		}
		n := 0
		for rows.Next() {
			v := rows.RawValues()
			if string(v[2]) != rssSSN {
				rows.Close()
				return fmt.Errorf("row %d: ssn %q, want the plaintext", n, v[2])
			}
			n++
			rssPace(slow, n)
		}
		rows.Close()
		return rssReadAll(n, rows.Err())
	}
	runRSS(t, listener, env, read, small)
}

// TestRSSStreamMySQL: 500k encrypted rows through `dbproxy serve` to a
// MySQL client (see runRSS).
func TestRSSStreamMySQL(t *testing.T) {
	needProc(t)
	db := testenv.StartMariaDB(t)
	ctx := context.Background()
	direct := openDB(t, myConfigAt(t, db.Addr(), db.User, db.Password, db.Database))
	for _, ddl := range []string{
		`CREATE TABLE users (id BIGINT AUTO_INCREMENT PRIMARY KEY, email VARBINARY(255), ssn VARBINARY(255), salary VARBINARY(255))`,
		`CREATE TABLE audit (id BIGINT AUTO_INCREMENT PRIMARY KEY, note VARBINARY(255))`,
	} {
		if _, err := direct.ExecContext(ctx, ddl); err != nil {
			t.Fatal(err)
		}
	}
	listener := listenersYAML(listenerYAML{protocol: "mysql", listen: "%[1]s", upstream: db.Addr(),
		catalogUser: db.User, passwordEnv: "DBPROXY_RSS_CATALOG_PW"})
	env := []string{"DBPROXY_RSS_CATALOG_PW=" + db.Password}
	conn := func(ctx context.Context, addr string) (*sql.DB, *sql.Conn, error) {
		pool := openPool(t, myConfigAt(t, addr, db.User, db.Password, db.Database))
		c, err := pool.Conn(ctx)
		if err != nil {
			_ = pool.Close()
			return nil, nil, err
		}
		return pool, c, nil
	}
	seeded := false
	small := func(ctx context.Context, addr string) error {
		pool, c, err := conn(ctx, addr)
		if err != nil {
			return err
		}
		defer pool.Close()
		defer c.Close()
		if !seeded {
			var b strings.Builder
			b.WriteString("INSERT INTO users (email, ssn, salary) VALUES ")
			args := make([]any, 0, 3*rssSeedRows)
			for i := range rssSeedRows {
				if i > 0 {
					b.WriteString(",")
				}
				b.WriteString("(?,?,?)")
				args = append(args, fmt.Sprintf("user%d@example.com", i), rssSSN, int64(i))
			}
			if _, err := c.ExecContext(ctx, b.String(), args...); err != nil {
				return fmt.Errorf("seed: %w", err)
			}
			// Copies of the ciphertexts, made by the server.
			if _, err := direct.ExecContext(ctx, fmt.Sprintf(`INSERT INTO users (email, ssn, salary)
				SELECT a.email, a.ssn, a.salary FROM users a, users b LIMIT %d`, rssRows()-rssSeedRows)); err != nil {
				return fmt.Errorf("multiply: %w", err)
			}
			seeded = true
		}
		var ssn string
		return c.QueryRowContext(ctx, `SELECT ssn FROM users WHERE email = ? LIMIT 1`, "user7@example.com").Scan(&ssn)
	}
	read := func(ctx context.Context, addr string, slow bool) error {
		pool, c, err := conn(ctx, addr)
		if err != nil {
			return err
		}
		defer pool.Close()
		defer c.Close()
		rows, err := c.QueryContext(ctx, `SELECT id, email, ssn, salary FROM users`)
		if err != nil {
			return err
		}
		defer rows.Close()
		n := 0
		var id, email, ssn, salary sql.RawBytes
		for rows.Next() {
			if err := rows.Scan(&id, &email, &ssn, &salary); err != nil {
				return err
			}
			if !bytes.Equal(ssn, []byte(rssSSN)) {
				return fmt.Errorf("row %d: ssn %q, want the plaintext", n, ssn)
			}
			n++
			rssPace(slow, n)
		}
		return rssReadAll(n, rows.Err())
	}
	runRSS(t, listener, env, read, small)
}

// openPool is openDB for a pool the caller closes.
func openPool(t testing.TB, cfg *driver.Config) *sql.DB {
	t.Helper()
	c, err := driver.NewConnector(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return sql.OpenDB(c)
}
