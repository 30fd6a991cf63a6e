package integration

import (
	"bytes"
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/dbproxy/dbproxy/internal/testenv"
	"github.com/dbproxy/dbproxy/internal/testkeys"
	"github.com/dbproxy/dbproxy/internal/testlog"
	"github.com/dbproxy/dbproxy/proxy/postgres/pgcrypt"
	"github.com/dbproxy/dbproxy/rules"
	"github.com/dbproxy/dbproxy/value"
)

// The tests of this file replay the ways a red team found to get plaintext
// into an encrypted column, or a lookup value upstream in clear, on a
// listener encrypting users(email deterministic, ssn randomized): each
// attempt must be refused with its SQLSTATE and a message naming the
// relation and the reason, nothing of it may reach the server (the bytes
// the proxy sends upstream are recorded and searched), and the table, read
// directly, must hold ciphertext only.

const failClosedDDL = `CREATE TABLE users (id int PRIMARY KEY, email bytea, ssn bytea, note text);
CREATE TABLE plain (id int PRIMARY KEY, v text)`

func failClosedSpecs() []rules.Spec {
	return []rules.Spec{
		encSpec("users", "email", rules.ModeDeterministic, value.TypeText, "users_email"),
		encSpec("users", "ssn", rules.ModeRandomized, value.TypeText, "users_ssn"),
	}
}

// failEnv is an encEnv whose proxy records every byte it sends upstream on
// session connections (the catalog connection is separate).
type failEnv struct {
	*encEnv
	wire *testlog.Buffer
}

// startFailClosed starts the proxy over failClosedDDL; tweak adjusts the
// interceptor's options.
func startFailClosed(t *testing.T, tweak func(*pgcrypt.Options)) *failEnv {
	t.Helper()
	return startFailClosedWith(t, failClosedDDL, failClosedSpecs(), tweak)
}

// startFailClosedWith is startFailClosed over other tables and rules.
func startFailClosedWith(t *testing.T, ddl string, specs []rules.Spec, tweak func(*pgcrypt.Options)) *failEnv {
	t.Helper()
	ctx := context.Background()
	pg := testenv.StartPostgres(t)
	mgr := testkeys.Manager(t, testkeys.ForRules(specs)...)
	direct := testenv.ConnectPG(t, pg.DSN())
	if _, err := direct.Exec(ctx, ddl); err != nil {
		t.Fatalf("ddl: %v", err)
	}
	ic := pgEncInterceptor(t, pg, specs, mgr, tweak)
	wire := &testlog.Buffer{}
	p := startPGProxy(t, pg, proxyOpts{Interceptor: ic, Dial: func(ctx context.Context, network, addr string) (net.Conn, error) {
		var d net.Dialer
		c, err := d.DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return recordingConn{Conn: c, w: wire}, nil
	}})
	return &failEnv{encEnv: &encEnv{pg: pg, proxy: p, mgr: mgr, direct: direct, specs: specs}, wire: wire}
}

// refused runs sql through c over the simple and the extended protocol
// and checks that both are refused with state and every word of words.
func refused(t *testing.T, c *pgx.Conn, sql, state string, words ...string) {
	t.Helper()
	ctx := testCtx(t)
	for _, proto := range []string{"simple", "extended"} {
		var err error
		if proto == "simple" {
			_, err = c.PgConn().Exec(ctx, sql).ReadAll()
		} else {
			_, err = c.PgConn().ExecParams(ctx, sql, nil, nil, nil, nil).Close()
		}
		var pe *pgconn.PgError
		if !errors.As(err, &pe) {
			t.Errorf("%s protocol: %q: got %v, want a refusal", proto, sql, err)
			continue
		}
		if pe.Code != state || !strings.HasPrefix(pe.Message, "dbproxy: statement refused") {
			t.Errorf("%s protocol: %q: SQLSTATE %s %q, want %s from dbproxy", proto, sql, pe.Code, pe.Message, state)
		}
		for _, w := range words {
			if !strings.Contains(pe.Message, w) {
				t.Errorf("%s protocol: %q: message %q does not say %q", proto, sql, pe.Message, w)
			}
		}
	}
	if _, err := c.Exec(ctx, "SELECT 1"); err != nil {
		t.Fatalf("the session is unusable after a refusal: %v", err)
	}
}

// ok runs sql through c and fails the test on an error.
func ok(t *testing.T, c *pgx.Conn, sql string, args ...any) {
	t.Helper()
	if _, err := c.Exec(testCtx(t), sql, args...); err != nil {
		t.Fatalf("%q: %v", sql, err)
	}
}

// direct runs sql directly on the database (not through the proxy).
func (e *failEnv) directExec(t *testing.T, sql string) {
	t.Helper()
	if _, err := e.direct.Exec(testCtx(t), sql); err != nil {
		t.Fatalf("direct %q: %v", sql, err)
	}
}

