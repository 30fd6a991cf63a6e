package mysql_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/go-mysql-org/go-mysql/client"
	gomysql "github.com/go-mysql-org/go-mysql/mysql"
	driver "github.com/go-sql-driver/mysql"

	"github.com/dbproxy/dbproxy/internal/testenv"
	"github.com/dbproxy/dbproxy/internal/testlog"
	"github.com/dbproxy/dbproxy/proxy"
	"github.com/dbproxy/dbproxy/proxy/mysql"
)

type recordingConn struct {
	net.Conn
	r *testlog.Buffer
}

func (c recordingConn) Write(p []byte) (int, error) {
	_, _ = c.r.Write(p)
	return c.Conn.Write(p)
}

// TestClearPasswordLegs: wherever the password would travel in clear
// through the proxy (mysql_clear_password; caching_sha2_password full
// authentication of a TLS client, and of a plaintext client bridged to a
// TLS upstream), each leg must be TLS or loopback and the upstream TLS
// verified (verify-ca/verify-full). Otherwise the login is refused with
// ERR 1045 / 28000 naming the setting, the refusal is logged, and the
// password crosses neither leg. A plaintext client's RSA-encrypted answer
// relayed between plaintext legs is not a password in clear and stays
// allowed. Non-loopback legs are real: the proxy listens on, and reaches
// the server through, an address of this machine that is not loopback.
func TestClearPasswordLegs(t *testing.T) {
	const user, password = "alice", "s3cret-clear-pw"
	ip := testenv.NonLoopbackIP(t)
	type upstream struct {
		name string
		fwd  bool
		mode proxy.SSLMode
		ok   bool // safe for a password in clear
	}
	upstreams := []upstream{
		{"loopback/disable", false, proxy.SSLDisable, true},
		{"network/disable", true, proxy.SSLDisable, false},
		{"network/require", true, proxy.SSLRequire, false},
		{"network/verify-full", true, proxy.SSLVerifyFull, true},
	}
	clients := []struct {
		name, host string
		tls, ok    bool
	}{
		{"loopback/plaintext", "127.0.0.1", false, true},
		{"network/plaintext", ip.String(), false, false},
		{"network/tls", ip.String(), true, true},
	}
	for _, plugin := range []string{gomysql.AUTH_CLEAR_PASSWORD, gomysql.AUTH_CACHING_SHA2_PASSWORD} {
		for _, up := range upstreams {
			for _, cl := range clients {
				var want bool
				switch {
				case plugin == gomysql.AUTH_CLEAR_PASSWORD:
					want = up.ok && cl.ok
				case cl.tls || up.mode != proxy.SSLDisable:
					want = up.ok // clear from the client, or bridged to TLS
				default:
					want = true // RSA-encrypted end to end
				}
				t.Run(fmt.Sprintf("%s/upstream=%s/client=%s", plugin, up.name, cl.name), func(t *testing.T) {
					fake := startFakeServerPlugin(t, user, password, plugin)
					opts := mysql.Options{ListenerOptions: proxy.ListenerOptions{Upstream: fake.addr, UpstreamTLS: proxy.UpstreamTLS{Mode: up.mode, ServerName: "127.0.0.1"}}}
					var fwd *testenv.Forwarder
					if up.fwd {
						fwd = testenv.Forward(t, ip, fake.addr)
						opts.Upstream = fwd.Addr
					}
					if up.mode == proxy.SSLVerifyFull {
						pool, err := proxy.LoadCertPool(fake.caFile)
						if err != nil {
							t.Fatal(err)
						}
						opts.UpstreamTLS.RootCAs = pool
					}
					ca, cert, key := testenv.GenerateCert(t, t.TempDir(), "127.0.0.1")
					srvTLS, err := proxy.ServerTLSConfig(cert, key, "")
					if err != nil {
						t.Fatal(err)
					}
					opts.TLS = srvTLS
					addr, logs := startProxyOn(t, cl.host, opts)

					cfg := driver.NewConfig()
					cfg.User, cfg.Passwd, cfg.Net, cfg.Addr = user, password, "tcp", addr
					cfg.Timeout = 10 * time.Second
					cfg.AllowCleartextPasswords = true
					if cl.tls {
						cfg.TLSConfig = registerCA(t, ca)
					}
					var sent testlog.Buffer
					cfg.DialFunc = func(ctx context.Context, network, addr string) (net.Conn, error) {
						var d net.Dialer
						c, err := d.DialContext(ctx, network, addr)
						if err != nil {
							return nil, err
						}
						return recordingConn{Conn: c, r: &sent}, nil
					}
					_, err = selectOne(t, cfg)
					if want {
						if err != nil {
							t.Fatalf("login refused: %v", err)
						}
						return
					}
					if err == nil {
						t.Fatal("login succeeded; want ERR 1045")
					}
					hint := "set upstream_tls.mode: verify-full"
					if !cl.ok && plugin == gomysql.AUTH_CLEAR_PASSWORD {
						hint = "connect with TLS"
					}
					// go-sql-driver does not decode an ERR packet in answer
					// to its public key request (it reports "unexpected
					// resp"); everywhere else it gets the proxy's ERR.
					if cl.tls || plugin == gomysql.AUTH_CLEAR_PASSWORD {
						var me *driver.MySQLError
						if !errors.As(err, &me) || me.Number != 1045 || string(me.SQLState[:]) != "28000" {
							t.Fatalf("login: %v; want ERR 1045 (28000)", err)
						}
						if !strings.Contains(me.Message, hint) {
							t.Fatalf("message %q does not say %q", me.Message, hint)
						}
					}
					if l := logs.String(); !strings.Contains(l, "cleartext password refused") || !strings.Contains(l, hint) {
						t.Fatalf("no log line for the refusal:\n%s", l)
					}
					if sent.Contains(password) {
						t.Fatal("the client sent its password in clear to the proxy")
					}
					if fwd != nil && bytes.Contains(fwd.Sent(), []byte(password)) {
						t.Fatal("the password crossed the upstream leg")
					}
				})
			}
		}
	}
}

