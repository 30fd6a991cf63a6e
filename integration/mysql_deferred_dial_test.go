package integration

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	gomysql "github.com/go-mysql-org/go-mysql/mysql"
	"github.com/go-mysql-org/go-mysql/packet"
	driver "github.com/go-sql-driver/mysql"

	"github.com/dbproxy/dbproxy/internal/testenv"
	"github.com/dbproxy/dbproxy/proxy"
	"github.com/dbproxy/dbproxy/proxy/mysql"
	"github.com/dbproxy/dbproxy/rules"
	"github.com/dbproxy/dbproxy/value"
)

// proxyIDFirst is the first connection id of the proxy's own greetings.
const proxyIDFirst = 0xC000_0000

// deferredProxy is a MySQL listener in front of db that counts its
// upstream dials.
type deferredProxy struct {
	servedProxy
	dials    atomic.Int64
	failDial atomic.Bool // the upstream is unreachable
}

// startDeferredProxy starts a proxy in front of db with handshake timeout
// hsTimeout (and client TLS if clientTLS).
func startDeferredProxy(t *testing.T, db *testenv.MariaDB, hsTimeout time.Duration, clientTLS bool) *deferredProxy {
	t.Helper()
	sp, logger := newServedProxy(slog.LevelDebug)
	p := &deferredProxy{servedProxy: sp}
	opts := mysql.Options{
		ListenerOptions: proxy.ListenerOptions{
			Name:             "mysql-deferred",
			Upstream:         db.Addr(),
			UpstreamTLS:      proxy.UpstreamTLS{Mode: proxy.SSLDisable},
			Logger:           logger,
			HandshakeTimeout: hsTimeout,
			Dial: func(ctx context.Context, network, addr string) (net.Conn, error) {
				p.dials.Add(1)
				if p.failDial.Load() {
					return nil, errors.New("upstream down (test)")
				}
				var d net.Dialer
				return d.DialContext(ctx, network, addr)
			},
		},
	}
	if clientTLS {
		opts.TLS = p.offerTLS(t)
	}
	h, err := mysql.NewHandler(opts)
	if err != nil {
		t.Fatal(err)
	}
	p.serve(t, h, logger)
	return p
}