// neverUpstream checks that none of the markers was ever sent to the
// server by a session, in any encoding the client could have used.
func (e *failEnv) neverUpstream(t *testing.T, markers ...string) {
	t.Helper()
	wire := e.wire.String()
	for _, m := range markers {
		if strings.Contains(wire, m) {
			t.Errorf("leak: %q was sent upstream", m)
		}
	}
}

// directBool runs a query returning one boolean directly.
func (e *failEnv) directBool(t *testing.T, sql string, args ...any) bool {
	t.Helper()
	var b bool
	if err := e.direct.QueryRow(testCtx(t), sql, args...).Scan(&b); err != nil {
		t.Fatalf("direct %q: %v", sql, err)
	}
	return b
}

// columnType returns the type of table.column as the server sees it, ""
// if there is no such column.
func (e *failEnv) columnType(t *testing.T, table, column string) string {
	t.Helper()
	var typ string
	err := e.direct.QueryRow(testCtx(t), `SELECT format_type(atttypid, atttypmod) FROM pg_attribute
WHERE attrelid = to_regclass($1) AND attname = $2 AND attnum > 0 AND NOT attisdropped`, table, column).Scan(&typ)
	if errors.Is(err, pgx.ErrNoRows) {
		return ""
	}
	if err != nil {
		t.Fatal(err)
	}
	return typ
}

// seed stores one row through the proxy so that at-rest checks have
// ciphertext to look at.
func (e *failEnv) seed(t *testing.T, c *pgx.Conn) {
	t.Helper()
	ok(t, c, `INSERT INTO users (id, email, ssn) VALUES (1, 'seed@example.com', 'seed-ssn-0001')`)
}

// startSeeded is startFailClosed with the seed row written through a
// connection (extended protocol) that it returns.
func startSeeded(t *testing.T) (*failEnv, *pgx.Conn) {
	t.Helper()
	e := startFailClosed(t, nil)
	c := e.connectMode(t, pgx.QueryExecModeCacheStatement)
	e.seed(t, c)
	return e, c
}

// checkSeedAtRest is checkAtRest for the seed row's values and more.
func (e *failEnv) checkSeedAtRest(t *testing.T, more ...string) {
	t.Helper()
	e.checkAtRest(t, append([]string{"seed@example.com", "seed-ssn-0001"}, more...))
}

// TestPGFailClosedRename: renaming an encrypted column or table, moving it
// to another schema, renaming its schema, or renaming something onto its
// name would let plaintext be written under a name without rules.
func TestPGFailClosedRename(t *testing.T) {
	e, c := startSeeded(t)
	ok(t, c, `CREATE SCHEMA archive`)
	refused(t, c, `ALTER TABLE users RENAME COLUMN ssn TO x`, "0A000", "public.users.ssn", "renaming an encrypted column")
	refused(t, c, `ALTER TABLE users RENAME ssn TO x`, "0A000", "renaming an encrypted column")
	refused(t, c, `ALTER TABLE users RENAME COLUMN note TO ssn`, "0A000", "to the name of an encrypted column")
	refused(t, c, `ALTER TABLE users RENAME TO people`, "0A000", "renaming encrypted table public.users")
	refused(t, c, `ALTER TABLE public.users SET SCHEMA archive`, "0A000", "public.users out from under its rules")
	refused(t, c, `ALTER SCHEMA public RENAME TO old_public`, "0A000", "renaming schema public")
	refused(t, c, `ALTER TABLE plain RENAME TO users`, "0A000", "the name of encrypted table public.users")
	refused(t, c, `ALTER TABLE plain SET SCHEMA archive; ALTER TABLE archive.plain RENAME TO users`, "0A000", "the name of encrypted table public.users")
	// A rename of anything else still works.
	ok(t, c, `ALTER TABLE users RENAME COLUMN note TO remark`)
	ok(t, c, `ALTER TABLE plain RENAME TO plain2`)

	if typ := e.columnType(t, "public.users", "ssn"); typ != "bytea" {
		t.Errorf("public.users.ssn is now %q", typ)
	}
	if e.directBool(t, `SELECT to_regclass('archive.users') IS NOT NULL OR to_regclass('people') IS NOT NULL`) {
		t.Error("the encrypted table was moved or renamed")
	}
	e.checkSeedAtRest(t)
}

