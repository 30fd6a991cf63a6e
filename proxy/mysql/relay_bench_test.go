package mysql_test

import (
	"bytes"
	"io"
	"testing"

	"github.com/dbproxy/dbproxy/proxy/mysql"
)

// BenchmarkRelay measures the framing hot path without sockets: a text
// result set of 100 rows relayed untouched, and with a pass-through hook on
// every row (the cost the encryption layer starts from).
func BenchmarkRelay(b *testing.B) {
	var resp []byte
	seq := uint8(1)
	add := func(p []byte) { resp = mysql.AppendPacket(resp, seq, p); seq++ }
	add(colCount(2))
	add(colDef)
	add(colDef)
	add(eofPkt)
	row := append([]byte{5}, "12345"...)
	row = append(row, 60)
	row = append(row, bytes.Repeat([]byte("v"), 60)...)
	for range 100 {
		add(row)
	}
	add(eofPkt)
	var rows mysql.KindSet
	rows.Add(mysql.KindTextRow)
	for _, tc := range []struct {
		name  string
		hooks *mysql.SessionHooks
	}{
		{"untouched", nil},
		{"hook-forward", &mysql.SessionHooks{Results: rows, Result: func(_ *mysql.Exchange, _ mysql.Kind, p []byte, w *mysql.Writer) error {
			w.Packet(p)
			return nil
		}}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(resp)))
			b.ResetTimer()
			err := mysql.RelayResponseLoop(resp, queryCmd, b.N, 16<<10, io.Discard, tc.hooks, false)
			if err != io.EOF {
				b.Fatal(err)
			}
		})
	}
}
