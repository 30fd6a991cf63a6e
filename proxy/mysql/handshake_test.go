package mysql_test

import (
	"bytes"
	"encoding/binary"
	"testing"

	"github.com/dbproxy/dbproxy/proxy/mysql"
	gomysql "github.com/go-mysql-org/go-mysql/mysql"
)

// handshakeV10 builds a server handshake: caps' low 32 bits go in the
// standard fields, the high 32 in MariaDB's extended field.
func handshakeV10(version string, caps uint64, plugin string) []byte {
	p := []byte{10}
	p = append(p, version...)
	p = append(p, 0)
	p = binary.LittleEndian.AppendUint32(p, 4242)
	p = append(p, "abcdefgh"...)
	p = append(p, 0)
	p = binary.LittleEndian.AppendUint16(p, uint16(caps))
	p = append(p, 45)
	p = binary.LittleEndian.AppendUint16(p, 2)
	p = binary.LittleEndian.AppendUint16(p, uint16(caps>>16))
	p = append(p, 21)
	p = append(p, 0, 0, 0, 0, 0, 0)
	p = binary.LittleEndian.AppendUint32(p, uint32(caps>>32))
	p = append(p, "ijklmnopqrst"...)
	p = append(p, 0)
	p = append(p, plugin...)
	return append(p, 0)
}

func TestHandshakeMasking(t *testing.T) {
	const base = uint64(gomysql.CLIENT_PROTOCOL_41 | gomysql.CLIENT_SECURE_CONNECTION | gomysql.CLIENT_PLUGIN_AUTH |
		gomysql.CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA | gomysql.CLIENT_CONNECT_WITH_DB | gomysql.CLIENT_TRANSACTIONS |
		gomysql.CLIENT_MULTI_STATEMENTS | gomysql.CLIENT_MULTI_RESULTS | gomysql.CLIENT_PS_MULTI_RESULTS |
		gomysql.CLIENT_LOCAL_FILES | gomysql.CLIENT_CONNECT_ATTRS | gomysql.CLIENT_SESSION_TRACK | gomysql.CLIENT_LONG_FLAG)
	const unsupported = mysql.CapCompress | mysql.CapZstd | mysql.CapQueryAttrs | mysql.CapOptionalMeta | mysql.CapMFA
	mariaExt := uint64(0x3f) << 32 // progress, COM_MULTI, bulk, extended types, cache metadata, bulk unit results
	cases := []struct {
		name      string
		caps      uint64
		clientTLS bool
		hide      uint64
		want      uint64
		mariaDB   bool
	}{
		{"mysql8", base | mysql.CapMySQL | mysql.CapDeprecateEOF | mysql.CapSSL | unsupported, false, 0,
			base | mysql.CapMySQL | mysql.CapDeprecateEOF, false},
		{"mysql8-client-tls", base | mysql.CapMySQL | unsupported, true, 0,
			base | mysql.CapMySQL | mysql.CapSSL, false},
		{"mariadb-extensions", base | mysql.CapDeprecateEOF | mysql.CapSSL | mysql.CapCompress | mariaExt, true, 0,
			base | mysql.CapDeprecateEOF | mysql.CapSSL | mysql.MariaDBExtendedMetadata, true},
		{"hide-deprecate-eof", base | mysql.CapDeprecateEOF | mariaExt, false, mysql.CapDeprecateEOF,
			base | mysql.MariaDBExtendedMetadata, true},
		{"hide-extended-metadata", base | mariaExt, false, mysql.MariaDBExtendedMetadata,
			base, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			in := handshakeV10("10.11.9-MariaDB", tc.caps, "mysql_native_password")
			h, err := mysql.ParseHandshake(in)
			if err != nil {
				t.Fatal(err)
			}
			if h.ConnID != 4242 || string(h.Scramble) != "abcdefghijklmnopqrst" || h.Plugin != "mysql_native_password" ||
				h.ServerVersion != "10.11.9-MariaDB" || h.MariaDB != tc.mariaDB {
				t.Fatalf("parsed %+v", h)
			}
			if want := tc.caps; !tc.mariaDB && h.Caps != want&0xffffffff || tc.mariaDB && h.Caps != want {
				t.Fatalf("caps %#x, want %#x", h.Caps, tc.caps)
			}
			out, err := mysql.MaskHandshake(in, tc.clientTLS, tc.hide)
			if err != nil {
				t.Fatal(err)
			}
			if len(out) != len(in) {
				t.Fatalf("masked handshake is %d bytes, was %d", len(out), len(in))
			}
			m, err := mysql.ParseHandshake(out)
			if err != nil {
				t.Fatal(err)
			}
			if m.Caps != tc.want {
				t.Fatalf("advertised %#x, want %#x (extra %#x, missing %#x)", m.Caps, tc.want, m.Caps&^tc.want, tc.want&^m.Caps)
			}
			// Everything but the capability fields is the server's.
			for i := range in {
				if in[i] != out[i] && !capsByte(in, i) {
					t.Fatalf("byte %d changed: %#x -> %#x", i, in[i], out[i])
				}
			}
			if !bytes.Equal(m.Scramble, h.Scramble) || m.ConnID != h.ConnID {
				t.Fatal("scramble or connection id changed")
			}
		})
	}
}

