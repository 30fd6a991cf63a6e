package mysql

import (
	"bytes"
	"encoding/binary"

	gomysql "github.com/go-mysql-org/go-mysql/mysql"
)

// Capability flags are handled as one uint64: the low 32 bits are the
// standard CLIENT_* flags, the high 32 bits MariaDB's extended capabilities
// (MARIADB_CLIENT_*), which a MariaDB server signals by clearing CLIENT_MYSQL
// (bit 0, CLIENT_LONG_PASSWORD) and carries in the last four reserved bytes
// of the handshake and of the client's response.
const (
	capMySQL = uint64(gomysql.CLIENT_LONG_PASSWORD)

	capSSL                  = uint64(gomysql.CLIENT_SSL)
	capProtocol41           = uint64(gomysql.CLIENT_PROTOCOL_41)
	capSecureConnection     = uint64(gomysql.CLIENT_SECURE_CONNECTION)
	capConnectWithDB        = uint64(gomysql.CLIENT_CONNECT_WITH_DB)
	capPluginAuth           = uint64(gomysql.CLIENT_PLUGIN_AUTH)
	capPluginAuthLenenc     = uint64(gomysql.CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA)
	capDeprecateEOF         = uint64(gomysql.CLIENT_DEPRECATE_EOF)
	capCompress             = uint64(gomysql.CLIENT_COMPRESS)
	capZstd                 = uint64(gomysql.CLIENT_ZSTD_COMPRESSION_ALGORITHM)
	capQueryAttributes      = uint64(gomysql.CLIENT_QUERY_ATTRIBUTES)
	capOptionalMetadata     = uint64(gomysql.CLIENT_OPTIONAL_RESULTSET_METADATA)
	capMultiFactorAuth      = uint64(gomysql.MULTI_FACTOR_AUTHENTICATION)
	capLocalFiles           = uint64(gomysql.CLIENT_LOCAL_FILES)
	capConnectAttrs         = uint64(gomysql.CLIENT_CONNECT_ATTRS)
	capMariaDBProgress      = uint64(1) << 32
	capMariaDBComMulti      = uint64(1) << 33
	capMariaDBBulkOps       = uint64(1) << 34
	capMariaDBExtendedTypes = uint64(1) << 35
	capMariaDBCacheMetadata = uint64(1) << 36
	capMariaDBBulkUnit      = uint64(1) << 37
)

// relayedCaps are the capabilities the relay implements; any other flag the
// server offers is hidden from the client. CLIENT_SSL is decided per leg.
// Notably absent: compression (COMPRESS, ZSTD), QUERY_ATTRIBUTES (changes
// the COM_QUERY layout), OPTIONAL_RESULTSET_METADATA (results without
// column definitions), MULTI_FACTOR_AUTHENTICATION, and the MariaDB
// extensions other than extended metadata (progress reports interleaved
// with results, COM_MULTI, bulk execution, cached metadata). MariaDB's
// extended metadata (a block of type name and format in every column
// definition, see [MariaDBExtendedMetadata]) only adds a field the relay
// does not read; an Interceptor that rewrites column definitions must
// handle it.
const relayedCaps = capMySQL | capMariaDBExtendedTypes |
	uint64(gomysql.CLIENT_FOUND_ROWS|gomysql.CLIENT_LONG_FLAG|gomysql.CLIENT_CONNECT_WITH_DB|
		gomysql.CLIENT_NO_SCHEMA|gomysql.CLIENT_ODBC|gomysql.CLIENT_LOCAL_FILES|gomysql.CLIENT_IGNORE_SPACE|
		gomysql.CLIENT_PROTOCOL_41|gomysql.CLIENT_INTERACTIVE|gomysql.CLIENT_IGNORE_SIGPIPE|
		gomysql.CLIENT_TRANSACTIONS|gomysql.CLIENT_RESERVED|gomysql.CLIENT_SECURE_CONNECTION|
		gomysql.CLIENT_MULTI_STATEMENTS|gomysql.CLIENT_MULTI_RESULTS|gomysql.CLIENT_PS_MULTI_RESULTS|
		gomysql.CLIENT_PLUGIN_AUTH|gomysql.CLIENT_CONNECT_ATTRS|gomysql.CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA|
		gomysql.CLIENT_CAN_HANDLE_EXPIRED_PASSWORDS|gomysql.CLIENT_SESSION_TRACK|gomysql.CLIENT_DEPRECATE_EOF|
		gomysql.CLIENT_SSL_VERIFY_SERVER_CERT|gomysql.CLIENT_REMEMBER_OPTIONS)

