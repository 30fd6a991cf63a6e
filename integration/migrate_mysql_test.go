package integration

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	driver "github.com/go-sql-driver/mysql"

	"github.com/dbproxy/dbproxy/crypto"
	"github.com/dbproxy/dbproxy/internal/testenv"
	"github.com/dbproxy/dbproxy/rules"
	"github.com/dbproxy/dbproxy/schemaguard"
	"github.com/dbproxy/dbproxy/value"
)

// myMigCols are the migrated columns of the MySQL test table.
var myMigCols = []struct {
	name, ddl string
	typ       value.Type
}{
	{"name", "VARCHAR(100)", value.TypeText}, {"amount", "BIGINT", value.TypeBigint}, {"price", "DECIMAL(12,2)", value.TypeNumeric},
	{"born", "DATE", value.TypeDate}, {"seen", "TIMESTAMP(6) NULL", value.TypeTimestamptz}, {"made", "DATETIME(6)", value.TypeTimestamp},
}

// myRow is the canonical value of each migrated column (nil: NULL).
type myRow [6][]byte

// myMigEnv is a MariaDB database, `dbproxy serve` with a MySQL listener
// in front of it (no rule for people until the reload), and the rules
// configuration the migrate commands get.
type myMigEnv struct {
	db       *testenv.MariaDB
	bin      string
	env      []string
	d        *dbproxyProc
	addr     string
	rulesCfg string
	rulesYML string
	direct   *sql.DB
}

func startMyMigEnv(t testing.TB) *myMigEnv {
	db := testenv.StartMariaDB(t)
	m := &myMigEnv{db: db, bin: buildDBProxy(t), addr: freeListenAddr(t), env: []string{"DBPROXY_MIG_PW=" + db.Password}}
	dir := t.TempDir()
	base := listenersYAML(listenerYAML{protocol: "mysql", listen: m.addr, upstream: db.Addr(),
		catalogUser: db.User, passwordEnv: "DBPROXY_MIG_PW"}) + strings.ReplaceAll(localKeysYAML, ": master.key", ": "+filepath.Join(dir, "master.key")) + "shutdown_timeout: 5s\n"
	base = strings.ReplaceAll(base, "path: keys.json", "path: "+filepath.Join(dir, "keys.json"))
	var b strings.Builder
	fmt.Fprintf(&b, "encryption:\n  - table: people\n    database: %s\n    columns:\n", db.Database)
	for _, c := range myMigCols {
		mode := "randomized"
		if c.name == "name" {
			mode = "deterministic"
		}
		fmt.Fprintf(&b, "      - name: %s\n        mode: %s\n        type: %s\n", c.name, mode, c.typ)
	}
	fmt.Fprintf(&b, "  - table: nokey\n    database: %s\n    columns:\n      - name: a\n        type: text\n", db.Database)
	m.rulesCfg = base + b.String()
	m.rulesYML = filepath.Join(dir, "rules.yaml")
	if err := os.WriteFile(m.rulesYML, []byte(m.rulesCfg), 0o600); err != nil {
		t.Fatal(err)
	}
	mustCLI(t, m.bin, m.env, "keys", "init", "--config", m.rulesYML)
	m.d = newDBProxy(t, m.bin, dir, base, m.env, m.addr)
	m.d.start(t)
	m.direct = openDB(t, myMigConfig(db.Addr(), db))
	return m
}

// myMigConfig connects to addr as db's user, in time_zone +00:00, values
// as text.
func myMigConfig(addr string, db *testenv.MariaDB) *driver.Config {
	cfg := driver.NewConfig()
	cfg.User, cfg.Passwd, cfg.Net, cfg.Addr, cfg.DBName = db.User, db.Password, "tcp", addr, db.Database
	cfg.Timeout, cfg.InterpolateParams = 10*time.Second, true
	cfg.Params = map[string]string{"time_zone": "'+00:00'"}
	return cfg
}

func (m *myMigEnv) cli(t testing.TB, args ...string) cliRun {
	return runCLI(t, m.bin, m.env, append(args, "--config", m.rulesYML)...)
}

func (m *myMigEnv) mustCLI(t testing.TB, args ...string) cliRun {
	return mustCLI(t, m.bin, m.env, append(args, "--config", m.rulesYML)...)
}

// migState reads people's progress of op; "" before there is any.
func (m *myMigEnv) migState(t testing.TB, op string) (string, int64) {
	var phase string
	var done int64
	err := m.direct.QueryRow("SELECT phase, rows_done FROM dbproxy_migrations WHERE op = ? AND table_name = ?", op, m.db.Database+".people").Scan(&phase, &done)
	if err != nil {
		return "", 0
	}
	return phase, done
}

