package integration

import (
	"testing"

	"github.com/go-mysql-org/go-mysql/client"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/dbproxy/dbproxy/internal/testenv"
)

// TestMySQLAbruptCloseEndsSession: a client that closes its socket without
// COM_QUIT right after a command that has no response (COM_STMT_CLOSE) —
// or after anything else — leaves no session behind: the proxy ends its
// server connection too. (The command and the FIN reach the proxy in one
// burst; a read loop that parked after the short read never saw the FIN.)
func TestMySQLAbruptCloseEndsSession(t *testing.T) {
	db := testenv.StartMariaDB(t)
	p := startMyProxy(t, db, myProxyOpts{})
	admin := adminDB(t, db)
	for _, c := range []struct {
		name string
		run  func(*client.Conn) error
	}{
		{"nothing", func(*client.Conn) error { return nil }},
		{"query", func(c *client.Conn) error { _, err := c.Execute("SELECT 1"); return err }},
		{"prepare", func(c *client.Conn) error { _, err := c.Prepare("SELECT ?"); return err }},
		{"prepare execute", func(c *client.Conn) error {
			st, err := c.Prepare("SELECT ?")
			if err != nil {
				return err
			}
			_, err = st.Execute(1)
			return err
		}},
		{"prepare close", func(c *client.Conn) error {
			st, err := c.Prepare("SELECT ?")
			if err != nil {
				return err
			}
			return st.Close() // COM_STMT_CLOSE: no response
		}},
		{"execute with args", func(c *client.Conn) error { _, err := c.Execute("SELECT ?", 1); return err }},
	} {
		t.Run(c.name, func(t *testing.T) {
			before := threadsConnected(t, admin)
			for i := range 10 {
				conn, err := client.Connect(p.Addr, db.User, db.Password, db.Database)
				if err != nil {
					t.Fatal(err)
				}
				if err := c.run(conn); err != nil {
					t.Fatalf("round %d: %v", i, err)
				}
				_ = conn.Conn.Conn.Close() // the socket, no COM_QUIT
			}
			waitFor(t, "the proxy's server connections to end", func() bool {
				return threadsConnected(t, admin) <= before
			})
		})
	}
}

// TestPGAbruptCloseEndsSession is the PostgreSQL counterpart: a Parse and
// a Close sent without Sync (nothing is answered yet) and the socket
// closed at once.
func TestPGAbruptCloseEndsSession(t *testing.T) {
	pg := testenv.StartPostgres(t)
	p := startPGProxy(t, pg, proxyOpts{})
	admin := connect(t, pg.Superuser().DSN())
	for i := range 10 {
		c := connect(t, p.DSN("disable")+"&application_name=abrupt-close")
		fe := c.PgConn().Frontend()
		fe.Send(&pgproto3.Parse{Name: "s", Query: "select 1"})
		fe.Send(&pgproto3.Close{ObjectType: 'S', Name: "s"})
		if err := fe.Flush(); err != nil {
			t.Fatalf("round %d: %v", i, err)
		}
		_ = c.PgConn().Conn().Close()
	}
	waitFor(t, "the upstream sessions to end", func() bool {
		var n int
		err := admin.QueryRow(testCtx(t), `select count(*) from pg_stat_activity where application_name = 'abrupt-close'`).Scan(&n)
		return err == nil && n == 0
	})
}
