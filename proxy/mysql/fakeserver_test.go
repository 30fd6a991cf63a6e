package mysql_test

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"net"
	"testing"

	gomysql "github.com/go-mysql-org/go-mysql/mysql"
	"github.com/go-mysql-org/go-mysql/server"

	"github.com/dbproxy/dbproxy/internal/testenv"
)

// Fake upstream servers built on go-mysql's server package.

// fakeServer is a go-mysql server on 127.0.0.1 with one user.
type fakeServer struct {
	addr   string
	caFile string
}

type queryHandler struct{ server.EmptyHandler }

func (queryHandler) HandleQuery(q string) (*gomysql.Result, error) {
	rs, err := gomysql.BuildSimpleTextResultset([]string{"v"}, [][]any{{q}})
	if err != nil {
		return nil, err
	}
	return gomysql.NewResult(rs), nil
}

func startFakeServer(t *testing.T, user, password string) *fakeServer {
	t.Helper()
	return startFakeServerPlugin(t, user, password, gomysql.AUTH_CACHING_SHA2_PASSWORD)
}

// clearPasswordProvider adds mysql_clear_password to go-mysql's providers.
type clearPasswordProvider struct {
	server.DefaultAuthenticationProvider
	password string
}

func (p *clearPasswordProvider) Authenticate(c *server.Conn, plugin string, data []byte) error {
	if plugin != gomysql.AUTH_CLEAR_PASSWORD {
		return p.DefaultAuthenticationProvider.Authenticate(c, plugin, data)
	}
	if string(bytes.TrimSuffix(data, []byte{0})) != p.password {
		return server.ErrAccessDenied
	}
	return nil
}

// startFakeServerPlugin starts a fake server whose user authenticates with
// plugin (the handshake offers caching_sha2_password; another plugin is
// reached with an AuthSwitchRequest).
func startFakeServerPlugin(t *testing.T, user, password, plugin string) *fakeServer {
	t.Helper()
	dir := t.TempDir()
	caFile, certFile, keyFile := testenv.GenerateCert(t, dir, "127.0.0.1")
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	srv := server.NewServerWithAuth("8.0.36-fake", gomysql.DEFAULT_COLLATION_ID, gomysql.AUTH_CACHING_SHA2_PASSWORD, rsaKey,
		&tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12},
		&clearPasswordProvider{password: password})
	auth := server.NewInMemoryAuthenticationHandler(gomysql.AUTH_CACHING_SHA2_PASSWORD)
	if err := auth.AddUser(user, password, plugin); err != nil {
		t.Fatal(err)
	}
	addr := serveFake(t, func(nc net.Conn) (*server.Conn, error) {
		return srv.NewCustomizedConn(nc, auth, queryHandler{})
	})
	return &fakeServer{addr: addr, caFile: caFile}
}

// serveFake listens on 127.0.0.1 until the test ends and serves every
// connection accepted: open makes it a go-mysql server connection (after
// the handshake), whose commands are then handled until it closes. It
// returns the address.
func serveFake(t *testing.T, open func(nc net.Conn) (*server.Conn, error)) string {
	t.Helper()
	return testenv.ServeTCP(t, func(nc net.Conn) {
		c, err := open(nc)
		if err != nil {
			return
		}
		for !c.Closed() {
			if err := c.HandleCommand(); err != nil {
				return
			}
		}
	})
}

// changeUserHandler answers COM_CHANGE_USER with an AuthSwitchRequest to
// mysql_clear_password and records what the client answers.
type changeUserHandler struct {
	queryHandler
	c   *server.Conn
	got chan []byte
}

func (h *changeUserHandler) HandleOtherCommand(cmd byte, data []byte) error {
	if cmd != gomysql.COM_CHANGE_USER {
		return h.queryHandler.HandleOtherCommand(cmd, data)
	}
	req := append(make([]byte, 4), 0xfe)
	req = append(req, gomysql.AUTH_CLEAR_PASSWORD+"\x00"...)
	if err := h.c.WritePacket(req); err != nil {
		return err
	}
	ans, err := h.c.ReadPacket()
	if err != nil {
		return err
	}
	h.got <- bytes.Clone(ans)
	return nil // OK
}

// startChangeUserServer is a go-mysql server whose user logs in with
// mysql_native_password and whose COM_CHANGE_USER asks for the password in
// clear; got receives the client's answers.
func startChangeUserServer(t *testing.T, user, password string) (addr string, got chan []byte) {
	t.Helper()
	srv := server.NewServer("8.0.36-fake", gomysql.DEFAULT_COLLATION_ID, gomysql.AUTH_NATIVE_PASSWORD, nil, nil)
	auth := server.NewInMemoryAuthenticationHandler(gomysql.AUTH_NATIVE_PASSWORD)
	if err := auth.AddUser(user, password); err != nil {
		t.Fatal(err)
	}
	got = make(chan []byte, 4)
	addr = serveFake(t, func(nc net.Conn) (*server.Conn, error) {
		h := &changeUserHandler{got: got}
		c, err := srv.NewCustomizedConn(nc, auth, h)
		h.c = c
		return c, err
	})
	return addr, got
}
