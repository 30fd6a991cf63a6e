package integration

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"database/sql"
	"fmt"
	"os"
	"runtime"
	"runtime/pprof"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	driver "github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/dbproxy/dbproxy/internal/testenv"
)

func TestZZMeasureIdleRSS(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("MEASURE_N"))
	if n == 0 {
		t.Skip("MEASURE_N")
	}
	var lim syscall.Rlimit
	_ = syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim)
	lim.Cur = lim.Max
	_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim)
	pg := testenv.StartPostgres(t, testenv.PGOptions{Dedicated: true, Settings: []string{fmt.Sprintf("max_connections = %d", n+200)}})
	my := testenv.StartMariaDB(t, testenv.MariaDBOptions{Dedicated: true, Args: []string{fmt.Sprintf("--max-connections=%d", n+200), "--open-files-limit=30000"}})
	dir := t.TempDir()
	caFile, certFile, keyFile := testenv.GenerateCert(t, dir)
	bin := os.Getenv("MEASURE_BIN")
	if bin == "" {
		bin = buildDBProxy(t)
	}
	ca, _ := os.ReadFile(caFile)
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca)
	modes := os.Getenv("MEASURE_MODES")
	if modes == "" {
		modes = "pg,pgtls,my"
	}
	for _, mode := range []string{"pg", "pgtls", "my"} {
		if !zzHas(modes, mode) {
			continue
		}
		pgListen, myListen := freeListenAddr(t), freeListenAddr(t)
		cfg := fmt.Sprintf(`listeners:
  - protocol: postgres
    listen: %s
    upstream: %s
    tls:
      cert_file: %s
      key_file: %s
    upstream_tls:
      mode: disable
  - protocol: mysql
    listen: %s
    upstream: %s
    upstream_tls:
      mode: disable
shutdown_timeout: 5s
`, pgListen, pg.Addr(), certFile, keyFile, myListen, my.Addr())
		d := newDBProxy(t, bin, cfg, nil, pgListen, myListen)
		d.start(t)
		ctx := context.Background()
		open := func() (func(), error) {
			switch mode {
			case "my":
				connector, err := driver.NewConnector(myConfigAt(t, myListen, my.User, my.Password, my.Database))
				if err != nil {
					return nil, err
				}
				db := sql.OpenDB(connector)
				var one int
				if err := db.QueryRowContext(ctx, "SELECT 1").Scan(&one); err != nil {
					_ = db.Close()
					return nil, err
				}
				return func() { _ = db.Close() }, nil
			default:
				ssl := "disable"
				if mode == "pgtls" {
					ssl = "require"
				}
				cc, err := pgconn.ParseConfig(fmt.Sprintf("postgres://%s:%s@%s/%s?sslmode=%s", pg.User, pg.Password, pgListen, pg.Database, ssl))
				if err != nil {
					return nil, err
				}
				if cc.TLSConfig != nil {
					cc.TLSConfig = &tls.Config{RootCAs: pool, ServerName: "localhost"}
				}
				c, err := pgconn.ConnectConfig(ctx, cc)
				if err != nil {
					return nil, err
				}
				if _, err := c.Exec(ctx, "SELECT 1").ReadAll(); err != nil {
					_ = c.Close(ctx)
					return nil, err
				}
				return func() { _ = c.Close(context.Background()) }, nil
			}
		}
		time.Sleep(2 * time.Second)
		pid := d.pid()
		rss0 := procRSSKB(t, pid)
		var mu sync.Mutex
		var closers []func()
		var firstErr error
		var wg sync.WaitGroup
		sem := make(chan struct{}, 16)
		for range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				sem <- struct{}{}
				defer func() { <-sem }()
				c, err := open()
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					if firstErr == nil {
						firstErr = err
					}
					return
				}
				closers = append(closers, c)
			}()
		}
		wg.Wait()
		if firstErr != nil {
			t.Errorf("%s: first error %v", mode, firstErr)
		}
		time.Sleep(5 * time.Second)
		rss1 := procRSSKB(t, pid)
		time.Sleep(5 * time.Second)
		rss1b := procRSSKB(t, pid)
		opened := len(closers)
		for _, c := range closers {
			c()
		}
		time.Sleep(10 * time.Second)
		rss2 := procRSSKB(t, pid)
		t.Logf("%s: %d conns: VmRSS before %d KB, open+5s %d KB, open+10s %d KB (%.1f KB/conn), 10 s after close %d KB",
			mode, opened, rss0, rss1, rss1b, float64(rss1b-rss0)/float64(max(opened, 1)), rss2)
		d.kill()
	}
}

func zzHas(s, w string) bool {
	for _, f := range splitComma(s) {
		if f == w {
			return true
		}
	}
	return false
}

func splitComma(s string) []string {
	var out []string
	start := 0
	for i := 0; i <= len(s); i++ {
		if i == len(s) || s[i] == ',' {
			out = append(out, s[start:i])
			start = i + 1
		}
	}
	return out
}

func TestZZHeapProfile(t *testing.T) {
	if os.Getenv("MEASURE_PROF") == "" {
		t.Skip()
	}
	runtime.MemProfileRate = 1
	ctx := context.Background()
	pg := testenv.StartPostgres(t)
	p := startPGProxy(t, pg, proxyOpts{})
	var conns []*pgconn.PgConn
	for range 150 {
		c, err := pgconn.Connect(ctx, p.DSN("disable"))
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
		if _, err := c.Exec(ctx, "SELECT 1").ReadAll(); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(time.Second)
	runtime.GC()
	runtime.GC()
	f, _ := os.Create("/tmp/park_heap.prof")
	_ = pprof.Lookup("heap").WriteTo(f, 0)
	f.Close()
	t.Logf("parked %d goroutines %d", p.Srv.Parked(), runtime.NumGoroutine())
	for _, c := range conns {
		_ = c.Close(ctx)
	}
}
