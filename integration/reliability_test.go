package integration

// The reliability suite (README, "Reliability suite"): the real dbproxy
// binary under faults between it and the databases, under floods of
// stalled handshakes, and holding many idle connections. DBPROXY_RELIABILITY=1
// runs the long version (make reliability); the default is a reduced one
// that runs in make test.

import (
	"context"
	"database/sql"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	driver "github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"go.uber.org/goleak"

	"github.com/dbproxy/dbproxy/crypto"
	"github.com/dbproxy/dbproxy/internal/faultproxy"
	"github.com/dbproxy/dbproxy/internal/testenv"
)

// rlAck is one acknowledged commit.
type rlAck struct {
	id    int64
	at    time.Time
	phase int
}

// rlRecorder collects the acknowledged commits and client-visible errors of
// one protocol's writers, by phase (0 = before the first fault).
type rlRecorder struct {
	phase atomic.Int32
	mu    sync.Mutex
	acks  []rlAck
	errs  map[int]map[string]int
	// examples holds the first message of each error kind, for the log.
	examples map[string]string
}

func newRecorder() *rlRecorder {
	return &rlRecorder{errs: map[int]map[string]int{}, examples: map[string]string{}}
}

func (r *rlRecorder) ack(id int64) {
	r.mu.Lock()
	r.acks = append(r.acks, rlAck{id: id, at: time.Now(), phase: int(r.phase.Load())})
	r.mu.Unlock()
}

func (r *rlRecorder) fail(kind string, err error) {
	p := int(r.phase.Load())
	r.mu.Lock()
	if _, ok := r.examples[kind]; !ok && err != nil {
		r.examples[kind] = err.Error()
	}
	if r.errs[p] == nil {
		r.errs[p] = map[string]int{}
	}
	r.errs[p][kind]++
	r.mu.Unlock()
}

// firstAckAfter is the time of the first commit acknowledged after t0.
func (r *rlRecorder) firstAckAfter(t0 time.Time) (time.Time, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i := len(r.acks) - 1; i >= 0 && r.acks[i].at.After(t0); i-- {
		if i == 0 || !r.acks[i-1].at.After(t0) {
			return r.acks[i].at, true
		}
	}
	return time.Time{}, false
}

// rlSecret is the plaintext writer id stores in its encrypted column.
func rlSecret(id int64) string { return fmt.Sprintf("rl-%d-%x", id, uint64(id)*0x9e3779b97f4a7c15) }

const rlInsertPG = `INSERT INTO rl_writes (id, writer, secret) VALUES ($1, $2, $3)`

// pgWriter inserts rows through dsn until ctx ends, reconnecting after
// every error.
func pgWriter(ctx context.Context, dsn string, w int, rec *rlRecorder, stmtTimeout time.Duration) {
	var conn *pgx.Conn
	defer func() {
		if conn != nil {
			_ = conn.Close(context.Background())
		}
	}()
	for seq := int64(0); ctx.Err() == nil; {
		if conn == nil {
			cctx, cancel := context.WithTimeout(ctx, stmtTimeout)
			c, err := pgx.Connect(cctx, dsn)
			cancel()
			if err != nil {
				if ctx.Err() == nil {
					rec.fail("connect: "+errKind(err), err)
				}
				sleepCtx(ctx, 100*time.Millisecond)
				continue
			}
			conn = c
		}
		seq++
		id := int64(w)<<32 | seq
		sctx, cancel := context.WithTimeout(ctx, stmtTimeout)
		_, err := conn.Exec(sctx, rlInsertPG, id, w, rlSecret(id))
		cancel()
		if err != nil {
			if ctx.Err() == nil {
				rec.fail(errKind(err), err)
			}
			_ = conn.Close(context.Background())
			conn = nil
			sleepCtx(ctx, 50*time.Millisecond)
			continue
		}
		rec.ack(id)
	}
}

