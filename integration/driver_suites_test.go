package integration

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/dbproxy/dbproxy/internal/testenv"
	"github.com/dbproxy/dbproxy/internal/testkeys"
	"github.com/dbproxy/dbproxy/proxy"
	"github.com/dbproxy/dbproxy/proxy/mysql"
	"github.com/dbproxy/dbproxy/proxy/mysql/mycrypt"
	"github.com/dbproxy/dbproxy/proxy/postgres"
	"github.com/dbproxy/dbproxy/rules"
	"github.com/dbproxy/dbproxy/value"
)

// Driver suites: the drivers' own test suites (pgx v5, go-sql-driver/mysql)
// run against a throwaway server directly, through a plain listener and
// through a listener with encryption rules on a table the suites never
// touch. A listener must be invisible to statements that touch no encrypted
// column, so the three pass sets must be equal. Gated by an environment
// variable (scripts/driver-suites.sh, `make driver-suites`): the suites
// take minutes.
const (
	envDriverSuites    = "DBPROXY_DRIVER_SUITES"     // "1" runs TestDriverSuites
	envDriverSuitesOut = "DBPROXY_DRIVER_SUITES_OUT" // optional: directory for the raw go test -json output
	envDriverSuitesRun = "DBPROXY_DRIVER_SUITES_RUN" // optional: go test -run pattern (debugging)

	pgxModule   = "github.com/jackc/pgx/v5@v5.13.0"
	mysqlModule = "github.com/go-sql-driver/mysql@v1.10.1"
)

// suiteConfigs are the three ways a suite reaches the server, in the order
// they run; "direct" is the reference.
var suiteConfigs = []string{"direct", "plain", "encrypting"}

// suiteResult is the outcome of one go test -json run: the last action of
// every test (subtests included), keyed "pkg.TestName/sub".
type suiteResult struct {
	status  map[string]string   // pass, fail, skip
	output  map[string][]string // output lines of failed tests
	pkgFail []string            // packages that failed outside any test (build errors, panics, timeouts)
}

func (r *suiteResult) names(status string) []string {
	var out []string
	for n, s := range r.status {
		if s == status {
			out = append(out, n)
		}
	}
	sort.Strings(out)
	return out
}

