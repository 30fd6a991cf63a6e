package integration

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dbproxy/dbproxy/internal/testlog"
)

// benchRows is DBPROXY_MIGRATE_BENCH_ROWS, 100,000 by default.
func benchRows(b *testing.B) int {
	if s := os.Getenv("DBPROXY_MIGRATE_BENCH_ROWS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil {
			b.Fatal(err)
		}
		return n
	}
	return 100000
}

// BenchmarkPGMigrateEncrypt times `dbproxy migrate encrypt` of the people
// table (5 columns: text, bigint, numeric, date, timestamptz) with
// DBPROXY_MIGRATE_BENCH_ROWS rows (default 100,000) and reports rows/s.
// With DBPROXY_MIGRATE_BENCH_PGBENCH=1 a pgbench TPC-B load (2 clients)
// runs against the same server meanwhile and its last reported tps is
// reported too.
//
//	DBPROXY_MIGRATE_BENCH_ROWS=1000000 go test -run '^$' -bench PGMigrateEncrypt -benchtime 1x ./integration/
func BenchmarkPGMigrateEncrypt(b *testing.B) {
	rows := benchRows(b)
	m := startMigEnv(b)
	ctx := migCtx(b)
	var load *exec.Cmd
	loadOut := &testlog.Buffer{} // pgbench writes while the benchmark reads
	if os.Getenv("DBPROXY_MIGRATE_BENCH_PGBENCH") == "1" {
		pgbench, err := exec.LookPath("pgbench")
		if err != nil {
			found, _ := filepath.Glob("/usr/lib/postgresql/*/bin/pgbench")
			if len(found) == 0 {
				b.Fatal("pgbench not found: apt-get install postgresql-contrib")
			}
			pgbench = found[len(found)-1]
		}
		env := append(os.Environ(), "PGPASSWORD="+m.pg.Password)
		args := []string{"-h", m.pg.Host, "-p", strconv.Itoa(m.pg.Port), "-U", m.pg.User}
		init := exec.Command(pgbench, append(args, "-i", "-s", "5", m.pg.Database)...)
		init.Env = env
		if out, err := init.CombinedOutput(); err != nil {
			b.Fatalf("pgbench -i: %v\n%s", err, out)
		}
		load = exec.Command(pgbench, append(args, "-c", "2", "-j", "1", "-T", "3600", "-P", "2", m.pg.Database)...)
		load.Env, load.Stdout, load.Stderr = env, loadOut, loadOut
		if err := load.Start(); err != nil {
			b.Fatal(err)
		}
		defer func() { _ = load.Process.Kill(); _ = load.Wait() }()
	}
	var elapsed time.Duration
	var during []string // pgbench progress written while migrate ran
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		if _, err := m.direct.Exec(ctx, "DROP TABLE IF EXISTS people; DROP TABLE IF EXISTS dbproxy_migrations"); err != nil {
			b.Fatal(err)
		}
		seedPeople(b, ctx, m.direct, rows)
		if _, err := m.direct.Exec(ctx, "VACUUM ANALYZE people"); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		start, from := time.Now(), len(loadOut.String())
		r := m.mustCLI(b, "migrate", "encrypt", "--table", "people", "--batch", "2000")
		b.Logf("%d rows: %s", rows, strings.TrimSpace(r.stdout))
		elapsed += time.Since(start)
		during = append(during, loadOut.String()[from:])
	}
	b.ReportMetric(float64(rows*b.N)/elapsed.Seconds(), "rows/s")
	if load != nil {
		var sum float64
		tps := regexp.MustCompile(`([0-9.]+) tps`).FindAllStringSubmatch(strings.Join(during, ""), -1)
		for _, m := range tps {
			v, _ := strconv.ParseFloat(m[1], 64)
			sum += v
		}
		if len(tps) > 0 {
			b.ReportMetric(sum/float64(len(tps)), "pgbench-tps-during")
		}
		fmt.Fprintf(os.Stderr, "pgbench progress:\n%s", loadOut.String())
	}
}