// myWriter is pgWriter for MySQL (database/sql, one connection).
func myWriter(ctx context.Context, cfg *driver.Config, w int, rec *rlRecorder, stmtTimeout time.Duration) {
	connector, err := driver.NewConnector(cfg)
	if err != nil {
		rec.fail("config", err)
		return
	}
	db := sql.OpenDB(connector)
	defer db.Close()
	db.SetMaxOpenConns(1)
	for seq := int64(0); ctx.Err() == nil; {
		seq++
		id := int64(w)<<32 | seq
		sctx, cancel := context.WithTimeout(ctx, stmtTimeout)
		_, err := db.ExecContext(sctx, `INSERT INTO rl_writes (id, writer, secret) VALUES (?, ?, ?)`, id, w, rlSecret(id))
		cancel()
		if err != nil {
			if ctx.Err() == nil {
				rec.fail(errKind(err), err)
			}
			sleepCtx(ctx, 50*time.Millisecond)
			continue
		}
		rec.ack(id)
	}
}

func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// rlRows is what pgx.Rows and *sql.Rows have in common.
type rlRows interface {
	Next() bool
	Scan(dest ...any) error
	Err() error
}

// scanRLRows calls each for every (id, secret) row; err is the query's.
func scanRLRows(t *testing.T, rows rlRows, err error, each func(id int64, secret []byte)) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
	if c, ok := rows.(interface{ Close() error }); ok {
		defer c.Close()
	} else if c, ok := rows.(interface{ Close() }); ok {
		defer c.Close()
	}
	for rows.Next() {
		var id int64
		var v []byte
		if err := rows.Scan(&id, &v); err != nil {
			t.Fatal(err)
		}
		each(id, v)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
}

// rlConfig is the dbproxy configuration of the fault test; withOther adds a
// second encrypted table, so that switching it changes the rules.
func rlConfig(pgListen, pgUp, pgUser, myListen, myUp, myUser string, withOther bool) string {
	cfg := listenersYAML(
		listenerYAML{name: "pg", protocol: "postgres", listen: pgListen, upstream: pgUp, catalogUser: pgUser, passwordEnv: "DBPROXY_RL_PG_PASSWORD"},
		listenerYAML{name: "mysql", protocol: "mysql", listen: myListen, upstream: myUp, catalogUser: myUser, passwordEnv: "DBPROXY_RL_MYSQL_PASSWORD"},
	) + localKeysYAML + `shutdown_timeout: 5s
encryption:
  - table: rl_writes
    columns:
      - name: secret
        type: text
        key: rl_secret
`
	if withOther {
		cfg += `  - table: rl_other
    columns:
      - name: note
        type: text
        key: rl_note
`
	}
	return cfg
}

