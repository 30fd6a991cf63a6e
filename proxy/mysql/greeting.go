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

// authSwitchRequest returns an AuthSwitchRequest payload asking for plugin
// over scramble: 0xfe || plugin || 0x00 || scramble || 0x00.
func authSwitchRequest(plugin string, scramble []byte) []byte {
	p := make([]byte, 0, 1+len(plugin)+1+len(scramble)+1)
	p = append(p, 0xfe)
	p = append(p, plugin...)
	p = append(p, 0)
	p = append(p, scramble...)
	return append(p, 0)
}

// replaceAuth returns the HandshakeResponse41 p (parsed as r) with its
// auth response replaced by auth, in the encoding r's capabilities select;
// r is updated. p is cleared (it holds the old auth response).
func replaceAuth(p []byte, r *handshakeResponse, auth []byte) ([]byte, error) {
	out := make([]byte, 0, len(p)+len(auth)+9)
	out = append(out, p[:r.authAt]...)
	nul := false
	switch {
	case r.caps&capPluginAuthLenenc != 0:
		out = appendLenEnc(out, uint64(len(auth)))
	case r.caps&capSecureConnection != 0:
		if len(auth) > 255 {
			clear(out)
			return nil, malformed("auth response too long for the client's length encoding")
		}
		out = append(out, byte(len(auth)))
	default:
		if bytes.IndexByte(auth, 0) >= 0 {
			clear(out)
			return nil, malformed("auth response with a NUL byte in a NUL-terminated field")
		}
		nul = true
	}
	out = append(out, auth...)
	if nul {
		out = append(out, 0)
	}
	end := len(out)
	out = append(out, p[r.authEnd:]...)
	r.authEnd, r.authLen = end, len(auth)
	clear(p)
	return out, nil
}

// appendLenEnc appends v as a length-encoded integer.
func appendLenEnc(dst []byte, v uint64) []byte {
	switch {
	case v < 251:
		return append(dst, byte(v))
	case v < 1<<16:
		return append(dst, 0xfc, byte(v), byte(v>>8))
	case v < 1<<24:
		return append(dst, 0xfd, byte(v), byte(v>>8), byte(v>>16))
	default:
		return binary.LittleEndian.AppendUint64(append(dst, 0xfe), v)
	}
}
