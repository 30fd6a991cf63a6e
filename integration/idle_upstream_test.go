package integration

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"testing"
)

// idleUpstream is what the idle-session RSS test puts behind the proxy in
// place of PostgreSQL: ten thousand backends are more than the machines
// the suite runs on can start, and what is measured is the proxy's own
// memory per session, which does not depend on what answers it. It speaks
// just enough of the protocol for a session: a trust login (over TLS when
// the proxy asks for it and the upstream has a certificate; no GSS), the
// usual ParameterStatus set, and for every simple Query one
// row of one int4 column. Startups of the proxy's catalog connection
// (application_name "dbproxy catalog") are relayed byte for byte to a real
// server, so that an encrypting listener learns its tables from there.
type idleUpstream struct {
	ln      net.Listener
	catalog string      // address of the real server, "" for none
	tls     *tls.Config // answers SSLRequest with 'S' when set
	wg      sync.WaitGroup
	mu      sync.Mutex
	conns   map[net.Conn]struct{}
}

// startIdleUpstream listens on a free loopback port until the test ends.
func startIdleUpstream(t testing.TB, catalog string) *idleUpstream {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u := &idleUpstream{ln: ln, catalog: catalog, conns: map[net.Conn]struct{}{}}
	u.wg.Go(u.accept)
	t.Cleanup(func() {
		_ = ln.Close()
		u.mu.Lock()
		for c := range u.conns {
			_ = c.Close()
		}
		u.mu.Unlock()
		u.wg.Wait()
	})
	return u
}

func (u *idleUpstream) addr() string { return u.ln.Addr().String() }

func (u *idleUpstream) accept() {
	for {
		c, err := u.ln.Accept()
		if err != nil {
			return
		}
		u.mu.Lock()
		u.conns[c] = struct{}{}
		u.mu.Unlock()
		u.wg.Go(func() {
			defer func() {
				u.mu.Lock()
				delete(u.conns, c)
				u.mu.Unlock()
				_ = c.Close()
			}()
			_ = u.serve(c)
		})
	}
}

// serve runs one connection: the startup, then queries until Terminate.
func (u *idleUpstream) serve(c net.Conn) error {
	r := bufio.NewReaderSize(c, 512)
	var sslErr error // SSLRequest answered with 'N'
	if u.tls != nil {
		sslErr = errSSLRequested
	}
	startup, params, err := readStartup(r, c, sslErr)
	if errors.Is(err, errSSLRequested) {
		if r.Buffered() > 0 {
			return errors.New("bytes after SSLRequest")
		}
		if _, err := c.Write([]byte{'S'}); err != nil {
			return err
		}
		c = tls.Server(c, u.tls)
		r = bufio.NewReaderSize(c, 512)
		startup, params, err = readStartup(r, c, nil)
	}
	if err != nil {
		return err
	}
	if params["application_name"] == "dbproxy catalog" && u.catalog != "" {
		return relayTo(u.catalog, startup, r, c)
	}
	var out bytes.Buffer
	pgMsg(&out, 'R', be32(0))
	for _, kv := range [][2]string{
		{"server_version", "17.0"}, {"server_encoding", "UTF8"}, {"client_encoding", "UTF8"},
		{"DateStyle", "ISO, MDY"}, {"IntervalStyle", "postgres"}, {"TimeZone", "UTC"},
		{"integer_datetimes", "on"}, {"standard_conforming_strings", "on"},
		{"is_superuser", "off"}, {"session_authorization", params["user"]},
	} {
		pgMsg(&out, 'S', []byte(kv[0]+"\x00"+kv[1]+"\x00"))
	}
	pgMsg(&out, 'K', append(be32(4242), be32(1)...))
	pgMsg(&out, 'Z', []byte{'I'})
	if _, err := c.Write(out.Bytes()); err != nil {
		return err
	}
	for {
		typ, body, err := readMsg(r)
		if err != nil {
			return err
		}
		out.Reset()
		switch typ {
		case 'X':
			return nil
		case 'Q':
			queryAnswer(&out, body, params["user"])
		default:
			pgMsg(&out, 'E', []byte("SERROR\x00C0A000\x00Monly simple queries\x00\x00"))
			pgMsg(&out, 'Z', []byte{'I'})
		}
		if _, err := c.Write(out.Bytes()); err != nil {
			return err
		}
	}
}

