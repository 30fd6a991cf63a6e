package integration

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/dbproxy/dbproxy/crypto"
	"github.com/dbproxy/dbproxy/internal/testenv"
	"github.com/dbproxy/dbproxy/rules"
	"github.com/dbproxy/dbproxy/schemaguard"
)

// migEnv is a PostgreSQL server, `dbproxy serve` in front of it, and two
// configurations: serve's (no rule for people yet) and the one the
// migrate commands get (the rules of people's columns).
type migEnv struct {
	pg       *testenv.Postgres
	bin      string
	env      []string
	d        *dbproxyProc
	addr     string
	plainCfg string // serve's configuration before the swap
	rulesCfg string // with people's rules
	rulesYML string // its path
	direct   *pgx.Conn
}

func startMigEnv(t testing.TB) *migEnv {
	pg := testenv.StartPostgres(t)
	m := &migEnv{pg: pg, bin: buildDBProxy(t), addr: freeListenAddr(t), env: []string{"DBPROXY_MIG_PW=" + pg.Password}}
	dir := t.TempDir()
	base := listenersYAML(listenerYAML{protocol: "postgres", listen: m.addr, upstream: pg.Addr(),
		catalogUser: pg.User, passwordEnv: "DBPROXY_MIG_PW"}) + strings.ReplaceAll(localKeysYAML, ": master.key", ": "+filepath.Join(dir, "master.key")) + "shutdown_timeout: 5s\n"
	base = strings.ReplaceAll(base, "path: keys.json", "path: "+filepath.Join(dir, "keys.json"))
	m.plainCfg = base
	var b strings.Builder
	fmt.Fprintf(&b, "encryption:\n  - table: people\n    database: %s\n    columns:\n", pg.Database)
	for _, c := range migCols {
		mode := "randomized"
		if c.name == "name" {
			mode = "deterministic"
		}
		fmt.Fprintf(&b, "      - name: %s\n        mode: %s\n        type: %s\n", c.name, mode, c.typ)
	}
	fmt.Fprintf(&b, "  - table: nokey\n    database: %s\n    columns:\n      - name: a\n        type: text\n", pg.Database)
	m.rulesCfg = base + b.String()
	m.rulesYML = filepath.Join(dir, "rules.yaml")
	if err := os.WriteFile(m.rulesYML, []byte(m.rulesCfg), 0o600); err != nil {
		t.Fatal(err)
	}
	mustCLI(t, m.bin, m.env, "keys", "init", "--config", m.rulesYML)
	m.d = newDBProxy(t, m.bin, dir, m.plainCfg, m.env, m.addr)
	m.d.start(t)
	m.direct = testenv.ConnectPG(t, pg.DSN())
	return m
}

func (m *migEnv) proxyDSN() string {
	return fmt.Sprintf("postgres://%s:%s@%s/%s?sslmode=disable", m.pg.User, m.pg.Password, m.addr, m.pg.Database)
}

// migCtx bounds a migrate test: the large runs (DBPROXY_MIGRATE_ROWS,
// DBPROXY_MIGRATE_BENCH_ROWS) take minutes.
func migCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// cli runs dbproxy with the rules configuration.
func (m *migEnv) cli(t testing.TB, args ...string) cliRun {
	return runCLI(t, m.bin, m.env, append(args, "--config", m.rulesYML)...)
}

func (m *migEnv) mustCLI(t testing.TB, args ...string) cliRun {
	return mustCLI(t, m.bin, m.env, append(args, "--config", m.rulesYML)...)
}

// migState reads people's encrypt progress (phase, rows done); "" before
// the progress table exists.
func (m *migEnv) migState(t testing.TB, op string) (string, int64) {
	t.Helper()
	var phase string
	var done int64
	err := m.direct.QueryRow(context.Background(), `SELECT phase, rows_done FROM public.dbproxy_migrations WHERE op = $1 AND table_name = 'public.people'`, op).Scan(&phase, &done)
	if err != nil {
		return "", 0
	}
	return phase, done
}

