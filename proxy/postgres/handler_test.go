package postgres_test

import (
	"bytes"
	"crypto/tls"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/dbproxy/dbproxy/internal/testenv"
	"github.com/dbproxy/dbproxy/proxy"
	"github.com/dbproxy/dbproxy/proxy/postgres"
	"github.com/jackc/pgx/v5/pgproto3"
)

// fakeServer accepts one upstream connection and runs script on it.
func fakeServer(t *testing.T, script func(be *pgproto3.Backend) error) (addr string, done chan error) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done = make(chan error, 1)
	go func() {
		defer l.Close()
		c, err := l.Accept()
		if err != nil {
			done <- err
			return
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(30 * time.Second))
		be := pgproto3.NewBackend(c, c)
		if _, err := be.ReceiveStartupMessage(); err != nil {
			done <- err
			return
		}
		done <- script(be)
	}()
	return l.Addr().String(), done
}

// remoteListener makes accepted connections report a fixed remote address.
type remoteListener struct {
	net.Listener
	remote net.Addr
}

func (l remoteListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return remoteConn{Conn: c, remote: l.remote}, nil
}

type remoteConn struct {
	net.Conn
	remote net.Addr
}

func (c remoteConn) RemoteAddr() net.Addr { return c.remote }

// startProxy serves h on a listener whose clients appear to come from
// remote.
func startProxy(t *testing.T, opts postgres.Options, remote net.Addr) string {
	t.Helper()
	addr, _ := startProxyHandler(t, opts, remote)
	return addr
}

func startProxyHandler(t *testing.T, opts postgres.Options, remote net.Addr) (string, *postgres.Handler) {
	t.Helper()
	opts.UpstreamTLS = proxy.UpstreamTLS{Mode: proxy.SSLDisable}
	h, err := postgres.NewHandler(opts)
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &proxy.Server{Handler: h}
	go func() { _ = srv.Serve(remoteListener{Listener: l, remote: remote}) }()
	t.Cleanup(func() { _ = srv.Close() })
	return l.Addr().String(), h
}

// login starts a session as user alice, optionally over TLS, and returns
// the frontend.
func login(t *testing.T, addr string, tlsCfg *tls.Config) *pgproto3.Frontend {
	t.Helper()
	var conn net.Conn
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	_ = conn.SetDeadline(time.Now().Add(30 * time.Second))
	if tlsCfg != nil {
		fe := pgproto3.NewFrontend(conn, conn)
		fe.Send(&pgproto3.SSLRequest{})
		if err := fe.Flush(); err != nil {
			t.Fatal(err)
		}
		b := make([]byte, 1)
		if _, err := conn.Read(b); err != nil || b[0] != 'S' {
			t.Fatalf("SSLRequest answer %q %v", b, err)
		}
		tc := tls.Client(conn, tlsCfg)
		if err := tc.Handshake(); err != nil {
			t.Fatal(err)
		}
		conn = tc
	}
	fe := pgproto3.NewFrontend(conn, conn)
	fe.Send(&pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersionNumber,
		Parameters: map[string]string{"user": "alice", "database": "app"}})
	if err := fe.Flush(); err != nil {
		t.Fatal(err)
	}
	return fe
}

func receive(t *testing.T, fe *pgproto3.Frontend) pgproto3.BackendMessage {
	t.Helper()
	msg, err := fe.Receive()
	if err != nil {
		t.Fatal(err)
	}
	return msg
}

var farAway = &net.TCPAddr{IP: net.IPv4(192, 0, 2, 10), Port: 40000} // TEST-NET-1, never dialled