// handshake is the server's initial handshake (protocol version 10):
//
//	uint8 10 || cstring server_version || uint32 connection_id ||
//	8 bytes auth_plugin_data_1 || 0x00 || uint16 caps_low ||
//	uint8 charset || uint16 status || uint16 caps_high ||
//	uint8 auth_plugin_data_len || 6 reserved || uint32 mariadb_caps (or 4 reserved) ||
//	auth_plugin_data_2 (max(13, len-8) bytes, if SECURE_CONNECTION) ||
//	cstring auth_plugin_name (if PLUGIN_AUTH; the NUL may be missing)
type handshake struct {
	raw           []byte // the payload as received (owned)
	serverVersion string
	connID        uint32
	caps          uint64
	charset       byte
	status        uint16
	scramble      []byte // auth_plugin_data without its trailing NUL
	plugin        string
	mariaDB       bool // extended capabilities present (CLIENT_MYSQL clear)

	capsLowAt, capsHighAt, extCapsAt int // offsets in raw; 0 = absent
	connIDAt                         int // offset of connection_id in raw
	scramble2At                      int // offset of auth_plugin_data_2 in raw; 0 = absent
}

// parseHandshake parses the server's initial handshake. It keeps p.
func parseHandshake(p []byte) (*handshake, error) {
	if len(p) == 0 || p[0] != gomysql.ClassicProtocolVersion {
		if len(p) > 0 && p[0] == gomysql.ERR_HEADER {
			return nil, malformed("server sent an error instead of a handshake")
		}
		return nil, malformed("unsupported server protocol version")
	}
	h := &handshake{raw: p}
	i := bytes.IndexByte(p[1:], 0)
	if i < 0 {
		return nil, malformed("handshake: unterminated server version")
	}
	h.serverVersion = string(p[1 : 1+i])
	pos := 2 + i
	if len(p) < pos+4+8+1+2 {
		return nil, malformed("handshake too short")
	}
	h.connID = binary.LittleEndian.Uint32(p[pos:])
	h.connIDAt = pos
	pos += 4
	scramble := append([]byte(nil), p[pos:pos+8]...)
	pos += 9 // part 1 and its filler
	h.capsLowAt = pos
	h.caps = uint64(binary.LittleEndian.Uint16(p[pos:]))
	pos += 2
	h.scramble = scramble
	if len(p) == pos {
		return h, nil // pre-4.1 servers stop here
	}
	if len(p) < pos+1+2+2+1+10 {
		return nil, malformed("handshake too short")
	}
	h.charset = p[pos]
	h.status = binary.LittleEndian.Uint16(p[pos+1:])
	h.capsHighAt = pos + 3
	h.caps |= uint64(binary.LittleEndian.Uint16(p[pos+3:])) << 16
	authLen := int(p[pos+5])
	pos += 6
	if h.caps&capMySQL == 0 {
		h.mariaDB = true
		h.extCapsAt = pos + 6
		h.caps |= uint64(binary.LittleEndian.Uint32(p[pos+6:])) << 32
	}
	pos += 10
	if h.caps&capSecureConnection != 0 {
		n := max(13, authLen-8)
		if len(p) < pos+n {
			return nil, malformed("handshake: truncated auth plugin data")
		}
		part2 := p[pos : pos+n]
		h.scramble2At = pos
		pos += n
		if k := bytes.IndexByte(part2, 0); k >= 0 {
			part2 = part2[:k]
		}
		h.scramble = append(h.scramble, part2...)
	}
	if h.caps&capPluginAuth != 0 && pos < len(p) {
		name := p[pos:]
		if k := bytes.IndexByte(name, 0); k >= 0 {
			name = name[:k]
		}
		h.plugin = string(name)
	}
	return h, nil
}

// appendWithCaps appends the handshake payload with its capability flags
// replaced by caps (extended capabilities only if the server sent them).
func (h *handshake) appendWithCaps(dst []byte, caps uint64) []byte {
	start := len(dst)
	dst = append(dst, h.raw...)
	out := dst[start:]
	binary.LittleEndian.PutUint16(out[h.capsLowAt:], uint16(caps))
	if h.capsHighAt > 0 {
		binary.LittleEndian.PutUint16(out[h.capsHighAt:], uint16(caps>>16))
	}
	if h.extCapsAt > 0 {
		binary.LittleEndian.PutUint32(out[h.extCapsAt:], uint32(caps>>32))
	}
	return dst
}

// advertisedCaps returns the capabilities offered to clients: the server's,
// minus what the relay does not implement and what hide names, plus
// CLIENT_SSL if the client leg offers TLS.
func advertisedCaps(server uint64, clientTLS bool, hide uint64) uint64 {
	caps := server & relayedCaps &^ hide
	if server&capMySQL == 0 {
		caps &^= capMySQL // keep signalling MariaDB
	}
	if clientTLS {
		caps |= capSSL
	}
	return caps
}

