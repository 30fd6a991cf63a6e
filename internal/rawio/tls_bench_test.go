package rawio_test

import (
	"crypto/tls"
	"io"
	"net"
	"testing"

	"github.com/dbproxy/dbproxy/internal/rawio"
)

// BenchmarkTLSRead: a request of size bytes read by a TLS server and
// answered with one byte, the client leg's rhythm: crypto/tls's own
// reader against TLSConn's record-bounded one (a header read and a body
// read per record).
func BenchmarkTLSRead(b *testing.B) {
	for _, sz := range []struct {
		name string
		n    int
	}{{"100B", 100}, {"64KiB", 64 << 10}} {
		size := sz.n
		for _, bounded := range []bool{false, true} {
			name := "tls.Conn"
			if bounded {
				name = "TLSConn"
			}
			b.Run(name+"/"+sz.name, func(b *testing.B) {
				a, c := tcpPair(b)
				cfg := &tls.Config{Certificates: []tls.Certificate{testCert(b)}}
				var srv net.Conn = tls.Server(rawio.Wrap(a), cfg)
				if bounded {
					srv = rawio.TLSServer(rawio.Wrap(a), nil, cfg)
				}
				cli := tls.Client(c, &tls.Config{InsecureSkipVerify: true})
				go func() {
					buf := make([]byte, 16<<10)
					got := 0
					for {
						n, err := srv.Read(buf)
						if err != nil {
							return
						}
						if got += n; got == size {
							got = 0
							if _, err := srv.Write([]byte{1}); err != nil {
								return
							}
						}
					}
				}()
				req, one := make([]byte, size), make([]byte, 1)
				b.SetBytes(int64(size))
				b.ResetTimer()
				for range b.N {
					if _, err := cli.Write(req); err != nil {
						b.Fatal(err)
					}
					if _, err := io.ReadFull(cli, one); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}
