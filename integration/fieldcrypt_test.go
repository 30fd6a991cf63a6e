package integration

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	driver "github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/dbproxy/dbproxy/fieldcrypt"
	"github.com/dbproxy/dbproxy/internal/testenv"
	"github.com/dbproxy/dbproxy/internal/testkeys"
	"github.com/dbproxy/dbproxy/proxy/mysql/mycrypt"
	"github.com/dbproxy/dbproxy/proxy/postgres/pgcrypt"
	"github.com/dbproxy/dbproxy/rules"
	"github.com/dbproxy/dbproxy/value"
)

// keyUseRecorder is the Monitor and Guard of the key-use tests: it keeps
// every use it is told of, and refuses storing into column ssn for the
// user named in deny.
type keyUseRecorder struct {
	mu   sync.Mutex
	uses []fieldcrypt.Use
	deny atomic.Pointer[string]
}

func (r *keyUseRecorder) KeyUsed(_ context.Context, u fieldcrypt.Use) {
	r.mu.Lock()
	r.uses = append(r.uses, u)
	r.mu.Unlock()
}

func (r *keyUseRecorder) Check(_ context.Context, a fieldcrypt.Access) error {
	if u := r.deny.Load(); u != nil && *u == a.Principal.User && a.Op == fieldcrypt.OpEncrypt && a.Column.Column == "ssn" {
		return errors.New("user " + a.Principal.User + " may not write this column")
	}
	return nil
}

// take returns the uses recorded since the last call.
func (r *keyUseRecorder) take() []fieldcrypt.Use {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := r.uses
	r.uses = nil
	return out
}

// expect checks that the uses recorded since the last call are, in
// order, op on each of cols, successful, by user on database from client.
func (r *keyUseRecorder) expect(t *testing.T, step string, user, database string, client netip.AddrPort,
	op fieldcrypt.Op, cols ...string) {
	t.Helper()
	uses := r.take()
	if len(uses) != len(cols) {
		t.Fatalf("%s: monitor told of %d key uses, want %d: %+v", step, len(uses), len(cols), uses)
	}
	for i, u := range uses {
		p := u.Principal
		if u.Op != op || u.Column.Column != cols[i] || u.Err != nil || u.KeyVersion != 1 || u.Versions != 1 {
			t.Errorf("%s: use %d is %v of %s (key version %d, %d versions, err %v), want %v of %s",
				step, i, u.Op, u.Column, u.KeyVersion, u.Versions, u.Err, op, cols[i])
		}
		if p.User != user || p.Database != database || p.Client != client || p.Listener == "" || p.SessionID == 0 {
			t.Errorf("%s: use %d by %+v, want user %s, database %s, client %v", step, i, p, user, database, client)
		}
	}
}

var keyUseSpecs = []rules.Spec{
	{Table: "people", Column: "email", Key: "people_email", Mode: rules.ModeDeterministic, Type: value.TypeText},
	{Table: "people", Column: "ssn", Key: "people_ssn", Mode: rules.ModeRandomized, Type: value.TypeText},
}

