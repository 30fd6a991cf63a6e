package integration

import (
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/dbproxy/dbproxy/internal/testenv"
)

// TestPGLoopedSlowReader: pass-through sessions are relayed by the
// server's event loops (no goroutine); a client that stops reading a 30 MB
// result holds up only its own session (the loop keeps what the socket
// does not take and stops reading the server), other sessions go on
// meanwhile, and the slow client then gets its whole result, intact. The
// result streams off the loop (streamAway) until the client's socket is
// full, and on the loop from then on.
func TestPGLoopedSlowReader(t *testing.T) {
	pg := testenv.StartPostgres(t, testenv.PGOptions{})
	p := startPGProxy(t, pg, proxyOpts{})
	ctx := testCtx(t)

	slow := testenv.ConnectPG(t, p.DSN("disable"))
	if err := slow.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the session on an event loop", func() bool { return p.Srv.Looped() == 1 })

	// 30,000 rows of 1,000 bytes, not read for now.
	mrr := slow.PgConn().Exec(ctx, `select i, repeat(chr(65 + i % 26), 1000) from generate_series(1, 30000) i`)

	otherSessions(t, func(g int) error {
		c, err := pgx.Connect(ctx, p.DSN("disable"))
		if err != nil {
			return err
		}
		defer c.Close(ctx)
		return queryNumbers(g, func(n int) (v int, err error) {
			return v, c.QueryRow(ctx, `select $1::int`, n).Scan(&v)
		})
	})

	results, err := mrr.ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if len(results) != 1 || len(results[0].Rows) != 30000 {
		t.Fatalf("got %d results", len(results))
	}
	for i, row := range results[0].Rows {
		want := strings.Repeat(string(rune(65+(i+1)%26)), 1000)
		if string(row[0]) != fmt.Sprint(i+1) || string(row[1]) != want {
			t.Fatalf("row %d: %q, %.20q...", i, row[0], row[1])
		}
	}
	if p.Srv.RelayStreams() == 0 {
		t.Fatal("the large result was not relayed off the loop")
	}
	var v int
	if err := slow.QueryRow(ctx, `select 7`).Scan(&v); err != nil || v != 7 {
		t.Fatalf("after the large result: %d, %v", v, err)
	}
	slow.Close(ctx)
	waitFor(t, "no session left on the loops", func() bool { return p.Srv.Looped() == 0 })
}

// TestMySQLLoopedSlowReader is TestPGLoopedSlowReader for MySQL.
func TestMySQLLoopedSlowReader(t *testing.T) {
	db := testenv.StartMariaDB(t)
	p := startMyProxy(t, db, myProxyOpts{})
	ctx := testCtx(t)

	slowDB := openDB(t, p.config(t))
	slow, err := slowDB.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the session on an event loop", func() bool { return p.Srv.Looped() == 1 })
	rows, err := slow.QueryContext(ctx, `select seq, repeat(char(65 + seq % 26), 1000) from seq_1_to_30000`)
	if err != nil {
		t.Fatal(err)
	}

	others := openDB(t, p.config(t))
	others.SetMaxOpenConns(4)
	otherSessions(t, func(g int) error {
		return queryNumbers(g, func(n int) (v int, err error) {
			return v, others.QueryRowContext(ctx, `select ?`, n).Scan(&v)
		})
	})

	n := 0
	for rows.Next() {
		var i int
		var s string
		if err := rows.Scan(&i, &s); err != nil {
			t.Fatal(err)
		}
		n++
		if i != n || s != strings.Repeat(string(rune(65+n%26)), 1000) {
			t.Fatalf("row %d: %d, %.20q...", n, i, s)
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if n != 30000 {
		t.Fatalf("%d rows", n)
	}
	if p.Srv.RelayStreams() == 0 {
		t.Fatal("the large result was not relayed off the loop")
	}
	requireSelect(t, ctx, slow, 7, "after the large result")
	_ = slow.Close()
	_ = slowDB.Close()
	_ = others.Close()
	waitFor(t, "no session left on the loops", func() bool { return p.Srv.Looped() == 0 })
}

// otherSessions runs session(0..3) at once, while a client of the test
// does not read, and fails the test with the first error.
func otherSessions(t *testing.T, session func(g int) error) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := session(g); err != nil {
				errs <- fmt.Errorf("session %d: %w", g, err)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("while a client does not read: %v", err)
	}
}

// queryNumbers has session g select 200 numbers, each of which must come
// back as sent.
func queryNumbers(g int, selectInt func(n int) (int, error)) error {
	for i := range 200 {
		n := g*1000 + i
		if v, err := selectInt(n); err != nil || v != n {
			return fmt.Errorf("query %d: %d, %v", i, v, err)
		}
	}
	return nil
}
