package integration

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dbproxy/dbproxy/internal/testenv"
	"github.com/dbproxy/dbproxy/proxy"
)

// pgEnv returns libpq environment variables for a direct connection.
func pgEnv(pg *testenv.Postgres, sslmode string) []string {
	env := []string{
		"PGHOST=" + pg.Host, "PGPORT=" + strconv.Itoa(pg.Port),
		"PGUSER=" + pg.User, "PGPASSWORD=" + pg.Password,
		"PGDATABASE=" + pg.Database, "PGSSLMODE=" + sslmode,
		"PGCONNECT_TIMEOUT=10", "LANG=C.UTF-8", "PATH=/usr/bin:/bin",
	}
	if pg.CAFile != "" {
		env = append(env, "PGSSLROOTCERT="+pg.CAFile)
	}
	return env
}

func lookTool(t *testing.T, name string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err != nil {
		t.Fatalf("%s not found: install it with `apt-get install postgresql-client` (%v)", name, err)
	}
	return path
}

// runTool runs a client tool and returns stdout, stderr and exit code.
func runTool(t *testing.T, env []string, dir, name string, args ...string) (string, string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, lookTool(t, name), args...)
	cmd.Env = env
	cmd.Dir = dir
	return runCmd(t, cmd)
}

// runCmd runs cmd and returns stdout, stderr and exit code; it fails the
// test if cmd cannot be run at all.
func runCmd(t testing.TB, cmd *exec.Cmd) (string, string, int) {
	t.Helper()
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("run %s: %v", cmd.Path, err)
	}
	return out.String(), errb.String(), code
}

const psqlScript = `
create temp table t (id int, name text, at date);
insert into t select g, 'name ' || g, date '2024-01-01' + g from generate_series(1, 500) g;
select count(*), min(name), max(at) from t; select 'two statements', 2 \g
begin; update t set name = upper(name) where id % 2 = 0; commit;
\copy t to 'out.csv' with (format csv, header)
create temp table t2 (like t);
\copy t2 from 'out.csv' with (format csv, header)
select count(*) filter (where (t.*) is not distinct from (t2.*)) as same from t join t2 using (id);
\copy (select id, name from t where id < 4 order by id) to stdout
\copy t2 from stdin
9001	from stdin	2024-02-02
9002	from stdin 2	2024-02-03
\.
select id, name from t2 where id > 9000 order by id;
prepare p(int) as select name from t where id = $1;
execute p(7);
execute p(6);
select 'before error';
select 1/0;
select 'not reached';
`

// TestPGPsqlScript runs a psql script (multi-statement queries, \copy both
// ways, an error under ON_ERROR_STOP) directly and through the proxy: the
// output and exit code must be identical.
func TestPGPsqlScript(t *testing.T) {
	pg := testenv.StartPostgres(t, testenv.PGOptions{Auth: "scram-sha-256", TLS: true})
	for _, clientTLS := range []bool{false, true} {
		t.Run("client_tls="+strconv.FormatBool(clientTLS), func(t *testing.T) {
			p := startPGProxy(t, pg, proxyOpts{ClientTLS: clientTLS, Upstream: proxy.SSLVerifyFull})
			run := func(env []string) (string, string, int) {
				dir := t.TempDir()
				if err := os.WriteFile(filepath.Join(dir, "script.sql"), []byte(psqlScript), 0o600); err != nil {
					t.Fatal(err)
				}
				return runTool(t, env, dir, "psql", "-X", "-v", "ON_ERROR_STOP=1", "-f", "script.sql")
			}
			dOut, dErr, dCode := run(pgEnv(pg, "verify-full"))
			sslmode := "disable"
			if clientTLS {
				sslmode = "verify-full"
			}
			pOut, pErr, pCode := run(p.psqlEnv(sslmode))
			if dCode != 3 || !strings.Contains(dErr, "division by zero") || strings.Contains(dOut, "not reached") {
				t.Fatalf("direct run: exit %d, stderr %q (want exit 3 and a division by zero error)", dCode, dErr)
			}
			if pOut != dOut || pErr != dErr || pCode != dCode {
				t.Fatalf("psql differs through the proxy\n--- direct (exit %d)\n%s\n%s\n--- proxy (exit %d)\n%s\n%s", dCode, dOut, dErr, pCode, pOut, pErr)
			}
			for _, want := range []string{"same", "500", "9002 | from stdin 2", "1\tname 1", "NAME 6"} {
				if !strings.Contains(pOut, want) {
					t.Fatalf("output lacks %q:\n%s", want, pOut)
				}
			}
		})
	}
}

// TestPGPsqlCtrlC: SIGINT to psql sends a CancelRequest through the proxy.
func TestPGPsqlCtrlC(t *testing.T) {
	pg := testenv.StartPostgres(t)
	p := startPGProxy(t, pg, proxyOpts{})
	admin := testenv.ConnectPG(t, pg.Superuser().DSN())
	cmd := exec.Command(lookTool(t, "psql"), "-X", "-c", "select pg_sleep(60) /* psql-ctrl-c */")
	cmd.Env = p.psqlEnv("disable")
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waitForQuery(t, admin, "psql-ctrl-c")
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	err := cmd.Wait()
	if err == nil || !strings.Contains(errb.String(), "canceling statement due to user request") {
		t.Fatalf("psql after SIGINT: %v, stderr %q", err, errb.String())
	}
}

var tpsRe = regexp.MustCompile(`tps = ([0-9.]+)`)

// TestPGBench runs pgbench -i and a short pgbench run through the proxy.
func TestPGBench(t *testing.T) {
	pg := testenv.StartPostgres(t)
	p := startPGProxy(t, pg, proxyOpts{})
	env := p.psqlEnv("disable")
	out, errOut, code := runTool(t, env, t.TempDir(), "pgbench", "-i", "-s", "1")
	if code != 0 || !strings.Contains(errOut, "done in") {
		t.Fatalf("pgbench -i: exit %d\n%s\n%s", code, out, errOut)
	}
	for _, args := range [][]string{
		{"-T", "3", "-c", "4"},
		{"-T", "2", "-c", "2", "-M", "extended"},
		{"-T", "2", "-c", "2", "-M", "prepared", "-S"},
	} {
		out, errOut, code = runTool(t, env, t.TempDir(), "pgbench", args...)
		if code != 0 || !strings.Contains(out, "number of failed transactions: 0") || !tpsRe.MatchString(out) {
			t.Fatalf("pgbench %v: exit %d\n%s\n%s", args, code, out, errOut)
		}
		t.Logf("pgbench %v through the proxy: %s", args, tpsRe.FindString(out))
	}
}
