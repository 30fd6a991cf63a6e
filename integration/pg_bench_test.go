package integration

import (
	"context"
	"runtime"
	"testing"
	"time"

	"github.com/dbproxy/dbproxy/internal/testenv"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// BenchmarkPGRoundTrip measures select-1 round trips directly and through
// the proxy; the difference is the proxy's added latency per query.
//
//	go test -run XXX -bench PGRoundTrip -benchmem ./integration/
func BenchmarkPGRoundTrip(b *testing.B) {
	pg := testenv.StartPostgres(b)
	p := startPGProxy(b, pg, proxyOpts{})
	for _, tc := range []struct {
		name string
		dsn  string
	}{
		{"direct", pg.DSN()},
		{"proxy", p.DSN("disable")},
	} {
		for _, mode := range []pgx.QueryExecMode{pgx.QueryExecModeCacheStatement, pgx.QueryExecModeSimpleProtocol} {
			b.Run(tc.name+"/"+mode.String(), func(b *testing.B) {
				cfg, err := pgx.ParseConfig(tc.dsn)
				if err != nil {
					b.Fatal(err)
				}
				cfg.DefaultQueryExecMode = mode
				ctx := context.Background()
				c, err := pgx.ConnectConfig(ctx, cfg)
				if err != nil {
					b.Fatal(err)
				}
				defer c.Close(ctx)
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
	pg := testenv.StartPostgres(b)
	p := startPGProxy(b, pg, proxyOpts{})
	for _, tc := range []struct {
		name string
		dsn  string
	}{
		{"direct", pg.DSN()},
		{"proxy", p.DSN("disable")},
	} {
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

// BenchmarkPGIdleSessionMemory reports what an idle session costs the
// proxy in heap and stack ("B/session"): n connections are opened directly
// and then n through the proxy (running in this process), each after one
// query, and the difference in in-use memory after garbage collection is
// divided by n. The client's own share is the same on both sides. The
// encrypting case runs a lookup on an encrypted table in each session.
//
//	go test -run XXX -bench PGIdleSessionMemory ./integration/
func BenchmarkPGIdleSessionMemory(b *testing.B) {
	const n = 150
	ctx := context.Background()
	inUse := func() int64 {
		runtime.GC()
		runtime.GC() // and once more for what sync.Pool kept
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return int64(ms.HeapInuse + ms.StackInuse)
	}
	open := func(b *testing.B, dsn, query string) int64 {
		base := inUse()
		conns := make([]*pgconn.PgConn, 0, n)
		defer func() {
			for _, c := range conns {
				_ = c.Close(ctx)
			}
		}()
		for range n {
			c, err := pgconn.Connect(ctx, dsn)
			if err != nil {
				b.Fatal(err)
			}
			conns = append(conns, c)
			if _, err := c.Exec(ctx, query).ReadAll(); err != nil {
				b.Fatal(err)
			}
		}
		time.Sleep(100 * time.Millisecond) // let every session reach its idle wait
		return inUse() - base
	}
	measure := func(b *testing.B, direct, proxied, query string) {
		var perSession float64
		for b.Loop() {
			d := open(b, direct, query)
			p := open(b, proxied, query)
			perSession = float64(p-d) / n
		}
		b.ReportMetric(perSession, "B/session")
	}
	b.Run("plaintext", func(b *testing.B) {
		pg := testenv.StartPostgres(b)
		p := startPGProxy(b, pg, proxyOpts{})
		measure(b, pg.DSN(), p.DSN("disable"), "SELECT 1")
	})
	b.Run("encrypting", func(b *testing.B) {
		e := startEncProxy(b, usersDDL, usersSpecs())
		// Directly, the same statement on the ciphertext column.
		measure(b, e.pg.DSN(), e.proxy.DSN("disable"), "SELECT id, name FROM users WHERE email = 'a@example.com'")
	})
}