// TestPGMigrateEncrypt adopts a live table: people (text, bigint, numeric,
// date, timestamptz, NULLs) is encrypted while 8 clients update and insert
// through the proxy; the first run is killed with SIGKILL after some
// batches and a second run resumes it; a concurrent run is refused. Then
// every acknowledged write reads back through the proxy, nothing is
// plaintext and the guard is validated. keys retire is refused until
// migrate reencrypt moved every value off the old version; decrypt brings
// back the exact values. DBPROXY_MIGRATE_ROWS sets the row count.
func TestPGMigrateEncrypt(t *testing.T) {
	m := startMigEnv(t)
	ctx := migCtx(t)
	n := migrateRows(t)
	seedPeople(t, ctx, m.direct, n)
	if _, err := m.direct.Exec(ctx, `CREATE TABLE nokey (a text)`); err != nil {
		t.Fatal(err)
	}
	expected := readRows(t, ctx, m.direct)

	// Refusals and the plan change nothing.
	if r := m.cli(t, "migrate", "encrypt", "--table", "nokey"); r.code != 1 || !strings.Contains(r.stderr, "no primary key") {
		t.Fatalf("table without key: exit %d, stderr %s", r.code, r.stderr)
	}
	plan := m.mustCLI(t, "migrate", "encrypt", "--table", "people", "--dry-run")
	for _, want := range []string{"ADD COLUMN IF NOT EXISTS \"dbproxy_new_name\" bytea", "LOCK TABLE", "dbproxy_guard_seen", "CREATE TRIGGER"} {
		if !strings.Contains(plan.stdout, want) {
			t.Fatalf("dry-run plan lacks %q:\n%s", want, plan.stdout)
		}
	}
	if phase, _ := m.migState(t, "encrypt"); phase != "" {
		t.Fatalf("dry-run left state %q", phase)
	}

	w := startMigWriters(t, m.proxyDSN(), expected, n)
	killedRun(t, m)
	resumeAndReload(t, m, &w.writerGroup, n)

	m.checkEncrypted(t, ctx, expected)
	m.checkRotation(t, ctx, expected)

	m.mustCLI(t, "migrate", "decrypt", "--table", "people")
	if got := readRows(t, ctx, m.direct); !sameRows(t, got, expected) {
		t.Fatal("decrypt did not restore the values")
	}
}

// migHarness is what killedRun needs of a migrate test's environment.
type migHarness interface {
	cli(t testing.TB, args ...string) cliRun
	migState(t testing.TB, op string) (string, int64)
	mustCLI(t testing.TB, args ...string) cliRun
	command(args ...string) *exec.Cmd
	reloadRules(t testing.TB)
}

func (m *migEnv) reloadRules(t testing.TB) { m.d.reload(t, m.rulesCfg) }

func (m *migEnv) command(args ...string) *exec.Cmd {
	cmd := exec.Command(m.bin, append(args, "--config", m.rulesYML)...)
	cmd.Env = append(os.Environ(), m.env...)
	return cmd
}

// resumeAndReload runs the encrypt that resumes a killed one, reloads
// serve with the rules, waits for writes through the encrypting proxy and
// stops the writers.
func resumeAndReload(t *testing.T, m migHarness, w *writerGroup, n int) {
	before, start := w.acked.Load(), time.Now()
	res := m.mustCLI(t, "migrate", "encrypt", "--table", "people", "--batch", "500", "--json")
	took := time.Since(start)
	if !strings.Contains(res.stdout, `"result":"done"`) {
		t.Fatalf("resumed run: %s", res.stdout)
	}
	if phase, _ := m.migState(t, "encrypt"); phase != "done" {
		t.Fatalf("state after the run: %q", phase)
	}
	m.reloadRules(t)
	after := w.acked.Load()
	waitFor(t, "writes through the encrypting proxy", func() bool { return w.acked.Load() >= after+200 })
	w.halt(t)
	t.Logf("resumed run: %s (%.0f rows/s of the seeded table); result %s", took.Round(time.Millisecond), float64(n)/took.Seconds(), lastLine(res.stdout))
	t.Logf("%d rows; %d writes acknowledged during the runs, %d after the reload, %d attempts refused and tried again",
		n, after-before, w.acked.Load()-after, w.refused.Load())
}

