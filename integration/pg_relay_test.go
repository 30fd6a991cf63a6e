package integration

import (
	"bytes"
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	_ "github.com/jackc/pgx/v5/stdlib"

	"github.com/dbproxy/dbproxy/internal/testenv"
	"github.com/dbproxy/dbproxy/proxy"
)

// transcript renders results and errors so that a scenario run directly and
// through the proxy can be compared byte for byte.
type transcript struct{ b strings.Builder }

func (tr *transcript) add(format string, args ...any) { fmt.Fprintf(&tr.b, format+"\n", args...) }

func (tr *transcript) err(label string, err error) {
	var pe *pgconn.PgError
	switch {
	case err == nil:
		tr.add("%s: ok", label)
	case errors.As(err, &pe):
		tr.add("%s: ERROR %s %s %s", label, pe.Severity, pe.Code, pe.Message)
	default:
		tr.add("%s: error %v", label, err)
	}
}

func (tr *transcript) rows(label string, rows pgx.Rows) {
	defer rows.Close()
	var names []string
	for _, fd := range rows.FieldDescriptions() {
		names = append(names, fmt.Sprintf("%s/%d", fd.Name, fd.DataTypeOID))
	}
	tr.add("%s: columns %v", label, names)
	for rows.Next() {
		vals, err := rows.Values()
		if err != nil {
			tr.err(label+" values", err)
			return
		}
		tr.add("%s: row %#v", label, vals)
	}
	tr.err(label+" end", rows.Err())
	tr.add("%s: tag %s", label, rows.CommandTag())
}

// compareDirect runs scenario against pg directly and through p, with the
// given connection config tweak, and requires identical transcripts.
func compareDirect(t *testing.T, pg *testenv.Postgres, p *pgProxy, tweak func(*pgx.ConnConfig), scenario func(context.Context, *pgx.Conn, *transcript)) {
	t.Helper()
	run := func(dsn string) string {
		cfg, err := pgx.ParseConfig(dsn)
		if err != nil {
			t.Fatal(err)
		}
		if tweak != nil {
			tweak(cfg)
		}
		ctx := testCtx(t)
		c, err := pgx.ConnectConfig(ctx, cfg)
		if err != nil {
			t.Fatalf("connect: %v", err)
		}
		defer c.Close(ctx)
		var tr transcript
		scenario(ctx, c, &tr)
		return tr.b.String()
	}
	direct := run(pg.DSN())
	proxied := run(p.DSN("disable"))
	if direct != proxied {
		t.Errorf("transcripts differ\n--- direct\n%s\n--- through proxy\n%s", direct, proxied)
	}
	if !strings.Contains(direct, "row") {
		t.Fatalf("scenario produced no rows:\n%s", direct)
	}
}

var execModes = []pgx.QueryExecMode{
	pgx.QueryExecModeCacheStatement,
	pgx.QueryExecModeCacheDescribe,
	pgx.QueryExecModeDescribeExec,
	pgx.QueryExecModeExec,
	pgx.QueryExecModeSimpleProtocol,
}

