package integration

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/dbproxy/dbproxy/crypto/keys"
	"github.com/dbproxy/dbproxy/crypto/kms"
	"github.com/dbproxy/dbproxy/internal/testenv"
	"github.com/dbproxy/dbproxy/internal/testkeys"
	"github.com/dbproxy/dbproxy/proxy/mysql/mycrypt"
	"github.com/dbproxy/dbproxy/rules"
	"github.com/dbproxy/dbproxy/value"
)

// gatedMaster is a key service whose Unwrap waits until the test opens
// the gate: a KMS that is slow to answer.
type gatedMaster struct {
	kms.MasterKey
	entered chan struct{} // a call is waiting
	open    chan struct{} // closed: calls go through
	once    sync.Once
	calls   atomic.Int32
}

// release lets the waiting and later calls through.
func (g *gatedMaster) release() { g.once.Do(func() { close(g.open) }) }

// gatedKeys returns a key manager with the data keys of specs whose key
// service holds every unwrap until the gate is released (at the latest
// when the test ends).
func gatedKeys(t *testing.T, specs []rules.Spec) (*gatedMaster, *keys.Manager) {
	t.Helper()
	gate := &gatedMaster{entered: make(chan struct{}, 1), open: make(chan struct{})}
	t.Cleanup(gate.release)
	mgr := testkeys.ManagerWrapped(t, keys.Options{}, func(m kms.MasterKey) kms.MasterKey {
		gate.MasterKey = m
		return gate
	}, testkeys.ForRules(specs)...)
	return gate, mgr
}

// startGatedPG starts PostgreSQL with table looped (email encrypted,
// deterministic) and an encrypting proxy with one event loop whose key
// service holds every unwrap until the gate is released.
func startGatedPG(t *testing.T) (direct *pgx.Conn, gate *gatedMaster, p *pgProxy) {
	t.Helper()
	pg := testenv.StartPostgres(t)
	direct = testenv.ConnectPG(t, pg.DSN())
	if _, err := direct.Exec(testCtx(t), `CREATE TABLE looped (id int, email bytea)`); err != nil {
		t.Fatal(err)
	}
	specs := []rules.Spec{encSpec("looped", "email", rules.ModeDeterministic, value.TypeText, "k_email")}
	gate, mgr := gatedKeys(t, specs)
	ic := pgEncInterceptor(t, pg, specs, mgr, nil)
	return direct, gate, startPGProxy(t, pg, proxyOpts{Interceptor: ic, RelayLoops: 1})
}

func (g *gatedMaster) Unwrap(ctx context.Context, ref kms.KeyRef, wrapped []byte) ([]byte, error) {
	g.calls.Add(1)
	select {
	case g.entered <- struct{}{}:
	default:
	}
	select {
	case <-g.open:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return g.MasterKey.Unwrap(ctx, ref, wrapped)
}

// TestPGEncLoopedWait: sessions of an encrypting listener are relayed by
// the event loop (one loop here), and a statement whose hook must wait
// (its data key is being unwrapped by a key service that does not answer
// yet) waits off the loop: the loop's other sessions, old and new, go on
// meanwhile. Once the key service answers, the statement completes and
// its value is ciphertext at rest; a session whose client leaves while its
// hook waits ends once the wait is over.
func TestPGEncLoopedWait(t *testing.T) {
	ctx := testCtx(t)
	direct, gate, p := startGatedPG(t)

	// B: a session on the loop before the wait.
	b := testenv.ConnectPG(t, p.DSN("disable"))
	if err := b.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	// A: its insert needs the data key; the key service holds it.
	a := testenv.ConnectPG(t, p.DSN("disable"))
	if err := a.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "both sessions on the event loop", func() bool { return p.Srv.Looped() == 2 })
	inserted := make(chan error, 1)
	go func() {
		_, err := a.Exec(ctx, `INSERT INTO looped VALUES (1, 'alice@example.com')`)
		inserted <- err
	}()
	select {
	case <-gate.entered:
	case err := <-inserted:
		t.Fatalf("insert finished before the key service answered: %v", err)
	case <-time.After(20 * time.Second):
		t.Fatal("the insert never asked the key service")
	}
	if p.Srv.RelayHandoffs() == 0 {
		t.Fatal("a hook waited without handing its loop off")
	}

	// The loop goes on: B, and a session C started now, run statements,
	// on encrypted tables too (their plans need no key).
	c := testenv.ConnectPG(t, p.DSN("disable"))
	qctx, qcancel := context.WithTimeout(ctx, 15*time.Second) // a loop that waits with the hook
	defer qcancel()
	for i, conn := range []*pgx.Conn{b, c} {
		for n := range 50 {
			var v int
			if err := conn.QueryRow(qctx, `SELECT $1::int`, n).Scan(&v); err != nil || v != n {
				t.Fatalf("session %d while a hook waits: %d, %v", i, v, err)
			}
		}
		var cnt int
		if err := conn.QueryRow(qctx, `SELECT count(*) FROM looped`).Scan(&cnt); err != nil || cnt != 0 {
			t.Fatalf("session %d: count %d, %v", i, cnt, err)
		}
	}
	if n := p.Srv.Looped(); n != 3 {
		t.Fatalf("%d sessions on the loop, want 3", n)
	}
	select {
	case err := <-inserted:
		t.Fatalf("insert finished before the key service answered: %v", err)
	default:
	}

	// D leaves while its hook waits for the key service too.
	d := testenv.ConnectPG(t, p.DSN("disable"))
	if err := d.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	before := p.Srv.RelayHandoffs()
	dctx, dcancel := context.WithCancel(ctx)
	dDone := make(chan struct{})
	go func() {
		_, _ = d.Exec(dctx, `INSERT INTO looped VALUES (2, 'dora@example.com')`)
		close(dDone)
	}()
	waitFor(t, "D's insert off the loop", func() bool { return p.Srv.RelayHandoffs() > before })
	time.Sleep(50 * time.Millisecond)
	d.PgConn().Conn().Close()
	dcancel()
	<-dDone
	if n := p.Srv.Looped(); n != 4 {
		t.Fatalf("%d sessions on the loop while D's hook waits, want 4 (A, B, C, D)", n)
	}

	gate.release()
	if err := <-inserted; err != nil {
		t.Fatalf("insert after the key service answered: %v", err)
	}
	var id int
	if err := a.QueryRow(ctx, `SELECT id FROM looped WHERE email = 'alice@example.com'`).Scan(&id); err != nil || id != 1 {
		t.Fatalf("lookup through the proxy: %d, %v", id, err)
	}
	var raw []byte
	if err := direct.QueryRow(ctx, `SELECT email FROM looped WHERE id = 1`).Scan(&raw); err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(raw, []byte("alice")) {
		t.Fatalf("plaintext at rest: %q", raw)
	}
	waitFor(t, "D's session ended", func() bool { return p.Srv.Looped() == 3 })
	var n int
	if err := direct.QueryRow(ctx, `SELECT count(*) FROM looped WHERE id = 2 AND position('dora'::bytea in email) > 0`).Scan(&n); err != nil || n != 0 {
		t.Fatalf("D's plaintext at rest: %d, %v", n, err)
	}
}