// capsByte reports whether offset i of a handshakeV10 is a capability byte.
func capsByte(p []byte, i int) bool {
	v := bytes.IndexByte(p[1:], 0) + 2
	low := v + 4 + 8 + 1
	high := low + 2 + 1 + 2
	ext := high + 2 + 1 + 6
	return i == low || i == low+1 || i == high || i == high+1 || (i >= ext && i < ext+4)
}

func TestHandshakeErrors(t *testing.T) {
	good := handshakeV10("8.0.36", uint64(gomysql.CLIENT_PROTOCOL_41|gomysql.CLIENT_SECURE_CONNECTION|gomysql.CLIENT_PLUGIN_AUTH|1), "caching_sha2_password")
	for name, p := range map[string][]byte{
		"empty":          nil,
		"err-packet":     {0xff, 0x10, 0x04, '#', 'H', 'Y', '0', '0', '0', 'x'},
		"protocol-9":     {9, 'v', 0},
		"no-version-nul": {10, 'v', 'v'},
		"truncated":      good[:20],
		"short-scramble": good[:len(good)-34],
	} {
		if _, err := mysql.ParseHandshake(p); err == nil || !mysql.IsMalformed(err) {
			t.Errorf("%s: %v, want a protocol error", name, err)
		}
	}
	h, err := mysql.ParseHandshake(good)
	if err != nil || h.Plugin != "caching_sha2_password" || h.MariaDB {
		t.Fatalf("%+v %v", h, err)
	}
}

func TestHandshakeResponse(t *testing.T) {
	resp := func(caps uint32, auth []byte, rest string) []byte {
		p := binary.LittleEndian.AppendUint32(nil, caps)
		p = binary.LittleEndian.AppendUint32(p, 1<<24)
		p = append(p, 45)
		p = append(p, make([]byte, 23)...)
		p = append(p, "alice\x00"...)
		if caps&gomysql.CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA != 0 {
			p = gomysql.AppendLengthEncodedInteger(p, uint64(len(auth)))
		} else {
			p = append(p, byte(len(auth)))
		}
		p = append(p, auth...)
		return append(p, rest...)
	}
	const c = gomysql.CLIENT_PROTOCOL_41 | gomysql.CLIENT_SECURE_CONNECTION | gomysql.CLIENT_PLUGIN_AUTH
	all := ^uint64(0)
	for _, tc := range []struct {
		name             string
		p                []byte
		offered          uint64
		user, db, plugin string
		wantErr          bool
	}{
		// A flag the client sets but was not offered is read as the server
		// reads it: masked off (here the "database" is the plugin name).
		{"unoffered-connect-with-db", resp(c|gomysql.CLIENT_CONNECT_WITH_DB, nil, "app\x00mysql_native_password\x00"),
			uint64(c), "alice", "", "app", false},
		{"lenenc-db-plugin", resp(c|gomysql.CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA|gomysql.CLIENT_CONNECT_WITH_DB, bytes.Repeat([]byte{7}, 300), "app\x00client_ed25519\x00"), all, "alice", "app", "client_ed25519", false},
		{"short-auth", resp(c, []byte{1, 2, 3}, "mysql_native_password\x00"), all, "alice", "", "mysql_native_password", false},
		{"plugin-without-nul", resp(c, nil, "mysql_native_password"), all, "alice", "", "mysql_native_password", false},
		{"truncated-auth", resp(c, make([]byte, 20), "")[:50], all, "", "", "", true},
		{"no-user-nul", resp(c, nil, "")[:35], all, "", "", "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			user, db, plugin, err := mysql.ParseHandshakeResponseOffered(tc.p, false, tc.offered)
			if (err != nil) != tc.wantErr || user != tc.user || db != tc.db || plugin != tc.plugin {
				t.Fatalf("%q %q %q %v", user, db, plugin, err)
			}
		})
	}
}