// queryScenario exercises types, parameters, NULLs, errors and statements
// reused from the cache.
func queryScenario(ctx context.Context, c *pgx.Conn, tr *transcript) {
	_, err := c.Exec(ctx, `create temp table items (id int primary key, name text, price numeric(10,2), tags text[], doc jsonb, blob bytea, seen timestamptz, ok bool)`)
	tr.err("create", err)
	for i := range 5 {
		var name any = fmt.Sprintf("item-%d", i)
		if i == 3 {
			name = nil
		}
		tag, err := c.Exec(ctx, `insert into items values ($1, $2, $3, $4, $5, $6, $7, $8)`,
			i, name, fmt.Sprintf("%d.25", i*10), []string{"a", fmt.Sprint(i)}, map[string]any{"k": i},
			[]byte{0, byte(i), 0xff}, time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC).Add(time.Duration(i)*time.Hour), i%2 == 0)
		tr.err("insert", err)
		tr.add("tag %s", tag)
	}
	for range 3 { // repeated: exercises the statement caches
		rows, err := c.Query(ctx, `select id, name, price, tags, doc, blob, seen, ok from items where id >= $1 order by id`, 1)
		if err != nil {
			tr.err("select", err)
		} else {
			tr.rows("select", rows)
		}
	}
	rows, err := c.Query(ctx, `select g, g::text || 'x', null::int, 1.5::float8 * g from generate_series(1, 50) g`)
	if err != nil {
		tr.err("series", err)
	} else {
		tr.rows("series", rows)
	}
	_, err = c.Exec(ctx, `select 1/0`)
	tr.err("div by zero", err)
	_, err = c.Exec(ctx, `insert into items (id) values ($1)`, 1)
	tr.err("duplicate key", err)
	_, err = c.Exec(ctx, `select * from no_such_table`)
	tr.err("missing table", err)
	var n int
	tr.err("after errors", c.QueryRow(ctx, `select count(*) from items`).Scan(&n))
	tr.add("count %d", n)
	tx, err := c.Begin(ctx)
	tr.err("begin", err)
	if err == nil {
		_, err = tx.Exec(ctx, `delete from items where id = $1`, 4)
		tr.err("delete in tx", err)
		_, err = tx.Exec(ctx, `select 1/0`)
		tr.err("error in tx", err)
		tr.err("rollback", tx.Rollback(ctx))
	}
	tr.err("count after rollback", c.QueryRow(ctx, `select count(*) from items`).Scan(&n))
	tr.add("count %d", n)
}

func TestPGQueryExecModes(t *testing.T) {
	pg := testenv.StartPostgres(t)
	p := startPGProxy(t, pg, proxyOpts{})
	for _, mode := range execModes {
		t.Run(mode.String(), func(t *testing.T) {
			compareDirect(t, pg, p, func(cfg *pgx.ConnConfig) { cfg.DefaultQueryExecMode = mode }, queryScenario)
		})
	}
}

func TestPGBatchAndPipeline(t *testing.T) {
	pg := testenv.StartPostgres(t)
	p := startPGProxy(t, pg, proxyOpts{})
	t.Run("batch", func(t *testing.T) {
		compareDirect(t, pg, p, nil, func(ctx context.Context, c *pgx.Conn, tr *transcript) {
			_, err := c.Exec(ctx, `create temp table b (id int primary key, v text)`)
			tr.err("create", err)
			b := &pgx.Batch{}
			for i := range 20 {
				b.Queue(`insert into b values ($1, $2)`, i, fmt.Sprint("v", i))
			}
			b.Queue(`select id, v from b where id < $1 order by id`, 5)
			br := c.SendBatch(ctx, b)
			for i := 0; i < 20; i++ {
				tag, err := br.Exec()
				tr.err("exec", err)
				tr.add("tag %s", tag)
			}
			rows, err := br.Query()
			if err != nil {
				tr.err("query", err)
			} else {
				tr.rows("batch select", rows)
			}
			tr.err("close", br.Close())

			// An error in the middle of a batch: the rest is skipped.
			b = &pgx.Batch{}
			b.Queue(`insert into b values (100, 'x')`)
			b.Queue(`insert into b values (1, 'dup')`)
			b.Queue(`insert into b values (101, 'y')`)
			br = c.SendBatch(ctx, b)
			for range 3 {
				_, err := br.Exec()
				tr.err("batch with error", err)
			}
			tr.err("close", br.Close())
			rows, err = c.Query(ctx, `select count(*) from b`)
			if err != nil {
				tr.err("count", err)
			} else {
				tr.rows("count", rows)
			}
		})
	})
	t.Run("pipeline", func(t *testing.T) {
		compareDirect(t, pg, p, nil, func(ctx context.Context, c *pgx.Conn, tr *transcript) {
			pc := c.PgConn()
			_, err := pc.Exec(ctx, `create temp table pl (id int primary key)`).ReadAll()
			tr.err("create", err)
			pl := pc.StartPipeline(ctx)
			pl.SendPrepare("ins", `insert into pl values ($1)`, nil)
			pl.SendQueryPrepared("ins", [][]byte{[]byte("1")}, nil, nil)
			pl.SendQueryParams(`select id from pl`, nil, nil, nil, nil)
			pl.SendPipelineSync()
			pl.SendQueryPrepared("ins", [][]byte{[]byte("2")}, nil, nil)
			pl.SendQueryPrepared("ins", [][]byte{[]byte("1")}, nil, nil) // duplicate: error mid-pipeline
			pl.SendQueryPrepared("ins", [][]byte{[]byte("3")}, nil, nil) // skipped
			pl.SendPipelineSync()
			pl.SendQueryParams(`select array_agg(id order by id)::text from pl`, nil, nil, nil, nil)
			pl.SendPipelineSync()
			tr.err("flush", pl.Flush())
			for i := 0; i < 9; i++ {
				res, err := pl.GetResults()
				if err != nil {
					tr.err(fmt.Sprintf("result %d", i), err)
					continue
				}
				switch r := res.(type) {
				case *pgconn.ResultReader:
					rr := r.Read()
					tr.add("result %d: rows %q tag %s err %v", i, rr.Rows, rr.CommandTag, pgErrString(rr.Err))
				case *pgconn.StatementDescription:
					tr.add("result %d: prepared %s params %v", i, r.Name, r.ParamOIDs)
				case *pgconn.PipelineSync:
					tr.add("result %d: sync", i)
				default:
					tr.add("result %d: %T", i, r)
				}
			}
			tr.err("close", pl.Close())
			var s string
			tr.err("after", c.QueryRow(ctx, `select array_agg(id order by id)::text from pl`).Scan(&s))
			tr.add("row %s", s)
		})
	})
}