// TestMySQLEncLoopedWait is TestPGEncLoopedWait for MySQL: an encrypting
// session waiting for the catalog and its data key waits off the event
// loop while the loop's other sessions go on.
func TestMySQLEncLoopedWait(t *testing.T) {
	ctx := testCtx(t)
	db := testenv.StartMariaDB(t)
	direct := openDB(t, myConfigAt(t, db.Addr(), db.User, db.Password, db.Database))
	if _, err := direct.ExecContext(ctx, `CREATE TABLE looped (id int, email varbinary(200))`); err != nil {
		t.Fatal(err)
	}
	spec := encSpec("looped", "email", rules.ModeDeterministic, value.TypeText, "k_email")
	spec.Schema, spec.Database = "", db.Database
	specs := []rules.Spec{spec}
	set, err := rules.New(rules.DialectMySQL, specs)
	if err != nil {
		t.Fatal(err)
	}
	gate, mgr := gatedKeys(t, specs)
	// With a catalog: the INSERT without a column list reads the column
	// order first, off the loop too.
	cat := sideCatalog(t)(db).(*mycrypt.Catalog)
	ic, err := mycrypt.New(mycrypt.Options{Rules: set, Keys: mgr, Catalog: cat, Zones: cat, Lex: cat, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	p := startMyProxy(t, db, myProxyOpts{Interceptor: ic, RelayLoops: 1})
	pool := openDB(t, p.config(t))
	a, err := pool.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	b, err := pool.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "both sessions on the event loop", func() bool { return p.Srv.Looped() == 2 })
	inserted := make(chan error, 1)
	go func() {
		_, err := a.ExecContext(ctx, `INSERT INTO looped VALUES (1, 'alice@example.com')`)
		inserted <- err
	}()
	select {
	case <-gate.entered:
	case err := <-inserted:
		t.Fatalf("insert finished before the key service answered: %v", err)
	case <-time.After(20 * time.Second):
		t.Fatal("the insert never asked the key service")
	}
	if p.Srv.RelayHandoffs() == 0 {
		t.Fatal("a hook waited without handing its loop off")
	}
	qctx, qcancel := context.WithTimeout(ctx, 15*time.Second)
	defer qcancel()
	for n := range 50 {
		var v int
		if err := b.QueryRowContext(qctx, `SELECT ?`, n).Scan(&v); err != nil || v != n {
			t.Fatalf("another session while a hook waits: %d, %v", v, err)
		}
	}
	var cnt int
	if err := b.QueryRowContext(qctx, `SELECT count(*) FROM looped`).Scan(&cnt); err != nil || cnt != 0 {
		t.Fatalf("count %d, %v", cnt, err)
	}
	gate.release()
	if err := <-inserted; err != nil {
		t.Fatalf("insert after the key service answered: %v", err)
	}
	var id int
	if err := a.QueryRowContext(ctx, `SELECT id FROM looped WHERE email = 'alice@example.com'`).Scan(&id); err != nil || id != 1 {
		t.Fatalf("lookup through the proxy: %d, %v", id, err)
	}
	var raw []byte
	if err := direct.QueryRowContext(ctx, `SELECT email FROM looped WHERE id = 1`).Scan(&raw); err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(raw, []byte("alice")) {
		t.Fatalf("plaintext at rest: %q", raw)
	}
	_ = a.Close()
	_ = b.Close()
}

// TestPGEncLoopedWaitClose: a hard close of the server while a session's
// hook waits off the loop for its data key ends that session too (the
// wait gives up), without waiting for the key service, and nothing of it
// reaches the database.
func TestPGEncLoopedWaitClose(t *testing.T) {
	ctx := testCtx(t)
	direct, gate, p := startGatedPG(t)
	a := testenv.ConnectPG(t, p.DSN("disable"))
	inserted := make(chan error, 1)
	go func() {
		_, err := a.Exec(ctx, `INSERT INTO looped VALUES (1, 'alice@example.com')`)
		inserted <- err
	}()
	select {
	case <-gate.entered:
	case <-time.After(20 * time.Second):
		t.Fatal("the insert never asked the key service")
	}
	closed := make(chan error, 1)
	go func() { closed <- p.Srv.Close() }()
	select {
	case <-closed:
	case <-time.After(15 * time.Second):
		t.Fatal("Close waited for a hook's key service")
	}
	if err := <-inserted; err == nil {
		t.Fatal("the insert succeeded through a closed server")
	}
	waitFor(t, "the session ended", func() bool { return p.Srv.Looped() == 0 && p.Srv.NumConns() == 0 })
	var n int
	if err := direct.QueryRow(ctx, `SELECT count(*) FROM looped`).Scan(&n); err != nil || n != 0 {
		t.Fatalf("%d rows, %v", n, err)
	}
}

// TestPGEncLoopedWaitPipelined: while the client->server side of a
// session waits off the loop for a data key (holding the session's
// state), the answer to the request the client sent before it arrives;
// the server->client side, which needs that state, waits off the loop
// too rather than stall it: another session on the loop goes on.
func TestPGEncLoopedWaitPipelined(t *testing.T) {
	ctx := testCtx(t)
	direct, gate, p := startGatedPG(t)
	b := testenv.ConnectPG(t, p.DSN("disable"))
	a, err := pgconn.Connect(ctx, p.DSN("disable"))
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close(context.Background())
	// A statement on the encrypted table that needs no key: the
	// session's search_path is known from here on.
	if _, err := a.Exec(ctx, `SELECT count(*) FROM looped`).ReadAll(); err != nil {
		t.Fatal(err)
	}
	fe := a.Frontend()
	fe.Send(&pgproto3.Query{String: `SELECT pg_sleep(0.3)`})
	if err := fe.Flush(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond) // forwarded on its own
	fe.Send(&pgproto3.Query{String: `INSERT INTO looped VALUES (1, 'alice@example.com')`})
	if err := fe.Flush(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-gate.entered:
	case <-time.After(20 * time.Second):
		t.Fatal("the insert never asked the key service")
	}
	time.Sleep(600 * time.Millisecond) // pg_sleep's answer has arrived
	qctx, qcancel := context.WithTimeout(ctx, 10*time.Second)
	defer qcancel()
	for n := range 20 {
		var v int
		if err := b.QueryRow(qctx, `SELECT $1::int`, n).Scan(&v); err != nil || v != n {
			t.Fatalf("another session while a session's two sides wait: %d, %v", v, err)
		}
	}
	gate.release()
	var got []string
	for ready := 0; ready < 2; {
		msg, err := a.ReceiveMessage(ctx)
		if err != nil {
			t.Fatalf("receive: %v (so far %q)", err, got)
		}
		switch m := msg.(type) {
		case *pgproto3.CommandComplete:
			got = append(got, string(m.CommandTag))
		case *pgproto3.ErrorResponse:
			t.Fatalf("error: %s %s", m.Code, m.Message)
		case *pgproto3.ReadyForQuery:
			ready++
		}
	}
	if fmt.Sprint(got) != "[SELECT 1 INSERT 0 1]" {
		t.Fatalf("got %q", got)
	}
	var raw []byte
	if err := direct.QueryRow(ctx, `SELECT email FROM looped WHERE id = 1`).Scan(&raw); err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(raw, []byte("alice")) {
		t.Fatalf("plaintext at rest: %q", raw)
	}
}
