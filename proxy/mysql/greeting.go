package mysql

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"fmt"
)

// scrambleLen is the length of the auth_plugin_data a template greeting
// carries: the 20 bytes every MySQL and MariaDB server sends.
const scrambleLen = 20

// usableTemplate reports whether the server's greeting hs can be the
// template of the proxy's own greetings: protocol 4.1 with
// SECURE_CONNECTION and PLUGIN_AUTH (so that the proxy can switch the
// client to the real server's scramble) and a 20-byte scramble.
func usableTemplate(hs *handshake) bool {
	const need = capProtocol41 | capSecureConnection | capPluginAuth
	return hs.caps&need == need && len(hs.scramble) == scrambleLen &&
		hs.connIDAt > 0 && hs.scramble2At > 0 &&
		len(hs.raw) >= hs.scramble2At+scrambleLen-8
}

// sameGreeting reports whether a and b differ only in the connection id
// and the scramble: the template need not change.
func sameGreeting(a, b *handshake) bool {
	if len(a.raw) != len(b.raw) || a.connIDAt != b.connIDAt || a.scramble2At != b.scramble2At {
		return false
	}
	skip := func(i int) bool {
		return (i >= a.connIDAt && i < a.connIDAt+4+8) ||
			(a.scramble2At > 0 && i >= a.scramble2At && i < a.scramble2At+scrambleLen-8)
	}
	for i := range a.raw {
		if a.raw[i] != b.raw[i] && !skip(i) {
			return false
		}
	}
	return true
}

// instantiate returns the proxy's greeting built on the template t (a
// usable server greeting, not modified): t's fields with connection id
// connID and a fresh scramble.
func (t *handshake) instantiate(connID uint32) (*handshake, error) {
	raw := bytes.Clone(t.raw)
	binary.LittleEndian.PutUint32(raw[t.connIDAt:], connID)
	var scramble [scrambleLen]byte
	if err := newScramble(scramble[:]); err != nil {
		return nil, err
	}
	copy(raw[t.connIDAt+4:], scramble[:8])
	copy(raw[t.scramble2At:], scramble[8:])
	hs, err := parseHandshake(raw)
	if err != nil {
		return nil, fmt.Errorf("BUG: greeting built from the template: %w", err)
	}
	return hs, nil
}

// newScramble fills b with random bytes as servers choose them: 7-bit,
// never NUL (the scramble is NUL-terminated on the wire) nor '$' (which
// some clients treat specially).
func newScramble(b []byte) error {
	if _, err := rand.Read(b); err != nil {
		return fmt.Errorf("scramble: %w", err)
	}
	for i := range b {
		b[i] &= 0x7f
		if b[i] == 0 || b[i] == '$' {
			b[i]++
		}
	}
	return nil
}

// greetingMismatch says why a client that answered the template greeting
// tmpl selecting capabilities selected (masked by what it was offered)
// cannot be continued on the real server whose greeting is real; "" if it
// can. The server version string, charset and status flags of the greeting
// do not matter: the client only reports them. What does: MariaDB-ness
// (it decides where the extended capabilities are) and any selected flag
// the real server does not offer.
func greetingMismatch(tmpl, real *handshake, selected, realOffered uint64) string {
	switch {
	case tmpl.mariaDB != real.mariaDB:
		return "MariaDB extended capabilities"
	case real.caps&capProtocol41 == 0:
		return "protocol 4.1"
	case selected&^capSSL&^realOffered != 0:
		return fmt.Sprintf("capabilities %#x", selected&^capSSL&^realOffered)
	}
	return ""
}

// scrambleFree reports whether the auth response r carries nothing
// computed from the scramble, so it is forwarded to the server as is: an
// empty response (no password), mysql_clear_password, and sha256_password
// from a TLS client (the password in clear).
func scrambleFree(r *handshakeResponse, clientTLS bool) bool {
	return r.authLen == 0 || r.plugin == pluginClearPassword || (r.plugin == pluginSHA256 && clientTLS)
}

// rescramblePlugin is the plugin name the proxy puts in a HandshakeResponse
// whose auth response the client computed on the proxy's scramble. No
// server implements it, so the server does what it does for any client
// that used another plugin than the account's: it ignores the auth
// response and sends an AuthSwitchRequest for the account's plugin with
// its own scramble, which the client answers.
const rescramblePlugin = "dbproxy_rescramble"

// rescramble returns the HandshakeResponse41 p (parsed as r) with an empty
// auth response and plugin name rescramblePlugin (appended, after an
// empty database name if CONNECT_WITH_DB has none, when the client sent
// no plugin name). p is cleared (it holds the old auth response); r is
// not updated.
func rescramble(p []byte, r *handshakeResponse) []byte {
	out := make([]byte, 0, len(p)+len(rescramblePlugin)+2)
	out = append(out, p[:r.authAt]...)
	out = append(out, 0) // length 0 (lenenc or uint8), or an empty NUL-terminated string
	if r.pluginAt > 0 {
		out = append(out, p[r.authEnd:r.pluginAt]...)
		out = append(out, rescramblePlugin...)
		out = append(out, p[r.pluginEnd:]...)
	} else {
		out = append(out, p[r.authEnd:]...)
		if r.caps&capConnectWithDB != 0 && len(p) == r.authEnd {
			out = append(out, 0) // no database
		}
		out = append(out, rescramblePlugin...)
		out = append(out, 0)
	}
	clear(p)
	return out
}
