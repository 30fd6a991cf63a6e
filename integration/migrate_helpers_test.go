package integration

// Helpers of the migrate tests (migrate_pg_test.go): the dbproxy CLI as a
// child process, a seeded table of plaintext columns, and writers that
// keep changing it through the proxy while it is migrated.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/dbproxy/dbproxy/value"
)

// envMigrateRows sets the row count of the migrate test (default 20,000;
// DBPROXY_MIGRATE_ROWS=200000 is the large run).
const envMigrateRows = "DBPROXY_MIGRATE_ROWS"

func migrateRows(t testing.TB) int {
	if s := os.Getenv(envMigrateRows); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 100 {
			t.Fatalf("%s=%q: want a row count of at least 100", envMigrateRows, s)
		}
		return n
	}
	return 20000
}

// cliRun is one finished run of the dbproxy CLI.
type cliRun struct {
	stdout, stderr string
	code           int
}

// runCLI runs bin with args and env added to the test's environment.
func runCLI(t testing.TB, bin string, env []string, args ...string) cliRun {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	var r cliRun
	r.stdout, r.stderr, r.code = runCmd(t, cmd)
	return r
}

// mustCLI runs the CLI and fails the test unless it exits 0.
func mustCLI(t testing.TB, bin string, env []string, args ...string) cliRun {
	t.Helper()
	r := runCLI(t, bin, env, args...)
	if r.code != 0 {
		t.Fatalf("dbproxy %v: exit %d\nstdout:\n%s\nstderr:\n%s", args, r.code, r.stdout, r.stderr)
	}
	return r
}

// migCols are the migrated columns of the test table and their types.
var migCols = []struct {
	name string
	typ  value.Type
}{
	{"name", value.TypeText}, {"amount", value.TypeBigint}, {"price", value.TypeNumeric},
	{"born", value.TypeDate}, {"seen", value.TypeTimestamptz},
}

// migRow is the canonical value of each migrated column (nil: NULL).
type migRow [5][]byte

// canonRow canonicalizes PostgreSQL text forms of the migrated columns.
func canonRow(t testing.TB, texts [5][]byte) migRow {
	t.Helper()
	var r migRow
	for i, s := range texts {
		if s == nil {
			continue
		}
		c, err := value.AppendCanonicalText(nil, migCols[i].typ, s)
		if err != nil {
			t.Fatalf("column %s: %v", migCols[i].name, err)
		}
		r[i] = c
	}
	return r
}

