package integration

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/dbproxy/dbproxy/internal/testenv"
	"github.com/dbproxy/dbproxy/internal/testkeys"
	"github.com/dbproxy/dbproxy/proxy/mysql/mycrypt"
	"github.com/dbproxy/dbproxy/rules"
	"github.com/dbproxy/dbproxy/value"
)

// streamRows is the size of the encrypted table the stream tests read:
// some 2 MB of result, well over the relay's buffer.
const streamRows = 20000

// streamEmail and streamNote are row i's plaintext values.
func streamEmail(i int) string { return fmt.Sprintf("user%05d@example.com", i) }
func streamNote(i int) string {
	return fmt.Sprintf("note %05d %s", i, "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx")
}

// TestPGEncLoopedStream: a session reading a large encrypted result is
// relayed off the event loop while it streams (one loop here), decrypted
// intact, while the loop's other sessions run their encrypted lookups;
// afterwards the session is back on the loop. A client that hangs up in
// the middle of such a stream ends its session, and nothing else.
func TestPGEncLoopedStream(t *testing.T) {
	ctx := testCtx(t)
	pg := testenv.StartPostgres(t)
	direct := testenv.ConnectPG(t, pg.DSN())
	if _, err := direct.Exec(ctx, `CREATE TABLE streamed (id int PRIMARY KEY, email bytea, note bytea)`); err != nil {
		t.Fatal(err)
	}
	specs := []rules.Spec{
		encSpec("streamed", "email", rules.ModeDeterministic, value.TypeText, "k_email"),
		encSpec("streamed", "note", rules.ModeRandomized, value.TypeText, "k_note"),
	}
	ic := pgEncInterceptor(t, pg, specs, testkeys.Manager(t, testkeys.ForRules(specs)...), nil)
	p := startPGProxy(t, pg, proxyOpts{Interceptor: ic, RelayLoops: 1})

	// Seeded through the proxy, in batches of bound inserts.
	seed := testenv.ConnectPG(t, p.DSN("disable"))
	for lo := 0; lo < streamRows; lo += 2000 {
		var b pgx.Batch
		for i := lo; i < lo+2000; i++ {
			b.Queue(`INSERT INTO streamed VALUES ($1, $2, $3)`, i, streamEmail(i), streamNote(i))
		}
		if err := seed.SendBatch(ctx, &b).Close(); err != nil {
			t.Fatal(err)
		}
	}
	var raw []byte
	if err := direct.QueryRow(ctx, `SELECT note FROM streamed WHERE id = 7`).Scan(&raw); err != nil || bytes.Contains(raw, []byte("note")) {
		t.Fatalf("at rest: %q, %v", raw, err)
	}

	readAll := func(c *pgx.Conn) error {
		rows, err := c.Query(ctx, `SELECT id, email, note FROM streamed ORDER BY id`)
		if err != nil {
			return err
		}
		defer rows.Close()
		return checkStreamed(rows)
	}

	// Two sessions read the whole table three times while four others
	// look rows up by the encrypted email.
	var readers [2]*pgx.Conn
	for k := range readers {
		readers[k] = testenv.ConnectPG(t, p.DSN("disable"))
	}
	streamWhileLookups(t, p.Srv.RelayStreams, func(k int) error { return readAll(readers[k]) },
		func(g int) (func(i int) (int, error), func(), error) {
			c, err := pgx.Connect(ctx, p.DSN("disable"))
			if err != nil {
				return nil, nil, err
			}
			return func(i int) (id int, err error) {
				return id, c.QueryRow(ctx, `SELECT id FROM streamed WHERE email = $1`, streamEmail(i)).Scan(&id)
			}, func() { c.Close(ctx) }, nil
		})
	// Back on the loop: the seeding session and the two readers.
	waitFor(t, "the readers back on the loop", func() bool { return p.Srv.Looped() == 3 })

	// A client that hangs up in the middle of a stream.
	quitter := testenv.ConnectPG(t, p.DSN("disable"))
	waitFor(t, "the quitter on the loop", func() bool { return p.Srv.Looped() == 4 })
	streams := p.Srv.RelayStreams()
	rows, err := quitter.Query(ctx, `SELECT id, email, note FROM streamed ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	for k := 0; k < 100 && rows.Next(); k++ {
	}
	waitFor(t, "the quitter's stream off the loop", func() bool { return p.Srv.RelayStreams() > streams })
	_ = quitter.PgConn().Conn().Close()
	rows.Close()
	waitFor(t, "the quitter's session ended", func() bool { return p.Srv.Looped() == 3 })
	if err := readAll(seed); err != nil {
		t.Fatalf("after a client hung up mid-stream: %v", err)
	}
}

// TestPGEncLoopedStreamClose: closing the server while a session's
// stream is relayed off the loop (its client reads slowly) ends that
// session too, promptly.
func TestPGEncLoopedStreamClose(t *testing.T) {
	ctx := testCtx(t)
	pg := testenv.StartPostgres(t)
	direct := testenv.ConnectPG(t, pg.DSN())
	if _, err := direct.Exec(ctx, `CREATE TABLE streamed (id int, note bytea)`); err != nil {
		t.Fatal(err)
	}
	specs := []rules.Spec{encSpec("streamed", "note", rules.ModeRandomized, value.TypeText, "k_note")}
	ic := pgEncInterceptor(t, pg, specs, testkeys.Manager(t, testkeys.ForRules(specs)...), nil)
	p := startPGProxy(t, pg, proxyOpts{Interceptor: ic, RelayLoops: 1})
	c := testenv.ConnectPG(t, p.DSN("disable"))
	var b pgx.Batch
	for i := range 5000 {
		b.Queue(`INSERT INTO streamed VALUES ($1, $2)`, i, streamNote(i))
	}
	if err := c.SendBatch(ctx, &b).Close(); err != nil {
		t.Fatal(err)
	}
	streams := p.Srv.RelayStreams()
	// The whole table ten times over, read slowly.
	rows, err := c.Query(ctx, `SELECT s.id, s.note FROM streamed s, generate_series(1, 10) g`)
	if err != nil {
		t.Fatal(err)
	}
	read := make(chan struct{})
	var closing atomic.Bool // then the client reads what it has at once
	go func() {
		defer close(read)
		defer rows.Close()
		for rows.Next() {
			if !closing.Load() {
				time.Sleep(time.Millisecond)
			}
		}
	}()
	waitFor(t, "the stream off the loop", func() bool { return p.Srv.RelayStreams() > streams })
	closed := make(chan error, 1)
	go func() { closed <- p.Srv.Close() }()
	select {
	case <-closed:
	case <-time.After(15 * time.Second):
		t.Fatal("Close waited for a stream")
	}
	waitFor(t, "the session ended", func() bool { return p.Srv.Looped() == 0 && p.Srv.NumConns() == 0 })
	closing.Store(true)
	select {
	case <-read:
	case <-time.After(15 * time.Second):
		t.Fatal("the client's result never ended after the server closed")
	}
	if rows.Err() == nil {
		t.Fatal("the result ended without an error although the server closed in its middle")
	}
}

// TestMySQLEncLoopedStream is TestPGEncLoopedStream's first part for
// MySQL: large encrypted results relayed off the loop, decrypted intact,
// while other sessions look rows up.
func TestMySQLEncLoopedStream(t *testing.T) {
	ctx := testCtx(t)
	db := testenv.StartMariaDB(t)
	direct := openDB(t, myConfigAt(t, db.Addr(), db.User, db.Password, db.Database))
	if _, err := direct.ExecContext(ctx, `CREATE TABLE streamed (id int PRIMARY KEY, email varbinary(200), note varbinary(400))`); err != nil {
		t.Fatal(err)
	}
	var specs []rules.Spec
	for _, s := range []rules.Spec{
		encSpec("streamed", "email", rules.ModeDeterministic, value.TypeText, "k_email"),
		encSpec("streamed", "note", rules.ModeRandomized, value.TypeText, "k_note"),
	} {
		s.Schema, s.Database = "", db.Database
		specs = append(specs, s)
	}
	set, err := rules.New(rules.DialectMySQL, specs)
	if err != nil {
		t.Fatal(err)
	}
	cat := sideCatalog(t)(db).(*mycrypt.Catalog)
	ic, err := mycrypt.New(mycrypt.Options{Rules: set, Keys: testkeys.Manager(t, testkeys.ForRules(specs)...),
		Catalog: cat, Zones: cat, Lex: cat, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	p := startMyProxy(t, db, myProxyOpts{Interceptor: ic, RelayLoops: 1})
	pool := openDB(t, p.config(t))
	pool.SetMaxOpenConns(8)
	for lo := 0; lo < streamRows; lo += 500 {
		q, args := `INSERT INTO streamed VALUES `, []any{}
		for i := lo; i < lo+500; i++ {
			if i > lo {
				q += ", "
			}
			q += "(?, ?, ?)"
			args = append(args, i, streamEmail(i), streamNote(i))
		}
		if _, err := pool.ExecContext(ctx, q, args...); err != nil {
			t.Fatal(err)
		}
	}
	var raw []byte
	if err := direct.QueryRowContext(ctx, `SELECT note FROM streamed WHERE id = 7`).Scan(&raw); err != nil || bytes.Contains(raw, []byte("note")) {
		t.Fatalf("at rest: %q, %v", raw, err)
	}

	streamWhileLookups(t, p.Srv.RelayStreams, func(int) error { return myReadStreamed(ctx, pool) },
		func(int) (func(i int) (int, error), func(), error) {
			return func(i int) (id int, err error) {
				return id, pool.QueryRowContext(ctx, `SELECT id FROM streamed WHERE email = ?`, streamEmail(i)).Scan(&id)
			}, func() {}, nil
		})
}

// streamWhileLookups has two readers (read(0), read(1)) read the whole
// of table streamed three times each while four other sessions (open(g):
// a lookup by encrypted email, and its close) look up 100 rows each; it
// fails the test with the first error, or if no stream left the loop
// (streams counts them).
func streamWhileLookups(t *testing.T, streams func() int64, read func(k int) error,
	open func(g int) (lookup func(i int) (int, error), close func(), err error)) {
	t.Helper()
	before := streams()
	var wg sync.WaitGroup
	errs := make(chan error, 2)
	for k := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 3 {
				if err := read(k); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	otherSessions(t, func(g int) error {
		lookup, closeFn, err := open(g)
		if err != nil {
			return err
		}
		defer closeFn()
		for k := range 100 {
			i := (g*977 + k*131) % streamRows
			if id, err := lookup(i); err != nil || id != i {
				return fmt.Errorf("lookup %d: %d, %v", i, id, err)
			}
		}
		return nil
	})
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("stream: %v", err)
	}
	if streams() == before {
		t.Fatal("no stream was relayed off the loop")
	}
}

// myReadStreamed reads the whole of table streamed through db and checks
// every row.
func myReadStreamed(ctx context.Context, db *sql.DB) error {
	rows, err := db.QueryContext(ctx, `SELECT id, email, note FROM streamed ORDER BY id`)
	if err != nil {
		return err
	}
	defer rows.Close()
	return checkStreamed(rows)
}

// checkStreamed checks that rows (pgx's or database/sql's) are the whole
// of table streamed, in order, decrypted.
func checkStreamed(rows interface {
	Next() bool
	Scan(...any) error
	Err() error
}) error {
	n := 0
	for rows.Next() {
		var id int
		var email, note string
		if err := rows.Scan(&id, &email, &note); err != nil {
			return err
		}
		if id != n || email != streamEmail(n) || note != streamNote(n) {
			return fmt.Errorf("row %d: %d, %q, %q", n, id, email, note)
		}
		n++
	}
	if err := rows.Err(); err != nil {
		return err
	}
	if n != streamRows {
		return fmt.Errorf("%d rows, want %d", n, streamRows)
	}
	return nil
}