// TestPGFailClosedInheritance: children, partitions and LIKE copies of an
// encrypted table take rows the proxy does not encrypt.
func TestPGFailClosedInheritance(t *testing.T) {
	e, c := startSeeded(t)
	e.directExec(t, `CREATE TABLE loose (id int, email bytea, ssn bytea, note text); CREATE TABLE ptab (id int, email bytea, ssn bytea, note text) PARTITION BY RANGE (id)`)
	refused(t, c, `CREATE TABLE kid () INHERITS (users)`, "0A000", "inheriting from encrypted table public.users")
	refused(t, c, `CREATE TABLE kid (extra int) INHERITS (public.users)`, "0A000", "inheriting from encrypted table public.users")
	refused(t, c, `CREATE TABLE part PARTITION OF users FOR VALUES FROM (0) TO (10)`, "0A000", "a partition of encrypted table public.users")
	refused(t, c, `ALTER TABLE users ATTACH PARTITION loose FOR VALUES FROM (0) TO (10)`, "0A000", "attaching a partition to encrypted table public.users")
	refused(t, c, `ALTER TABLE ptab ATTACH PARTITION users FOR VALUES FROM (0) TO (10)`, "0A000", "public.users cannot become a partition")
	refused(t, c, `ALTER TABLE loose INHERIT users`, "0A000", "inheriting from encrypted table public.users")
	refused(t, c, `ALTER TABLE users INHERIT loose`, "0A000", "public.users cannot become an inheritance child")
	refused(t, c, `CREATE TABLE copy (LIKE users INCLUDING ALL)`, "0A000", "(LIKE public.users)")

	if e.directBool(t, `SELECT to_regclass('kid') IS NOT NULL OR to_regclass('part') IS NOT NULL OR to_regclass('copy') IS NOT NULL
		OR EXISTS (SELECT 1 FROM pg_inherits WHERE inhparent = 'users'::regclass OR inhrelid = 'users'::regclass)`) {
		t.Error("a relation linked to the encrypted table was created")
	}
	e.checkSeedAtRest(t)
}

// TestPGFailClosedTriggersAndRules: code attached to an encrypted table
// could set its columns from other values.
func TestPGFailClosedTriggersAndRules(t *testing.T) {
	e, c := startSeeded(t)
	// The trigger function itself names no table (PL/pgSQL without
	// EXECUTE): it may be created; attaching it to the table may not.
	ok(t, c, `CREATE FUNCTION copy_ssn() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN NEW.ssn := convert_to(NEW.note, 'UTF8'); RETURN NEW; END $$`)
	refused(t, c, `CREATE TRIGGER t BEFORE INSERT ON users FOR EACH ROW EXECUTE FUNCTION copy_ssn()`, "0A000", "a trigger on encrypted table public.users")
	refused(t, c, `CREATE RULE r AS ON INSERT TO users DO ALSO INSERT INTO plain (id, v) VALUES (NEW.id, 'x')`, "0A000", "a rule on encrypted table public.users")
	refused(t, c, `CREATE RULE r AS ON INSERT TO plain DO INSTEAD INSERT INTO users (id, ssn) VALUES (NEW.id, convert_to(NEW.v, 'UTF8'))`, "0A000", "a rule whose actions name an encrypted table")
	// Had the trigger been created, this would store the note as ssn.
	ok(t, c, `INSERT INTO users (id, email, note) VALUES (2, 'two@example.com', 'trigger-ssn-222')`)

	if e.directBool(t, `SELECT EXISTS (SELECT 1 FROM pg_trigger WHERE tgrelid = 'users'::regclass) OR EXISTS (SELECT 1 FROM pg_rules WHERE rulename = 'r')`) {
		t.Error("a trigger or rule was created")
	}
	e.checkSeedAtRest(t, "two@example.com")
	var ssn []byte
	if err := e.direct.QueryRow(testCtx(t), `SELECT ssn FROM users WHERE id = 2`).Scan(&ssn); err != nil || ssn != nil {
		t.Errorf("ssn of row 2 = %q, %v; want NULL", ssn, err)
	}
}