// TestPGEncKeyUse: through a PostgreSQL session, the field cipher's
// Monitor sees the logged-in user, database and client address for an
// INSERT, a WHERE-equality lookup and a SELECT that decrypts; a Guard
// refusal reaches the client as insufficient_privilege naming the column,
// and nothing is written.
func TestPGEncKeyUse(t *testing.T) {
	ctx := testCtx(t)
	pg := testenv.StartPostgres(t)
	specs := append([]rules.Spec(nil), keyUseSpecs...)
	for i := range specs {
		specs[i].Schema = "public"
	}
	direct := testenv.ConnectPG(t, pg.DSN())
	if _, err := direct.Exec(ctx, "CREATE TABLE people (id int PRIMARY KEY, email bytea, ssn bytea)"); err != nil {
		t.Fatal(err)
	}
	rec := &keyUseRecorder{}
	ic := pgEncInterceptor(t, pg, specs, testkeys.Manager(t, testkeys.ForRules(specs)...), func(o *pgcrypt.Options) {
		o.Guard, o.Monitor = rec, rec
	})
	p := startPGProxy(t, pg, proxyOpts{Interceptor: ic})
	var c *pgx.Conn
	var client netip.AddrPort
	// The extended protocol (parameters bound), then the simple one
	// (literals the planner encrypts).
	for i, mode := range []pgx.QueryExecMode{pgx.QueryExecModeCacheStatement, pgx.QueryExecModeSimpleProtocol} {
		cfg, err := pgx.ParseConfig(p.DSN("disable"))
		if err != nil {
			t.Fatal(err)
		}
		cfg.DefaultQueryExecMode = mode
		if c, err = pgx.ConnectConfig(ctx, cfg); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close(context.Background()) })
		client = netip.MustParseAddrPort(c.PgConn().Conn().LocalAddr().String())
		if _, err := c.Exec(ctx, "INSERT INTO people (id, email, ssn) VALUES ($1, $2, $3)", i+1, "ada@example.com", "123-45-6789"); err != nil {
			t.Fatal(err)
		}
		rec.expect(t, mode.String()+" INSERT", pg.User, pg.Database, client, fieldcrypt.OpEncrypt, "email", "ssn")
		var id int
		if err := c.QueryRow(ctx, "SELECT id FROM people WHERE email = $1 ORDER BY id LIMIT 1", "ada@example.com").Scan(&id); err != nil || id != 1 {
			t.Fatalf("%v lookup: id %d, %v", mode, id, err)
		}
		rec.expect(t, mode.String()+" WHERE email =", pg.User, pg.Database, client, fieldcrypt.OpMatch, "email")
		var ssn string
		if err := c.QueryRow(ctx, "SELECT ssn FROM people WHERE id = 1").Scan(&ssn); err != nil || ssn != "123-45-6789" {
			t.Fatalf("%v SELECT ssn: %q, %v", mode, ssn, err)
		}
		rec.expect(t, mode.String()+" SELECT ssn", pg.User, pg.Database, client, fieldcrypt.OpDecrypt, "ssn")
	}

	rec.deny.Store(&pg.User)
	for _, mode := range []pgx.QueryExecMode{pgx.QueryExecModeCacheStatement, pgx.QueryExecModeSimpleProtocol} {
		_, err := c.Exec(ctx, "INSERT INTO people (id, email, ssn) VALUES (3, $1, $2)", mode, "bob@example.com", "987-65-4321")
		var pe *pgconn.PgError
		if !errors.As(err, &pe) || pe.Code != "42501" || !strings.Contains(pe.Message, "public.people.ssn") ||
			strings.Contains(pe.Message, "987-65") {
			t.Fatalf("%v refused INSERT: %v, want 42501 naming public.people.ssn", mode, err)
		}
		if refused := rec.take(); len(refused) == 0 || !isRefusal(refused[len(refused)-1].Err) {
			t.Errorf("%v: monitor did not see the refusal: %+v", mode, refused)
		}
	}
	var n int
	if err := direct.QueryRow(ctx, "SELECT count(*) FROM people").Scan(&n); err != nil || n != 2 {
		t.Fatalf("rows in people after the refusals: %d, %v; want 2", n, err)
	}
	// The session goes on.
	if err := c.QueryRow(ctx, "SELECT count(*) FROM people").Scan(&n); err != nil || n != 2 {
		t.Fatalf("after the refusal: %d, %v", n, err)
	}
}

