package mysql_test

import (
	"bytes"
	"errors"
	"io"
	"net"
	"testing"

	"github.com/dbproxy/dbproxy/proxy/mysql"
	"github.com/dbproxy/dbproxy/proxy/relay"
	"github.com/dbproxy/dbproxy/proxy/relay/relaytest"
	gomysql "github.com/go-mysql-org/go-mysql/mysql"
	"github.com/go-mysql-org/go-mysql/packet"
)

const maxPayload = 1<<24 - 1

// readAll reads logical packets from b with go-mysql's packet.Conn (an
// independent decoder that checks sequence ids), starting at seq.
func readAll(t *testing.T, b []byte, seq uint8, count int) [][]byte {
	t.Helper()
	a, c := net.Pipe()
	go func() {
		_, _ = a.Write(b)
		a.Close()
	}()
	pc := packet.NewConn(c)
	pc.Sequence = seq
	var out [][]byte
	for range count {
		p, err := pc.ReadPacket()
		if err != nil {
			t.Fatalf("packet.Conn: %v", err)
		}
		out = append(out, p)
	}
	return out
}

func TestAppendPacket(t *testing.T) {
	for _, n := range []int{0, 1, 300, maxPayload - 1, maxPayload, maxPayload + 1, 2 * maxPayload, 2*maxPayload + 5} {
		payload := make([]byte, n)
		for i := range payload {
			payload[i] = byte(i * 7)
		}
		b := mysql.AppendPacket(nil, 250, payload)
		wantPkts := n/maxPayload + 1
		if len(b) != n+4*wantPkts {
			t.Fatalf("%d bytes: framed into %d bytes, want %d packets", n, len(b), wantPkts)
		}
		got := readAll(t, b, 250, 1)
		if !bytes.Equal(got[0], payload) {
			t.Fatalf("%d bytes: round trip differs", n)
		}
	}
}

// TestRelayCommandsMultiPacket relays commands above 16 MiB, raw and
// through a hook that changes the number of packets, and checks the output
// with an independent decoder.
func TestRelayCommandsMultiPacket(t *testing.T) {
	big := append([]byte{gomysql.COM_QUERY}, bytes.Repeat([]byte("a"), maxPayload+10)...)
	small := []byte{gomysql.COM_PING}
	var in []byte
	in = mysql.AppendPacket(in, 0, big)
	in = mysql.AppendPacket(in, 0, small)
	in = mysql.AppendPacket(in, 0, []byte{gomysql.COM_QUIT})

	for _, tc := range []struct {
		name    string
		hooks   *mysql.SessionHooks
		wantBig []byte
	}{
		{"raw", nil, big},
		{"identity-hook", hookCommands(func(x *mysql.Exchange, p []byte, w *mysql.Writer) error {
			w.Packet(p)
			return nil
		}), big},
		{"shrinking-hook", hookCommands(func(x *mysql.Exchange, p []byte, w *mysql.Writer) error {
			if x.Command == gomysql.COM_QUERY {
				w.Packet([]byte("\x03SELECT 1"))
				return nil
			}
			w.Packet(p)
			return nil
		}), []byte("\x03SELECT 1")},
		{"growing-hook-in-place", hookCommands(func(x *mysql.Exchange, p []byte, w *mysql.Writer) error {
			b := w.Begin()
			b = append(b, p...)
			if x.Command == gomysql.COM_QUERY {
				b = append(b, bytes.Repeat([]byte("b"), maxPayload)...)
			}
			w.End(b)
			return nil
		}), append(bytes.Clone(big), bytes.Repeat([]byte("b"), maxPayload)...)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out, client bytes.Buffer
			src := relaytest.NewChunkReader(in, 1, 2, 70000)
			err := mysql.RelayCommands(src, &out, &client, tc.hooks, 0)
			if !mysql.IsQuit(err) {
				t.Fatalf("relay ended with %v, want COM_QUIT", err)
			}
			b := out.Bytes()
			got := readAll(t, b, 0, 1)
			if !bytes.Equal(got[0], tc.wantBig) {
				t.Fatalf("large command: %d bytes forwarded, want %d", len(got[0]), len(tc.wantBig))
			}
			// Each later command starts again at sequence id 0.
			rest := b[framedLen(b):]
			for _, want := range [][]byte{small, {gomysql.COM_QUIT}} {
				got := readAll(t, rest, 0, 1)
				if !bytes.Equal(got[0], want) {
					t.Fatalf("command %x forwarded as %x", want, got[0])
				}
				rest = rest[framedLen(rest):]
			}
			if client.Len() != 0 {
				t.Fatalf("client got %x", client.Bytes())
			}
		})
	}
}

