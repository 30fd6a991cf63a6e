package integration

import (
	"context"
	"database/sql"
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/dbproxy/dbproxy/internal/testenv"
)

// pgBenchTarget is a database a benchmark runs against, by name.
type pgBenchTarget struct{ name, dsn string }

// pgBenchTargets starts a server and a proxy in front of it, and returns
// both: "direct" and "proxy".
func pgBenchTargets(b *testing.B) []pgBenchTarget {
	b.Helper()
	pg := testenv.StartPostgres(b)
	p := startPGProxy(b, pg, proxyOpts{})
	return []pgBenchTarget{{"direct", pg.DSN()}, {"proxy", p.DSN("disable")}}
}

// BenchmarkPGRoundTrip measures select-1 round trips directly and through
// the proxy; the difference is the proxy's added latency per query.
//
//	go test -run XXX -bench PGRoundTrip -benchmem ./integration/
func BenchmarkPGRoundTrip(b *testing.B) {
	for _, tc := range pgBenchTargets(b) {
		for _, mode := range []pgx.QueryExecMode{pgx.QueryExecModeCacheStatement, pgx.QueryExecModeSimpleProtocol} {
			b.Run(tc.name+"/"+mode.String(), func(b *testing.B) {
				ctx := context.Background()
				c := connectMode(b, tc.dsn, mode)
				b.ReportAllocs()
				var n int
				for b.Loop() {
					if err := c.QueryRow(ctx, "select 1").Scan(&n); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// BenchmarkPGLargeResult streams a 10k-row result directly and through the
// proxy.
func BenchmarkPGLargeResult(b *testing.B) {
	for _, tc := range pgBenchTargets(b) {
		b.Run(tc.name, func(b *testing.B) {
			ctx := context.Background()
			c, err := pgx.Connect(ctx, tc.dsn)
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close(ctx)
			b.ReportAllocs()
			for b.Loop() {
				rows, err := c.Query(ctx, "select g, repeat('x', 100) from generate_series(1, 10000) g")
				if err != nil {
					b.Fatal(err)
				}
				for rows.Next() {
				}
				if rows.Err() != nil {
					b.Fatal(rows.Err())
				}
			}
		})
	}
}

// BenchmarkMySQLPointSelect measures one primary-key SELECT round trip
// (prepared statement over the binary protocol, and COM_QUERY with the
// value interpolated by the driver)
// directly and through the proxy, one connection, on loopback.
//
//	go test -run '^$' -bench MySQLPointSelect -benchtime 5s ./integration/
func BenchmarkMySQLPointSelect(b *testing.B) {
	db := testenv.StartMariaDB(b)
	p := startMyProxy(b, db, myProxyOpts{})
	ctx := context.Background()
	setup := openDB(b, myConfigAt(b, db.Addr(), db.User, db.Password, db.Database))
	if _, err := setup.ExecContext(ctx, `CREATE TABLE sbtest (id INT PRIMARY KEY, k INT, c CHAR(120), pad CHAR(60))`); err != nil {
		b.Fatal(err)
	}
	if _, err := setup.ExecContext(ctx, `INSERT INTO sbtest SELECT seq, seq * 7, REPEAT('c', 120), REPEAT('p', 60) FROM seq_1_to_10000`); err != nil {
		b.Fatal(err)
	}
	for _, target := range []struct{ name, addr string }{{"direct", db.Addr()}, {"proxy", p.Addr}} {
		for _, mode := range []string{"prepared", "interpolated"} {
			b.Run(target.name+"/"+mode, func(b *testing.B) {
				var params []string
				if mode == "interpolated" {
					params = append(params, "interpolateParams=true")
				}
				conn := openConn(b, myConfigAt(b, target.addr, db.User, db.Password, db.Database, params...))
				stmt, err := conn.PrepareContext(ctx, `SELECT c FROM sbtest WHERE id = ?`)
				if err != nil {
					b.Fatal(err)
				}
				defer stmt.Close()
				query := func(id int) *sql.Row { return stmt.QueryRowContext(ctx, id) }
				if mode == "interpolated" {
					// COM_QUERY with the literal spliced in by the driver.
					query = func(id int) *sql.Row { return conn.QueryRowContext(ctx, `SELECT c FROM sbtest WHERE id = ?`, id) }
				}
				var c string
				b.ReportAllocs()
				b.ResetTimer()
				for i := 0; b.Loop(); i++ {
					if err := query(1 + i%10000).Scan(&c); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// BenchmarkPGEncPointSelect looks a user up by email through the encrypting
// proxy (simple and extended protocol): on a table whose email, name and salary are
// encrypted (email deterministic), and on the same table in plaintext.
//
//	go test -run XXX -bench PGEncPointSelect -benchmem ./integration/
func BenchmarkPGEncPointSelect(b *testing.B) {
	e := startEncProxy(b, usersDDL+`; CREATE TABLE plain_users (id bigserial PRIMARY KEY, email text, name text, salary bigint, note text);
CREATE INDEX ON users (email); CREATE INDEX ON plain_users (email)`, usersSpecs())
	ctx := context.Background()
	c := e.connectMode(b, pgx.QueryExecModeCacheStatement)
	const n = 1000
	for _, table := range []string{"users", "plain_users"} {
		for i := range n {
			if _, err := c.Exec(ctx, fmt.Sprintf(`INSERT INTO %s (email, name, salary, note) VALUES ($1, $2, $3, 'n')`, table),
				fmt.Sprintf("user%d@example.com", i), fmt.Sprintf("User %d", i), int64(i)); err != nil {
				b.Fatal(err)
			}
		}
	}
	if _, err := e.direct.Exec(ctx, `ANALYZE`); err != nil {
		b.Fatal(err)
	}
	for _, run := range []struct {
		table string
		mode  pgx.QueryExecMode
	}{
		{"users", pgx.QueryExecModeSimpleProtocol}, {"plain_users", pgx.QueryExecModeSimpleProtocol},
		{"users", pgx.QueryExecModeCacheStatement}, {"plain_users", pgx.QueryExecModeCacheStatement},
	} {
		table := run.table
		c := e.connectMode(b, run.mode)
		b.Run(run.mode.String()+"/"+table, func(b *testing.B) {
			q := fmt.Sprintf(`SELECT id, name, salary FROM %s WHERE email = $1`, table)
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				var id, salary int64
				var name string
				if err := c.QueryRow(ctx, q, fmt.Sprintf("user%d@example.com", i%n)).Scan(&id, &name, &salary); err != nil {
					b.Fatal(err)
				}
				if salary != int64(i%n) {
					b.Fatalf("salary %d", salary)
				}
				i++
			}
		})
	}
}

// idleSessions is how many connections the idle-memory benchmarks hold
// open at once (the throwaway servers allow 200).
const idleSessions = 150

// memInUse is the heap and stack in use after garbage collection.
func memInUse() int64 {
	runtime.GC()
	runtime.GC() // and once more for what sync.Pool kept
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return int64(ms.HeapInuse + ms.StackInuse)
}

// reportPerSession reports, as "B/session", the memory idleSessions
// proxied connections hold beyond as many direct ones; each function opens
// its connections, returns the memory they hold, and closes them.
func reportPerSession(b *testing.B, direct, proxied func() int64) {
	var perSession float64
	for b.Loop() {
		d := direct()
		p := proxied()
		perSession = float64(p-d) / idleSessions
	}
	b.ReportMetric(perSession, "B/session")
}

// BenchmarkPGIdleSessionMemory reports what an idle session costs the
// proxy in heap and stack ("B/session"): n connections are opened directly
// and then n through the proxy (running in this process), each after one
// query, and the difference in in-use memory after garbage collection is
// divided by n. The client's own share is the same on both sides. The tls
// case has the clients use TLS (to the proxy; directly, to the server);
// the encrypting case runs a lookup on an encrypted table in each session.
//
//	go test -run XXX -bench PGIdleSessionMemory ./integration/
func BenchmarkPGIdleSessionMemory(b *testing.B) {
	ctx := context.Background()
	open := func(b *testing.B, dsn, query string) int64 {
		base := memInUse()
		conns := make([]*pgconn.PgConn, 0, idleSessions)
		defer func() {
			for _, c := range conns {
				_ = c.Close(ctx)
			}
		}()
		for range idleSessions {
			c, err := pgconn.Connect(ctx, dsn)
			if err != nil {
				b.Fatal(err)
			}
			conns = append(conns, c)
			if _, err := c.Exec(ctx, query).ReadAll(); err != nil {
				b.Fatal(err)
			}
		}
		time.Sleep(time.Second) // let every session reach its idle wait (PostgreSQL: and park, after 200 ms)
		return memInUse() - base
	}
	measure := func(b *testing.B, direct, proxied, query string) {
		reportPerSession(b, func() int64 { return open(b, direct, query) }, func() int64 { return open(b, proxied, query) })
	}
	b.Run("plaintext", func(b *testing.B) {
		pg := testenv.StartPostgres(b)
		p := startPGProxy(b, pg, proxyOpts{})
		measure(b, pg.DSN(), p.DSN("disable"), "SELECT 1")
	})
	b.Run("tls", func(b *testing.B) {
		// TLS on the client leg only: the direct connections use TLS to
		// the server, so the client's TLS state is on both sides.
		pg := testenv.StartPostgres(b, testenv.PGOptions{TLS: true})
		p := startPGProxy(b, pg, proxyOpts{ClientTLS: true})
		measure(b, pg.ConnString("require"), p.DSN("require"), "SELECT 1")
	})
	b.Run("encrypting", func(b *testing.B) {
		e := startEncProxy(b, usersDDL, usersSpecs())
		// Directly, the same statement on the ciphertext column.
		measure(b, e.pg.DSN(), e.proxy.DSN("disable"), "SELECT id, name FROM users WHERE email = 'a@example.com'")
	})
}

// BenchmarkMySQLIdleSessionMemory is BenchmarkPGIdleSessionMemory for the
// MySQL listener (go-sql-driver connections, one query each).
//
//	go test -run XXX -bench MySQLIdleSessionMemory ./integration/
func BenchmarkMySQLIdleSessionMemory(b *testing.B) {
	db := testenv.StartMariaDB(b)
	p := startMyProxy(b, db, myProxyOpts{})
	ctx := context.Background()
	open := func(addr string) int64 {
		base := memInUse()
		pool := openDB(b, myConfigAt(b, addr, db.User, db.Password, db.Database))
		pool.SetMaxIdleConns(idleSessions)
		conns := make([]*sql.Conn, 0, idleSessions)
		defer func() {
			for _, c := range conns {
				_ = c.Close()
			}
			_ = pool.Close()
		}()
		for range idleSessions {
			c, err := pool.Conn(ctx)
			if err != nil {
				b.Fatal(err)
			}
			conns = append(conns, c)
			var one int
			if err := c.QueryRowContext(ctx, "SELECT 1").Scan(&one); err != nil {
				b.Fatal(err)
			}
		}
		time.Sleep(time.Second) // let every session reach its idle wait (PostgreSQL: and park, after 200 ms)
		return memInUse() - base
	}
	reportPerSession(b, func() int64 { return open(db.Addr()) }, func() int64 { return open(p.Addr) })
}
