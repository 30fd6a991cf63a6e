package mycrypt_test

import (
	"strconv"
	"testing"

	"github.com/dbproxy/dbproxy/proxy/mysql/mycrypt"
	"github.com/dbproxy/dbproxy/rules"
)

// coldSink keeps the eviction writes observable.
var coldSink byte

// BenchmarkPointSelectCold is BenchmarkPointSelect with the CPU caches
// (and TLB) flushed before every exchange by writing a buffer of 1 to 64
// MiB, outside the timed region. It models one client: between two of its
// statements the client, the server and the kernel run on the same cores
// and evict the proxy's working set, so each statement starts cold, and
// the encrypted path, which touches many more cache lines (crypto, keys,
// rules, plan, session maps), pays for it in misses. On the 2-core VM
// this was written on, the encrypted point select took about 1.5 us warm,
// 3.5-4.5 us after evicting 1 MiB and 17-33 us after 64 MiB, where the
// plaintext one went from 0.03 to 0.4-2 and 4 us: the warm cost of a few
// microseconds becomes the 10-17 us added per statement measured at 1
// client, which has no more system calls or context switches than
// plaintext.
func BenchmarkPointSelectCold(b *testing.B) {
	for _, mb := range []int{1, 4, 16, 64} {
		evict := make([]byte, mb<<20)
		b.Run(strconv.Itoa(mb)+"MiB", func(b *testing.B) {
			onBothTables(b, func(b *testing.B, ic *mycrypt.Interceptor, enc *rules.Encryptor, set *rules.Set, encrypted bool) {
				ps := newPointSelect(b, ic, enc, set, encrypted, "5678")
				ps.run(b, executePacket(ps.stmtID, "5678", true), nil)
				exec := executePacket(ps.stmtID, "5678", false)
				b.ReportAllocs()
				for i := range b.N {
					b.StopTimer()
					for j := 0; j < len(evict); j += 64 {
						evict[j] += byte(i)
					}
					b.StartTimer()
					ps.run(b, exec, nil)
				}
				coldSink = evict[0]
			})
		})
	}
}
