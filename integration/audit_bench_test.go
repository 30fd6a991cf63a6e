package integration

import (
	"bytes"
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/dbproxy/dbproxy/audit"
	"github.com/dbproxy/dbproxy/proxy/postgres/pgcrypt"
)

// BenchmarkPGEncPointSelectAudit looks a user up by email (a
// deterministic match and two decryptions per query, extended protocol)
// through two encrypting proxies in front of one server: without audit,
// and with the audit session tracker as the field cipher's Monitor over
// an audit.Log writing to a file (summaries every second). Compare the
// two in the same run:
//
//	go test -run '^$' -bench PGEncPointSelectAudit -benchtime 3s -count 6 ./integration/
func BenchmarkPGEncPointSelectAudit(b *testing.B) {
	e := startEncProxy(b, usersDDL+`; CREATE INDEX ON users (email)`, usersSpecs())
	l, err := audit.Open(audit.Options{Path: filepath.Join(b.TempDir(), "audit.jsonl"),
		Key: bytes.Repeat([]byte{1}, audit.MACSize), KeyVersion: 1})
	if err != nil {
		b.Fatal(err)
	}
	tr := audit.NewTracker(l, time.Second)
	b.Cleanup(func() { tr.Close(); l.Close() })
	ic := pgEncInterceptor(b, e.pg, e.specs, e.mgr, func(o *pgcrypt.Options) { o.Monitor = tr })
	audited := startPGProxy(b, e.pg, proxyOpts{Interceptor: ic})

	ctx := context.Background()
	c := e.connectMode(b, pgx.QueryExecModeCacheStatement)
	const n = 1000
	for i := range n {
		if _, err := c.Exec(ctx, `INSERT INTO users (email, name, salary, note) VALUES ($1, $2, $3, 'n')`,
			fmt.Sprintf("user%d@example.com", i), fmt.Sprintf("User %d", i), int64(i)); err != nil {
			b.Fatal(err)
		}
	}
	if _, err := e.direct.Exec(ctx, `ANALYZE`); err != nil {
		b.Fatal(err)
	}
	off := e.connectMode(b, pgx.QueryExecModeCacheStatement)
	on := connectMode(b, audited.DSN("disable"), pgx.QueryExecModeCacheStatement)
	pointSelect := func(b *testing.B, c *pgx.Conn, i int) {
		var id, salary int64
		var name string
		if err := c.QueryRow(ctx, `SELECT id, name, salary FROM users WHERE email = $1`,
			fmt.Sprintf("user%d@example.com", i%n)).Scan(&id, &name, &salary); err != nil {
			b.Fatal(err)
		}
		if salary != int64(i%n) {
			b.Fatalf("salary %d", salary)
		}
	}
	for _, run := range []struct {
		name string
		c    *pgx.Conn
	}{{"audit=off", off}, {"audit=on", on}} {
		b.Run(run.name, func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				pointSelect(b, run.c, i)
			}
		})
	}
	// Blocks of queries alternate between the two proxies (and which of
	// them goes first), so that load from elsewhere on the machine hits
	// both alike; the metric is the median, over pairs of adjacent blocks,
	// of the throughput with audit over the throughput without (a median
	// of pairs is robust to bursts of load that a sum is not).
	b.Run("interleaved", func(b *testing.B) {
		const block = 50
		var ratios []float64
		for i := 0; b.Loop(); i++ {
			var took [2]time.Duration
			for x := range 2 {
				k := (x + i) % 2 // which goes first alternates
				c := []*pgx.Conn{off, on}[k]
				start := time.Now()
				for j := range block {
					pointSelect(b, c, i*block+j)
				}
				took[k] = time.Since(start)
			}
			ratios = append(ratios, float64(took[0])/float64(took[1]))
		}
		slices.Sort(ratios)
		b.ReportMetric(ratios[len(ratios)/2], "on/off-throughput")
	})
	if l.Dropped() != 0 {
		b.Logf("%d audit events dropped", l.Dropped())
	}
}