// framedLen returns the length of the first logical packet in b.
func framedLen(b []byte) int {
	n := 0
	for {
		l := int(b[n]) | int(b[n+1])<<8 | int(b[n+2])<<16
		n += 4 + l
		if l < maxPayload {
			return n
		}
	}
}

func hookCommands(f mysql.CommandFunc) *mysql.SessionHooks {
	h := &mysql.SessionHooks{Command: f}
	for c := range 256 {
		h.Commands.Add(byte(c))
	}
	return h
}

// TestRelayCommandRefused: a refusing hook answers the client with an ERR
// (sequence id 1) and nothing reaches the server; unknown commands likewise.
func TestRelayCommandRefused(t *testing.T) {
	hooks := hookCommands(func(x *mysql.Exchange, p []byte, w *mysql.Writer) error {
		if bytes.Contains(p, []byte("forbidden")) {
			return &mysql.Error{Code: 4242, State: "0A000", Message: "refused by policy"}
		}
		w.Packet(p)
		return nil
	})
	var in []byte
	in = mysql.AppendPacket(in, 0, []byte("\x03SELECT forbidden"))
	in = mysql.AppendPacket(in, 0, []byte{0xee, 1, 2})
	in = mysql.AppendPacket(in, 0, []byte("\x03SELECT 1"))
	var out, client bytes.Buffer
	err := mysql.RelayCommands(bytes.NewReader(in), &out, &client, hooks, 0)
	if !errors.Is(err, io.EOF) {
		t.Fatalf("relay: %v", err)
	}
	if want := mysql.AppendPacket(nil, 0, []byte("\x03SELECT 1")); !bytes.Equal(out.Bytes(), want) {
		t.Fatalf("forwarded %q", out.Bytes())
	}
	errs := readAll(t, client.Bytes(), 1, 1)
	if e := errs[0]; e[0] != 0xff || e[1] != 0x92 || e[2] != 0x10 || string(e[4:9]) != "0A000" || string(e[9:]) != "refused by policy" {
		t.Fatalf("refusal: %q", e)
	}
	rest := client.Bytes()[framedLen(client.Bytes()):]
	if e := readAll(t, rest, 1, 1)[0]; e[0] != 0xff || int(e[1])|int(e[2])<<8 != 1047 {
		t.Fatalf("unknown command: %q", e)
	}
}

// TestRelayCommandMalformed: an empty command packet is malformed; packets
// before it are forwarded.
func TestRelayCommandMalformed(t *testing.T) {
	in := mysql.AppendPacket(nil, 0, []byte{gomysql.COM_PING})
	in = append(in, 0, 0, 0, 0)
	var out bytes.Buffer
	err := mysql.RelayCommands(bytes.NewReader(in), &out, io.Discard, nil, 0)
	if !mysql.IsMalformed(err) {
		t.Fatalf("relay: %v, want malformed", err)
	}
	if want := mysql.AppendPacket(nil, 0, []byte{gomysql.COM_PING}); !bytes.Equal(out.Bytes(), want) {
		t.Fatalf("forwarded %x", out.Bytes())
	}
}

// TestRelayHookedTooLarge: a hooked packet above the limit ends the pump.
func TestRelayHookedTooLarge(t *testing.T) {
	hooks := hookCommands(func(x *mysql.Exchange, p []byte, w *mysql.Writer) error {
		w.Packet(p)
		return nil
	})
	in := mysql.AppendPacket(nil, 0, append([]byte{gomysql.COM_QUERY}, make([]byte, 100000)...))
	err := mysql.RelayCommands(bytes.NewReader(in), io.Discard, io.Discard, hooks, 50000)
	if !errors.Is(err, relay.ErrTooLarge) {
		t.Fatalf("relay: %v", err)
	}
}