// TestPGFailClosedDynamicSQL: DO blocks and procedural functions build SQL
// at run time that need not spell the table's name; refused unless the
// listener allows dynamic SQL.
func TestPGFailClosedDynamicSQL(t *testing.T) {
	e, c := startSeeded(t)
	refused(t, c, `DO $$ BEGIN EXECUTE 'insert into us'||'ers (id, ssn) values (9, convert_to(''dyn-secret-9'', ''UTF8''))'; END $$`,
		"42501", "DO block with EXECUTE", "allow_dynamic_sql")
	refused(t, c, `/* x */ do 'BEGIN EXECUTE ''insert into us''||''ers (id, ssn) values (10, convert_to(''''dyn-secret-10'''', ''''UTF8''''))''; END'`,
		"42501", "DO block with EXECUTE")
	refused(t, c, `SELECT 1; DO $$ BEGIN eXeCuTe format('select 1'); END $$`, "42501", "DO block with EXECUTE")
	refused(t, c, `DO LANGUAGE plperl $$ 1 $$`, "42501", "DO block in plperl")
	// PL/pgSQL without dynamic SQL reaches tables only by name.
	ok(t, c, `DO $$ BEGIN RAISE NOTICE 'no table here'; END $$`)
	refused(t, c, `CREATE FUNCTION f(t text) RETURNS void LANGUAGE plpgsql AS $$ BEGIN EXECUTE 'insert into us'||'ers (id, ssn) values (11, convert_to($1, ''UTF8''))' USING t; END $$`,
		"42501", "CREATE FUNCTION with EXECUTE")
	refused(t, c, `CREATE OR REPLACE PROCEDURE p(t text) LANGUAGE plpgsql AS $$ BEGIN EXECUTE 'insert into us'||'ers (id, ssn) values (12, convert_to($1, ''UTF8''))' USING t; END $$`,
		"42501", "CREATE PROCEDURE with EXECUTE")
	// A sql function whose body names the table through an escape.
	refused(t, c, `CREATE FUNCTION g(t text) RETURNS void LANGUAGE sql AS E'insert into \x75sers (id, ssn) values (13, convert_to(t, ''UTF8''))'`,
		"0A000", "whose body names an encrypted table")
	ok(t, c, `CREATE FUNCTION add1(i int) RETURNS int LANGUAGE sql AS 'select i + 1'`)
	// Core functions that run SQL text carry a lookup value in clear.
	refused(t, c, `SELECT query_to_xml('select id from us'||'ers where email = convert_to(''runner-secret@example.com'', ''UTF8'')', true, false, '')`,
		"42501", "query_to_xml runs SQL text")
	refused(t, c, `SELECT * FROM ts_stat('select to_tsvector(convert_from(ssn, ''UTF8'')) from us'||'ers')`, "42501", "ts_stat runs SQL text")

	e.neverUpstream(t, "dyn-secret", "us'||'ers", `\x75sers`, "runner-secret")
	if e.directBool(t, `SELECT EXISTS (SELECT 1 FROM users WHERE id >= 9) OR EXISTS (SELECT 1 FROM pg_proc WHERE proname IN ('f', 'g', 'p'))`) {
		t.Error("a dynamic statement ran")
	}
	e.checkSeedAtRest(t, "dyn-secret")

	t.Run("allow_dynamic_sql", func(t *testing.T) {
		e := startFailClosed(t, func(o *pgcrypt.Options) { o.AllowDynamicSQL = true })
		c := e.connectMode(t, pgx.QueryExecModeCacheStatement)
		ok(t, c, `DO $$ BEGIN PERFORM 1; END $$`)
		ok(t, c, `CREATE FUNCTION h() RETURNS int LANGUAGE plpgsql AS $$ BEGIN RETURN 1; END $$`)
		// Text that names the table is still refused.
		refused(t, c, `DO $$ BEGIN INSERT INTO users (id, ssn) VALUES (20, 'named-secret-20'); END $$`, "0A000", "DO block whose body names an encrypted table")
		e.neverUpstream(t, "named-secret")
		if !e.directBool(t, `SELECT EXISTS (SELECT 1 FROM pg_proc WHERE proname = 'h')`) {
			t.Error("the opt-in did not let CREATE FUNCTION through")
		}
	})
}

// TestPGFailClosedDirectView: a view over an encrypted table created
// directly in the database: a lookup through it would send the value in
// clear. New sessions see the view at once, open ones within the refresh
// interval.
func TestPGFailClosedDirectView(t *testing.T) {
	e := startFailClosed(t, func(o *pgcrypt.Options) { o.DerivedRefresh = 100 * time.Millisecond })
	open := e.connectMode(t, pgx.QueryExecModeCacheStatement)
	e.seed(t, open)
	ok(t, open, `SELECT id FROM plain WHERE v = 'warm-up'`)

	e.directExec(t, `CREATE VIEW v AS SELECT id, email FROM users; CREATE VIEW vv AS SELECT * FROM v;
		CREATE MATERIALIZED VIEW mv AS SELECT id, email FROM users`)
	// A session opened before the view existed sees it within the
	// refresh interval (100 ms here), without any other session starting.
	time.Sleep(500 * time.Millisecond)
	refused(t, open, `SELECT id FROM v WHERE email = 'view-lookup@example.com'`, "0A000", "is a view over encrypted table public.users")

	fresh := e.connectMode(t, pgx.QueryExecModeCacheStatement)
	refused(t, fresh, `SELECT id FROM v WHERE email = 'view-lookup@example.com'`, "0A000",
		"relation public.v is a view over encrypted table public.users; query the table")
	refused(t, fresh, `SELECT id FROM public.vv WHERE email = 'view-lookup@example.com'`, "0A000", "relation public.vv is a view over encrypted table public.users")
	refused(t, fresh, `SELECT id FROM mv WHERE email = 'view-lookup@example.com'`, "0A000", "relation public.mv is a view over encrypted table public.users")
	// The proxy itself refuses to create such views.
	refused(t, fresh, `CREATE VIEW w AS SELECT id FROM users`, "0A000", "a view over an encrypted table")

	e.neverUpstream(t, "view-lookup@example.com")
	// Dropping the view (allowed through the proxy) makes the name usable again.
	ok(t, fresh, `DROP VIEW vv`)
	ok(t, fresh, `DROP VIEW v`)
	fresh2 := e.connectMode(t, pgx.QueryExecModeCacheStatement)
	ok(t, fresh2, `CREATE TABLE v (id int)`)
	ok(t, fresh2, `SELECT id FROM v`)
}