// TestChangeUserClearPassword: COM_CHANGE_USER, otherwise relayed as is,
// follows the same rule: a switch to mysql_clear_password reaches the
// client only when both legs are safe; otherwise the client gets ERR 1045
// naming the setting in its place, the session ends, and the server never
// sees a password.
func TestChangeUserClearPassword(t *testing.T) {
	const user, password = "bob", "s3cret-change-pw"
	ip := testenv.NonLoopbackIP(t)
	for _, tc := range []struct {
		name string
		fwd  bool
		ok   bool
	}{
		{"upstream=loopback", false, true},
		{"upstream=network/disable", true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			upstream, got := startChangeUserServer(t, user, password)
			var fwd *testenv.Forwarder
			if tc.fwd {
				fwd = testenv.Forward(t, ip, upstream)
				upstream = fwd.Addr
			}
			addr, logs := startProxy(t, mysql.Options{ListenerOptions: proxy.ListenerOptions{Upstream: upstream, UpstreamTLS: proxy.UpstreamTLS{Mode: proxy.SSLDisable}}})
			c, err := client.Connect(addr, user, password, "")
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(20 * time.Second))
			cu := append(make([]byte, 4), gomysql.COM_CHANGE_USER)
			cu = append(cu, user+"\x00"...)
			cu = append(cu, 0) // empty auth response
			cu = append(cu, 0) // no database
			cu = append(cu, 45, 0)
			cu = append(cu, gomysql.AUTH_NATIVE_PASSWORD+"\x00"...)
			c.ResetSequence()
			if err := c.WritePacket(cu); err != nil {
				t.Fatal(err)
			}
			p, err := c.ReadPacket()
			if !tc.ok {
				if err != nil || len(p) < 9 || p[0] != 0xff || binary.LittleEndian.Uint16(p[1:]) != 1045 ||
					string(p[3:9]) != "#28000" || !strings.Contains(string(p[9:]), "set upstream_tls.mode: verify-full") {
					t.Fatalf("got %q %v; want ERR 1045 (28000) naming upstream_tls.mode", p, err)
				}
				if _, err := c.ReadPacket(); err == nil {
					t.Fatal("session still open after the refusal")
				}
				if !strings.Contains(logs.String(), "COM_CHANGE_USER refused") {
					t.Fatalf("no log line for the refusal:\n%s", logs.String())
				}
				select {
				case ans := <-got:
					t.Fatalf("the server got an answer %q", ans)
				default:
				}
				if bytes.Contains(fwd.Sent(), []byte(password)) {
					t.Fatal("the password crossed the upstream leg")
				}
				return
			}
			if err != nil || len(p) == 0 || p[0] != 0xfe {
				t.Fatalf("got %x %v; want the AuthSwitchRequest", p, err)
			}
			if err := c.WritePacket(append(make([]byte, 4), password+"\x00"...)); err != nil {
				t.Fatal(err)
			}
			if p, err := c.ReadPacket(); err != nil || p[0] != 0x00 {
				t.Fatalf("got %x %v; want OK", p, err)
			}
			if ans := <-got; string(ans) != password+"\x00" {
				t.Fatalf("server got %q", ans)
			}
		})
	}
}