// killedRun starts a throttled encrypt, runs a second one while it works
// (refused), and kills the first with SIGKILL after some batches.
func killedRun(t *testing.T, m migHarness) {
	cmd := m.command("migrate", "encrypt", "--table", "people", "--batch", "200", "--rate", "2000")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	waitFor(t, "the first run to do some batches", func() bool {
		_, done := m.migState(t, "encrypt")
		return done >= 1000
	})
	if r := m.cli(t, "migrate", "encrypt", "--table", "people"); r.code != 1 || !strings.Contains(r.stderr, "another dbproxy migrate is running") {
		t.Fatalf("concurrent run: exit %d, stderr %s", r.code, r.stderr)
	}
	_ = cmd.Process.Kill()
	<-exited
	phase, done := m.migState(t, "encrypt")
	if phase != "backfill" || done < 1000 {
		t.Fatalf("after SIGKILL: phase %q, %d rows done", phase, done)
	}
	t.Logf("killed after %d rows", done)
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

// sameRows compares row maps, naming the first few differences.
func sameRows(t testing.TB, got, want map[int64]migRow) bool {
	t.Helper()
	bad := 0
	for id, w := range want {
		g, ok := got[id]
		if !ok {
			t.Errorf("row %d missing", id)
			bad++
		} else {
			for i := range w {
				if string(g[i]) != string(w[i]) || (g[i] == nil) != (w[i] == nil) {
					t.Errorf("row %d column %s: got %q, want %q", id, migCols[i].name, g[i], w[i])
					bad++
				}
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

// checkEncrypted: through the proxy every row is what was last
// acknowledged; read directly, every value is a ciphertext of its column
// and the guard is in place and validated.
func (m *migEnv) checkEncrypted(t *testing.T, ctx context.Context, expected map[int64]migRow) {
	proxied := testenv.ConnectPG(t, m.proxyDSN())
	if !sameRows(t, readRows(t, ctx, proxied), expected) {
		t.Fatal("rows read through the proxy differ from the acknowledged writes")
	}
	var targets []schemaguard.Target
	for _, c := range migCols {
		mode := rules.ModeRandomized
		if c.name == "name" {
			mode = rules.ModeDeterministic
		}
		targets = append(targets, schemaguard.Target{Database: m.pg.Database, Table: "people", Column: c.name, Mode: mode, Type: c.typ})
		rows, err := m.direct.Query(ctx, fmt.Sprintf("SELECT %s FROM people WHERE %s IS NOT NULL", c.name, c.name))
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			raw := rows.RawValues()[0]
			if !crypto.IsCiphertext(raw) || raw[6] != byte(c.typ) {
				t.Fatalf("column %s holds a value that is not its ciphertext", c.name)
			}
		}
		rows.Close()
	}
	problems, err := schemaguard.Check(ctx, openPGSQL(t, m.pg.DSN()), rules.DialectPostgres, targets)
	if err != nil || len(problems) > 0 {
		t.Fatalf("guard: %v %v", problems, err)
	}
}

// checkRotation: after keys rotate, retiring version 1 is refused while
// values use it; reencrypt moves them all; then retire succeeds and the
// values still read back through the proxy.
func (m *migEnv) checkRotation(t *testing.T, ctx context.Context, expected map[int64]migRow) {
	const key = "public.people.amount"
	m.mustCLI(t, "keys", "rotate", key)
	if r := m.cli(t, "keys", "retire", key, "2"); r.code != 1 || !strings.Contains(r.stderr, "primary") {
		t.Fatalf("retire of the primary: exit %d, stderr %s", r.code, r.stderr)
	}
	if r := m.cli(t, "keys", "retire", key, "1"); r.code != 1 || !strings.Contains(r.stderr, "still under version 1") {
		t.Fatalf("retire before reencrypt: exit %d, stderr %s", r.code, r.stderr)
	}
	m.mustCLI(t, "migrate", "reencrypt", "--key", key)
	var old int
	if err := m.direct.QueryRow(ctx, `SELECT count(*) FROM people WHERE amount IS NOT NULL AND substring(amount from 3 for 4) <> '\x00000002'::bytea`).Scan(&old); err != nil || old != 0 {
		t.Fatalf("after reencrypt: %d values not under version 2 (%v)", old, err)
	}
	m.mustCLI(t, "keys", "retire", key, "1")
	proxied := testenv.ConnectPG(t, m.proxyDSN())
	if !sameRows(t, readRows(t, ctx, proxied), expected) {
		t.Fatal("rows read through the proxy after reencrypt differ")
	}
}