// TestPGFailClosedDirectChildAndParent: an inheritance child or a parent
// of an encrypted table created directly: rows written through it land
// in, or come from, the encrypted table without its rules.
func TestPGFailClosedDirectChildAndParent(t *testing.T) {
	// No periodic refresh during the test: a new session must read the
	// derived relations before its first statement.
	e := startFailClosed(t, func(o *pgcrypt.Options) { o.DerivedRefresh = time.Hour })
	c := e.connectMode(t, pgx.QueryExecModeCacheStatement)
	e.seed(t, c)
	e.directExec(t, `CREATE TABLE kid () INHERITS (users); CREATE TABLE grandkid () INHERITS (kid);
		CREATE TABLE base (id int, email bytea, ssn bytea, note text); ALTER TABLE users INHERIT base`)
	c = e.connectMode(t, pgx.QueryExecModeCacheStatement) // a new session sees them at once
	refused(t, c, `INSERT INTO kid (id, ssn) VALUES (5, convert_to('child-secret-5', 'UTF8'))`, "0A000",
		"relation public.kid is a partition/child of encrypted table public.users")
	refused(t, c, `INSERT INTO grandkid (id, email) VALUES (6, convert_to('child-secret-6', 'UTF8'))`, "0A000", "relation public.grandkid is a partition/child")
	refused(t, c, `UPDATE base SET ssn = convert_to('parent-secret-7', 'UTF8')`, "0A000",
		"relation public.base is a parent/partitioned table of encrypted table public.users")
	if _, err := c.Exec(testCtx(t), `INSERT INTO kid (id, ssn) VALUES ($1, $2)`, 8, []byte("child-secret-8")); err == nil {
		t.Error("a bound insert into the child went through")
	}
	// Undoing the derivation is allowed.
	ok(t, c, `ALTER TABLE users NO INHERIT base`)
	ok(t, c, `DROP TABLE grandkid`)

	e.neverUpstream(t, "child-secret", "parent-secret")
	var n int
	if err := e.direct.QueryRow(testCtx(t), `SELECT count(*) FROM users`).Scan(&n); err != nil || n != 1 {
		t.Errorf("users holds %d rows (%v), want the seed row only", n, err)
	}
	e.checkSeedAtRest(t, "child-secret", "parent-secret")
}

