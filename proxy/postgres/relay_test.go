package postgres_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/dbproxy/dbproxy/proxy/postgres"
	"github.com/dbproxy/dbproxy/proxy/relay/relaytest"
	"github.com/jackc/pgx/v5/pgproto3"
)

func msg(typ byte, body []byte) []byte {
	b := []byte{typ}
	b = binary.BigEndian.AppendUint32(b, uint32(len(body)+4))
	return append(b, body...)
}

func encode(t testing.TB, msgs ...interface{ Encode([]byte) ([]byte, error) }) []byte {
	t.Helper()
	var out []byte
	for _, m := range msgs {
		var err error
		out, err = m.Encode(out)
		if err != nil {
			t.Fatal(err)
		}
	}
	return out
}

// countingWriter counts Write calls.
type countingWriter struct {
	bytes.Buffer
	writes int
}

func (w *countingWriter) Write(p []byte) (int, error) {
	w.writes++
	return w.Buffer.Write(p)
}

// stream is a realistic client stream: extended-protocol pipeline, a
// simple query, a large message, COPY data, Terminate.
func stream(t testing.TB, large int) []byte {
	big := strings.Repeat("x", large)
	return encode(t,
		&pgproto3.Parse{Name: "s1", Query: "select $1::text"},
		&pgproto3.Bind{PreparedStatement: "s1", Parameters: [][]byte{[]byte("a")}},
		&pgproto3.Describe{ObjectType: 'P'},
		&pgproto3.Execute{},
		&pgproto3.Sync{},
		&pgproto3.Query{String: "select '" + big + "'"},
		&pgproto3.CopyData{Data: []byte(big)},
		&pgproto3.CopyDone{},
		&pgproto3.Flush{},
		&pgproto3.Sync{},
		&pgproto3.Terminate{},
	)
}

func TestRelayForwardsUnchanged(t *testing.T) {
	for _, tc := range []struct {
		name  string
		large int
		chunk int
	}{
		{"small, one read", 10, 1 << 20},
		{"small, byte by byte", 10, 1},
		{"message larger than the buffer", 100 << 10, 1 << 20},
		{"large, small chunks", 100 << 10, 7},
		{"large, medium chunks", 3 << 20, 5000},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := stream(t, tc.large)
			var out countingWriter
			src := relaytest.NewChunkReader(in, 1, 2, tc.chunk)
			err := postgres.Relay(src, &out, true, 0, postgres.MessageTypes{}, nil)
			if !errors.Is(err, postgres.ErrTerminated) {
				t.Fatalf("relay ended with %v, want Terminate", err)
			}
			if !bytes.Equal(out.Bytes(), in) {
				t.Fatalf("output differs from input (%d vs %d bytes)", out.Len(), len(in))
			}
		})
	}
}

// TestRelayBatchesWrites: messages that arrive together leave together.
func TestRelayBatchesWrites(t *testing.T) {
	in := stream(t, 10)
	var out countingWriter
	err := postgres.Relay(bytes.NewReader(in), &out, true, 0, postgres.MessageTypes{}, nil)
	if !errors.Is(err, postgres.ErrTerminated) {
		t.Fatal(err)
	}
	if out.writes != 1 {
		t.Fatalf("%d writes for one read of 11 messages, want 1", out.writes)
	}
}

func TestRelayServerStreamEOF(t *testing.T) {
	in := encode(t, &pgproto3.RowDescription{}, &pgproto3.DataRow{Values: [][]byte{[]byte("1")}},
		&pgproto3.CommandComplete{CommandTag: []byte("SELECT 1")}, &pgproto3.ReadyForQuery{TxStatus: 'I'})
	var out bytes.Buffer
	err := postgres.Relay(iotest.OneByteReader(bytes.NewReader(in)), &out, false, 0, postgres.MessageTypes{}, nil)
	if !errors.Is(err, io.EOF) {
		t.Fatalf("err = %v, want EOF", err)
	}
	if !bytes.Equal(out.Bytes(), in) {
		t.Fatal("server stream altered")
	}
}

