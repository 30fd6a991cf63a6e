package postgres_test

import (
	"bytes"
	"errors"
	"io"
	"testing"

	"github.com/dbproxy/dbproxy/proxy/postgres"
	"github.com/dbproxy/dbproxy/proxy/relay/relaytest"
	"github.com/jackc/pgx/v5/pgproto3"
)

// FuzzStartupPacket: the startup parser never panics, and what it accepts
// re-encodes to the same bytes.
func FuzzStartupPacket(f *testing.F) {
	f.Add(postgres.EncodeStartup(3<<16, []string{"user", "u", "database", "d"}))
	f.Add(packet(80877103))
	f.Add(packet(80877102, 0, 0, 0, 1, 2, 3, 4, 5))
	f.Add([]byte{0, 0, 0, 9, 0, 3, 0, 0, 0})
	f.Fuzz(func(t *testing.T, in []byte) {
		code, params, err := postgres.StartupPacket(bytes.NewReader(in))
		if err != nil || code>>16 != 3 {
			return
		}
		again := postgres.EncodeStartup(code, params)
		if !bytes.HasPrefix(in, again) {
			t.Fatalf("re-encoding %q differs from the input", params)
		}
	})
}

// FuzzClientRelay: the client->server framer never panics, only ever
// forwards a prefix of its input, and forwards the same bytes whether or
// not a (pass-through) hook looks at some messages, however the input is
// split into reads.
func FuzzClientRelay(f *testing.F) {
	seed, _ := (&pgproto3.Query{String: "select 1"}).Encode(nil)
	seed, _ = (&pgproto3.Parse{Query: "select $1"}).Encode(seed)
	seed, _ = (&pgproto3.Bind{Parameters: [][]byte{[]byte("x")}}).Encode(seed)
	seed, _ = (&pgproto3.Sync{}).Encode(seed)
	f.Add(seed, uint64(1))
	f.Add(append(seed, 'Q', 0, 0, 0, 2), uint64(2))
	f.Add(append(seed, 'X', 0, 0, 0, 4, 'Q'), uint64(3))
	f.Add([]byte{'d', 0x7f, 0xff, 0xff, 0xff, 1, 2, 3}, uint64(4))
	f.Fuzz(func(t *testing.T, in []byte, split uint64) {
		run := func(types postgres.MessageTypes, hook postgres.MessageFunc) ([]byte, error) {
			var out bytes.Buffer
			src := relaytest.NewChunkReader(in, split, 7, 1+int(split%64))
			err := postgres.Relay(src, &out, true, 1<<16, types, hook)
			return out.Bytes(), err
		}
		plain, perr := run(postgres.MessageTypes{}, nil)
		if !bytes.HasPrefix(in, plain) {
			t.Fatal("forwarded bytes that were not in the input")
		}
		if !errors.Is(perr, io.EOF) && !errors.Is(perr, postgres.ErrTerminated) && !postgres.IsMalformed(perr) {
			t.Fatalf("unexpected error %v", perr)
		}
		var types postgres.MessageTypes
		types.Add('Q', 'P', 'B', 'D', 'd')
		hooked, herr := run(types, func(typ byte, body []byte, w *postgres.Writer) error {
			w.Forward(typ, body)
			return nil
		})
		// The hooked run may stop earlier inside a message it needs whole.
		if !bytes.HasPrefix(plain, hooked) || (perr == nil) != (herr == nil) {
			t.Fatalf("hooked relay forwarded %d bytes (%v), plain %d (%v)", len(hooked), herr, len(plain), perr)
		}
	})
}