// queryAnswer answers a simple query: the proxy's own question for
// search_path and current_user with "$user", public and user; any other
// with one int4 column "1".
func queryAnswer(out *bytes.Buffer, query []byte, user string) {
	cols, vals := []string{"?column?"}, []string{"1"}
	typ := uint32(23)
	if bytes.Contains(query, []byte("current_setting('search_path')")) {
		cols, vals, typ = []string{"current_setting", "current_user"}, []string{`"$user", public`, user}, 25
	}
	desc := binary.BigEndian.AppendUint16(nil, uint16(len(cols)))
	row := binary.BigEndian.AppendUint16(nil, uint16(len(cols)))
	for i, c := range cols {
		desc = append(desc, c+"\x00"...)
		desc = append(desc, be32(0)...)
		desc = append(desc, 0, 0)
		desc = append(desc, be32(typ)...)
		desc = append(desc, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0)
		row = append(row, be32(uint32(len(vals[i])))...)
		row = append(row, vals[i]...)
	}
	pgMsg(out, 'T', desc)
	pgMsg(out, 'D', row)
	pgMsg(out, 'C', []byte("SELECT 1\x00"))
	pgMsg(out, 'Z', []byte{'I'})
}

// errSSLRequested is readStartup's answer to an SSLRequest when its caller
// may start TLS.
var errSSLRequested = errors.New("SSLRequest")

// readStartup reads the startup message (answering GSS encryption requests
// with 'N', and SSL requests too unless sslErr is set: then it returns
// that) and returns its bytes and parameters.
func readStartup(r *bufio.Reader, w io.Writer, sslErr error) ([]byte, map[string]string, error) {
	for {
		var hdr [8]byte
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			return nil, nil, err
		}
		n := binary.BigEndian.Uint32(hdr[:4])
		code := binary.BigEndian.Uint32(hdr[4:])
		if n < 8 || n > 10000 {
			return nil, nil, fmt.Errorf("startup length %d", n)
		}
		body := make([]byte, n-8)
		if _, err := io.ReadFull(r, body); err != nil {
			return nil, nil, err
		}
		switch code {
		case 80877103, 80877104: // SSLRequest, GSSENCRequest
			if code == 80877103 && sslErr != nil {
				return nil, nil, sslErr
			}
			if _, err := w.Write([]byte{'N'}); err != nil {
				return nil, nil, err
			}
			continue
		case 196608:
		default:
			return nil, nil, fmt.Errorf("startup code %d", code)
		}
		params := map[string]string{}
		fields := bytes.Split(bytes.TrimRight(body, "\x00"), []byte{0})
		for i := 0; i+1 < len(fields); i += 2 {
			params[string(fields[i])] = string(fields[i+1])
		}
		return append(hdr[:], body...), params, nil
	}
}

// relayTo connects to addr, sends startup and relays both ways until
// either side closes.
func relayTo(addr string, startup []byte, r io.Reader, c net.Conn) error {
	up, err := net.Dial("tcp", addr)
	if err != nil {
		return err
	}
	defer up.Close()
	if _, err := up.Write(startup); err != nil {
		return err
	}
	done := make(chan error, 1)
	go func() {
		_, err := io.Copy(c, up)
		_ = c.Close()
		done <- err
	}()
	_, err = io.Copy(up, r)
	_ = up.Close()
	return errors.Join(err, <-done)
}

// readMsg reads one typed message.
func readMsg(r *bufio.Reader) (byte, []byte, error) {
	var hdr [5]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return 0, nil, err
	}
	n := binary.BigEndian.Uint32(hdr[1:])
	if n < 4 || n > 1<<20 {
		return 0, nil, fmt.Errorf("message length %d", n)
	}
	body := make([]byte, n-4)
	_, err := io.ReadFull(r, body)
	return hdr[0], body, err
}

func pgMsg(b *bytes.Buffer, typ byte, body []byte) {
	b.WriteByte(typ)
	b.Write(be32(uint32(len(body) + 4)))
	b.Write(body)
}

func be32(v uint32) []byte { return binary.BigEndian.AppendUint32(nil, v) }