// TestReliabilityFaults runs concurrent writers on both protocols through
// the dbproxy binary, whose upstreams go through fault proxies, applies
// faults one after the other, and checks that every acknowledged commit is
// in the database and decrypts through the proxy to the value written. It
// reports, per fault and protocol: commits acknowledged, found, the
// client-visible errors by kind and the recovery time (from the end of the
// fault to the first commit acknowledged after it).
func TestReliabilityFaults(t *testing.T) {
	leaks := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, leaks) }) // runs last: after every other cleanup
	long := reliabilityLong()
	writers, hold, settle, stmtTimeout := 3, time.Second, 500*time.Millisecond, 5*time.Second
	if long {
		writers, hold, settle = 8, 3*time.Second, 2*time.Second
	}

	pg := testenv.StartPostgres(t, testenv.PGOptions{Dedicated: true, Settings: []string{
		"synchronous_commit = on", // acknowledged means in the WAL written to the OS, kill -9 or not
	}})
	var my *testenv.MariaDB
	if long {
		my = testenv.StartMariaDB(t, testenv.MariaDBOptions{Dedicated: true, Args: []string{
			"--innodb-flush-log-at-trx-commit=2", // the redo log written to the OS at each commit
		}})
	} else {
		my = testenv.StartMariaDB(t) // not killed in the fast suite
	}
	ctx := testCtx(t)
	direct := testenv.ConnectPG(t, pg.DSN())
	for _, s := range []string{
		`CREATE TABLE rl_writes (id bigint PRIMARY KEY, writer int NOT NULL, secret bytea NOT NULL)`,
		`CREATE TABLE rl_other (id int PRIMARY KEY, note bytea)`,
	} {
		if _, err := direct.Exec(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	_ = direct.Close(ctx)
	myDirect := openDB(t, myConfigAt(t, my.Addr(), my.User, my.Password, my.Database))
	for _, s := range []string{
		`CREATE TABLE rl_writes (id BIGINT PRIMARY KEY, writer INT NOT NULL, secret VARBINARY(200) NOT NULL)`,
		`CREATE TABLE rl_other (id INT PRIMARY KEY, note VARBINARY(200))`,
	} {
		if _, err := myDirect.ExecContext(ctx, s); err != nil {
			t.Fatal(err)
		}
	}

	fpPG, err := faultproxy.Start(context.Background(), pg.Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = fpPG.Close() })
	fpMy, err := faultproxy.Start(context.Background(), my.Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = fpMy.Close() })
	fps := []*faultproxy.Proxy{fpPG, fpMy}

	bin := buildDBProxy(t)
	pgListen, myListen := freeListenAddr(t), freeListenAddr(t)
	config := func(withOther bool) string {
		return rlConfig(pgListen, fpPG.Addr(), pg.User, myListen, fpMy.Addr(), my.User, withOther)
	}
	d := newDBProxy(t, bin, "", config(true), []string{
		"DBPROXY_RL_PG_PASSWORD=" + pg.Password, "DBPROXY_RL_MYSQL_PASSWORD=" + my.Password,
	}, pgListen, myListen)
	d.keysInit(t) // keys for both tables; the rules then switch between one and two tables
	withOther := false
	d.writeConfig(t, config(withOther))
	d.start(t)

	pgDSN := fmt.Sprintf("postgres://%s:%s@%s/%s?sslmode=disable", pg.User, pg.Password, pgListen, pg.Database)
	myCfg := myConfigAt(t, myListen, my.User, my.Password, my.Database)
	myCfg.Timeout = stmtTimeout
	recPG, recMy := newRecorder(), newRecorder()
	recs := []*rlRecorder{recPG, recMy}
	protos := []string{"PostgreSQL", "MySQL"}

	wctx, stopWriters := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for w := 1; w <= writers; w++ {
		wg.Add(2)
		go func() { defer wg.Done(); pgWriter(wctx, pgDSN, w, recPG, stmtTimeout) }()
		go func() { defer wg.Done(); myWriter(wctx, myCfg, w, recMy, stmtTimeout) }()
	}
	writersStopped := false
	stop := func() {
		if !writersStopped {
			writersStopped = true
			stopWriters()
			wg.Wait()
		}
	}
	t.Cleanup(stop)

	type fault struct {
		name  string
		apply func() time.Time // applies the fault, ends it, returns when it ended
	}
	allFPs := func(f func(*faultproxy.Proxy)) {
		for _, p := range fps {
			f(p)
		}
	}
	latency := fault{"latency 200ms each way", func() time.Time {
		allFPs(func(p *faultproxy.Proxy) {
			p.SetLatency(faultproxy.ToUpstream, 200*time.Millisecond)
			p.SetLatency(faultproxy.ToClient, 200*time.Millisecond)
		})
		time.Sleep(2 * hold)
		allFPs(func(p *faultproxy.Proxy) {
			p.SetLatency(faultproxy.ToUpstream, 0)
			p.SetLatency(faultproxy.ToClient, 0)
		})
		return time.Now()
	}}
	stallFor := time.Second
	if long {
		stallFor = 3 * time.Second
	}
	stall := fault{"stall " + stallFor.String(), func() time.Time {
		allFPs(func(p *faultproxy.Proxy) { p.Stall() })
		time.Sleep(stallFor)
		allFPs(func(p *faultproxy.Proxy) { p.Resume() })
		return time.Now()
	}}
	reset := fault{"reset (RST both sides)", func() time.Time {
		allFPs(func(p *faultproxy.Proxy) { p.Reset() })
		return time.Now()
	}}
	halfOpen := fault{"half-open upstream", func() time.Time {
		allFPs(func(p *faultproxy.Proxy) { p.HalfOpen() })
		return time.Now()
	}}
	killPG := fault{"kill -9 PostgreSQL, restart", func() time.Time {
		pg.Kill(t)
		time.Sleep(hold)
		pg.Restart(t)
		return time.Now()
	}}
	killMy := fault{"kill -9 MariaDB, restart", func() time.Time {
		my.Kill(t)
		time.Sleep(hold)
		my.Restart(t)
		return time.Now()
	}}
	sighup := fault{"SIGHUP, rules changed", func() time.Time {
		withOther = !withOther
		d.writeConfig(t, config(withOther))
		d.signal(t, syscall.SIGHUP)
		return time.Now()
	}}
	sigterm := fault{"SIGTERM dbproxy, restart", func() time.Time {
		d.stop(t)
		end := time.Now()
		d.start(t)
		return end
	}}
	faults := []fault{reset, stall, killPG, sighup}
	if long {
		faults = []fault{latency, stall, reset, halfOpen, killPG, killMy, sighup, sigterm}
	}

	names := []string{"(no fault, warm-up)"}
	recovery := [][]time.Duration{{0, 0}}
	waitAck := func(after time.Time) []time.Duration {
		out := make([]time.Duration, len(recs))
		for i, r := range recs {
			out[i] = -1
			deadline := time.Now().Add(90 * time.Second)
			for time.Now().Before(deadline) {
				if at, ok := r.firstAckAfter(after); ok {
					out[i] = at.Sub(after)
					break
				}
				time.Sleep(10 * time.Millisecond)
			}
			if out[i] < 0 {
				t.Errorf("%s: no commit acknowledged within 90 s of the fault's end", protos[i])
			}
		}
		return out
	}
	waitAck(time.Now()) // both protocols commit before the first fault
	time.Sleep(settle)
	for i, f := range faults {
		for _, r := range recs {
			r.phase.Store(int32(i + 1))
		}
		end := f.apply()
		names = append(names, f.name)
		recovery = append(recovery, waitAck(end))
		time.Sleep(settle)
	}
	stop()

	// Every acknowledged row is in the database (read directly) and
	// decrypts through the proxy to the value written.
	type found struct {
		present map[int64]bool
		plain   map[int64]string
	}
	// atRest reads rows directly: every secret must be a ciphertext.
	atRest := func(proto string, f found) func(id int64, v []byte) {
		return func(id int64, v []byte) {
			if !crypto.IsCiphertext(v) {
				t.Errorf("%s row %d: secret stored as %d bytes that are not a ciphertext", proto, id, len(v))
			}
			f.present[id] = true
		}
	}
	decrypted := func(f found) func(id int64, v []byte) {
		return func(id int64, v []byte) { f.plain[id] = string(v) }
	}
	readPG := func() found {
		f := found{present: map[int64]bool{}, plain: map[int64]string{}}
		for _, r := range []struct {
			dsn  string
			each func(int64, []byte)
		}{{pg.DSN(), atRest("PostgreSQL", f)}, {pgDSN, decrypted(f)}} {
			rows, err := testenv.ConnectPG(t, r.dsn).Query(ctx, `SELECT id, secret FROM rl_writes`)
			scanRLRows(t, rows, err, r.each)
		}
		return f
	}
	readMy := func() found {
		f := found{present: map[int64]bool{}, plain: map[int64]string{}}
		rows, err := myDirect.QueryContext(ctx, `SELECT id, secret FROM rl_writes`)
		scanRLRows(t, rows, err, atRest("MariaDB", f))
		rows, err = openDB(t, myCfg).QueryContext(ctx, `SELECT id, secret FROM rl_writes`)
		scanRLRows(t, rows, err, decrypted(f))
		return f
	}
	results := []found{readPG(), readMy()}

	var table [][]string
	for p := range names {
		for i, r := range recs {
			acked, present, wrong := 0, 0, 0
			var missing []string
			for _, a := range r.acks {
				if a.phase != p {
					continue
				}
				acked++
				if results[i].present[a.id] {
					present++
				} else if len(missing) < 10 {
					missing = append(missing, strconv.FormatInt(a.id, 10))
				}
				if got, ok := results[i].plain[a.id]; ok && got != rlSecret(a.id) {
					wrong++
				}
			}
			if present != acked {
				t.Errorf("%s, %s: %d acknowledged commits, %d in the database (missing ids %s)", names[p], protos[i], acked, present, strings.Join(missing, ", "))
			}
			if wrong > 0 {
				t.Errorf("%s, %s: %d rows decrypt through the proxy to another value than written", names[p], protos[i], wrong)
			}
			if acked == 0 {
				t.Errorf("%s, %s: no commit acknowledged in this phase", names[p], protos[i])
			}
			table = append(table, []string{names[p], protos[i], strconv.Itoa(acked), strconv.Itoa(present),
				kindCounts(r.errs[p]), fmtDuration(recovery[p][i])})
		}
	}
	for i, r := range recs {
		for _, a := range r.acks {
			if _, ok := results[i].plain[a.id]; !ok && results[i].present[a.id] {
				t.Errorf("%s row %d is in the database but not read through the proxy", protos[i], a.id)
				break
			}
		}
	}
	for i, r := range recs {
		for kind, msg := range r.examples {
			t.Logf("%s, first %q error: %.300s", protos[i], kind, msg)
		}
	}
	mode := "fast"
	if long {
		mode = "long"
	}
	reportTable(t, fmt.Sprintf("Faults (%s mode, %d writers per protocol)", mode, writers),
		[]string{"fault", "protocol", "acknowledged", "found", "client errors", "recovery time"}, table)
}