// prime logs in once, so that the proxy has learnt the server's greeting.
func (p *deferredProxy) prime(t *testing.T, db *testenv.MariaDB) {
	t.Helper()
	c := openConn(t, myConfigAt(t, p.Addr, db.User, db.Password, db.Database))
	if err := c.PingContext(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	_ = c.Close()
}

// readGreeting connects to addr and reads the initial handshake: its
// connection id, or the error code of an ERR packet in its place.
func readGreeting(t *testing.T, addr string) (net.Conn, uint32, int) {
	t.Helper()
	nc, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	_ = nc.SetReadDeadline(time.Now().Add(30 * time.Second))
	c := packet.NewConn(nc)
	p, err := c.ReadPacket()
	if err != nil {
		_ = nc.Close()
		t.Fatalf("read greeting: %v", err)
	}
	_ = nc.SetReadDeadline(time.Time{})
	if p[0] == 0xff {
		return nc, 0, errCode(p)
	}
	v := bytes.IndexByte(p[1:], 0) + 2
	return nc, binary.LittleEndian.Uint32(p[v:]), 0
}

func threadsConnected(t *testing.T, admin *sql.DB) int {
	t.Helper()
	var name string
	var n int
	if err := admin.QueryRowContext(testCtx(t), `SHOW GLOBAL STATUS LIKE 'Threads_connected'`).Scan(&name, &n); err != nil {
		t.Fatal(err)
	}
	return n
}

// unauthenticated counts the server's connections that have not logged in.
func unauthenticated(t *testing.T, admin *sql.DB) int {
	t.Helper()
	list, err := processList(testCtx(t), admin)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, row := range list {
		if row["user"] == "unauthenticated user" {
			n++
		}
	}
	return n
}

// TestMySQLDeferredDial: once the proxy knows the server's greeting, a TCP
// connect that stalls after reading the greeting costs the database
// nothing; clients still log in meanwhile.
func TestMySQLDeferredDial(t *testing.T) {
	db := testenv.StartMariaDB(t)
	admin := adminDB(t, db)
	p := startDeferredProxy(t, db, 2*time.Minute, false)
	p.prime(t, db)
	if got := p.dials.Load(); got != 1 {
		t.Fatalf("%d upstream dials for one login", got)
	}
	before := threadsConnected(t, admin)

	const stalled = 300
	greeted, refused := 0, 0
	for range stalled {
		nc, id, code := readGreeting(t, p.Addr)
		t.Cleanup(func() { _ = nc.Close() })
		switch {
		case code == 1040: // a listener limit on concurrent handshakes
			refused++
		case code != 0:
			t.Fatalf("connect answered ERR %d", code)
		case id < proxyIDFirst:
			t.Fatalf("greeting with connection id %d, want the proxy's own (>= %d)", id, uint32(proxyIDFirst))
		default:
			greeted++
		}
	}
	if greeted < 100 {
		t.Fatalf("%d of %d connects greeted (%d refused)", greeted, stalled, refused)
	}
	t.Logf("%d stalled connects greeted, %d refused by a listener limit", greeted, refused)
	if got := p.dials.Load(); got != 1 {
		t.Fatalf("%d upstream dials with %d stalled connects, want none beyond the first login", got-1, greeted)
	}
	if n := unauthenticated(t, admin); n != 0 {
		t.Fatalf("the server has %d unauthenticated connections", n)
	}
	if now := threadsConnected(t, admin); now-before > 5 {
		t.Fatalf("Threads_connected went from %d to %d with %d stalled connects", before, now, greeted)
	}
	// A client logs in and queries meanwhile.
	c := openConn(t, myConfigAt(t, p.Addr, db.User, db.Password, db.Database))
	var v int
	if err := c.QueryRowContext(testCtx(t), `SELECT 40 + 2`).Scan(&v); err != nil || v != 42 {
		t.Fatalf("query with stalled connects around: %v, %v", v, err)
	}
	if got := p.dials.Load(); got != 2 {
		t.Fatalf("%d upstream dials after a second login, want 2", got)
	}
}

// TestMySQLTemplateLogins logs in through the proxy's own greeting (the
// client answers the proxy's scramble, then the real server's in an
// AuthSwitchRequest): native passwords over plaintext and TLS, ed25519,
// an empty password, a wrong password, COM_CHANGE_USER, a client without
// CLIENT_PLUGIN_AUTH, the mariadb command-line client.
func TestMySQLTemplateLogins(t *testing.T) {
	db := testenv.StartMariaDB(t)
	admin := adminDB(t, db)
	ctx := testCtx(t)
	p := startDeferredProxy(t, db, 2*time.Minute, true)
	p.prime(t, db)
	tlsName := registerTLS(t, p.CAFile)
	viaTemplate := func(t *testing.T) {
		t.Helper()
		if !strings.Contains(p.Logs.String(), "greeting_conn_id=") {
			t.Fatal("no session went through the proxy's own greeting")
		}
	}

	query := func(t *testing.T, c *sql.Conn, user string) {
		t.Helper()
		var current string
		if err := c.QueryRowContext(ctx, `SELECT CURRENT_USER()`).Scan(&current); err != nil || !strings.HasPrefix(current, user+"@") {
			t.Fatalf("logged in as %q (%v), want %s", current, err, user)
		}
	}
	t.Run("native", func(t *testing.T) {
		query(t, openConn(t, myConfigAt(t, p.Addr, db.User, db.Password, db.Database)), db.User)
		viaTemplate(t)
	})
	t.Run("native-tls", func(t *testing.T) {
		c := openConn(t, myConfigAt(t, p.Addr, db.User, db.Password, db.Database, "tls="+tlsName))
		query(t, c, db.User)
		if !strings.Contains(p.Logs.String(), "client_tls=true") {
			t.Fatal("no TLS session in the proxy's log")
		}
	})
	t.Run("ed25519", func(t *testing.T) {
		installEd25519(t, admin)
		user, pass := db.User+"_ed", "ed-"+db.Password
		createUser(t, admin, db, user, "IDENTIFIED VIA ed25519 USING PASSWORD('"+pass+"')")
		for _, params := range [][]string{nil, {"tls=" + tlsName}} {
			query(t, openEd25519Conn(t, myConfigAt(t, p.Addr, user, pass, db.Database, params...)), user)
		}
	})
	t.Run("empty-password", func(t *testing.T) {
		user := db.User + "_np"
		createUser(t, admin, db, user, "IDENTIFIED BY ''")
		for _, params := range [][]string{nil, {"tls=" + tlsName}} {
			query(t, openConn(t, myConfigAt(t, p.Addr, user, "", db.Database, params...)), user)
		}
	})
	t.Run("wrong-password", func(t *testing.T) {
		directErr := openDB(t, myConfigAt(t, db.Addr(), db.User, "wrong", db.Database)).PingContext(ctx)
		var want *driver.MySQLError
		if !errors.As(directErr, &want) || want.Number != 1045 {
			t.Fatalf("direct login with a wrong password: %v", directErr)
		}
		for _, params := range [][]string{nil, {"tls=" + tlsName}} {
			err := openDB(t, myConfigAt(t, p.Addr, db.User, "wrong", db.Database, params...)).PingContext(ctx)
			var got *driver.MySQLError
			if !errors.As(err, &got) || got.Number != want.Number || got.SQLState != want.SQLState || got.Message != want.Message {
				t.Fatalf("through the proxy (%v): %v, want %v", params, err, directErr)
			}
		}
	})
	t.Run("change-user", func(t *testing.T) {
		r := rawConnect(t, p.Addr, db.User, db.Password, db.Database, 0)
		if r.connID < proxyIDFirst {
			t.Fatalf("greeting id %d: not the proxy's greeting", r.connID)
		}
		other := db.User + "_cu"
		createUser(t, admin, db, other, "IDENTIFIED BY 'cu-pass'")
		// The client answers with the scramble it last saw (the real
		// server's, from the proxy's AuthSwitchRequest); the server may
		// ask again with a new one.
		r.changeUser(t, other, "cu-pass", db.Database)
		if got := r.query(t, `SELECT CURRENT_USER()`); len(got) != 1 || !strings.HasPrefix(got[0], other+"@") {
			t.Fatalf("after COM_CHANGE_USER: %q", got)
		}
	})
	t.Run("no-plugin-auth", func(t *testing.T) {
		// A client without CLIENT_PLUGIN_AUTH cannot be switched to the
		// server's scramble: refused with the server's own words for it.
		nc, _, code := readGreeting(t, p.Addr)
		defer nc.Close()
		if code != 0 {
			t.Fatalf("greeting ERR %d", code)
		}
		c := packet.NewConn(nc)
		c.Sequence = 1
		caps := uint32(gomysql.CLIENT_PROTOCOL_41 | gomysql.CLIENT_SECURE_CONNECTION | gomysql.CLIENT_LONG_PASSWORD | gomysql.CLIENT_CONNECT_WITH_DB)
		resp := make([]byte, 4, 128)
		resp = binary.LittleEndian.AppendUint32(resp, caps)
		resp = binary.LittleEndian.AppendUint32(resp, 1<<24)
		resp = append(resp, 45)
		resp = append(resp, make([]byte, 23)...)
		resp = append(resp, db.User...)
		resp = append(resp, 0, 20)
		resp = append(resp, bytes.Repeat([]byte{7}, 20)...)
		resp = append(resp, db.Database...)
		resp = append(resp, 0)
		if err := c.WritePacket(resp); err != nil {
			t.Fatal(err)
		}
		_ = nc.SetReadDeadline(time.Now().Add(30 * time.Second))
		pk, err := c.ReadPacket()
		if err != nil || errCode(pk) != 1251 {
			t.Fatalf("client without CLIENT_PLUGIN_AUTH answered %q, %v; want ERR 1251", pk, err)
		}
	})
	t.Run("upstream-down", func(t *testing.T) {
		// The client has answered the proxy's greeting when the dial fails:
		// it gets the error in place of the login's answer.
		p.failDial.Store(true)
		defer p.failDial.Store(false)
		for _, params := range [][]string{nil, {"tls=" + tlsName}} {
			cfg := myConfigAt(t, p.Addr, db.User, db.Password, db.Database, params...)
			connector, err := driver.NewConnector(cfg)
			if err != nil {
				t.Fatal(err)
			}
			_, err = connector.Connect(ctx)
			var me *driver.MySQLError
			if !errors.As(err, &me) || me.Number != 2003 {
				t.Fatalf("login with the upstream down (%v): %v, want ERR 2003", params, err)
			}
		}
	})
	t.Run("mariadb-cli", func(t *testing.T) {
		bin, err := exec.LookPath("mariadb")
		if err != nil {
			if bin, err = exec.LookPath("mysql"); err != nil {
				t.Fatalf("mariadb client not found: install it with `apt-get install mariadb-client` (%v)", err)
			}
		}
		for _, ssl := range []string{"--skip-ssl", "--ssl"} {
			cmd := exec.Command(bin, "--no-defaults", "-h", "127.0.0.1", "-P", strconv.Itoa(p.Port), "-u", db.User,
				"-p"+db.Password, "--batch", "--skip-column-names", "--connect-timeout=10", ssl,
				db.Database, "-e", "SELECT 40 + 2, CURRENT_USER()")
			cmd.Env = []string{"PATH=/usr/bin:/bin", "LANG=C.UTF-8", "HOME=" + t.TempDir()}
			out, err := cmd.CombinedOutput()
			if err != nil || !strings.HasPrefix(string(out), "42\t"+db.User+"@") {
				t.Fatalf("%s %s: %v\n%s", bin, ssl, err, out)
			}
		}
		viaTemplate(t)
	})
}

// createUser creates user@'%' and user@localhost with auth and grants it
// db's database; they are dropped when the test ends.
func createUser(t *testing.T, admin *sql.DB, db *testenv.MariaDB, user, auth string) {
	t.Helper()
	ctx := testCtx(t)
	for _, host := range []string{"%", "localhost"} {
		acct := fmt.Sprintf("'%s'@'%s'", user, host)
		for _, s := range []string{"CREATE USER " + acct + " " + auth, "GRANT ALL ON `" + db.Database + "`.* TO " + acct} {
			if _, err := admin.ExecContext(ctx, s); err != nil {
				t.Fatalf("%s: %v", strings.SplitN(s, " IDENTIFIED", 2)[0], err)
			}
		}
	}
	t.Cleanup(func() {
		_, _ = admin.ExecContext(context.Background(), "DROP USER IF EXISTS '"+user+"'@'%', '"+user+"'@'localhost'")
	})
}

// TestMySQLKillGreetingID: a client knows its connection by the id of the
// proxy's greeting (the mysql client's Ctrl-C runs KILL QUERY <that id>
// on a new connection): KILL QUERY <greeting id> and COM_PROCESS_KILL
// <greeting id> from another proxied connection reach that session's
// server thread, and no other.
func TestMySQLKillGreetingID(t *testing.T) {
	t.Run("plain", func(t *testing.T) {
		db := testenv.StartMariaDB(t)
		p := startDeferredProxy(t, db, 2*time.Minute, false)
		p.prime(t, db)
		testKillGreetingID(t, db, p.Addr)
	})
	t.Run("encrypting", func(t *testing.T) {
		// The encryption layer hooks COM_QUERY: the KILL it sees, and
		// forwards, is the translated one.
		e := startMyEncProxy(t, []string{"CREATE TABLE kill_t (id INT, secret VARBINARY(200))"},
			[]rules.Spec{{Table: "kill_t", Column: "secret", Key: "secret", Mode: rules.ModeRandomized, Type: value.TypeText}})
		openConn(t, e.proxy.config(t)) // teaches the listener the greeting
		testKillGreetingID(t, e.db, e.proxy.Addr)
	})
}

func testKillGreetingID(t *testing.T, db *testenv.MariaDB, addr string) {
	admin := adminDB(t, db)
	a := rawConnect(t, addr, db.User, db.Password, db.Database, 0)
	other := rawConnect(t, addr, db.User, db.Password, db.Database, 0)
	killer := rawConnect(t, addr, db.User, db.Password, db.Database, 0)
	for _, r := range []*rawConn{a, other, killer} {
		if r.connID < proxyIDFirst {
			t.Fatalf("greeting id %d: not the proxy's greeting", r.connID)
		}
	}
	var wg sync.WaitGroup
	run := func(r *rawConn, sql string) chan []byte {
		done := make(chan []byte, 1)
		r.command(t, append([]byte{gomysql.COM_QUERY}, sql...))
		wg.Add(1)
		go func() {
			defer wg.Done()
			p, err := r.tryRead()
			if err != nil {
				p = []byte(err.Error())
			}
			done <- p
		}()
		return done
	}
	aDone := run(a, `SELECT SLEEP(300) /* kill-a */`)
	otherDone := run(other, `SELECT SLEEP(300) /* keep-other */`)
	aThread := waitForProcess(t, admin, "kill-a")
	otherThread := waitForProcess(t, admin, "keep-other")
	if aThread == int64(a.connID) {
		t.Fatal("the greeting id is the server's thread id")
	}

	killer.query(t, fmt.Sprintf("KILL QUERY %d", a.connID))
	select {
	case p := <-aDone:
		// SLEEP returns 1 when interrupted (a result set), or ERR 1317.
		if got := killedResult(t, a, p); got != "interrupted" && got != "1" {
			t.Fatalf("killed query answered %q", got)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("KILL QUERY <greeting id> did not interrupt the session's query")
	}
	if got := waitForProcess(t, admin, "keep-other"); got != otherThread {
		t.Fatalf("the other session's query moved to thread %d", got)
	}
	select {
	case p := <-otherDone:
		t.Fatalf("the other session's query ended: %q", p)
	default:
	}
	if got := a.query(t, `SELECT 7`); len(got) != 1 || got[0] != "7" {
		t.Fatalf("killed session after KILL QUERY: %q", got)
	}

	// COM_PROCESS_KILL <greeting id>: the other session's connection ends.
	killer.command(t, binary.LittleEndian.AppendUint32([]byte{gomysql.COM_PROCESS_KILL}, other.connID))
	if pk := killer.read(t); pk[0] != 0x00 {
		t.Fatalf("COM_PROCESS_KILL answered %q", pk)
	}
	select {
	case p := <-otherDone:
		if p[0] != 0xff && !isClosed(errors.New(string(p))) {
			t.Fatalf("killed connection's query answered %q", p)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("COM_PROCESS_KILL <greeting id> did not end the session")
	}
	wg.Wait()
	// An id the proxy did not give out reaches the server unchanged.
	killer.command(t, append([]byte{gomysql.COM_QUERY}, fmt.Sprintf("KILL QUERY %d", uint32(proxyIDFirst)+123456)...))
	if pk := killer.read(t); errCode(pk) != 1094 {
		t.Fatalf("KILL of an unknown proxy id answered %q, want ERR 1094 (unknown thread)", pk)
	}
}

// killedResult reads the rest of the response to SELECT SLEEP(n) after its
// first packet: "1" (SLEEP interrupted returns 1), "interrupted" (ERR 1317,
// before or after the column definitions) or what else it got.
func killedResult(t *testing.T, r *rawConn, first []byte) string {
	t.Helper()
	if first[0] == 0xff {
		if errCode(first) == 1317 {
			return "interrupted"
		}
		return fmt.Sprintf("ERR %q", first)
	}
	n, _, _ := gomysql.LengthEncodedInt(first)
	for range n {
		r.read(t)
	}
	if !r.deprecateEOF() {
		r.read(t) // EOF
	}
	got := ""
	for {
		p := r.read(t)
		switch {
		case p[0] == 0xff && errCode(p) == 1317:
			return "interrupted"
		case p[0] == 0xff:
			return fmt.Sprintf("ERR %q", p)
		case p[0] == 0xfe && len(p) < 0xffffff:
			return got
		}
		v, _, _, _ := gomysql.LengthEncodedString(p)
		got += string(v)
	}
}

// TestMySQLHandshakeTimeoutErr: a client that stalls in the connection
// phase gets an ERR saying so, with and without the greeting template.
func TestMySQLHandshakeTimeoutErr(t *testing.T) {
	db := testenv.StartMariaDB(t)
	for _, primed := range []bool{false, true} {
		t.Run(fmt.Sprintf("template=%v", primed), func(t *testing.T) {
			p := startDeferredProxy(t, db, time.Second, false)
			if primed {
				p.prime(t, db)
			}
			nc, id, code := readGreeting(t, p.Addr)
			defer nc.Close()
			if code != 0 || (id >= proxyIDFirst) != primed {
				t.Fatalf("greeting id %d, ERR %d", id, code)
			}
			_ = nc.SetReadDeadline(time.Now().Add(60 * time.Second))
			c := packet.NewConn(nc)
			c.Sequence = 1 // after the greeting
			pk, err := c.ReadPacket()
			if err != nil {
				t.Fatalf("stalled client: %v, want an ERR", err)
			}
			if errCode(pk) != 1043 || !strings.Contains(string(pk), "handshake_timeout") {
				t.Fatalf("stalled client got %q, want ERR 1043 naming handshake_timeout", pk)
			}
		})
	}
}