// TestPGFailClosedShadowing: a relation with the encrypted table's name in
// a schema searched before the rule's (pg_temp is, implicitly) gets the
// values encrypted for the other table, and answers lookups meant for it.
// Creating one through the proxy is refused; one that exists anyway makes
// unqualified statements refused.
func TestPGFailClosedShadowing(t *testing.T) {
	e, c := startSeeded(t)
	ok(t, c, `CREATE SCHEMA s1`)
	refused(t, c, `CREATE TEMP TABLE users (id int, email bytea, ssn bytea, note text)`, "0A000", "pg_temp.users would shadow encrypted table public.users")
	refused(t, c, `CREATE TABLE pg_temp.users (id int)`, "0A000", "would shadow encrypted table public.users")
	refused(t, c, `CREATE TABLE s1.users (id int, email bytea, ssn bytea)`, "0A000", "s1.users would shadow encrypted table public.users")
	refused(t, c, `CREATE VIEW s1.users AS SELECT 1 AS id`, "0A000", "CREATE VIEW of s1.users would shadow")
	refused(t, c, `CREATE TEMP TABLE users AS SELECT 1 AS id`, "0A000", "would shadow")
	refused(t, c, `SELECT 1 AS id INTO TEMP users`, "0A000", "would shadow")
	refused(t, c, `ALTER TABLE plain SET SCHEMA s1; ALTER TABLE s1.plain RENAME TO users`, "0A000", "the name of encrypted table public.users")
	ok(t, c, `SET search_path = s1, public`)
	refused(t, c, `CREATE TABLE users (id int, email bytea, ssn bytea)`, "0A000", "s1.users would shadow encrypted table public.users")
	// Created directly (outside the proxy), a shadow makes unqualified
	// names refused, not misrouted.
	e.directExec(t, `CREATE TABLE s1.users (id int, email bytea, ssn bytea, note text)`)
	c2 := e.connectMode(t, pgx.QueryExecModeCacheStatement)
	ok(t, c2, `SET search_path = s1, public`)
	refused(t, c2, `INSERT INTO users (id, ssn) VALUES (3, 'shadow-secret-3')`, "42602", "schema-qualify")

	e.neverUpstream(t, "shadow-secret")
	if e.directBool(t, `SELECT EXISTS (SELECT 1 FROM pg_class WHERE relname = 'users' AND relpersistence = 't')`) {
		t.Error("a temporary users table was created")
	}

	// A temporary users table made in the session by code the proxy does
	// not see (a function created directly): pg_temp is searched first, so
	// unqualified names are refused rather than encrypted for public.users.
	e.directExec(t, `CREATE FUNCTION make_temp() RETURNS void LANGUAGE plpgsql AS $$
		BEGIN CREATE TEMP TABLE users (id int, email bytea, ssn bytea, note text); END $$`)
	c3 := e.connectMode(t, pgx.QueryExecModeCacheStatement)
	ok(t, c3, `SELECT make_temp()`)
	refused(t, c3, `INSERT INTO users (id, ssn) VALUES (4, 'temp-secret-4')`, "42602", `"users" resolves to pg_temp.users`, "schema-qualify")
	if _, err := c3.Exec(testCtx(t), `INSERT INTO users (id, ssn) VALUES ($1, $2)`, 5, "temp-secret-5"); err == nil {
		t.Error("a bound insert into the temporary shadow went through")
	}
	ok(t, c3, `INSERT INTO public.users (id, ssn) VALUES (6, 'qualified-ssn-6')`)
	var tempRows int
	if err := c3.QueryRow(testCtx(t), `SELECT count(*) FROM pg_temp.users`).Scan(&tempRows); err != nil || tempRows != 0 {
		t.Errorf("pg_temp.users holds %d rows (%v)", tempRows, err)
	}
	e.neverUpstream(t, "temp-secret")
	var n int
	if err := e.direct.QueryRow(testCtx(t), `SELECT count(*) FROM s1.users`).Scan(&n); err != nil || n != 0 {
		t.Errorf("s1.users holds %d rows (%v)", n, err)
	}
	e.checkSeedAtRest(t, "qualified-ssn-6")
}

// TestPGFailClosedAlterColumn: changing an encrypted column's type,
// default or generation would convert its ciphertext or store computed
// plaintext; dropping it stores nothing and is allowed.
func TestPGFailClosedAlterColumn(t *testing.T) {
	e, c := startSeeded(t)
	refused(t, c, `ALTER TABLE users ALTER COLUMN ssn TYPE text USING convert_from(ssn, 'UTF8')`, "0A000", "public.users.ssn", "changing the type")
	refused(t, c, `ALTER TABLE users ALTER COLUMN ssn SET DATA TYPE text`, "0A000", "changing the type")
	refused(t, c, `ALTER TABLE users ALTER COLUMN ssn SET DEFAULT convert_to('default-secret', 'UTF8')`, "0A000", "DEFAULT")
	refused(t, c, `ALTER TABLE users ALTER COLUMN note TYPE bytea USING ssn`, "0A000", "USING expression")
	refused(t, c, `ALTER TABLE users ADD COLUMN ssn2 bytea GENERATED ALWAYS AS (ssn) STORED`, "0A000", "generated column")
	refused(t, c, `ALTER TABLE users ALTER COLUMN ssn SET EXPRESSION AS (convert_to(note, 'UTF8'))`, "0A000", "generated or identity")
	if typ := e.columnType(t, "public.users", "ssn"); typ != "bytea" {
		t.Fatalf("public.users.ssn is now %q", typ)
	}
	if typ := e.columnType(t, "public.users", "ssn2"); typ != "" {
		t.Fatalf("public.users.ssn2 was added (%q)", typ)
	}
	ok(t, c, `ALTER TABLE users DROP COLUMN ssn`)
	if typ := e.columnType(t, "public.users", "ssn"); typ != "" {
		t.Errorf("public.users.ssn still there (%q)", typ)
	}
	e.neverUpstream(t, "default-secret")
}