// TestCleartextNeverOverPlainNetwork: a server asking for a cleartext
// password is not relayed to a plaintext, non-loopback client.
func TestCleartextNeverOverPlainNetwork(t *testing.T) {
	upstream, done := fakeServer(t, func(be *pgproto3.Backend) error {
		be.Send(&pgproto3.AuthenticationCleartextPassword{})
		if err := be.Flush(); err != nil {
			return err
		}
		if _, err := be.Receive(); err == nil {
			return errors.New("the proxy sent something after the cleartext request")
		}
		return nil
	})
	addr := startProxy(t, postgres.Options{ListenerOptions: proxy.ListenerOptions{Upstream: upstream}}, farAway)
	fe := login(t, addr, nil)
	e, ok := receive(t, fe).(*pgproto3.ErrorResponse)
	if !ok || e.Code != "28000" {
		t.Fatalf("got %#v, want FATAL 28000", e)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// TestCleartextRelayedOverTLS: the same request reaches a TLS client, and
// its answer reaches the server.
func TestCleartextRelayedOverTLS(t *testing.T) {
	upstream, done := fakeServer(t, func(be *pgproto3.Backend) error {
		be.Send(&pgproto3.AuthenticationCleartextPassword{})
		if err := be.Flush(); err != nil {
			return err
		}
		if err := be.SetAuthType(pgproto3.AuthTypeCleartextPassword); err != nil {
			return err
		}
		msg, err := be.Receive()
		if err != nil {
			return err
		}
		if pw, ok := msg.(*pgproto3.PasswordMessage); !ok || pw.Password != "s3cret" {
			return errors.New("password not relayed")
		}
		be.Send(&pgproto3.ErrorResponse{Severity: "FATAL", Code: "28P01", Message: `password authentication failed for user "alice"`})
		return be.Flush()
	})
	ca, cert, key := testenv.GenerateCert(t, t.TempDir(), "localhost")
	srvTLS, err := proxy.ServerTLSConfig(cert, key, "", postgres.ALPN)
	if err != nil {
		t.Fatal(err)
	}
	roots, err := proxy.LoadCertPool(ca)
	if err != nil {
		t.Fatal(err)
	}
	addr := startProxy(t, postgres.Options{ListenerOptions: proxy.ListenerOptions{Upstream: upstream, TLS: srvTLS}}, farAway)
	fe := login(t, addr, &tls.Config{RootCAs: roots, ServerName: "localhost"})
	if _, ok := receive(t, fe).(*pgproto3.AuthenticationCleartextPassword); !ok {
		t.Fatal("no cleartext request")
	}
	fe.Send(&pgproto3.PasswordMessage{Password: "s3cret"})
	if err := fe.Flush(); err != nil {
		t.Fatal(err)
	}
	e, ok := receive(t, fe).(*pgproto3.ErrorResponse)
	if !ok || e.Code != "28P01" || e.Message != `password authentication failed for user "alice"` {
		t.Fatalf("got %#v, want the server's error verbatim", e)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// TestUpstreamUnreachable: the client gets FATAL 08001, not a hang.
func TestUpstreamUnreachable(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := l.Addr().String()
	l.Close()
	addr := startProxy(t, postgres.Options{ListenerOptions: proxy.ListenerOptions{Upstream: dead, ConnectTimeout: 5 * time.Second}}, farAway)
	fe := login(t, addr, nil)
	e, ok := receive(t, fe).(*pgproto3.ErrorResponse)
	if !ok || e.Code != "08001" {
		t.Fatalf("got %#v, want FATAL 08001", e)
	}
}

// TestProtocol32Negotiated: a client asking for 3.2 gets
// NegotiateProtocolVersion(3.0) before the server's first message, and the
// server is asked for 3.0.
func TestProtocol32Negotiated(t *testing.T) {
	upstream, done := fakeServer(t, func(be *pgproto3.Backend) error {
		be.Send(&pgproto3.AuthenticationOk{})
		be.Send(&pgproto3.BackendKeyData{ProcessID: 42, SecretKey: []byte{1, 2, 3, 4}})
		be.Send(&pgproto3.ReadyForQuery{TxStatus: 'I'})
		return be.Flush()
	})
	addr := startProxy(t, postgres.Options{ListenerOptions: proxy.ListenerOptions{Upstream: upstream}}, farAway)
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := conn.Write(postgres.EncodeStartup(3<<16|2, []string{"user", "alice"})); err != nil {
		t.Fatal(err)
	}
	fe := pgproto3.NewFrontend(conn, conn)
	npv, ok := receive(t, fe).(*pgproto3.NegotiateProtocolVersion)
	if !ok || npv.NewestMinorProtocol != 0 {
		t.Fatalf("first message %#v, want NegotiateProtocolVersion(0)", npv)
	}
	if _, ok := receive(t, fe).(*pgproto3.AuthenticationOk); !ok {
		t.Fatal("no AuthenticationOk")
	}
	kd, ok := receive(t, fe).(*pgproto3.BackendKeyData)
	// The server's process ID (pg_backend_pid() agrees with it), a
	// proxy-issued secret.
	if !ok || kd.ProcessID != 42 || len(kd.SecretKey) != 4 || bytes.Equal(kd.SecretKey, []byte{1, 2, 3, 4}) {
		t.Fatalf("BackendKeyData %#v: want the server's process ID with a proxy-issued 4-byte secret", kd)
	}
	if _, ok := receive(t, fe).(*pgproto3.ReadyForQuery); !ok {
		t.Fatal("no ReadyForQuery")
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestNewHandlerValidates(t *testing.T) {
	up := proxy.UpstreamTLS{Mode: proxy.SSLDisable}
	for _, tc := range []struct {
		name string
		opts postgres.Options
	}{
		{"no upstream", postgres.Options{ListenerOptions: proxy.ListenerOptions{UpstreamTLS: up}}},
		{"bad upstream", postgres.Options{ListenerOptions: proxy.ListenerOptions{Upstream: "nohost", UpstreamTLS: up}}},
		{"require without TLS", postgres.Options{ListenerOptions: proxy.ListenerOptions{Upstream: "h:1", UpstreamTLS: up, RequireTLS: true}}},
		{"no sslmode", postgres.Options{ListenerOptions: proxy.ListenerOptions{Upstream: "h:1"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := postgres.NewHandler(tc.opts); err == nil {
				t.Fatal("accepted")
			}
		})
	}
}

// TestCancelKeyReleased: a key issued during a startup that then fails is
// not left in the cancel map.
func TestCancelKeyReleased(t *testing.T) {
	upstream, done := fakeServer(t, func(be *pgproto3.Backend) error {
		be.Send(&pgproto3.AuthenticationOk{})
		be.Send(&pgproto3.BackendKeyData{ProcessID: 7, SecretKey: []byte{1, 2, 3, 4}})
		be.Send(&pgproto3.ErrorResponse{Severity: "FATAL", Code: "53300", Message: "too many connections"})
		return be.Flush()
	})
	addr, h := startProxyHandler(t, postgres.Options{ListenerOptions: proxy.ListenerOptions{Upstream: upstream}}, farAway)
	fe := login(t, addr, nil)
	for {
		if e, ok := receive(t, fe).(*pgproto3.ErrorResponse); ok {
			if e.Code != "53300" {
				t.Fatalf("error %s, want the server's 53300", e.Code)
			}
			break
		}
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for postgres.CancelKeyCount(h) != 0 {
		if time.Now().After(deadline) {
			t.Fatal("cancel key still registered after the session ended")
		}
		time.Sleep(time.Millisecond)
	}
}
