package mysql

import (
	"bytes"
	"encoding/binary"
	"strconv"
	"testing"

	gomysql "github.com/go-mysql-org/go-mysql/mysql"
)

// mariaGreeting is a MariaDB 11 initial handshake as the server sends it.
func mariaGreeting(connID uint32, scramble []byte) []byte {
	p := []byte{10}
	p = append(p, "5.5.5-11.4.2-MariaDB"...)
	p = append(p, 0)
	p = binary.LittleEndian.AppendUint32(p, connID)
	p = append(p, scramble[:8]...)
	p = append(p, 0)
	caps := relayedCaps&^capMySQL | capSSL
	p = binary.LittleEndian.AppendUint16(p, uint16(caps))
	p = append(p, 45)
	p = binary.LittleEndian.AppendUint16(p, gomysql.SERVER_STATUS_AUTOCOMMIT)
	p = binary.LittleEndian.AppendUint16(p, uint16(caps>>16))
	p = append(p, 21)
	p = append(p, make([]byte, 6)...)
	p = binary.LittleEndian.AppendUint32(p, uint32(capMariaDBExtendedTypes>>32|capMariaDBProgress>>32))
	p = append(p, scramble[8:]...)
	p = append(p, 0)
	p = append(p, "mysql_native_password"...)
	return append(p, 0)
}

func TestGreetingTemplate(t *testing.T) {
	real, err := parseHandshake(mariaGreeting(42, []byte("abcdefghijklmnopqrst")))
	if err != nil {
		t.Fatal(err)
	}
	if !usableTemplate(real) {
		t.Fatal("a MariaDB greeting is not a usable template")
	}
	g, err := real.instantiate(proxyIDFirst + 7)
	if err != nil {
		t.Fatal(err)
	}
	if g.connID != proxyIDFirst+7 || g.serverVersion != real.serverVersion || g.caps != real.caps ||
		g.plugin != real.plugin || g.mariaDB != real.mariaDB || g.charset != real.charset || g.status != real.status {
		t.Fatalf("instantiated greeting %+v differs from the template %+v", g, real)
	}
	if len(g.scramble) != scrambleLen || bytes.IndexByte(g.scramble, 0) >= 0 || bytes.Equal(g.scramble, real.scramble) {
		t.Fatalf("scramble %q", g.scramble)
	}
	g2, _ := real.instantiate(proxyIDFirst + 7)
	if bytes.Equal(g.scramble, g2.scramble) {
		t.Fatal("two greetings with the same scramble")
	}
	if !bytes.Equal(real.raw, mariaGreeting(42, []byte("abcdefghijklmnopqrst"))) {
		t.Fatal("instantiate modified the template")
	}
	if !sameGreeting(real, g) {
		t.Fatal("a greeting differing in id and scramble is not the same greeting")
	}
	other := mariaGreeting(43, []byte("abcdefghijklmnopqrst"))
	other[6] = '6' // 5.5.6-...
	if o, _ := parseHandshake(other); sameGreeting(real, o) {
		t.Fatal("a different server version is the same greeting")
	}

	// What the client selected must hold for the real server.
	offered := advertisedCaps(real.caps, false, 0)
	if why := greetingMismatch(real, real, offered, offered); why != "" {
		t.Fatalf("same greeting mismatches: %s", why)
	}
	less := advertisedCaps(real.caps&^capDeprecateEOF, false, 0)
	if why := greetingMismatch(real, real, offered, less); why == "" {
		t.Fatal("a dropped selected capability is not a mismatch")
	}
	if why := greetingMismatch(real, real, offered&^capDeprecateEOF, less); why != "" {
		t.Fatalf("an unselected dropped capability mismatches: %s", why)
	}
	mysqlish := *real
	mysqlish.mariaDB = false
	if why := greetingMismatch(real, &mysqlish, offered, offered); why == "" {
		t.Fatal("a change of MariaDB-ness is not a mismatch")
	}
}

func TestNewScramble(t *testing.T) {
	b := make([]byte, 4096)
	if err := newScramble(b); err != nil {
		t.Fatal(err)
	}
	for _, c := range b {
		if c == 0 || c == '$' || c > 0x7f {
			t.Fatalf("scramble byte %#x", c)
		}
	}
}