// sslRequestLen is the length of an SSLRequest payload, which is also the
// fixed prefix of a HandshakeResponse41:
//
//	uint32 caps || uint32 max_packet || uint8 charset || 19 filler || uint32 mariadb_caps
const sslRequestLen = 32

// handshakeResponse is the client's HandshakeResponse41:
//
//	fixed 32-byte prefix || cstring user ||
//	auth_response (lenenc if PLUGIN_AUTH_LENENC_CLIENT_DATA, else uint8 length) ||
//	cstring database (if CONNECT_WITH_DB) || cstring plugin (if PLUGIN_AUTH) ||
//	lenenc attrs (if CONNECT_ATTRS) || ...
type handshakeResponse struct {
	caps    uint64
	charset byte
	user    string
	authLen int // length of the auth response (never kept: it may be a password)
	// authAt and authEnd delimit the auth response field in the payload:
	// its length prefix (or, without SECURE_CONNECTION, its first byte)
	// and the end of its data (past the NUL without SECURE_CONNECTION).
	authAt, authEnd int
	// pluginAt and pluginEnd delimit the plugin name (without its NUL);
	// pluginAt is 0 when the field is absent.
	pluginAt, pluginEnd int
	database            string
	plugin              string
}

// clientCaps returns the capability flags of an SSLRequest or
// HandshakeResponse41 payload (extended flags only for a MariaDB server).
func clientCaps(p []byte, mariaDB bool) uint64 {
	caps := uint64(binary.LittleEndian.Uint32(p))
	if mariaDB && caps&capMySQL == 0 && len(p) >= sslRequestLen {
		caps |= uint64(binary.LittleEndian.Uint32(p[28:])) << 32
	}
	return caps
}

// setClientCaps rewrites the capability flags of an SSLRequest or
// HandshakeResponse41 payload in place.
func setClientCaps(p []byte, caps uint64, mariaDB bool) {
	binary.LittleEndian.PutUint32(p, uint32(caps))
	if mariaDB && caps&capMySQL == 0 {
		binary.LittleEndian.PutUint32(p[28:], uint32(caps>>32))
	}
}

// parseHandshakeResponse parses a HandshakeResponse41 (the caller checked
// CLIENT_PROTOCOL_41 and the length of the fixed prefix). The layout is
// read with the client's flags masked by offered, the flags the client was
// offered: the server masks them with its own before parsing, and the
// proxy forwards them masked, so both read the same user, database and
// plugin even from a client that sets flags it was not offered.
func parseHandshakeResponse(p []byte, mariaDB bool, offered uint64) (*handshakeResponse, error) {
	if len(p) <= sslRequestLen {
		return nil, malformed("handshake response too short")
	}
	r := &handshakeResponse{caps: clientCaps(p, mariaDB) & offered, charset: p[8]}
	rest := p[sslRequestLen:]
	i := bytes.IndexByte(rest, 0)
	if i < 0 {
		return nil, malformed("handshake response: unterminated user name")
	}
	r.user = string(rest[:i])
	rest = rest[i+1:]
	r.authAt = len(p) - len(rest)
	switch {
	case r.caps&capPluginAuthLenenc != 0:
		v, n, null, ok := lenEnc(rest)
		if !ok || null || uint64(len(rest)-n) < v {
			return nil, malformed("handshake response: bad auth response length")
		}
		r.authLen = int(v)
		rest = rest[n+int(v):]
	case r.caps&capSecureConnection != 0:
		if len(rest) < 1 || len(rest) < 1+int(rest[0]) {
			return nil, malformed("handshake response: bad auth response length")
		}
		r.authLen = int(rest[0])
		rest = rest[1+int(rest[0]):]
	default:
		i := bytes.IndexByte(rest, 0)
		if i < 0 {
			return nil, malformed("handshake response: unterminated auth response")
		}
		r.authLen = i
		rest = rest[i+1:]
	}
	r.authEnd = len(p) - len(rest)
	if r.caps&capConnectWithDB != 0 && len(rest) > 0 {
		i := bytes.IndexByte(rest, 0)
		if i < 0 {
			return nil, malformed("handshake response: unterminated database name")
		}
		r.database = string(rest[:i])
		rest = rest[i+1:]
	}
	if r.caps&capPluginAuth != 0 && len(rest) > 0 {
		name := rest
		if i := bytes.IndexByte(rest, 0); i >= 0 {
			name = rest[:i]
		}
		r.plugin = string(name)
		r.pluginAt = len(p) - len(rest)
		r.pluginEnd = r.pluginAt + len(name)
	}
	return r, nil
}