func TestDriverSuites(t *testing.T) {
	if os.Getenv(envDriverSuites) != "1" {
		t.Skipf("set %s=1 to run the drivers' own test suites through the proxy (scripts/driver-suites.sh)", envDriverSuites)
	}
	outDir := os.Getenv(envDriverSuitesOut)
	if outDir != "" {
		if err := os.MkdirAll(outDir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	var summary []string
	t.Cleanup(func() {
		// One block at the end, whatever failed.
		fmt.Printf("\ndriver suites (tests and subtests):\n%s\n", strings.Join(summary, "\n"))
	})

	t.Run("pgx", func(t *testing.T) {
		dir := copyModule(t, pgxModule)
		results := map[string]*suiteResult{}
		for _, cfg := range suiteConfigs {
			dsn := startPgxTarget(t, cfg)
			env := []string{"PGX_TEST_DATABASE=" + dsn}
			res := runGoTest(t, dir, env, outDir, "pgx-"+cfg, ".", "./pgconn", "./pgtype", "./stdlib", "./pgxpool")
			results[cfg] = res
			summary = append(summary, summaryLine("pgx v5.13.0", cfg, res))
		}
		compareSuites(t, results)
	})
	t.Run("mysql", func(t *testing.T) {
		dir := copyModule(t, mysqlModule)
		results := map[string]*suiteResult{}
		for _, cfg := range suiteConfigs {
			db, addr := startMySQLTarget(t, cfg)
			env := []string{
				"MYSQL_TEST_USER=" + db.User, "MYSQL_TEST_PASS=" + db.Password, "MYSQL_TEST_PROT=tcp",
				"MYSQL_TEST_ADDR=" + addr, "MYSQL_TEST_DBNAME=" + db.Database, "MYSQL_TEST_CONCURRENT=1",
			}
			// Not run here: TestConnectorReturnsTimeout dials 1.1.1.1 (a
			// public address; it never reaches the server), and
			// TestConcurrent opens @@max_connections connections and fails
			// whenever any other session (or one still closing) exists,
			// so its outcome is a race with the server's own teardown.
			res := runGoTest(t, dir, env, outDir, "mysql-"+cfg, "-skip", "^(TestConnectorReturnsTimeout|TestConcurrent)$", ".")
			results[cfg] = res
			summary = append(summary, summaryLine("go-sql-driver/mysql v1.10.1", cfg, res))
		}
		compareSuites(t, results)
	})
}

func summaryLine(suite, cfg string, r *suiteResult) string {
	top := func(status string) int {
		n := 0
		for _, name := range r.names(status) {
			if !strings.Contains(name, "/") {
				n++
			}
		}
		return n
	}
	line := fmt.Sprintf("  %-28s %-11s pass %4d  fail %3d  skip %3d   (top-level tests: pass %4d  fail %3d  skip %3d)", suite, cfg,
		len(r.names("pass")), len(r.names("fail")), len(r.names("skip")), top("pass"), top("fail"), top("skip"))
	if len(r.pkgFail) > 0 {
		line += "  (package failures: " + strings.Join(r.pkgFail, ", ") + ")"
	}
	return line
}

// compareSuites fails unless plain and encrypting pass exactly the tests
// that pass directly. Tests that fail directly (the server's or the
// environment's own failures) are listed and tolerated.
func compareSuites(t *testing.T, results map[string]*suiteResult) {
	t.Helper()
	direct := results["direct"]
	if n := len(direct.names("pass")); n == 0 {
		t.Fatalf("no test passed directly: the suite did not run (package failures: %v)", direct.pkgFail)
	}
	if f := direct.names("fail"); len(f) > 0 {
		t.Logf("failing directly too (tolerated where they fail in every configuration): %s", strings.Join(f, ", "))
	}
	for _, cfg := range suiteConfigs[1:] {
		r := results[cfg]
		if len(r.pkgFail) > 0 && !slices.Equal(r.pkgFail, direct.pkgFail) {
			t.Errorf("%s: packages failed outside any test: %v (directly: %v)", cfg, r.pkgFail, direct.pkgFail)
		}
		var lost, gained []string
		for _, n := range direct.names("pass") {
			if r.status[n] != "pass" {
				lost = append(lost, n+" ("+statusOr(r.status[n])+")")
			}
		}
		for _, n := range r.names("pass") {
			if direct.status[n] != "pass" {
				gained = append(gained, n+" (directly "+statusOr(direct.status[n])+")")
			}
		}
		if len(lost) > 0 {
			t.Errorf("%s: %d tests that pass directly do not pass: %s", cfg, len(lost), strings.Join(lost, ", "))
			for _, n := range lost {
				name, _, _ := strings.Cut(n, " (")
				if out := r.output[name]; len(out) > 0 {
					t.Logf("%s %s output (tail):\n%s", cfg, name, strings.Join(tail(out, 25), ""))
				}
			}
		}
		if len(gained) > 0 {
			// The server's own failures that the listener does not
			// reproduce (MySQL compression, which listeners do not offer,
			// say): reported, not a regression.
			t.Logf("%s: %d tests pass that do not pass directly: %s", cfg, len(gained), strings.Join(gained, ", "))
		}
	}
}

func statusOr(s string) string {
	if s == "" {
		return "did not run"
	}
	return s
}

func tail(lines []string, n int) []string {
	if len(lines) > n {
		return lines[len(lines)-n:]
	}
	return lines
}

// copyModule downloads mod@version through the module proxy and returns a
// writable copy of its directory (the module cache is read-only and the
// drivers' tests write files).
func copyModule(t *testing.T, modVersion string) string {
	t.Helper()
	cmd := exec.Command("go", "mod", "download", "-json", modVersion)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go mod download %s: %v\n%s", modVersion, err, stderr.String())
	}
	var info struct{ Dir, Error string }
	if err := json.Unmarshal(out, &info); err != nil || info.Dir == "" {
		t.Fatalf("go mod download %s: %v %s", modVersion, err, info.Error)
	}
	dst := filepath.Join(t.TempDir(), "src")
	if err := os.CopyFS(dst, os.DirFS(info.Dir)); err != nil {
		t.Fatalf("copy %s: %v", info.Dir, err)
	}
	return dst
}

// runGoTest runs the tests of pkgs in dir with env added and returns the
// outcome of every test.
func runGoTest(t *testing.T, dir string, env []string, outDir, label string, pkgs ...string) *suiteResult {
	t.Helper()
	args := []string{"test", "-json", "-count=1", "-p", "1", "-timeout", "8m"}
	if run := os.Getenv(envDriverSuitesRun); run != "" {
		args = append(args, "-run", run)
	}
	args = append(args, pkgs...)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = dir
	cmd.Env = append(suiteBaseEnv(), env...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var raw io.Writer = io.Discard
	if outDir != "" {
		f, err := os.Create(filepath.Join(outDir, label+".json"))
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		raw = f
	}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	res := parseTestJSON(io.TeeReader(stdout, raw))
	waitErr := cmd.Wait()
	t.Logf("%s: go test %s: %v in %s", label, strings.Join(pkgs, " "), exitText(waitErr), time.Since(start).Round(time.Second))
	if stderr.Len() > 0 {
		t.Logf("%s: go test stderr:\n%s", label, stderr.String())
	}
	return res
}

func exitText(err error) string {
	if err == nil {
		return "ok"
	}
	return err.Error()
}

// suiteBaseEnv is the environment of the drivers' tests: this process's,
// less the libpq and driver variables that would redirect them.
func suiteBaseEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, "PG") || strings.HasPrefix(k, "MYSQL_") || k == "GOFLAGS" {
			continue
		}
		env = append(env, kv)
	}
	return append(env, "GOTOOLCHAIN=local", "GOFLAGS=-mod=mod")
}