// handshakeResponse41 builds a HandshakeResponse41 with caps; plugin ""
// leaves the plugin field out, tail follows it.
func handshakeResponse41(caps uint64, auth []byte, db, plugin, tail string) []byte {
	p := binary.LittleEndian.AppendUint32(nil, uint32(caps))
	p = binary.LittleEndian.AppendUint32(p, 1<<24)
	p = append(p, 45)
	p = append(p, make([]byte, 23)...)
	p = append(p, "bob\x00"...)
	switch {
	case caps&capPluginAuthLenenc != 0:
		p = append(p, byte(len(auth)))
		p = append(p, auth...)
	case caps&capSecureConnection != 0:
		p = append(p, byte(len(auth)))
		p = append(p, auth...)
	default:
		p = append(p, auth...)
		p = append(p, 0)
	}
	if db != "" || plugin != "" {
		p = append(p, db...)
		p = append(p, 0)
	}
	if plugin != "" {
		p = append(p, plugin...)
		p = append(p, 0)
	}
	return append(p, tail...)
}

func TestRescramble(t *testing.T) {
	base := capMySQL | capProtocol41 | capConnectWithDB | capPluginAuth
	auth := []byte("01234567890123456789")
	attrs := "\x05\x03k\x01v" // CONNECT_ATTRS: lenenc length, then key and value
	for _, tc := range []struct {
		name string
		in   []byte
		want []byte
	}{
		{"lenenc", handshakeResponse41(base|capSecureConnection|capPluginAuthLenenc, auth, "appdb", pluginNative, ""),
			handshakeResponse41(base|capSecureConnection|capPluginAuthLenenc, nil, "appdb", rescramblePlugin, "")},
		{"uint8-attrs", handshakeResponse41(base|capSecureConnection|capConnectAttrs, auth, "appdb", pluginNative, attrs),
			handshakeResponse41(base|capSecureConnection|capConnectAttrs, nil, "appdb", rescramblePlugin, attrs)},
		{"no-database", handshakeResponse41(base|capSecureConnection, auth, "", "client_ed25519", ""),
			handshakeResponse41(base|capSecureConnection, nil, "", rescramblePlugin, "")},
		{"no-plugin-field", handshakeResponse41(base|capSecureConnection, auth, "", "", ""),
			handshakeResponse41(base|capSecureConnection, nil, "", rescramblePlugin, "")},
		{"no-plugin-field-db", handshakeResponse41(base|capSecureConnection, auth, "appdb", "", ""),
			handshakeResponse41(base|capSecureConnection, nil, "appdb", rescramblePlugin, "")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := bytes.Clone(tc.in)
			r, err := parseHandshakeResponse(in, false, ^uint64(0))
			if err != nil {
				t.Fatal(err)
			}
			out := rescramble(in, r)
			if !bytes.Equal(out, tc.want) {
				t.Fatalf("got  %q\nwant %q", out, tc.want)
			}
			if bytes.Contains(in, auth) {
				t.Fatal("the old auth response was not cleared")
			}
			r2, err := parseHandshakeResponse(out, false, ^uint64(0))
			if err != nil {
				t.Fatal(err)
			}
			if r2.authLen != 0 || r2.plugin != rescramblePlugin || r2.user != "bob" || r2.database != r.database {
				t.Fatalf("reparsed %+v (was %+v)", r2, r)
			}
		})
	}
}

func TestParseKill(t *testing.T) {
	for _, tc := range []struct {
		q  string
		id uint64
		ok bool
	}{
		{"KILL 5", 5, true},
		{"kill query 3221225472", 3221225472, true},
		{"  Kill\tHARD\nCONNECTION  17 ; ", 17, true},
		{"KILL SOFT QUERY 9;", 9, true},
		{"KILL CONNECTION 12", 12, true},
		{"KILL QUERY ID 5", 0, false},
		{"KILL USER bob", 0, false},
		{"KILL /* c */ 5", 0, false},
		{"KILL 5; SELECT 1", 0, false},
		{"KILL 99999999999", 0, false},
		{"KILL 0x10", 0, false},
		{"KILLQUERY 5", 0, false},
		{"KILL QUERY5", 0, false},
		{"KILL", 0, false},
		{"SELECT 1", 0, false},
		{"KILL 5 ", 5, true},
	} {
		start, end, id, ok := parseKill([]byte(tc.q))
		if ok != tc.ok || id != tc.id {
			t.Errorf("parseKill(%q) = %d, %v; want %d, %v", tc.q, id, ok, tc.id, tc.ok)
			continue
		}
		if ok && tc.q[start:end] != strconv.FormatUint(tc.id, 10) {
			t.Errorf("parseKill(%q): id at %d:%d", tc.q, start, end)
		}
	}
}