func TestRelayHook(t *testing.T) {
	in := encode(t,
		&pgproto3.RowDescription{Fields: []pgproto3.FieldDescription{{Name: []byte("a")}}},
		&pgproto3.DataRow{Values: [][]byte{[]byte("secret-1")}},
		&pgproto3.DataRow{Values: [][]byte{[]byte(strings.Repeat("s", 200<<10))}}, // larger than the buffer
		&pgproto3.DataRow{Values: [][]byte{nil}},
		&pgproto3.CommandComplete{CommandTag: []byte("SELECT 3")},
		&pgproto3.ReadyForQuery{TxStatus: 'I'},
	)
	var types postgres.MessageTypes
	types.Add('D')
	var seen int
	hook := func(typ byte, body []byte, w *postgres.Writer) error {
		seen++
		var row pgproto3.DataRow
		if err := row.Decode(body); err != nil {
			return err
		}
		if row.Values[0] == nil {
			w.Forward(typ, body) // NULL stays as it is
			return nil
		}
		return w.Send(&pgproto3.DataRow{Values: [][]byte{[]byte("plain")}})
	}
	var out bytes.Buffer
	src := relaytest.NewChunkReader(in, 3, 4, 3000)
	err := postgres.Relay(src, &out, false, 0, types, hook)
	if !errors.Is(err, io.EOF) {
		t.Fatalf("err = %v", err)
	}
	want := encode(t,
		&pgproto3.RowDescription{Fields: []pgproto3.FieldDescription{{Name: []byte("a")}}},
		&pgproto3.DataRow{Values: [][]byte{[]byte("plain")}},
		&pgproto3.DataRow{Values: [][]byte{[]byte("plain")}},
		&pgproto3.DataRow{Values: [][]byte{nil}},
		&pgproto3.CommandComplete{CommandTag: []byte("SELECT 3")},
		&pgproto3.ReadyForQuery{TxStatus: 'I'},
	)
	if seen != 3 || !bytes.Equal(out.Bytes(), want) {
		t.Fatalf("hook saw %d rows; output %q", seen, out.Bytes())
	}
}

func TestRelayHookError(t *testing.T) {
	in := encode(t, &pgproto3.Query{String: "select 1"}, &pgproto3.Query{String: "refuse me"})
	var types postgres.MessageTypes
	types.Add('Q')
	hook := func(typ byte, body []byte, w *postgres.Writer) error {
		if strings.HasPrefix(string(body), "refuse") {
			return &postgres.Error{Code: "0A000", Message: "refused"}
		}
		w.Forward(typ, body)
		return nil
	}
	var out bytes.Buffer
	err := postgres.Relay(bytes.NewReader(in), &out, true, 0, types, hook)
	var pe *postgres.Error
	if !errors.As(err, &pe) || pe.Code != "0A000" {
		t.Fatalf("err = %v, want the hook's error", err)
	}
	if !bytes.Equal(out.Bytes(), encode(t, &pgproto3.Query{String: "select 1"})) {
		t.Fatalf("output %q: the refused query must not be forwarded", out.Bytes())
	}
}

func TestRelayMalformed(t *testing.T) {
	good := msg('Q', []byte("select 1\x00"))
	cases := []struct {
		name    string
		in      []byte
		maxBody int
	}{
		{"length 0", append(good, 'Q', 0, 0, 0, 0), 0},
		{"length 3", append(good, 'Q', 0, 0, 0, 3), 0},
		{"length negative", append(good, 'Q', 0x80, 0, 0, 0), 0},
		{"length over 1 GB", append(good, 'd', 0x40, 0, 0, 4), 0},
		{"over the limit", append(good, 'Q', 0, 1, 0, 0), 1000},
		{"Terminate with a body", append(good, 'X', 0, 0, 0, 5, 0), 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			err := postgres.Relay(bytes.NewReader(tc.in), &out, true, tc.maxBody, postgres.MessageTypes{}, nil)
			if !postgres.IsMalformed(err) {
				t.Fatalf("err = %v, want a framing error", err)
			}
			if !bytes.Equal(out.Bytes(), good) {
				t.Fatalf("forwarded %q; want only the good message", out.Bytes())
			}
		})
	}
}