func pgErrString(err error) string {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code + " " + pe.Message
	}
	if err != nil {
		return err.Error()
	}
	return "<nil>"
}

func TestPGCopy(t *testing.T) {
	pg := testenv.StartPostgres(t)
	p := startPGProxy(t, pg, proxyOpts{})
	compareDirect(t, pg, p, nil, func(ctx context.Context, c *pgx.Conn, tr *transcript) {
		_, err := c.Exec(ctx, `create temp table cp (id int, name text, amount numeric, at date)`)
		tr.err("create", err)
		var src [][]any
		for i := range 1000 {
			src = append(src, []any{i, fmt.Sprintf("name %d, \"quoted\"\ttab", i), fmt.Sprintf("%d.5", i), time.Date(2024, 1, 1+i%28, 0, 0, 0, 0, time.UTC)})
		}
		n, err := c.CopyFrom(ctx, pgx.Identifier{"cp"}, []string{"id", "name", "amount", "at"}, pgx.CopyFromRows(src))
		tr.err("CopyFrom (binary)", err)
		tr.add("copied %d", n)
		for _, format := range []string{"text", "csv", "binary"} {
			var out bytes.Buffer
			tag, err := c.PgConn().CopyTo(ctx, &out, fmt.Sprintf(`copy (select * from cp order by id) to stdout (format %s)`, format))
			tr.err("copy to "+format, err)
			sum := sha256.Sum256(out.Bytes())
			tr.add("copy to %s: %s %d bytes sha256 %x", format, tag, out.Len(), sum[:8])
			_, err = c.Exec(ctx, `create temp table cp_`+format+` (like cp)`)
			tr.err("create copy target", err)
			tag, err = c.PgConn().CopyFrom(ctx, bytes.NewReader(out.Bytes()), fmt.Sprintf(`copy cp_%s from stdin (format %s)`, format, format))
			tr.err("copy from "+format, err)
			tr.add("copy from %s: %s", format, tag)
			rows, err := c.Query(ctx, fmt.Sprintf(`select count(*), sum(id), count(*) filter (where (a.*) is distinct from (b.*)) from cp a join cp_%s b using (id)`, format))
			if err != nil {
				tr.err("compare", err)
			} else {
				tr.rows("compare "+format, rows)
			}
		}
		// A COPY FROM STDIN that fails half way: bad data.
		_, err = c.PgConn().CopyFrom(ctx, strings.NewReader("1\tok\t1\t2024-01-01\nnot-a-number\tx\t1\t2024-01-01\n"), `copy cp from stdin`)
		tr.err("copy from with bad row", err)
		// The client aborts a COPY FROM STDIN (CopyFail).
		_, err = c.PgConn().CopyFrom(ctx, io.MultiReader(strings.NewReader("1\tok\t1\t2024-01-01\n"), errReader{}), `copy cp from stdin`)
		tr.err("copy from aborted by client", err)
		rows, err := c.Query(ctx, `select count(*) from cp`)
		if err != nil {
			tr.err("count", err)
		} else {
			tr.rows("count", rows)
		}
	})
}