var randomDigits = regexp.MustCompile(`[0-9]{6,}`)

// parseTestJSON reads go test -json events until EOF.
func parseTestJSON(r io.Reader) *suiteResult {
	res := &suiteResult{status: map[string]string{}, output: map[string][]string{}}
	out := map[string][]string{}
	pkgTests := map[string]bool{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		var ev struct{ Action, Package, Test, Output string }
		if json.Unmarshal(sc.Bytes(), &ev) != nil {
			continue
		}
		pkg := ev.Package
		if i := strings.Index(pkg, "/v5"); i >= 0 {
			pkg = strings.TrimPrefix(pkg[i+3:], "/")
		} else if i := strings.LastIndex(pkg, "/"); i >= 0 {
			pkg = pkg[i+1:]
		}
		if pkg == "" {
			pkg = "pgx"
		}
		if ev.Test == "" {
			if ev.Action == "fail" && !pkgTests[pkg+"/failed"] {
				res.pkgFail = append(res.pkgFail, pkg)
			}
			continue
		}
		// Subtest names may hold temporary paths (random digits).
		name := pkg + "." + randomDigits.ReplaceAllString(ev.Test, "N")
		switch ev.Action {
		case "output":
			if len(out[name]) < 400 {
				out[name] = append(out[name], ev.Output)
			}
		case "pass", "skip":
			res.status[name] = ev.Action
			delete(out, name)
		case "fail":
			res.status[name] = ev.Action
			pkgTests[pkg+"/failed"] = true
			res.output[name] = out[name]
			delete(out, name)
		}
	}
	return res
}

// suiteRuleTable is the one encrypted table of the encrypting
// configuration: the suites never touch it.
const suiteRuleTable = "dbproxy_suite_secret"

func suiteSpecs() []rules.Spec {
	return []rules.Spec{
		{Schema: "public", Table: suiteRuleTable, Column: "secret", Mode: rules.ModeRandomized, Type: value.TypeText, Key: "suite_secret"},
		{Schema: "public", Table: suiteRuleTable, Column: "email", Mode: rules.ModeDeterministic, Type: value.TypeText, Key: "suite_email"},
	}
}

// startPgxTarget prepares a fresh database as pgx's testsetup does and
// returns the DSN the suite uses in configuration cfg.
func startPgxTarget(t *testing.T, cfg string) string {
	t.Helper()
	ctx := context.Background()
	pg := testenv.StartPostgres(t)
	su, err := pgx.Connect(ctx, pg.Superuser().DSN())
	if err != nil {
		t.Fatal(err)
	}
	defer su.Close(ctx)
	// pgx's testsetup/postgresql_setup.sql, the parts its default tests use.
	for _, q := range []string{
		"create extension if not exists hstore",
		"create extension if not exists ltree",
		"create domain uint64 as numeric(20,0)",
		`do $$ begin
		   if not exists (select from pg_roles where rolname = ' tricky, '' } " \ test user ') then
		     create user " tricky, ' } "" \ test user " superuser password 'secret';
		   end if;
		 end $$`,
		"create table " + suiteRuleTable + " (id int primary key, secret bytea, email bytea)",
		"alter table " + suiteRuleTable + " owner to " + pgx.Identifier{pg.User}.Sanitize(),
	} {
		if _, err := su.Exec(ctx, q); err != nil {
			t.Fatalf("pgx test setup %q: %v", q, err)
		}
	}
	switch cfg {
	case "direct":
		return pg.DSN()
	case "plain":
		return suitePGProxy(t, pg, nil).DSN("disable")
	}
	specs := suiteSpecs()
	ic := pgEncInterceptor(t, pg, specs, testkeys.Manager(t, testkeys.ForRules(specs)...), nil)
	p := suitePGProxy(t, pg, ic)
	// The rules work: a value written through this listener is stored
	// encrypted (so the suite really ran behind an encrypting listener).
	c := testenv.ConnectPG(t, p.DSN("disable"))
	if _, err := c.Exec(ctx, "insert into "+suiteRuleTable+" (id, secret, email) values (1, $1, $2)", "s3cret-value", "someone@example.com"); err != nil {
		t.Fatal(err)
	}
	var raw []byte
	if err := su.QueryRow(ctx, "select secret from "+suiteRuleTable+" where id = 1").Scan(&raw); err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(raw, []byte("s3cret-value")) {
		t.Fatal("encrypting listener stored plaintext")
	}
	return p.DSN("disable")
}