// TestMySQLMigrateEncrypt is TestPGMigrateEncrypt on MariaDB: people
// (VARCHAR, BIGINT, DECIMAL, DATE, TIMESTAMP, DATETIME, NULLs) is
// encrypted while 8 clients write through the proxy; the first run is
// killed with SIGKILL and a second resumes it; a concurrent run is
// refused. Every acknowledged write reads back through the encrypting
// proxy, every stored value is ciphertext under the guard; keys retire
// waits for migrate reencrypt; decrypt restores the values.
// DBPROXY_MIGRATE_ROWS sets the row count.
func TestMySQLMigrateEncrypt(t *testing.T) {
	m := startMyMigEnv(t)
	ctx := migCtx(t)
	n := migrateRows(t)
	seedMyPeople(t, ctx, m.direct, n)
	execAll(t, ctx, m.direct, "CREATE TABLE nokey (a TEXT)")
	expected := readMyRows(t, ctx, m.direct)

	if r := m.cli(t, "migrate", "encrypt", "--table", "nokey"); r.code != 1 || !strings.Contains(r.stderr, "no primary key") {
		t.Fatalf("table without key: exit %d, stderr %s", r.code, r.stderr)
	}
	plan := m.mustCLI(t, "migrate", "encrypt", "--table", "people", "--dry-run")
	for _, want := range []string{"ADD COLUMN `dbproxy_new_name` VARBINARY(", "LOCK TABLES", "dbproxy_guard_people_seen", "CREATE TRIGGER"} {
		if !strings.Contains(plan.stdout, want) {
			t.Fatalf("dry-run plan lacks %q:\n%s", want, plan.stdout)
		}
	}
	if phase, _ := m.migState(t, "encrypt"); phase != "" {
		t.Fatalf("dry-run left state %q", phase)
	}

	w := startMyWriters(t, myMigConfig(m.addr, m.db), expected, n)
	killedRun(t, m)
	resumeAndReload(t, m, &w.writerGroup, n)

	m.checkEncrypted(t, ctx, expected)
	m.checkRotation(t, ctx, expected)

	m.mustCLI(t, "migrate", "decrypt", "--table", "people")
	if got := readMyRows(t, ctx, m.direct); !sameMyRows(t, got, expected) {
		t.Fatal("decrypt did not restore the values")
	}
}

func (m *myMigEnv) reloadRules(t testing.TB) { m.d.reload(t, m.rulesCfg) }

func (m *myMigEnv) command(args ...string) *exec.Cmd {
	cmd := exec.Command(m.bin, append(args, "--config", m.rulesYML)...)
	cmd.Env = append(os.Environ(), m.env...)
	return cmd
}

// checkEncrypted: through the proxy every row is what was last
// acknowledged; read directly, every value is a ciphertext of its column
// and the guard is in place.
func (m *myMigEnv) checkEncrypted(t *testing.T, ctx context.Context, expected map[int64]myRow) {
	proxied := openDB(t, myMigConfig(m.addr, m.db))
	if !sameMyRows(t, readMyRows(t, ctx, proxied), expected) {
		t.Fatal("rows read through the proxy differ from the acknowledged writes")
	}
	var targets []schemaguard.Target
	for _, c := range myMigCols {
		mode := rules.ModeRandomized
		if c.name == "name" {
			mode = rules.ModeDeterministic
		}
		targets = append(targets, schemaguard.Target{Database: m.db.Database, Table: "people", Column: c.name, Mode: mode, Type: c.typ})
		for _, raw := range myByteColumn(t, m.direct, fmt.Sprintf("SELECT %s FROM people WHERE %s IS NOT NULL", c.name, c.name)) {
			if !crypto.IsCiphertext(raw) || raw[6] != byte(c.typ) {
				t.Fatalf("column %s holds a value that is not its ciphertext", c.name)
			}
		}
	}
	problems, err := schemaguard.Check(ctx, m.direct, rules.DialectMySQL, targets)
	if err != nil || len(problems) > 0 {
		t.Fatalf("guard: %v %v", problems, err)
	}
	var order string
	if err := m.direct.QueryRowContext(ctx, `SELECT GROUP_CONCAT(COLUMN_NAME ORDER BY ORDINAL_POSITION) FROM information_schema.COLUMNS
WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = 'people'`).Scan(&order); err != nil || order != "id,name,amount,price,born,seen,made,note" {
		t.Fatalf("column order after the swap: %q (%v)", order, err)
	}
	_, err = m.direct.ExecContext(ctx, "INSERT INTO people (id, name) VALUES (0, 'plaintext')")
	wantMyCheckViolation(t, "plaintext written directly", err, "people", "name")
}

