package integration

import (
	"context"
	"testing"

	"github.com/dbproxy/dbproxy/internal/testenv"
	"github.com/jackc/pgx/v5"
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
