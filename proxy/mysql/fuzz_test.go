package mysql_test

import (
	"bytes"
	"errors"
	"io"
	"testing"

	"github.com/dbproxy/dbproxy/proxy/mysql"
	"github.com/dbproxy/dbproxy/proxy/relay/relaytest"
	gomysql "github.com/go-mysql-org/go-mysql/mysql"
)

func identityCommands() *mysql.SessionHooks {
	return hookCommands(func(x *mysql.Exchange, p []byte, w *mysql.Writer) error {
		w.Packet(p)
		return nil
	})
}

// FuzzRelayCommands: the client->server relay never panics, ends with EOF,
// COM_QUIT or a protocol error, and forwards the same bytes whether or not
// a pass-through hook looks at every command, however the input is split
// into reads.
func FuzzRelayCommands(f *testing.F) {
	var seed []byte
	seed = mysql.AppendPacket(seed, 0, []byte("\x03SELECT 1"))
	seed = mysql.AppendPacket(seed, 0, []byte{gomysql.COM_STMT_EXECUTE, 1, 0, 0, 0, 1, 1, 0, 0, 0})
	seed = mysql.AppendPacket(seed, 0, []byte{gomysql.COM_STMT_CLOSE, 1, 0, 0, 0})
	seed = mysql.AppendPacket(seed, 0, []byte{gomysql.COM_PING})
	f.Add(seed, uint64(1))
	f.Add(mysql.AppendPacket(seed, 0, []byte{gomysql.COM_QUIT}), uint64(2))
	f.Add(append(bytes.Clone(seed), 0, 0, 0, 0), uint64(3))                               // empty command
	f.Add(mysql.AppendPacket(nil, 0, []byte{0xee, 1}), uint64(4))                         // unknown command
	f.Add([]byte{0xff, 0xff, 0xff, 0, 3, 'x', 'y'}, uint64(5))                            // truncated 16 MiB packet
	f.Add(mysql.AppendPacket(nil, 0, []byte{gomysql.COM_CHANGE_USER, 'u', 0}), uint64(6)) // enters auth mode
	f.Fuzz(func(t *testing.T, in []byte, split uint64) {
		run := func(hooks *mysql.SessionHooks) ([]byte, []byte, error) {
			var out, client bytes.Buffer
			src := relaytest.NewChunkReader(in, split, 7, 1+int(split%64))
			err := mysql.RelayCommands(src, &out, &client, hooks, 1<<16)
			return out.Bytes(), client.Bytes(), err
		}
		plain, plainClient, perr := run(nil)
		if len(plain) > len(in) {
			t.Fatal("forwarded more bytes than the input holds")
		}
		if !errors.Is(perr, io.EOF) && !mysql.IsQuit(perr) && !mysql.IsMalformed(perr) {
			t.Fatalf("unexpected error %v", perr)
		}
		hooked, hookedClient, herr := run(identityCommands())
		// The hooked run may stop earlier inside a command it needs whole,
		// or at the size limit.
		if !bytes.HasPrefix(plain, hooked) || !bytes.HasPrefix(plainClient, hookedClient) {
			t.Fatalf("hooked relay forwarded %d bytes (%v), plain %d (%v)", len(hooked), herr, len(plain), perr)
		}
		if herr == nil {
			t.Fatal("relay returned nil")
		}
	})
}

