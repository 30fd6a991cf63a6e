package postgres

import (
	"crypto/x509"
	"io"

	"github.com/dbproxy/dbproxy/proxy"
	"github.com/dbproxy/dbproxy/proxy/relay"
)

// Test hooks for the black-box tests in package postgres_test.

// SCRAMExchange runs the client side of SCRAM-SHA-256 (no channel binding,
// GS2 'n') with a fixed user and nonce, as in RFC 7677's example.
func SCRAMExchange(password, user, nonce string, serverFirst, serverFinal []byte) (clientFirst, clientFinal []byte, err error) {
	sc, err := newSCRAMClient(password, false, nil, false)
	if err != nil {
		return nil, nil, err
	}
	sc.user, sc.nonce = user, nonce
	clientFirst = sc.clientFirst()
	clientFinal, err = sc.clientFinal(serverFirst)
	if err != nil {
		return clientFirst, nil, err
	}
	return clientFirst, clientFinal, sc.verifyServerFinal(serverFinal)
}

// TLSServerEndPoint exposes the channel binding hash.
func TLSServerEndPoint(c *x509.Certificate) ([]byte, error) { return tlsServerEndPoint(c) }

// Relay runs a pump from src to dst until it fails and returns the error.
// fromClient enables the client-side checks (Terminate, accounting).
func Relay(src io.Reader, dst io.Writer, fromClient bool, maxBody int, types MessageTypes, hook MessageFunc) error {
	var acct *accounting
	if fromClient {
		acct = newAccounting(nil)
	}
	if maxBody <= 0 {
		maxBody = DefaultMaxMessageSize
	}
	p := newPump(src, dst, newMsgFramer(acct, fromClient, maxBody, types, hook), nil)
	defer p.Release()
	return p.Run()
}

// IsMalformed reports whether err is a framing error.
func IsMalformed(err error) bool {
	_, ok := err.(*proxy.MalformedError)
	return ok
}

// ErrTerminated is the end of a client stream at Terminate.
var ErrTerminated = errTerminated

// StartupPacket reads and parses one startup-phase packet.
func StartupPacket(r io.Reader) (code uint32, params []string, err error) {
	code, payload, err := readStartupPacket(r, nil)
	if err != nil {
		return 0, nil, err
	}
	if code>>16 != 3 {
		return code, nil, nil
	}
	m, err := parseStartupMessage(code, payload)
	if err != nil {
		return code, nil, err
	}
	return code, m.params, nil
}

// EncodeStartup encodes a StartupMessage.
func EncodeStartup(version uint32, params []string) []byte {
	return appendStartupMessage(nil, version, params)
}

// Accounting is the idle tracker, without a proxy.Conn.
type Accounting struct{ a *accounting }

func NewAccounting() *Accounting             { return &Accounting{a: newAccounting(nil)} }
func (x *Accounting) Frontend(typ byte) bool { return x.a.frontend(typ) }
func (x *Accounting) ReadyForQuery(s byte)   { x.a.readyForQuery(s) }
func (x *Accounting) CloseIfIdle() bool      { return x.a.closeIfIdle() }

// CancelKeyCount returns the number of live proxy-issued cancel keys.
func CancelKeyCount(h *Handler) int {
	h.keys.mu.Lock()
	defer h.keys.mu.Unlock()
	return len(h.keys.m)
}

// RelayAnswering runs a client->server pump from src to upstream whose
// hooks may answer the client (Writer.Answer) on client, in a session
// whose last ReadyForQuery said txStatus.
func RelayAnswering(src io.Reader, upstream, client io.Writer, txStatus byte, types MessageTypes, hook MessageFunc) error {
	acct := newAccounting(nil)
	acct.txStatus.Store(uint32(txStatus))
	f := newMsgFramer(acct, true, DefaultMaxMessageSize, types, hook)
	f.answers = &answers{client: relay.NewShared(client)}
	f.w.answer = f.answer
	p := newPump(src, upstream, f, nil)
	defer p.Release()
	return p.Run()
}