// goLimited runs f n times, on goroutines of which at most limit run at
// once; the channel it returns is closed when every run has returned.
func goLimited(n, limit int, f func()) <-chan struct{} {
	var wg sync.WaitGroup
	sem := make(chan struct{}, limit)
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			f()
		}()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	return done
}

// startPlainDBProxy runs the dbproxy binary with a plaintext PostgreSQL and
// a plaintext MySQL listener (default limits, no encryption rules) in front
// of pg and my, and returns it with the two listen addresses.
func startPlainDBProxy(t *testing.T, pg *testenv.Postgres, my *testenv.MariaDB) (d *dbproxyProc, pgListen, myListen string) {
	t.Helper()
	pgListen, myListen = freeListenAddr(t), freeListenAddr(t)
	cfg := listenersYAML(
		listenerYAML{protocol: "postgres", listen: pgListen, upstream: pg.Addr()},
		listenerYAML{protocol: "mysql", listen: myListen, upstream: my.Addr()},
	) + "shutdown_timeout: 5s\n"
	d = newDBProxy(t, buildDBProxy(t), "", cfg, nil, pgListen, myListen)
	d.start(t)
	return d, pgListen, myListen
}

// TestReliabilityStalledHandshakes opens many connections from 127.0.0.2
// that never finish their handshake (PostgreSQL: nothing sent; MySQL: the
// greeting read, nothing sent) while a legitimate client connects from
// 127.0.0.1 and queries again and again: every legitimate connect must
// succeed (within 1 s in the long suite) and the stalled handshakes must
// not take database connections.
func TestReliabilityStalledHandshakes(t *testing.T) {
	long := reliabilityLong()
	n, hold := 300, 3*time.Second
	if long {
		n, hold = 2000, 15*time.Second
	}
	pg := testenv.StartPostgres(t)
	my := testenv.StartMariaDB(t)
	_, pgListen, myListen := startPlainDBProxy(t, pg, my)
	ctx := testCtx(t)

	pgAdmin := testenv.ConnectPG(t, pg.Superuser().DSN())
	myAdmin := openDB(t, myConfigAt(t, my.Addr(), my.Superuser().User, "", my.Database))
	myAdmin.SetMaxOpenConns(1)
	cases := []struct {
		name         string
		addr         string
		readGreeting bool
		legit        func(ctx context.Context) error
		dbConns      func(ctx context.Context) (int, error)
	}{
		{"PostgreSQL", pgListen, false, func(ctx context.Context) error {
			c, err := pgx.Connect(ctx, fmt.Sprintf("postgres://%s:%s@%s/%s?sslmode=disable&connect_timeout=10", pg.User, pg.Password, pgListen, pg.Database))
			if err != nil {
				return err
			}
			defer c.Close(context.Background())
			_, err = c.Exec(ctx, "SELECT 1")
			return err
		}, func(ctx context.Context) (int, error) {
			var n int
			err := pgAdmin.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'`).Scan(&n)
			return n, err
		}},
		{"MySQL", myListen, true, func(ctx context.Context) error {
			connector, err := driver.NewConnector(myConfigAt(t, myListen, my.User, my.Password, my.Database))
			if err != nil {
				return err
			}
			db := sql.OpenDB(connector)
			defer db.Close()
			var one int
			return db.QueryRowContext(ctx, "SELECT 1").Scan(&one)
		}, func(ctx context.Context) (int, error) {
			var name string
			var n int
			err := myAdmin.QueryRowContext(ctx, `SHOW STATUS LIKE 'Threads_connected'`).Scan(&name, &n)
			return n, err
		}},
	}
	var table [][]string
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			base, err := tc.dbConns(ctx)
			if err != nil {
				t.Fatal(err)
			}
			fctx, stopFlood := context.WithCancel(ctx)
			defer stopFlood()
			var (
				mu       sync.Mutex
				stalled  []net.Conn
				dialErrs = map[string]int{}
			)
			defer func() {
				mu.Lock()
				for _, c := range stalled {
					_ = c.Close()
				}
				mu.Unlock()
			}()
			dialer := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}, Timeout: 10 * time.Second}
			floodStart := time.Now()
			floodDone := goLimited(n, 64, func() {
				c, err := dialer.DialContext(fctx, "tcp", tc.addr)
				if err != nil {
					mu.Lock()
					dialErrs[errKind(err)]++
					mu.Unlock()
					return
				}
				if tc.readGreeting {
					_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
					_, _ = c.Read(make([]byte, 512))
					_ = c.SetReadDeadline(time.Time{})
				}
				mu.Lock()
				stalled = append(stalled, c)
				mu.Unlock()
			})

			// The database's connection count, sampled while the flood lasts.
			var maxConns atomic.Int64
			sampleDone := make(chan struct{})
			go func() {
				defer close(sampleDone)
				for fctx.Err() == nil {
					if n, err := tc.dbConns(fctx); err == nil && int64(n) > maxConns.Load() {
						maxConns.Store(int64(n))
					}
					sleepCtx(fctx, 50*time.Millisecond)
				}
			}()

			// The legitimate client, until the flood is in place and held.
			var attempts, failures int
			var maxLatency time.Duration
			failKinds := map[string]int{}
			var heldFrom time.Time
			for {
				if heldFrom.IsZero() {
					select {
					case <-floodDone:
						heldFrom = time.Now()
					default:
					}
				}
				if !heldFrom.IsZero() && time.Since(heldFrom) > hold {
					break
				}
				attempts++
				lctx, cancel := context.WithTimeout(ctx, 20*time.Second)
				start := time.Now()
				err := tc.legit(lctx)
				cancel()
				if lat := time.Since(start); lat > maxLatency {
					maxLatency = lat
				}
				if err != nil {
					failures++
					failKinds[errKind(err)]++
					if failures <= 3 {
						t.Logf("legitimate client: %v", err)
					}
				}
				time.Sleep(20 * time.Millisecond)
			}
			stopFlood()
			<-sampleDone
			mu.Lock()
			opened := len(stalled)
			mu.Unlock()
			t.Logf("%d stalled connects (%d opened, dial errors %s) in %v; legitimate: %d attempts, %d failed, max latency %v; database connections: %d before, at most %d during",
				n, opened, kindCounts(dialErrs), time.Since(floodStart).Round(time.Millisecond), attempts, failures, maxLatency, base, maxConns.Load())
			if failures > 0 {
				t.Errorf("%d of %d legitimate connects failed during the flood (%s)", failures, attempts, kindCounts(failKinds))
			}
			if long && maxLatency > time.Second {
				t.Errorf("a legitimate connect took %v during the flood, want at most 1s", maxLatency)
			}
			// The legitimate client and the sampler hold two; catalog
			// connections a few more. Stalled handshakes must hold none.
			if bound := int64(base) + 10; maxConns.Load() > bound {
				t.Errorf("the database had %d connections during the flood (%d before): stalled handshakes hold database connections", maxConns.Load(), base)
			}
			mu.Lock()
			table = append(table, []string{tc.name, strconv.Itoa(n), strconv.Itoa(attempts), strconv.Itoa(failures),
				maxLatency.Round(time.Millisecond).String(), fmt.Sprintf("%d → %d", base, maxConns.Load())})
			mu.Unlock()
		})
	}
	reportTable(t, "Stalled handshakes from 127.0.0.2, a legitimate client from 127.0.0.1",
		[]string{"protocol", "stalled connects", "legitimate connects", "failed", "max connect latency", "database connections (before → max)"}, table)
}