// checkRotation: keys retire is refused until migrate reencrypt moved
// every value off the old version; then it succeeds and the values still
// read back.
func (m *myMigEnv) checkRotation(t *testing.T, ctx context.Context, expected map[int64]myRow) {
	const key = "people.amount"
	m.mustCLI(t, "keys", "rotate", key)
	if r := m.cli(t, "keys", "retire", key, "1"); r.code != 1 || !strings.Contains(r.stderr, "still under version 1") {
		t.Fatalf("retire before reencrypt: exit %d, stderr %s", r.code, r.stderr)
	}
	m.mustCLI(t, "migrate", "reencrypt", "--key", key)
	var old int
	err := m.direct.QueryRowContext(ctx, `SELECT COUNT(*) FROM people WHERE amount IS NOT NULL AND SUBSTRING(amount, 3, 4) <> UNHEX('00000002')`).Scan(&old)
	if err != nil || old != 0 {
		t.Fatalf("after reencrypt: %d values not under version 2 (%v)", old, err)
	}
	m.mustCLI(t, "keys", "retire", key, "1")
	if !sameMyRows(t, readMyRows(t, ctx, openDB(t, myMigConfig(m.addr, m.db))), expected) {
		t.Fatal("rows read through the proxy after reencrypt differ")
	}
}

// seedMyPeople creates people with n rows, NULLs in each column on a
// different stride.
func seedMyPeople(t testing.TB, ctx context.Context, db *sql.DB, n int) {
	t.Helper()
	var cols strings.Builder
	for _, c := range myMigCols {
		fmt.Fprintf(&cols, ", %s %s", c.name, c.ddl)
	}
	c, err := db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	execAll(t, ctx, c, "SET SESSION max_recursive_iterations = 10000000", "CREATE TABLE people (id BIGINT PRIMARY KEY"+cols.String()+", note TEXT)",
		fmt.Sprintf(`INSERT INTO people WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < %d) SELECT i,
  IF(i %% 7 = 0, NULL, CONCAT('person ', i, ' ü')),
  IF(i %% 11 = 0, NULL, i * 1000003 - 5000000),
  IF(i %% 13 = 0, NULL, ROUND(i * 7.31, 2)),
  IF(i %% 17 = 0, NULL, '1950-01-01' + INTERVAL (i %% 20000) DAY),
  IF(i %% 19 = 0, NULL, TIMESTAMP'2020-01-01 00:00:00.123456' + INTERVAL i * 2221500000 MICROSECOND),
  IF(i %% 23 = 0, NULL, TIMESTAMP'1999-12-31 23:59:59.5' + INTERVAL i MINUTE),
  CONCAT('note ', i) FROM s`, n))
}