func TestTranslateKill(t *testing.T) {
	var m connIDs
	a, b := m.reserve(), m.reserve()
	if a < proxyIDFirst || b < proxyIDFirst || a == b {
		t.Fatalf("reserved %d, %d", a, b)
	}
	m.bind(a, 1234, "db1:3306")
	query := func(s string) []byte { return append([]byte{gomysql.COM_QUERY}, s...) }
	id := func(v uint32) string { return strconv.FormatUint(uint64(v), 10) }
	for _, tc := range []struct{ in, want []byte }{
		{query("KILL QUERY " + id(a)), query("KILL QUERY 1234")},
		{query(" kill hard " + id(a) + ";"), query(" kill hard 1234;")},
		{query("KILL QUERY " + id(b)), query("KILL QUERY " + id(b))}, // not bound yet
		{query("KILL QUERY 7"), query("KILL QUERY 7")},               // a server id
		{query("KILL QUERY ID " + id(a)), query("KILL QUERY ID " + id(a))},
		{binary.LittleEndian.AppendUint32([]byte{gomysql.COM_PROCESS_KILL}, a),
			binary.LittleEndian.AppendUint32([]byte{gomysql.COM_PROCESS_KILL}, 1234)},
		{binary.LittleEndian.AppendUint32([]byte{gomysql.COM_PROCESS_KILL}, 7),
			binary.LittleEndian.AppendUint32([]byte{gomysql.COM_PROCESS_KILL}, 7)},
	} {
		if got := m.translateKill(bytes.Clone(tc.in), "db1:3306"); !bytes.Equal(got, tc.want) {
			t.Errorf("translateKill(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
	// A KILL from a session on another server is not translated: that
	// server's thread 1234 is another session.
	if got := m.translateKill(query("KILL QUERY "+id(a)), "db2:3306"); !bytes.Equal(got, query("KILL QUERY "+id(a))) {
		t.Errorf("a KILL from another server's session was translated: %q", got)
	}
	m.release(a)
	if got := m.translateKill(query("KILL "+id(a)), "db1:3306"); !bytes.Equal(got, query("KILL "+id(a))) {
		t.Errorf("a released id was translated: %q", got)
	}
	if c := m.reserve(); c == a || c == b {
		t.Fatalf("reserved %d again", c)
	}
	// Draws map into the range and skip live ids.
	draws := []uint32{0, 0, 1, proxyIDLast - proxyIDFirst}
	m.draw = func() uint32 { d := draws[0]; draws = draws[1:]; return d }
	if c := m.reserve(); c != proxyIDFirst {
		t.Fatalf("first draw: %#x", c)
	}
	if c := m.reserve(); c != proxyIDFirst+1 {
		t.Fatalf("a live id was drawn again: %#x", c)
	}
	if c := m.reserve(); c != proxyIDLast {
		t.Fatalf("last id of the range: %#x", c)
	}
}

func TestKillCandidate(t *testing.T) {
	for _, tc := range []struct {
		head string
		n    int
		want bool
	}{
		{"\x03KILL ", 12, true},
		{"\x03 kil", 12, true},
		{"\x03     ", 12, true},
		{"\x03SELEC", 12, false},
		{"\x03KILL ", killMaxLen + 1, false},
		{"\x0c\x01\x00\x00\xc0", 5, true},
		{"\x0c\x01\x00", 3, false},
		{"\x16KILL ", 12, false},
	} {
		if got := killCandidate(tc.n, []byte(tc.head)); got != tc.want {
			t.Errorf("killCandidate(%d, %q) = %v", tc.n, tc.head, got)
		}
	}
}
