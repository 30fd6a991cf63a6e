package pgcrypt_test

import (
	"testing"

	"github.com/dbproxy/dbproxy/proxy/postgres"
)

// coldSink keeps the eviction writes observable.
var coldSink byte

// BenchmarkCold runs pgbench's point select (prepared and simple) and
// simple insert on both tables, as BenchmarkPreparedSelect,
// BenchmarkSimpleSelect and BenchmarkSimpleInsert do, with the CPU caches
// evicted (16 MiB written) before every exchange, outside the timed
// region: one client's statements, between which the client, the server
// and the kernel evict the proxy's working set.
func BenchmarkCold(b *testing.B) {
	evict := make([]byte, 16<<20)
	for _, tc := range simpleCases {
		b.Run("prepared-select/"+tc.name, func(b *testing.B) {
			f := newFixture(b)
			row, rowOut := f.plainRow, 5+len(f.plainRow)
			if tc.enc {
				row, rowOut = f.encRow, f.plainOut
			}
			x := f.prepare(b, tc.table, tc.oid, tc.types, row, rowOut)
			f.runCold(b, []exchange{x}, evict)
		})
		b.Run("simple-select/"+tc.name, func(b *testing.B) {
			f := newFixture(b)
			f.runCold(b, f.simpleExchanges(b, tc.table, tc.oid, tc.types, tc.enc, 8), evict)
		})
		b.Run("simple-insert/"+tc.name, func(b *testing.B) {
			f := newFixture(b)
			f.runCold(b, insertExchanges(tc.table, 8), evict)
		})
	}
}

// runCold is runEach with evict written before every exchange.
func (f *fixture) runCold(b *testing.B, xs []exchange, evict []byte) {
	var front, back postgres.Writer
	b.ReportAllocs()
	for i := range b.N {
		b.StopTimer()
		if front.Len()+back.Len() > 1<<20 {
			front.Reset()
			back.Reset()
		}
		for j := 0; j < len(evict); j += 64 {
			evict[j] += byte(i)
		}
		b.StartTimer()
		if err := f.run(&xs[i%len(xs)], &front, &back); err != nil {
			b.Fatal(err)
		}
	}
	coldSink = evict[0]
}
