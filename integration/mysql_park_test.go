package integration

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/dbproxy/dbproxy/internal/testenv"
)

// TestMySQLParkedSession: idle MySQL sessions park both sockets; queries
// after an idle spell, inside a transaction spanning parks, work; a
// graceful shutdown ends parked sessions (ERR 1053 to an idle one) and
// returns.
func TestMySQLParkedSession(t *testing.T) {
	db := testenv.StartMariaDB(t)
	p := startMyProxy(t, db, myProxyOpts{})
	ctx := testCtx(t)
	parked := func(n int) {
		t.Helper()
		waitFor(t, fmt.Sprintf("%d parked sockets", n), func() bool { return p.Srv.Parked() == n })
	}
	c := openConn(t, p.config(t))
	var v int
	if err := c.QueryRowContext(ctx, `SELECT 1`).Scan(&v); err != nil {
		t.Fatal(err)
	}
	parked(2)
	time.Sleep(time.Second)
	if err := c.QueryRowContext(ctx, `SELECT 42`).Scan(&v); err != nil || v != 42 {
		t.Fatalf("query after an idle spell: %d, %v", v, err)
	}
	if _, err := c.ExecContext(ctx, `BEGIN`); err != nil {
		t.Fatal(err)
	}
	parked(2) // idle inside a transaction parks too
	if err := c.QueryRowContext(ctx, `SELECT ? + 1`, 1).Scan(&v); err != nil || v != 2 {
		t.Fatalf("prepared query in a transaction after parking: %d, %v", v, err)
	}
	if _, err := c.ExecContext(ctx, `COMMIT`); err != nil {
		t.Fatal(err)
	}

	idle := rawConnect(t, p.Addr, db.User, db.Password, db.Database, 0)
	parked(4)
	sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := p.Srv.Shutdown(sctx); err != nil {
		t.Fatalf("Shutdown with parked sessions: %v", err)
	}
	idle.c.ResetSequence() // an unsolicited packet has sequence id 0
	pkt, err := idle.tryRead()
	if err != nil || len(pkt) == 0 || pkt[0] != 0xff || errCode(pkt) != 1053 {
		t.Fatalf("parked session during a drain got %x %v, want ERR 1053", pkt, err)
	}
	if p.Srv.NumConns() != 0 || p.Srv.Parked() != 0 {
		t.Fatalf("after Shutdown: %d connections, %d parked", p.Srv.NumConns(), p.Srv.Parked())
	}
}
