package postgres_test

import (
	"bytes"
	"io"
	"testing"

	"github.com/dbproxy/dbproxy/proxy/postgres"
	"github.com/jackc/pgx/v5/pgproto3"
)

// loopReader replays data n times, in reads of at most chunk bytes.
type loopReader struct {
	data  []byte
	off   int
	left  int
	chunk int
}

func (r *loopReader) Read(p []byte) (int, error) {
	if r.off == len(r.data) {
		if r.left == 0 {
			return 0, io.EOF
		}
		r.left--
		r.off = 0
	}
	n := copy(p[:min(len(p), r.chunk)], r.data[r.off:])
	r.off += n
	return n, nil
}

// BenchmarkRelay measures the framing hot path without sockets: a server
// response of DataRows relayed untouched, and with a pass-through hook on
// every DataRow (the cost the encryption layer starts from).
func BenchmarkRelay(b *testing.B) {
	var resp []byte
	resp, _ = (&pgproto3.RowDescription{Fields: []pgproto3.FieldDescription{{Name: []byte("a")}, {Name: []byte("b")}}}).Encode(resp)
	for range 100 {
		resp, _ = (&pgproto3.DataRow{Values: [][]byte{[]byte("12345"), bytes.Repeat([]byte("v"), 60)}}).Encode(resp)
	}
	resp, _ = (&pgproto3.CommandComplete{CommandTag: []byte("SELECT 100")}).Encode(resp)
	resp, _ = (&pgproto3.ReadyForQuery{TxStatus: 'I'}).Encode(resp)
	var hooked postgres.MessageTypes
	hooked.Add('D')
	for _, tc := range []struct {
		name  string
		types postgres.MessageTypes
		hook  postgres.MessageFunc
	}{
		{"untouched", postgres.MessageTypes{}, nil},
		{"hook-forward", hooked, func(typ byte, body []byte, w *postgres.Writer) error { w.Forward(typ, body); return nil }},
	} {
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(resp)))
			src := &loopReader{data: resp, left: b.N, chunk: 16 << 10}
			b.ResetTimer()
			if err := postgres.Relay(src, io.Discard, false, 0, tc.types, tc.hook); err != io.EOF {
				b.Fatal(err)
			}
		})
	}
}