type errReader struct{}

func (errReader) Read([]byte) (int, error) { return 0, errors.New("client-side failure") }

func TestPGDatabaseSQL(t *testing.T) {
	pg := testenv.StartPostgres(t)
	p := startPGProxy(t, pg, proxyOpts{})
	db, err := sql.Open("pgx", p.DSN("disable"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	db.SetMaxOpenConns(4)
	ctx := testCtx(t)
	if _, err := db.ExecContext(ctx, `create table dsql (id serial primary key, v text)`); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 25 {
				if _, err := db.ExecContext(ctx, `insert into dsql (v) values ($1)`, fmt.Sprintf("w%d-%d", w, i)); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	stmt, err := db.PrepareContext(ctx, `select count(*) from dsql where v like $1`)
	if err != nil {
		t.Fatal(err)
	}
	defer stmt.Close()
	var n int
	if err := stmt.QueryRowContext(ctx, "w3-%").Scan(&n); err != nil || n != 25 {
		t.Fatalf("count w3 = %d, %v; want 25", n, err)
	}
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.ExecContext(ctx, `delete from dsql`); err != nil {
		t.Fatal(err)
	}
	if err := tx.Rollback(); err != nil {
		t.Fatal(err)
	}
	if err := db.QueryRowContext(ctx, `select count(*) from dsql`).Scan(&n); err != nil || n != 200 {
		t.Fatalf("count = %d, %v; want 200", n, err)
	}
}

func TestPGCancel(t *testing.T) {
	pg := testenv.StartPostgres(t)
	p := startPGProxy(t, pg, proxyOpts{})
	admin := testenv.ConnectPG(t, pg.Superuser().DSN())

	t.Run("context", func(t *testing.T) {
		// pgx sends a CancelRequest when the context ends (and then drops
		// the connection): the server must stop sleeping.
		c := testenv.ConnectPG(t, p.DSN("disable"))
		ctx, cancel := context.WithTimeout(testCtx(t), 300*time.Millisecond)
		defer cancel()
		_, err := c.Exec(ctx, `select pg_sleep(60) /* ctx-cancel */`)
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("err = %v, want context deadline exceeded", err)
		}
		waitForNoQuery(t, admin, "ctx-cancel")
	})
	t.Run("explicit", func(t *testing.T) {
		c := testenv.ConnectPG(t, p.DSN("disable"))
		done, _ := execBackground(t, c, admin, "select pg_sleep(60)", "explicit-cancel")
		if err := c.PgConn().CancelRequest(testCtx(t)); err != nil {
			t.Fatal(err)
		}
		err := <-done
		var pe *pgconn.PgError
		if !errors.As(err, &pe) || pe.Code != "57014" {
			t.Fatalf("cancelled query: err = %v, want SQLSTATE 57014", err)
		}
		pgRequireSelect(t, testCtx(t), c, 7, "session after cancel")
	})
	t.Run("TLS on both legs", func(t *testing.T) {
		tpg := testenv.StartPostgres(t, testenv.PGOptions{TLS: true})
		tadmin := testenv.ConnectPG(t, tpg.Superuser().DSN())
		tp := startPGProxy(t, tpg, proxyOpts{ClientTLS: true, RequireTLS: true, Upstream: proxy.SSLVerifyFull})
		c := testenv.ConnectPG(t, tp.DSN("verify-full"))
		done, _ := execBackground(t, c, tadmin, "select pg_sleep(60)", "tls-cancel")
		if err := c.PgConn().CancelRequest(testCtx(t)); err != nil {
			t.Fatal(err)
		}
		var pe *pgconn.PgError
		if err := <-done; !errors.As(err, &pe) || pe.Code != "57014" {
			t.Fatalf("cancelled query: err = %v, want SQLSTATE 57014", err)
		}
	})
	t.Run("wrong key", func(t *testing.T) {
		c := testenv.ConnectPG(t, p.DSN("disable"))
		done, _ := execBackground(t, c, admin, "select pg_sleep(1)", "wrong-key")
		// A forged key (the real pid, a wrong secret) must not cancel.
		pid := c.PgConn().PID()
		sendRawCancel(t, p.Addr, pid, []byte{1, 2, 3, 4})
		if err := <-done; err != nil {
			t.Fatalf("query was cancelled by a forged key: %v", err)
		}
	})
}

// sendRawCancel sends a CancelRequest with the given key to addr.
func sendRawCancel(t *testing.T, addr string, pid uint32, secret []byte) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	msg := binary.BigEndian.AppendUint32(nil, uint32(12+len(secret)))
	msg = binary.BigEndian.AppendUint32(msg, 80877102)
	msg = binary.BigEndian.AppendUint32(msg, pid)
	msg = append(msg, secret...)
	if _, err := conn.Write(msg); err != nil {
		t.Fatal(err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	if n, err := conn.Read(make([]byte, 1)); n != 0 || !errors.Is(err, io.EOF) {
		t.Fatalf("cancel connection: read %d, %v; want EOF", n, err)
	}
}

// execBackground runs sql, tagged with the comment marker, on c in a
// goroutine and waits until admin sees it running. It returns the
// channel that receives the statement's error, and the backend's pid.
func execBackground(t *testing.T, c, admin *pgx.Conn, sql, marker string) (<-chan error, int) {
	t.Helper()
	done := make(chan error, 1)
	go func() {
		_, err := c.Exec(testCtx(t), sql+" /* "+marker+" */")
		done <- err
	}()
	return done, waitForQuery(t, admin, marker)
}

// waitForQuery waits until a backend is running a query containing marker.
func waitForQuery(t *testing.T, admin *pgx.Conn, marker string) int {
	t.Helper()
	var pid int
	waitFor(t, "query "+marker+" to start", func() bool {
		err := admin.QueryRow(testCtx(t), `select pid from pg_stat_activity where state = 'active' and query like '%' || $1 || '%' and pid <> pg_backend_pid() limit 1`, marker).Scan(&pid)
		return err == nil
	})
	return pid
}

// waitForNoQuery waits until no backend runs a query containing marker.
func waitForNoQuery(t *testing.T, admin *pgx.Conn, marker string) {
	t.Helper()
	waitFor(t, "query "+marker+" to end", func() bool {
		var n int
		err := admin.QueryRow(testCtx(t), `select count(*) from pg_stat_activity where state = 'active' and query like '%' || $1 || '%' and pid <> pg_backend_pid()`, marker).Scan(&n)
		return err == nil && n == 0
	})
}

// waitFor polls cond until it holds, failing the test after 20 s.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for delay := 5 * time.Millisecond; ; delay = min(2*delay, 200*time.Millisecond) {
		if cond() {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(delay)
	}
}

func TestPGListenNotifyAndNotice(t *testing.T) {
	pg := testenv.StartPostgres(t)
	p := startPGProxy(t, pg, proxyOpts{})
	ctx := testCtx(t)
	var notices []string
	var mu sync.Mutex
	cfg, err := pgx.ParseConfig(p.DSN("disable"))
	if err != nil {
		t.Fatal(err)
	}
	cfg.OnNotice = func(_ *pgconn.PgConn, n *pgconn.Notice) {
		mu.Lock()
		notices = append(notices, n.Severity+" "+n.Message)
		mu.Unlock()
	}
	listener, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer listener.Close(ctx)
	notifier := testenv.ConnectPG(t, p.DSN("disable"))
	if _, err := listener.Exec(ctx, `listen chan1`); err != nil {
		t.Fatal(err)
	}
	if _, err := notifier.Exec(ctx, `select pg_notify('chan1', 'hello through the proxy')`); err != nil {
		t.Fatal(err)
	}
	n, err := listener.WaitForNotification(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if n.Channel != "chan1" || n.Payload != "hello through the proxy" {
		t.Fatalf("notification = %+v", n)
	}
	if _, err := listener.Exec(ctx, `do $$ begin raise notice 'notice one'; raise warning 'warning two'; end $$`); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	got := strings.Join(notices, "|")
	mu.Unlock()
	if got != "NOTICE notice one|WARNING warning two" {
		t.Fatalf("notices = %q", got)
	}
	// ParameterStatus: a SET of a reported parameter reaches the client.
	if _, err := listener.Exec(ctx, `set application_name = 'via-proxy'`); err != nil {
		t.Fatal(err)
	}
	if got := listener.PgConn().ParameterStatus("application_name"); got != "via-proxy" {
		t.Fatalf("application_name ParameterStatus = %q", got)
	}
}

func TestPGLargeRows(t *testing.T) {
	pg := testenv.StartPostgres(t)
	p := startPGProxy(t, pg, proxyOpts{})
	const size = 20 << 20
	big := bytes.Repeat([]byte("0123456789abcdef"), size/16)
	big[size/2] = 'X'
	for _, mode := range []pgx.QueryExecMode{pgx.QueryExecModeCacheStatement, pgx.QueryExecModeSimpleProtocol} {
		t.Run(mode.String(), func(t *testing.T) {
			ctx := testCtx(t)
			c := connectMode(t, p.DSN("disable"), mode)
			if _, err := c.Exec(ctx, `create temp table big (b text)`); err != nil {
				t.Fatal(err)
			}
			if _, err := c.Exec(ctx, `insert into big values ($1)`, string(big)); err != nil {
				t.Fatal(err)
			}
			var got string
			var dbSum string
			if err := c.QueryRow(ctx, `select b, encode(sha256(convert_to(b, 'UTF8')), 'hex') from big`).Scan(&got, &dbSum); err != nil {
				t.Fatal(err)
			}
			want := sha256.Sum256(big)
			if got != string(big) || dbSum != fmt.Sprintf("%x", want) {
				t.Fatalf("20 MB round trip corrupted: len %d, server sha256 %s, want %x", len(got), dbSum, want)
			}
			// The session keeps working with small messages after big ones.
			pgRequireSelect(t, ctx, c, 1, "after large row")
		})
	}
}

func TestPGProtocolVersionNegotiation(t *testing.T) {
	pg := testenv.StartPostgres(t)
	p := startPGProxy(t, pg, proxyOpts{})
	c := testenv.ConnectPG(t, p.DSN("disable")+"&max_protocol_version=3.2&min_protocol_version=3.0")
	pgRequireSelect(t, testCtx(t), c, 5, "select through 3.2-requesting client")
	// Cancellation still works with the negotiated 3.0 keys.
	done, _ := execBackground(t, c, testenv.ConnectPG(t, pg.Superuser().DSN()), "select pg_sleep(60)", "npv-cancel")
	if err := c.PgConn().CancelRequest(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	var pe *pgconn.PgError
	if err := <-done; !errors.As(err, &pe) || pe.Code != "57014" {
		t.Fatalf("cancel after negotiation: %v", err)
	}
}

func TestPGDirectSSL(t *testing.T) {
	pg := testenv.StartPostgres(t)
	p := startPGProxy(t, pg, proxyOpts{ClientTLS: true, RequireTLS: true})
	c := testenv.ConnectPG(t, p.DSN("verify-full")+"&sslnegotiation=direct")
	var on bool
	if err := c.QueryRow(testCtx(t), `select true`).Scan(&on); err != nil || !on {
		t.Fatalf("query over direct SSL: %v", err)
	}
	if !strings.Contains(p.Logs.String(), "client_tls=true") {
		t.Fatalf("session not logged as TLS:\n%s", p.Logs.String())
	}
}
