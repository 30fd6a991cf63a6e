package mysql

import (
	"bytes"
	"io"

	"github.com/dbproxy/dbproxy/proxy"
)

// Test hooks for the black-box tests in package mysql_test.

// AppendPacket frames payload as one logical packet starting at seq.
func AppendPacket(dst []byte, seq uint8, payload []byte) []byte {
	out, _ := appendPacket(dst, seq, payload)
	return out
}

// Handshake is the parsed view of a server handshake the tests check.
type Handshake struct {
	ServerVersion string
	ConnID        uint32
	Caps          uint64
	Scramble      []byte
	Plugin        string
	MariaDB       bool
}

// ParseHandshake parses a server's initial handshake payload.
func ParseHandshake(p []byte) (*Handshake, error) {
	h, err := parseHandshake(p)
	if err != nil {
		return nil, err
	}
	return &Handshake{h.serverVersion, h.connID, h.caps, h.scramble, h.plugin, h.mariaDB}, nil
}

// MaskHandshake returns the handshake payload the proxy sends a client.
func MaskHandshake(p []byte, clientTLS bool, hide uint64) ([]byte, error) {
	h, err := parseHandshake(p)
	if err != nil {
		return nil, err
	}
	return h.appendWithCaps(nil, advertisedCaps(h.caps, clientTLS, hide)), nil
}

// ParseHandshakeResponse returns the user, database and plugin of a
// HandshakeResponse41.
func ParseHandshakeResponse(p []byte, mariaDB bool) (user, database, plugin string, err error) {
	r, err := parseHandshakeResponse(p, mariaDB, ^uint64(0))
	if err != nil {
		return "", "", "", err
	}
	return r.user, r.database, r.plugin, nil
}

// ParseHandshakeResponseOffered is ParseHandshakeResponse for a client
// offered only the flags offered.
func ParseHandshakeResponseOffered(p []byte, mariaDB bool, offered uint64) (user, database, plugin string, err error) {
	r, err := parseHandshakeResponse(p, mariaDB, offered)
	if err != nil {
		return "", "", "", err
	}
	return r.user, r.database, r.plugin, nil
}

// RelayCommands runs a client->server pump over src until it fails and
// returns the error. Local replies (refusals) go to client.
func RelayCommands(src io.Reader, dst, client io.Writer, hooks *SessionHooks, maxPacket int) error {
	q := newQueue(nil, client)
	f := &cmdFramer{q: q, hooks: hooks}
	if maxPacket <= 0 {
		maxPacket = DefaultMaxPacketSize
	}
	p := newPump(src, dst, f, commandHeadLen, maxPacket, nil)
	defer p.Release()
	return p.Run()
}

// RelayResponses runs a server->client pump over src, answering the given
// commands (command byte first, then the head of the command packet) in
// order. Every exchange is watched if hooks are set. It returns the pump's
// error and the number of responses completed.
func RelayResponses(src io.Reader, dst io.Writer, cmds [][]byte, hooks *SessionHooks, deprecateEOF bool) (int, error) {
	q := newQueue(nil, dst)
	for _, c := range cmds {
		queueCommand(q, c, hooks != nil, deprecateEOF)
	}
	err := runResponses(q, src, hooks, deprecateEOF)
	return len(cmds) - len(q.items) + q.done, err
}

// queueCommand queues the exchange of cmd (command byte first).
func queueCommand(q *queue, cmd []byte, watch, deprecateEOF bool) {
	x := q.alloc()
	initExchange(x, cmd, commandResponse(cmd[0]))
	x.Watch = watch
	x.DeprecateEOF = deprecateEOF
	q.push(x)
}

// runResponses runs a server->client pump over src until it fails.
func runResponses(q *queue, src io.Reader, hooks *SessionHooks, deprecateEOF bool) error {
	f := &respFramer{q: q, hooks: hooks, deprecateEOF: deprecateEOF}
	p := newPump(src, q.client, f, responseHeadLen, DefaultMaxPacketSize, nil)
	f.out = p
	defer p.Release()
	return p.Run()
}

// IsMalformed reports whether err is a framing or protocol error.
func IsMalformed(err error) bool {
	_, ok := err.(*proxy.MalformedError)
	return ok
}

// IsQuit reports whether err is the end of a client stream at COM_QUIT.
func IsQuit(err error) bool { return err == errQuit }

// IsHookError reports whether err ended a pump because of a hook.
func IsHookError(err error) bool {
	_, ok := err.(*proxy.HookError)
	return ok
}

// Capability flags the tests check.
const (
	CapSSL          = capSSL
	CapCompress     = capCompress
	CapDeprecateEOF = capDeprecateEOF
	CapQueryAttrs   = capQueryAttributes
	CapOptionalMeta = capOptionalMetadata
	CapZstd         = capZstd
	CapMFA          = capMultiFactorAuth
	CapMySQL        = capMySQL
	CapProtocol41   = capProtocol41
	CapPluginAuth   = capPluginAuth
	CapLocalFiles   = capLocalFiles
)

// RelayResponseLoop runs a server->client pump over n replays of resp,
// read in chunks of at most chunk bytes; each replay answers one cmd
// (command byte first), queued as the replay starts. Every exchange is
// watched if hooks are set. It returns the pump's error (io.EOF at the end).
func RelayResponseLoop(resp, cmd []byte, n, chunk int, dst io.Writer, hooks *SessionHooks, deprecateEOF bool) error {
	q := newQueue(nil, dst)
	src := &replayReader{data: resp, left: n, chunk: chunk, each: func() {
		queueCommand(q, cmd, hooks != nil, deprecateEOF)
	}}
	return runResponses(q, src, hooks, deprecateEOF)
}

// replayReader replays data left times in reads of at most chunk bytes,
// calling each before every replay.
type replayReader struct {
	cur   bytes.Reader
	data  []byte
	left  int
	chunk int
	each  func()
}

func (r *replayReader) Read(p []byte) (int, error) {
	if r.cur.Len() == 0 {
		if r.left == 0 {
			return 0, io.EOF
		}
		r.left--
		r.cur.Reset(r.data)
		r.each()
	}
	return r.cur.Read(p[:min(len(p), r.chunk)])
}