// suitePGProxy is startPGProxy logging warnings only (the suites open
// thousands of sessions).
func suitePGProxy(t *testing.T, pg *testenv.Postgres, ic postgres.Interceptor) *pgProxy {
	t.Helper()
	sp, logger := newServedProxy(slog.LevelWarn)
	opts := postgres.Options{
		ListenerOptions: proxy.ListenerOptions{
			Name:        "pg-suite",
			Upstream:    pg.Addr(),
			UpstreamTLS: proxy.UpstreamTLS{Mode: proxy.SSLDisable},
			Logger:      logger,
		},
	}
	if ic != nil {
		opts.Interceptor = ic
	}
	h, err := postgres.NewHandler(opts)
	if err != nil {
		t.Fatal(err)
	}
	p := &pgProxy{servedProxy: sp, pg: pg}
	p.serve(t, h, logger)
	return p
}

// startMySQLTarget returns a fresh database and the address the suite
// connects to in configuration cfg.
func startMySQLTarget(t *testing.T, cfg string) (*testenv.MariaDB, string) {
	t.Helper()
	ctx := context.Background()
	db := testenv.StartMariaDB(t)
	direct := openDB(t, myConfigAt(t, db.Addr(), db.User, db.Password, db.Database))
	defer direct.Close() // no idle session left behind while the suite runs
	if _, err := direct.ExecContext(ctx, "CREATE TABLE "+suiteRuleTable+" (id INT PRIMARY KEY, secret VARBINARY(512), email VARBINARY(512))"); err != nil {
		t.Fatal(err)
	}
	switch cfg {
	case "direct":
		return db, db.Addr()
	case "plain":
		return db, suiteMyProxy(t, db, nil).Addr
	}
	specs := suiteSpecs()
	for i := range specs {
		specs[i].Schema, specs[i].Database = "", db.Database
	}
	mgr := testkeys.Manager(t, testkeys.ForRules(specs)...)
	set, err := rules.New(rules.DialectMySQL, specs)
	if err != nil {
		t.Fatal(err)
	}
	ic, err := mycrypt.New(mycrypt.Options{Rules: set, Keys: mgr, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	p := suiteMyProxy(t, db, ic)
	through := openDB(t, myConfigAt(t, p.Addr, db.User, db.Password, db.Database))
	defer through.Close()
	if _, err := through.ExecContext(ctx, "INSERT INTO "+suiteRuleTable+" (id, secret, email) VALUES (1, ?, ?)", "s3cret-value", "someone@example.com"); err != nil {
		t.Fatal(err)
	}
	var raw []byte
	if err := direct.QueryRowContext(ctx, "SELECT secret FROM "+suiteRuleTable+" WHERE id = 1").Scan(&raw); err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(raw, []byte("s3cret-value")) {
		t.Fatal("encrypting listener stored plaintext")
	}
	return db, p.Addr
}

// suiteMyProxy is startMyProxy logging warnings only.
func suiteMyProxy(t *testing.T, db *testenv.MariaDB, ic mysql.Interceptor) *myProxy {
	t.Helper()
	sp, logger := newServedProxy(slog.LevelWarn)
	p := &myProxy{servedProxy: sp, db: db}
	// The server offers TLS (the suite's TLS tests use it), so the
	// listener does too.
	tlsCfg := p.offerTLS(t)
	// The upstream leg is TLS too (verify-full), as a deployment would
	// have it: the suite checks Ssl_cipher of its session.
	up := proxy.UpstreamTLS{Mode: proxy.SSLDisable}
	if db.CAFile != "" {
		up = proxy.UpstreamTLS{Mode: proxy.SSLVerifyFull, ServerName: db.Host, RootCAs: caPool(t, db.CAFile)}
	}
	opts := mysql.Options{
		ListenerOptions: proxy.ListenerOptions{
			TLS:         tlsCfg,
			Name:        "mysql-suite",
			Upstream:    db.Addr(),
			UpstreamTLS: up,
			Logger:      logger,
		},
	}
	if ic != nil {
		opts.Interceptor = ic
	}
	h, err := mysql.NewHandler(opts)
	if err != nil {
		t.Fatal(err)
	}
	p.serve(t, h, logger)
	return p
}