// TestReliabilityIdleConnections holds many idle connections through the
// dbproxy binary, each after one query (5,000 per protocol in the long
// suite, 100 otherwise), and reads the proxy's RSS and open file
// descriptors before, while they are open and after they are closed.
// The descriptors must go back to where they were; in the long suite an
// idle plaintext PostgreSQL connection may cost at most 12 KB of RSS.
func TestReliabilityIdleConnections(t *testing.T) {
	long := reliabilityLong()
	n := 100
	var pg *testenv.Postgres
	var my *testenv.MariaDB
	if long {
		n = 5000
		pg = testenv.StartPostgres(t, testenv.PGOptions{Dedicated: true, Settings: []string{"max_connections = 5200"}})
		my = testenv.StartMariaDB(t, testenv.MariaDBOptions{Dedicated: true, Args: []string{"--max-connections=5200", "--open-files-limit=12000"}})
		var lim syscall.Rlimit
		if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err == nil && lim.Cur < 3*uint64(n) {
			lim.Cur = min(lim.Max, 4*uint64(n))
			if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
				t.Logf("raise RLIMIT_NOFILE: %v", err)
			}
		}
	} else {
		pg, my = testenv.StartPostgres(t), testenv.StartMariaDB(t)
	}
	// Each case gets a proxy process of its own: memory the runtime keeps
	// after one case's connections closed would hide the next one's.
	var d *dbproxyProc
	var pgListen, myListen string
	ctx := testCtx(t)
	if long {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(context.Background(), 20*time.Minute)
		defer cancel()
	}

	type opener func(ctx context.Context) (closeFn func(), err error)
	pgOpen := func(ctx context.Context) (func(), error) {
		c, err := pgconn.Connect(ctx, fmt.Sprintf("postgres://%s:%s@%s/%s?sslmode=disable", pg.User, pg.Password, pgListen, pg.Database))
		if err != nil {
			return nil, err
		}
		if _, err := c.Exec(ctx, "SELECT 1").ReadAll(); err != nil {
			_ = c.Close(ctx)
			return nil, err
		}
		return func() { _ = c.Close(context.Background()) }, nil
	}
	myOpen := func(ctx context.Context) (func(), error) {
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
	}
	var table [][]string
	for _, tc := range []struct {
		name string
		open opener
	}{{"PostgreSQL plaintext", pgOpen}, {"MySQL plaintext", myOpen}} {
		if d != nil {
			d.kill()
		}
		d, pgListen, myListen = startPlainDBProxy(t, pg, my)
		pid := d.pid()
		rss0, fd0 := procRSSKB(t, pid), procFDs(t, pid)
		closers := make([]func(), 0, n)
		var mu sync.Mutex
		var firstErr error
		<-goLimited(n, 16, func() {
			c, err := tc.open(ctx)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				if firstErr == nil {
					firstErr = err
				}
				return
			}
			closers = append(closers, c)
		})
		// Let every session reach its idle wait (PostgreSQL sessions park
		// their sockets after 200 ms idle) and the runtime return what the
		// connection storm left free.
		time.Sleep(5 * time.Second)
		rss1, fd1 := procRSSKB(t, pid), procFDs(t, pid)
		opened := len(closers)
		for _, c := range closers {
			c()
		}
		if firstErr != nil {
			t.Errorf("%s: %d of %d connections failed, first: %v", tc.name, n-opened, n, firstErr)
		}
		// Descriptors go back once the proxy has seen every close.
		waitFor(t, tc.name+": the proxy's descriptors back to where they were", func() bool { return procFDs(t, pid) <= fd0+2 })
		time.Sleep(3 * time.Second)
		rss2, fd2 := procRSSKB(t, pid), procFDs(t, pid)
		perConn := float64(rss1-rss0) / float64(max(opened, 1))
		t.Logf("%s: %d connections: RSS %d → %d → %d KB (%.1f KB each), fds %d → %d → %d", tc.name, opened, rss0, rss1, rss2, perConn, fd0, fd1, fd2)
		if long && strings.HasPrefix(tc.name, "PostgreSQL") && perConn > 12 {
			t.Errorf("%s: %.1f KB of proxy RSS per idle connection, want at most 12", tc.name, perConn)
		}
		// serve hands freed memory back after sessions end in bulk: at
		// least half of what the connections took is returned.
		if long && rss2-rss0 > (rss1-rss0)/2 {
			t.Errorf("%s: RSS %d KB 3 s after the connections closed, want at most half way between %d (before) and %d (open)", tc.name, rss2, rss0, rss1)
		}
		table = append(table, []string{tc.name, strconv.Itoa(opened), fmt.Sprintf("%d / %d / %d", rss0, rss1, rss2),
			fmt.Sprintf("%.1f", perConn), fmt.Sprintf("%d / %d / %d", fd0, fd1, fd2)})
	}
	reportTable(t, "Idle connections through dbproxy (RSS in KB; before / open / 3 s after close)",
		[]string{"listener", "connections", "RSS", "KB per connection", "open fds"}, table)
}