// TestPGFailClosedReplicationAndImport: a subscription writes replicated
// rows into tables, and IMPORT FOREIGN SCHEMA creates relations named by
// the remote side, both without the proxy.
func TestPGFailClosedReplicationAndImport(t *testing.T) {
	e := startFailClosed(t, nil)
	c := e.connectMode(t, pgx.QueryExecModeCacheStatement)
	refused(t, c, `CREATE SUBSCRIPTION s CONNECTION 'host=127.0.0.1 dbname=x' PUBLICATION p WITH (connect = false)`, "0A000", "a subscription replicates rows")
	refused(t, c, `IMPORT FOREIGN SCHEMA remote FROM SERVER srv INTO public`, "0A000", "without LIMIT TO")
	if e.directBool(t, `SELECT EXISTS (SELECT 1 FROM pg_subscription WHERE subname = 's')`) {
		t.Error("the subscription was created")
	}
}

// TestPGFailClosedPlainDDLStillWorks: statements on tables without rules
// still pass through the proxy, and DDL on them (inheritance, views,
// renames, temporary tables) keeps working.
func TestPGFailClosedPlainDDLStillWorks(t *testing.T) {
	e := startFailClosed(t, nil)
	c := e.connectMode(t, pgx.QueryExecModeCacheStatement)
	ok(t, c, `INSERT INTO plain (id, v) VALUES (1, 'undo created alternative')`)
	var v string
	if err := c.QueryRow(testCtx(t), `SELECT v FROM plain WHERE id = $1`, 1).Scan(&v); err != nil || v != "undo created alternative" {
		t.Fatalf("select: %q %v", v, err)
	}
	ok(t, c, `CREATE TABLE plain_kid () INHERITS (plain)`)
	ok(t, c, `CREATE VIEW pv AS SELECT id, v FROM plain`)
	ok(t, c, `ALTER TABLE plain RENAME COLUMN v TO w`)
	ok(t, c, `CREATE TEMP TABLE scratch (x int)`)
}

// functionCall sends a FunctionCall (fast path) of oid with text
// arguments and returns the error the server or proxy answered, nil on a
// FunctionCallResponse.
func functionCall(t *testing.T, c *pgx.Conn, oid uint32, args ...string) error {
	t.Helper()
	ctx := testCtx(t)
	fc := &pgproto3.FunctionCall{Function: oid, ArgFormatCodes: []uint16{0}, ResultFormatCode: 0}
	for _, a := range args {
		fc.Arguments = append(fc.Arguments, []byte(a))
	}
	fe := c.PgConn().Frontend()
	fe.Send(fc)
	if err := fe.Flush(); err != nil {
		t.Fatal(err)
	}
	var result error
	for {
		msg, err := c.PgConn().ReceiveMessage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		switch m := msg.(type) {
		case *pgproto3.ErrorResponse:
			result = pgconn.ErrorResponseToPgError(m)
		case *pgproto3.ReadyForQuery:
			return result
		}
	}
}

// TestPGFailClosedFastPath: a fast-path FunctionCall names a function by
// OID, so query_to_xml called that way would run SQL text (with a lookup
// value in clear) that never went through the planner. Only the
// large-object functions libpq calls this way pass.
func TestPGFailClosedFastPath(t *testing.T) {
	e, c := startSeeded(t)
	var queryToXML, loCreat uint32
	if err := e.direct.QueryRow(testCtx(t), `SELECT 'pg_catalog.query_to_xml(text,boolean,boolean,text)'::regprocedure::oid,
		'pg_catalog.lo_creat(integer)'::regprocedure::oid`).Scan(&queryToXML, &loCreat); err != nil {
		t.Fatal(err)
	}
	err := functionCall(t, c, queryToXML, "select id from users where email = convert_to('fastpath-secret@example.com', 'UTF8')", "true", "false", "")
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != "42501" || !strings.Contains(pe.Message, "fast-path function call") {
		t.Fatalf("fast-path query_to_xml: %v, want a 42501 refusal", err)
	}
	ok(t, c, `SELECT 1`)
	if err := functionCall(t, c, loCreat, "-1"); err != nil {
		t.Fatalf("fast-path lo_creat (as libpq's lo_import calls it): %v", err)
	}
	e.neverUpstream(t, "fastpath-secret")

	t.Run("allow_dynamic_sql", func(t *testing.T) {
		e := startFailClosed(t, func(o *pgcrypt.Options) { o.AllowDynamicSQL = true })
		c := e.connectMode(t, pgx.QueryExecModeCacheStatement)
		if err := functionCall(t, c, queryToXML, "select 1 as x", "true", "false", ""); err != nil {
			t.Fatalf("fast-path query_to_xml with allow_dynamic_sql: %v", err)
		}
	})
}

