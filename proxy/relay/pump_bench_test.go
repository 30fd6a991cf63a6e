package relay_test

import (
	"io"
	"testing"

	"github.com/dbproxy/dbproxy/metrics"
	"github.com/dbproxy/dbproxy/proxy/relay"
)

// msgReader returns one small message per read, n times: the read pattern
// of a point-query workload, where counting bytes costs the most relative
// to the relaying.
type msgReader struct {
	msg []byte
	n   int
}

func (r *msgReader) Read(p []byte) (int, error) {
	if r.n == 0 {
		return 0, io.EOF
	}
	r.n--
	return copy(p, r.msg), nil
}

// BenchmarkPumpSmallReads relays one 64-byte message per read, with the
// reads uncounted and counted in a listener's byte counter (metrics on).
func BenchmarkPumpSmallReads(b *testing.B) {
	msg := make([]byte, 64)
	msg[0], msg[1] = 'm', 60
	counted := metrics.New(metrics.Options{}).Listener("bench").FromClient
	for _, tc := range []struct {
		name  string
		count func(int)
	}{{"uncounted", nil}, {"counted", counted}} {
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(msg)))
			f := &toyFramer{}
			p := relay.NewPump(&msgReader{msg: msg, n: b.N}, io.Discard, f,
				relay.Config{HeaderLen: 4, Length: relay.Uint24LE, LenAt: 1, ContinueAt: 255, HeadLen: 1, MaxWhole: 1 << 20}, &f.out, nil)
			p.CountReads(tc.count)
			defer p.Release()
			b.ResetTimer()
			if err := p.Run(); err != io.EOF {
				b.Fatal(err)
			}
		})
	}
}
