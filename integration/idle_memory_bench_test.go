package integration

import (
	"context"
	"database/sql"
	"runtime"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/dbproxy/dbproxy/internal/testenv"
)

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
