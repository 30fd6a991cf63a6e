package mysql_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	gomysql "github.com/go-mysql-org/go-mysql/mysql"
	driver "github.com/go-sql-driver/mysql"

	"github.com/dbproxy/dbproxy/proxy"
	"github.com/dbproxy/dbproxy/proxy/mysql"
)

// greetingRewriter is a server connection whose first packet (the
// greeting) is passed through edit.
type greetingRewriter struct {
	net.Conn
	edit    func([]byte)
	pending []byte
	done    bool
}

func (c *greetingRewriter) Read(b []byte) (int, error) {
	if !c.done {
		c.done = true
		hdr := make([]byte, 4)
		if _, err := io.ReadFull(c.Conn, hdr); err != nil {
			return 0, err
		}
		payload := make([]byte, int(hdr[0])|int(hdr[1])<<8|int(hdr[2])<<16)
		if _, err := io.ReadFull(c.Conn, payload); err != nil {
			return 0, err
		}
		c.edit(payload)
		c.pending = append(hdr, payload...)
	}
	if len(c.pending) > 0 {
		n := copy(b, c.pending)
		c.pending = c.pending[n:]
		return n, nil
	}
	return c.Conn.Read(b)
}

// dropConnectAttrs clears CLIENT_CONNECT_ATTRS in a greeting.
func dropConnectAttrs(p []byte) {
	capsHigh := bytes.IndexByte(p[1:], 0) + 2 + 4 + 8 + 1 + 2 + 1 + 2
	p[capsHigh] &^= byte(gomysql.CLIENT_CONNECT_ATTRS >> 16)
}

// TestTemplateMismatch: the server's greeting loses a capability the
// client chose from the proxy's greeting (built on the previous one): that
// login is refused with a retryable ERR, the template is updated, and the
// next login works. Logins through the template (caching_sha2_password,
// answered to the server's scramble after its AuthSwitchRequest) work.
func TestTemplateMismatch(t *testing.T) {
	const user, password = "alice", "s3cret-pw"
	fake := startFakeServer(t, user, password)
	var changed atomic.Bool
	var dials atomic.Int64
	addr, logs := startProxy(t, mysql.Options{
		ListenerOptions: proxy.ListenerOptions{
			Upstream:    fake.addr,
			UpstreamTLS: proxy.UpstreamTLS{Mode: proxy.SSLDisable},
			Dial: func(ctx context.Context, network, a string) (net.Conn, error) {
				dials.Add(1)
				var d net.Dialer
				c, err := d.DialContext(ctx, network, a)
				if err != nil || !changed.Load() {
					return c, err
				}
				return &greetingRewriter{Conn: c, edit: dropConnectAttrs}, nil
			},
		},
	})
	connect := func() error {
		cfg := driver.NewConfig()
		cfg.User, cfg.Passwd, cfg.Net, cfg.Addr = user, password, "tcp", addr
		cfg.Timeout = 10 * time.Second
		connector, err := driver.NewConnector(cfg)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		c, err := connector.Connect(ctx) // no database/sql retries
		if err != nil {
			return err
		}
		return c.Close()
	}
	for i := range 3 {
		if err := connect(); err != nil {
			t.Fatalf("login %d: %v", i, err)
		}
	}
	// "session started" is logged after the client has its OK: wait for
	// the lines rather than count them at once.
	var got int
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if got = strings.Count(logs.String(), "greeting_conn_id="); got >= 2 || time.Now().After(deadline) {
			break
		}
	}
	if got != 2 {
		t.Fatalf("%d logins through the proxy's greeting, want 2 (all but the first)", got)
	}

	changed.Store(true)
	err := connect()
	var me *driver.MySQLError
	if !errors.As(err, &me) || me.Number != 2013 || !strings.Contains(me.Message, "reconnect") {
		t.Fatalf("login across a greeting change: %v, want ERR 2013 asking to reconnect", err)
	}
	if n := strings.Count(logs.String(), "greeting template updated"); n != 1 {
		t.Fatalf("template update logged %d times", n)
	}
	for i := range 2 {
		if err := connect(); err != nil {
			t.Fatalf("login %d after the greeting changed: %v", i, err)
		}
	}
	if n := strings.Count(logs.String(), "no longer matches"); n != 1 {
		t.Fatalf("%d logins refused for a greeting change, want 1", n)
	}
	if strings.Contains(logs.String(), password) {
		t.Fatal("password in the logs")
	}
}