// TestPGFailClosedConfiguredPartitions: partitions configured with the
// same rules as their partitioned table are encrypted tables in their own
// right: creating and attaching them through the proxy works, rows routed
// through the parent are stored encrypted, and only an unconfigured
// partition is refused.
func TestPGFailClosedConfiguredPartitions(t *testing.T) {
	var specs []rules.Spec
	for _, table := range []string{"events", "events_1", "events_2"} {
		specs = append(specs, encSpec(table, "secret", rules.ModeRandomized, value.TypeText, "events_secret"))
	}
	e := startFailClosedWith(t, `CREATE TABLE events (id int, secret bytea) PARTITION BY RANGE (id);
		CREATE TABLE events_2 (id int, secret bytea)`, specs, nil)
	c := e.connectMode(t, pgx.QueryExecModeCacheStatement)
	ok(t, c, `CREATE TABLE events_1 PARTITION OF events FOR VALUES FROM (0) TO (100)`)
	ok(t, c, `ALTER TABLE events ATTACH PARTITION events_2 FOR VALUES FROM (100) TO (200)`)
	refused(t, c, `CREATE TABLE events_3 PARTITION OF events FOR VALUES FROM (200) TO (300)`, "0A000", "a partition of encrypted table public.events")
	ok(t, c, `INSERT INTO events (id, secret) VALUES (1, 'routed-secret-1'), (150, 'routed-secret-150')`)
	ok(t, c, `INSERT INTO events_1 (id, secret) VALUES (2, 'direct-secret-2')`)
	var got string
	if err := c.QueryRow(testCtx(t), `SELECT secret FROM events_2 WHERE id = 150`).Scan(&got); err != nil || got != "routed-secret-150" {
		t.Fatalf("read through the configured partition: %q %v", got, err)
	}
	// A partition created directly without rules is refused by name.
	e.directExec(t, `CREATE TABLE events_9 PARTITION OF events FOR VALUES FROM (900) TO (1000)`)
	c2 := e.connectMode(t, pgx.QueryExecModeCacheStatement)
	refused(t, c2, `INSERT INTO events_9 (id, secret) VALUES (901, convert_to('unconfigured-secret', 'UTF8'))`, "0A000", "relation public.events_9 is a partition/child of encrypted table public.events")
	ok(t, c2, `INSERT INTO events (id, secret) VALUES (902, 'routed-secret-902')`)

	e.neverUpstream(t, "routed-secret", "direct-secret", "unconfigured-secret")
	e.checkAtRest(t, []string{"routed-secret", "direct-secret"})
	var raw []byte
	if err := e.direct.QueryRow(testCtx(t), `SELECT secret FROM events_9 WHERE id = 902`).Scan(&raw); err != nil || bytes.Contains(raw, []byte("routed-secret")) {
		t.Errorf("row routed to the unconfigured partition: %q %v", raw, err)
	}
}

// TestPGFailClosedPreparedBeforeView: a statement prepared while v was a
// plain table is forwarded without a plan; once v is replaced directly by
// a view over the encrypted table, binding a lookup value to it is
// refused instead of sent in clear.
func TestPGFailClosedPreparedBeforeView(t *testing.T) {
	e := startFailClosed(t, func(o *pgcrypt.Options) { o.DerivedRefresh = 100 * time.Millisecond })
	e.directExec(t, `CREATE TABLE v (id int, email bytea)`)
	c := e.connectMode(t, pgx.QueryExecModeCacheStatement)
	e.seed(t, c)
	const q = `SELECT id FROM v WHERE email = $1`
	if _, err := c.Exec(testCtx(t), q, []byte("harmless")); err != nil {
		t.Fatal(err)
	}
	e.directExec(t, `DROP TABLE v; CREATE VIEW v AS SELECT id, email FROM users`)
	time.Sleep(500 * time.Millisecond) // the refresh interval is 100 ms
	_, err := c.Exec(testCtx(t), q, []byte("prep-secret@example.com"))
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != "0A000" || !strings.Contains(pe.Message, "prepared before a relation it names became known as derived") {
		t.Fatalf("bind after the view appeared: %v, want a refusal", err)
	}
	e.neverUpstream(t, "prep-secret")
}

// TestPGFailClosedCatalogDown: a session whose database's derived
// relations cannot be read does not start (its pre-filter would not know
// their names); the client gets 57P03.
func TestPGFailClosedCatalogDown(t *testing.T) {
	e := startFailClosed(t, func(o *pgcrypt.Options) {
		o.Connect = func(context.Context, string, string) (*pgx.Conn, error) {
			return nil, errors.New("catalog unreachable")
		}
	})
	// The relay has answered the startup by then: the FATAL arrives
	// before any statement is relayed.
	c, err := pgx.Connect(testCtx(t), e.proxy.DSN("disable"))
	if err == nil {
		_, err = c.Exec(testCtx(t), "SELECT 1")
		_ = c.Close(context.Background())
	}
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != "57P03" || !strings.Contains(pe.Message, "relations derived from encrypted tables") {
		t.Fatalf("connect with the catalog down: %v, want FATAL 57P03", err)
	}
}