// TestMySQLEncKeyUse is TestPGEncKeyUse through a MySQL session (MariaDB):
// the refusal is ERR 1143 naming the column.
func TestMySQLEncKeyUse(t *testing.T) {
	ctx := testCtx(t)
	db := testenv.StartMariaDB(t)
	specs := append([]rules.Spec(nil), keyUseSpecs...)
	for i := range specs {
		specs[i].Database = db.Database
	}
	set, err := rules.New(rules.DialectMySQL, specs)
	if err != nil {
		t.Fatal(err)
	}
	direct := openDB(t, myConfigAt(t, db.Addr(), db.User, db.Password, db.Database))
	if _, err := direct.ExecContext(ctx, "CREATE TABLE people (id int PRIMARY KEY, email varbinary(255), ssn varbinary(255))"); err != nil {
		t.Fatal(err)
	}
	rec := &keyUseRecorder{}
	ic, err := mycrypt.New(mycrypt.Options{Rules: set,
		Encryptor: rules.NewEncryptor(testkeys.Manager(t, testkeys.ForRules(specs)...)),
		Guard:     rec, Monitor: rec, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	p := startMyProxy(t, db, myProxyOpts{Interceptor: ic})
	cfg := p.config(t)
	var local atomic.Value // the client's address of the last connection dialled
	cfg.DialFunc = func(ctx context.Context, network, addr string) (net.Conn, error) {
		nc, err := (&net.Dialer{}).DialContext(ctx, network, addr)
		if err == nil {
			local.Store(nc.LocalAddr().String())
		}
		return nc, err
	}
	c := openConn(t, cfg)
	client := netip.MustParseAddrPort(local.Load().(string))

	for _, prepared := range []bool{false, true} {
		// The text protocol, then the binary one (prepared statements).
		args := func(a ...any) []any {
			if prepared {
				return a
			}
			return nil
		}
		step := map[bool]string{false: "text", true: "prepared"}[prepared]
		insert, lookup := "INSERT INTO people (id, email, ssn) VALUES (1, 'ada@example.com', '123-45-6789')", "SELECT id FROM people WHERE email = 'ada@example.com'"
		if prepared {
			insert, lookup = "INSERT INTO people (id, email, ssn) VALUES (2, ?, ?)", "SELECT id FROM people WHERE email = ? ORDER BY id LIMIT 1"
		}
		if _, err := c.ExecContext(ctx, insert, args("ada@example.com", "123-45-6789")...); err != nil {
			t.Fatal(err)
		}
		rec.expect(t, step+" INSERT", db.User, db.Database, client, fieldcrypt.OpEncrypt, "email", "ssn")
		var id int
		if err := c.QueryRowContext(ctx, lookup, args("ada@example.com")...).Scan(&id); err != nil || id != 1 {
			t.Fatalf("%s lookup: id %d, %v", step, id, err)
		}
		rec.expect(t, step+" WHERE email =", db.User, db.Database, client, fieldcrypt.OpMatch, "email")
		var ssn string
		if err := c.QueryRowContext(ctx, "SELECT ssn FROM people WHERE id = 1").Scan(&ssn); err != nil || ssn != "123-45-6789" {
			t.Fatalf("%s SELECT ssn: %q, %v", step, ssn, err)
		}
		rec.expect(t, step+" SELECT ssn", db.User, db.Database, client, fieldcrypt.OpDecrypt, "ssn")
	}

	rec.deny.Store(&db.User)
	for _, q := range []struct {
		sql  string
		args []any
	}{
		{"INSERT INTO people (id, email, ssn) VALUES (3, 'bob@example.com', '987-65-4321')", nil},
		{"INSERT INTO people (id, email, ssn) VALUES (3, ?, ?)", []any{"bob@example.com", "987-65-4321"}},
	} {
		_, err := c.ExecContext(ctx, q.sql, q.args...)
		var me *driver.MySQLError
		if !errors.As(err, &me) || me.Number != 1143 || !strings.Contains(me.Message, "people.ssn") ||
			strings.Contains(me.Message, "987-65") {
			t.Fatalf("refused INSERT %q: %v, want ERR 1143 naming people.ssn", q.sql, err)
		}
		if refused := rec.take(); len(refused) == 0 || !isRefusal(refused[len(refused)-1].Err) {
			t.Errorf("monitor did not see the refusal: %+v", refused)
		}
	}
	var n int
	if err := direct.QueryRowContext(ctx, "SELECT count(*) FROM people").Scan(&n); err != nil || n != 2 {
		t.Fatalf("rows in people after the refusals: %d, %v; want 2", n, err)
	}
}

func isRefusal(err error) bool {
	var r *fieldcrypt.RefusedError
	return errors.As(err, &r)
}