// FuzzRelayResponses: the server->client relay never panics whatever the
// server sends for a sequence of commands, forwards a prefix of its input
// (no hook: nothing is renumbered or dropped), ends with EOF or a protocol
// error, and a pass-through hook on every kind changes nothing but may stop
// earlier.
func FuzzRelayResponses(f *testing.F) {
	var seed []byte
	for i, p := range [][]byte{{1}, append([]byte{3, 'd', 'e', 'f'}, make([]byte, 20)...), {1, 'x'}, {0xfe, 0, 0, 2, 0, 0, 0}} {
		seed = mysql.AppendPacket(seed, uint8(i+1), p)
	}
	seed = mysql.AppendPacket(seed, 1, []byte{0, 0, 0, 2, 0, 0, 0})
	f.Add(seed, []byte{gomysql.COM_QUERY, gomysql.COM_PING}, uint64(1), true)
	f.Add(mysql.AppendPacket(nil, 1, []byte{0, 1, 0, 0, 0, 1, 0, 1, 0, 0, 0, 0}), []byte{gomysql.COM_STMT_PREPARE}, uint64(2), false)
	f.Add(mysql.AppendPacket(nil, 1, []byte{0xfb, 'f'}), []byte{gomysql.COM_QUERY}, uint64(3), true)
	f.Add(mysql.AppendPacket(nil, 1, []byte{0xfe, 'p', 0, 1}), []byte{gomysql.COM_CHANGE_USER}, uint64(4), true)
	f.Add(mysql.AppendPacket(nil, 1, []byte{0xff, 0x7a, 4, '#', '4', '2', 'S', '0', '2'}), []byte{gomysql.COM_STMT_EXECUTE}, uint64(5), false)
	f.Fuzz(func(t *testing.T, in, cmds []byte, split uint64, deprecateEOF bool) {
		if len(cmds) > 8 {
			cmds = cmds[:8]
		}
		var heads [][]byte
		for _, c := range cmds {
			switch c {
			case gomysql.COM_STMT_CLOSE, gomysql.COM_STMT_SEND_LONG_DATA, gomysql.COM_QUIT:
				continue // no response
			}
			heads = append(heads, []byte{c, 1, 0, 0, 0, c & 1})
		}
		run := func(hooks *mysql.SessionHooks) ([]byte, error) {
			var out bytes.Buffer
			src := relaytest.NewChunkReader(in, split, 9, 1+int(split%64))
			_, err := mysql.RelayResponses(src, &out, heads, hooks, deprecateEOF)
			return out.Bytes(), err
		}
		plain, perr := run(nil)
		if !bytes.HasPrefix(in, plain) {
			t.Fatal("forwarded bytes that were not in the input")
		}
		if !errors.Is(perr, io.EOF) && !mysql.IsMalformed(perr) {
			t.Fatalf("unexpected error %v", perr)
		}
		hooked, herr := run(&mysql.SessionHooks{Results: allKinds, Result: func(x *mysql.Exchange, k mysql.Kind, p []byte, w *mysql.Writer) error {
			w.Packet(p)
			return nil
		}})
		if !bytes.HasPrefix(plain, hooked) || herr == nil {
			t.Fatalf("hooked relay forwarded %d bytes (%v), plain %d (%v)", len(hooked), herr, len(plain), perr)
		}
	})
}

// FuzzHandshake: the handshake and handshake-response parsers never panic;
// a handshake they accept masks to the same length and parses again, with
// no capability outside what the relay implements (of MariaDB's extended
// ones, only extended metadata).
func FuzzHandshake(f *testing.F) {
	f.Add(handshakeV10("10.11.9-MariaDB", 0x3f_0000_0000|uint64(gomysql.CLIENT_PROTOCOL_41|gomysql.CLIENT_SECURE_CONNECTION|gomysql.CLIENT_PLUGIN_AUTH|gomysql.CLIENT_SSL), "mysql_native_password"), false)
	f.Add(handshakeV10("8.0.36", uint64(gomysql.CLIENT_PROTOCOL_41|gomysql.CLIENT_SECURE_CONNECTION|gomysql.CLIENT_PLUGIN_AUTH|1|gomysql.CLIENT_COMPRESS), "caching_sha2_password"), true)
	f.Add([]byte{10, 'v', 0, 1, 2, 3, 4}, false)
	f.Add([]byte{0x08, 0x82, 0x00, 0x00, 0x01, 0, 0, 0, 45, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 'u', 0, 1, 9}, true)
	f.Fuzz(func(t *testing.T, p []byte, clientTLS bool) {
		_, _, _, _ = mysql.ParseHandshakeResponse(p, clientTLS)
		_, err := mysql.ParseHandshake(p)
		if err != nil {
			if !mysql.IsMalformed(err) {
				t.Fatalf("error of the wrong type: %v", err)
			}
			return
		}
		out, err := mysql.MaskHandshake(p, clientTLS, 0)
		if err != nil || len(out) != len(p) {
			t.Fatalf("mask: %d bytes, %v", len(out), err)
		}
		m, err := mysql.ParseHandshake(out)
		if err != nil {
			t.Fatalf("masked handshake does not parse: %v", err)
		}
		bad := mysql.CapCompress | mysql.CapZstd | mysql.CapQueryAttrs | mysql.CapOptionalMeta | mysql.CapMFA |
			0xffffffff_00000000&^mysql.MariaDBExtendedMetadata
		if m.Caps&bad != 0 || (m.Caps&mysql.CapSSL != 0) != clientTLS {
			t.Fatalf("advertised %#x", m.Caps)
		}
	})
}