// readRows reads id and the migrated columns as text (simple protocol, so
// through the proxy the decrypted values arrive in their text form).
func readRows(t testing.TB, ctx context.Context, c *pgx.Conn) map[int64]migRow {
	t.Helper()
	if _, err := c.Exec(ctx, "SET TimeZone = 'UTC'"); err != nil {
		t.Fatal(err)
	}
	rows, err := c.Query(ctx, "SELECT id, name, amount, price, born, seen FROM people", pgx.QueryExecModeSimpleProtocol)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := map[int64]migRow{}
	for rows.Next() {
		raw := rows.RawValues()
		id, err := strconv.ParseInt(string(raw[0]), 10, 64)
		if err != nil {
			t.Fatal(err)
		}
		var texts [5][]byte
		for i := range texts {
			if raw[i+1] != nil {
				texts[i] = bytes.Clone(raw[i+1])
			}
		}
		out[id] = canonRow(t, texts)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// seedPeople creates people with n rows: every type, NULLs in each column
// on a different stride.
func seedPeople(t testing.TB, ctx context.Context, c *pgx.Conn, n int) {
	t.Helper()
	_, err := c.Exec(ctx, fmt.Sprintf(`CREATE TABLE people (id bigint PRIMARY KEY, name text, amount bigint, price numeric(12,2),
  born date, seen timestamptz, note text);
INSERT INTO people SELECT i,
  CASE WHEN i %% 7 = 0 THEN NULL ELSE 'person ' || i || ' ü' END,
  CASE WHEN i %% 11 = 0 THEN NULL ELSE i::bigint * 1000003 - 5000000 END,
  CASE WHEN i %% 13 = 0 THEN NULL ELSE (i * 7.31)::numeric(12,2) END,
  CASE WHEN i %% 17 = 0 THEN NULL ELSE date '1950-01-01' + (i %% 20000) END,
  CASE WHEN i %% 19 = 0 THEN NULL ELSE timestamptz '2020-01-01 00:00:00.123456+02' + i * interval '37 minutes 1.5 seconds' END,
  'note ' || i
FROM generate_series(1, %d) AS i`, n))
	if err != nil {
		t.Fatal(err)
	}
}

// writerGroup runs migWriterCount writers until halted and counts their
// acknowledged writes and the attempts tried again.
type writerGroup struct {
	acked   atomic.Int64
	refused atomic.Int64 // attempts that failed and were tried again
	stop    chan struct{}
	wg      sync.WaitGroup
	errs    chan error
}

const migWriterCount = 8

func (g *writerGroup) start(run func(i int) error) {
	g.stop, g.errs = make(chan struct{}), make(chan error, migWriterCount)
	for i := range migWriterCount {
		g.wg.Add(1)
		go func() {
			defer g.wg.Done()
			g.errs <- run(i)
		}()
	}
}

// halt stops the writers and fails the test if one gave up.
func (g *writerGroup) halt(t testing.TB) {
	t.Helper()
	close(g.stop)
	g.wg.Wait()
	close(g.errs)
	for err := range g.errs {
		if err != nil {
			t.Fatal(err)
		}
	}
}

func (g *writerGroup) stopped() bool {
	select {
	case <-g.stop:
		return true
	default:
		return false
	}
}

// migWriters are 8 clients that update and insert rows of people through
// the proxy until stopped. Writer w owns the ids ≡ w (mod 8), so the last
// acknowledged write of each id is known: expected holds it.
type migWriters struct {
	writerGroup
	mu       sync.Mutex
	expected map[int64]migRow
}

func startMigWriters(t testing.TB, dsn string, expected map[int64]migRow, seeded int) *migWriters {
	w := &migWriters{expected: expected}
	w.start(func(i int) error { return w.run(t, dsn, i, seeded) })
	return w
}

// run is writer i: updates of its rows and inserts of new ones, each tried
// again (on a new connection) until it is acknowledged.
func (w *migWriters) run(t testing.TB, dsn string, i, seeded int) error {
	ctx := context.Background()
	var conn *pgx.Conn
	defer func() {
		if conn != nil {
			_ = conn.Close(ctx)
		}
	}()
	insertID := int64(seeded + 1 + i)
	for k := 0; !w.stopped(); k++ {
		id, insert := int64(1+i+8*((k*37)%(seeded/8))), k%5 == 4
		if insert {
			id, insertID = insertID, insertID+migWriterCount
		}
		vals := [5]*string{}
		texts := [5][]byte{}
		for c := range vals {
			if (k+c)%9 == 0 {
				continue // NULL
			}
			s := writerValue(c, i, k)
			vals[c], texts[c] = &s, []byte(s)
		}
		for attempt := 0; ; attempt++ {
			if attempt > 2000 {
				return fmt.Errorf("writer %d: write of id %d never acknowledged", i, id)
			}
			if conn == nil {
				c, err := pgx.Connect(ctx, dsn)
				if err != nil {
					time.Sleep(10 * time.Millisecond)
					continue
				}
				conn = c
			}
			err := writeRow(ctx, conn, id, insert, vals)
			if err == nil || (insert && attempt > 0 && isPgCode(err, "23505")) {
				break
			}
			w.refused.Add(1)
			_ = conn.Close(ctx)
			conn = nil
			time.Sleep(5 * time.Millisecond)
		}
		w.mu.Lock()
		w.expected[id] = canonRow(t, texts)
		w.mu.Unlock()
		w.acked.Add(1)
		time.Sleep(time.Millisecond) // a busy application, not a load test
	}
	return nil
}

func writerValue(c, i, k int) string {
	switch c {
	case 0:
		return fmt.Sprintf("written by %d at %d", i, k)
	case 1:
		return strconv.Itoa(i*1_000_000 + k)
	case 2:
		return fmt.Sprintf("%d.%02d", k, i)
	case 3:
		return fmt.Sprintf("20%02d-%02d-%02d", k%100, 1+k%12, 1+i)
	default:
		return fmt.Sprintf("2030-%02d-%02d 10:%02d:%02d.%06d+00", 1+k%12, 1+i, k%60, i, k)
	}
}

// writeRow writes one row with literals (simple protocol), as a client of
// a plain listener and of an encrypting one alike.
func writeRow(ctx context.Context, c *pgx.Conn, id int64, insert bool, v [5]*string) error {
	args := []any{id, v[0], v[1], v[2], v[3], v[4]}
	q := `UPDATE people SET name = $2, amount = $3, price = $4, born = $5, seen = $6 WHERE id = $1`
	if insert {
		q = `INSERT INTO people (id, name, amount, price, born, seen) VALUES ($1, $2, $3, $4, $5, $6)`
	}
	_, err := c.Exec(ctx, q, append([]any{pgx.QueryExecModeSimpleProtocol}, args...)...)
	return err
}

func isPgCode(err error, code string) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == code
}