// readMyRows reads id and the migrated columns as text.
func readMyRows(t testing.TB, ctx context.Context, db *sql.DB) map[int64]myRow {
	t.Helper()
	rows, err := db.QueryContext(ctx, "SELECT id, name, amount, price, born, seen, made FROM people")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := map[int64]myRow{}
	for rows.Next() {
		var id int64
		var texts [6][]byte
		if err := rows.Scan(&id, &texts[0], &texts[1], &texts[2], &texts[3], &texts[4], &texts[5]); err != nil {
			t.Fatal(err)
		}
		out[id] = canonMyRow(t, texts)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func canonMyRow(t testing.TB, texts [6][]byte) myRow {
	t.Helper()
	var r myRow
	for i, s := range texts {
		if s == nil {
			continue
		}
		c, err := value.AppendCanonicalMySQLText(nil, myMigCols[i].typ, s, time.UTC)
		if err != nil {
			t.Fatalf("column %s: %q: %v", myMigCols[i].name, s, err)
		}
		r[i] = c
	}
	return r
}

func sameMyRows(t testing.TB, got, want map[int64]myRow) bool {
	t.Helper()
	bad := 0
	for id, w := range want {
		g, ok := got[id]
		if !ok {
			t.Errorf("row %d missing", id)
			bad++
		}
		for i := range w {
			if ok && (!bytes.Equal(g[i], w[i]) || (g[i] == nil) != (w[i] == nil)) {
				t.Errorf("row %d column %s: got %q, want %q", id, myMigCols[i].name, g[i], w[i])
				bad++
			}
		}
		if bad > 10 {
			return false
		}
	}
	if len(got) != len(want) {
		t.Errorf("%d rows, want %d", len(got), len(want))
		return false
	}
	return bad == 0
}

// myWriters are 8 clients that update and insert rows of people through
// the proxy until halted; writer w owns the ids ≡ w (mod 8).
type myWriters struct {
	writerGroup
	mu       sync.Mutex
	expected map[int64]myRow
}

func startMyWriters(t testing.TB, cfg *driver.Config, expected map[int64]myRow, seeded int) *myWriters {
	w := &myWriters{expected: expected}
	w.start(func(i int) error { return w.run(t, cfg, i, seeded) })
	return w
}

// run is writer i: updates of its rows and inserts of new ones, each tried
// again on a new connection until acknowledged.
func (w *myWriters) run(t testing.TB, cfg *driver.Config, i, seeded int) error {
	ctx := context.Background()
	conn, err := driver.NewConnector(cfg)
	if err != nil {
		return err
	}
	db := sql.OpenDB(conn)
	defer db.Close()
	db.SetMaxOpenConns(1)
	insertID := int64(seeded + 1 + i)
	for k := 0; !w.stopped(); k++ {
		id, insert := int64(1+i+8*((k*37)%(seeded/8))), k%5 == 4
		if insert {
			id, insertID = insertID, insertID+migWriterCount
		}
		var vals [6]any
		var texts [6][]byte
		for c := range vals {
			if (k+c)%9 != 0 {
				s := myWriterValue(c, i, k)
				vals[c], texts[c] = s, []byte(s)
			}
		}
		q := "UPDATE people SET name = ?, amount = ?, price = ?, born = ?, seen = ?, made = ? WHERE id = ?"
		if insert {
			q = "INSERT INTO people (name, amount, price, born, seen, made, id) VALUES (?, ?, ?, ?, ?, ?, ?)"
		}
		for attempt := 0; ; attempt++ {
			if attempt > 2000 {
				return fmt.Errorf("writer %d: write of id %d never acknowledged: %v", i, id, err)
			}
			_, err = db.ExecContext(ctx, q, append(vals[:], id)...)
			var me *driver.MySQLError
			if err == nil || (insert && attempt > 0 && errors.As(err, &me) && me.Number == 1062) {
				break
			}
			w.refused.Add(1)
			time.Sleep(5 * time.Millisecond)
		}
		w.mu.Lock()
		w.expected[id] = canonMyRow(t, texts)
		w.mu.Unlock()
		w.acked.Add(1)
		time.Sleep(time.Millisecond)
	}
	return nil
}

func myWriterValue(c, i, k int) string {
	switch c {
	case 0:
		return fmt.Sprintf("written by %d at %d", i, k)
	case 1:
		return strconv.Itoa(i*1_000_000 + k)
	case 2:
		return fmt.Sprintf("%d.%02d", k, i)
	case 3:
		return fmt.Sprintf("20%02d-%02d-%02d", k%100, 1+k%12, 1+i)
	case 4:
		return fmt.Sprintf("2031-%02d-%02d 10:%02d:%02d.%06d", 1+k%12, 1+i, k%60, i, k)
	default:
		return fmt.Sprintf("1990-%02d-%02d 11:%02d:%02d.%06d", 1+k%12, 1+i, k%60, i, k%1000)
	}
}

// BenchmarkMySQLMigrateEncrypt times `dbproxy migrate encrypt` of the
// MariaDB people table (6 columns) with DBPROXY_MIGRATE_BENCH_ROWS rows
// (default 100,000), without writers, and reports rows/s.
//
//	DBPROXY_MIGRATE_BENCH_ROWS=200000 go test -run '^$' -bench MySQLMigrateEncrypt -benchtime 1x ./integration/
func BenchmarkMySQLMigrateEncrypt(b *testing.B) {
	rows := benchRows(b)
	m := startMyMigEnv(b)
	ctx := migCtx(b)
	var elapsed time.Duration
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		execAll(b, ctx, m.direct, "DROP TABLE IF EXISTS people", "DROP TABLE IF EXISTS dbproxy_migrations")
		seedMyPeople(b, ctx, m.direct, rows)
		b.StartTimer()
		start := time.Now()
		r := m.mustCLI(b, "migrate", "encrypt", "--table", "people", "--batch", "2000")
		elapsed += time.Since(start)
		b.Logf("%d rows: %s", rows, strings.TrimSpace(r.stdout))
	}
	b.ReportMetric(float64(rows*b.N)/elapsed.Seconds(), "rows/s")
}