func TestAccountingIdle(t *testing.T) {
	type step struct {
		client string // message types sent by the client
		ready  string // ReadyForQuery statuses received
		idle   bool   // CloseIfIdle result after the step (closes the session)
	}
	cases := []struct {
		name  string
		steps []step
	}{
		{"fresh session is idle", []step{{idle: true}}},
		{"simple query in flight", []step{{client: "Q"}, {ready: "I", idle: true}}},
		{"pipelined queries", []step{{client: "QQ"}, {ready: "I"}, {ready: "I", idle: true}}},
		{"extended batch before Sync", []step{{client: "PBE"}, {client: "S"}, {ready: "I", idle: true}}},
		{"open transaction", []step{{client: "Q"}, {ready: "T"}, {client: "Q"}, {ready: "I", idle: true}}},
		{"failed transaction", []step{{client: "Q"}, {ready: "E"}}},
		{"simple COPY FROM STDIN", []step{{client: "Qddc"}, {ready: "I", idle: true}}},
		{"extended COPY FROM STDIN", []step{{client: "PBES"}, {client: "ddc"}, {client: "S"}, {ready: "I", idle: true}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a := postgres.NewAccounting()
			for i, s := range tc.steps {
				for _, typ := range []byte(s.client) {
					if !a.Frontend(typ) {
						t.Fatalf("step %d: message %q refused", i, typ)
					}
				}
				for _, st := range []byte(s.ready) {
					a.ReadyForQuery(st)
				}
				if got := a.CloseIfIdle(); got != s.idle {
					t.Fatalf("step %d: idle = %t, want %t", i, got, s.idle)
				}
			}
			if a.CloseIfIdle() {
				return
			}
		})
	}
	t.Run("closed session forwards nothing", func(t *testing.T) {
		a := postgres.NewAccounting()
		if !a.CloseIfIdle() {
			t.Fatal("not idle")
		}
		for _, typ := range []byte("QSPd") {
			if a.Frontend(typ) {
				t.Fatalf("%q forwarded after close", typ)
			}
		}
	})
}

// TestRelayHookFlush: a client->server hook that flushes has everything up
// to and including its own output written before it returns (so it can
// wait for the server's answer to what it injected); a server->client hook
// cannot flush.
func TestRelayHookFlush(t *testing.T) {
	in := encode(t, &pgproto3.Sync{}, &pgproto3.Query{String: "needs a lookup"}, &pgproto3.Sync{})
	var types postgres.MessageTypes
	types.Add('Q')
	var out countingWriter
	var atFlush []byte
	hook := func(typ byte, body []byte, w *postgres.Writer) error {
		_ = w.Send(&pgproto3.Query{String: "SELECT current_schemas(false)"})
		if err := w.Flush(); err != nil {
			return err
		}
		atFlush = append([]byte(nil), out.Bytes()...)
		w.Forward(typ, body)
		return nil
	}
	err := postgres.Relay(bytes.NewReader(in), &out, true, 0, types, hook)
	if !errors.Is(err, io.EOF) {
		t.Fatalf("err = %v", err)
	}
	wantAtFlush := encode(t, &pgproto3.Sync{}, &pgproto3.Query{String: "SELECT current_schemas(false)"})
	if !bytes.Equal(atFlush, wantAtFlush) {
		t.Fatalf("written when the hook flushed: %q, want %q", atFlush, wantAtFlush)
	}
	want := encode(t, &pgproto3.Sync{}, &pgproto3.Query{String: "SELECT current_schemas(false)"},
		&pgproto3.Query{String: "needs a lookup"}, &pgproto3.Sync{})
	if !bytes.Equal(out.Bytes(), want) {
		t.Fatalf("output %q, want %q", out.Bytes(), want)
	}

	back := encode(t, &pgproto3.ReadyForQuery{TxStatus: 'I'})
	types = postgres.MessageTypes{}
	types.Add('Z')
	err = postgres.Relay(bytes.NewReader(back), io.Discard, false, 0, types, func(typ byte, body []byte, w *postgres.Writer) error {
		return w.Flush()
	})
	if err == nil || errors.Is(err, io.EOF) {
		t.Fatalf("server->client hook flushed: %v", err)
	}
}
