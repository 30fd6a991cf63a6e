package pgcrypt

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/dbproxy/dbproxy/internal/blocking"
	"github.com/dbproxy/dbproxy/rules"
	"github.com/dbproxy/dbproxy/sqlplan"
	"github.com/dbproxy/dbproxy/sqlplan/pgsql"
)

// ConnectFunc opens a catalog connection to database. user is the user of
// the session that first needed the database (the catalog tables read are
// readable by every user); an implementation may log in as another user.
type ConnectFunc func(ctx context.Context, database, user string) (*pgx.Conn, error)

// tableInfo is what the cache knows about one relation OID.
type tableInfo struct {
	found bool
	// encView: a view or materialized view that reads (directly or through
	// other views) a table with encrypted columns. Its bytea columns may
	// carry ciphertext without a rule to decrypt them.
	encView bool
	cols    map[int16]*rules.ColumnRule // encrypted columns by attnum; nil if none
}

// catalog answers pgsql.Catalog and the result-side OID lookups for one
// database over one lazily opened connection. Safe for concurrent use.
type catalog struct {
	database string
	user     string
	rules    *rules.Set // narrowed to database
	connect  ConnectFunc

	// gen counts purges: an answer derived from the cache is current while
	// gen has not moved.
	gen atomic.Uint64

	mu     sync.Mutex
	conn   *pgx.Conn
	closed bool // by close: no connection is opened again
	tables map[uint32]*tableInfo
	// known is a copy of tables, published after each change, that Table
	// reads without the lock: sessions on different event loops would
	// otherwise contend for it on every result description, and one that
	// finds it taken moves off its loop (lock).
	known atomic.Pointer[map[uint32]*tableInfo]

	// refreshMu serializes refreshDerived; derivedAt is when the last
	// successful refresh started.
	refreshMu sync.Mutex
	derivedAt time.Time
}

func newCatalog(database, user string, set *rules.Set, connect ConnectFunc) *catalog {
	return &catalog{database: database, user: user, rules: set, connect: connect, tables: map[uint32]*tableInfo{}}
}

// lock takes c.mu. It is held across the catalog's queries: a session
// that would wait for another's announces it first (its hook may run on
// an event loop).
func (c *catalog) lock(ctx context.Context) { blocking.Lock(ctx, &c.mu) }

// query runs f on the connection (withConn) after announcing the wait.
// c.mu must be held.
func (c *catalog) query(ctx context.Context, f func(*pgx.Conn) error) error {
	blocking.Announce(ctx)
	return c.withConn(ctx, f)
}

// purge drops every cached answer.
func (c *catalog) purge(ctx context.Context) {
	c.lock(ctx)
	clear(c.tables)
	c.publishLocked()
	c.gen.Add(1)
	c.mu.Unlock()
}

// publishLocked publishes a copy of c.tables for Table. c.mu is held.
func (c *catalog) publishLocked() {
	m := maps.Clone(c.tables)
	c.known.Store(&m)
}

// catalogCloseTimeout bounds the Terminate a closing catalog connection
// sends.
const catalogCloseTimeout = 5 * time.Second

// close closes the connection for good: later lookups fail with
// errCatalogClosed instead of logging in again.
func (c *catalog) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	clear(c.tables)
	c.publishLocked()
	if c.conn != nil {
		ctx, cancel := context.WithTimeout(context.Background(), catalogCloseTimeout)
		_ = c.conn.Close(ctx)
		cancel()
		c.conn = nil
	}
}

// errCatalogClosed fails the lookups of a session that outlived its
// Interceptor's Close.
var errCatalogClosed = errors.New("catalog connection closed: the encryption rules were reloaded")

// withConn runs f on the connection, reconnecting once if it is broken.
// c.mu must be held.
func (c *catalog) withConn(ctx context.Context, f func(*pgx.Conn) error) error {
	for attempt := 0; ; attempt++ {
		if c.closed {
			return errCatalogClosed
		}
		if c.conn == nil || c.conn.IsClosed() {
			conn, err := c.connect(ctx, c.database, c.user)
			if err != nil {
				return fmt.Errorf("catalog connection to database %q: %w", c.database, err)
			}
			c.conn = conn
		}
		err := f(c.conn)
		if err == nil {
			return nil
		}
		if c.conn.IsClosed() && attempt == 0 && ctx.Err() == nil {
			c.conn = nil
			continue
		}
		return err
	}
}

// Table returns the encrypted columns of relation oid by attribute number,
// and whether the relation exists (as seen from a fresh transaction).
func (c *catalog) Table(ctx context.Context, oid uint32) (*tableInfo, error) {
	if m := c.known.Load(); m != nil {
		if ti, ok := (*m)[oid]; ok {
			return ti, nil
		}
	}
	c.lock(ctx)
	defer c.mu.Unlock()
	return c.table(ctx, oid, 0)
}

// table is Table with c.mu held; depth bounds the walk through views.
func (c *catalog) table(ctx context.Context, oid uint32, depth int) (*tableInfo, error) {
	if ti, ok := c.tables[oid]; ok {
		return ti, nil
	}
	ti := &tableInfo{}
	var kind string
	var deps []uint32
	err := c.query(ctx, func(conn *pgx.Conn) error {
		rows, err := conn.Query(ctx, `SELECT n.nspname, c.relname, c.relkind::text, a.attnum, a.attname
FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid
WHERE c.oid = $1 AND a.attnum > 0 AND NOT a.attisdropped`, oid)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var schema, table, col string
			var num int16
			if err := rows.Scan(&schema, &table, &kind, &num, &col); err != nil {
				return err
			}
			ti.found = true
			if r := c.rules.Column(c.database, schema, table, col); r != nil {
				if ti.cols == nil {
					ti.cols = map[int16]*rules.ColumnRule{}
				}
				ti.cols[num] = r
			}
		}
		if err := rows.Err(); err != nil {
			return err
		}
		if kind != "v" && kind != "m" {
			return nil
		}
		rows, err = conn.Query(ctx, `SELECT DISTINCT d.refobjid::int8 FROM pg_catalog.pg_rewrite r
JOIN pg_catalog.pg_depend d ON d.classid = 'pg_catalog.pg_rewrite'::regclass AND d.objid = r.oid
	AND d.refclassid = 'pg_catalog.pg_class'::regclass
WHERE r.ev_class = $1 AND d.refobjid <> $1`, oid)
		if err != nil {
			return err
		}
		ids, err := pgx.CollectRows(rows, pgx.RowTo[int64])
		for _, id := range ids {
			deps = append(deps, uint32(id))
		}
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("look up relation %d: %w", oid, err)
	}
	for _, dep := range deps {
		if depth > 16 {
			ti.encView = true // fail closed on absurd nesting
			break
		}
		di, err := c.table(ctx, dep, depth+1)
		if err != nil {
			return nil, err
		}
		if di.cols != nil || di.encView {
			ti.encView = true
			break
		}
	}
	if ti.found { // a missing relation may appear once its transaction commits
		c.tables[oid] = ti
		c.publishLocked()
	}
	return ti, nil
}

// Resolve implements pgsql.Catalog. Like PostgreSQL it searches the
// temporary schema first unless the path lists pg_temp elsewhere, then
// pg_catalog unless the path lists it; any relation kind occupies a name.
// The catalog connection cannot tell the session's temporary schema from
// another session's, so a temporary relation of that name in any session
// resolves to "pg_temp" (which has no rules: statements on an encrypted
// table of that name are then refused unless schema-qualified).
func (c *catalog) Resolve(ctx context.Context, searchPath []string, table string) (string, error) {
	c.lock(ctx)
	defer c.mu.Unlock()
	var schemas []string
	err := c.query(ctx, func(conn *pgx.Conn) error {
		rows, err := conn.Query(ctx, `SELECT CASE WHEN n.nspname LIKE 'pg\_temp\_%' THEN 'pg_temp' ELSE n.nspname END
FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE c.relname = $1`, table)
		if err != nil {
			return err
		}
		schemas, err = pgx.CollectRows(rows, pgx.RowTo[string])
		return err
	})
	if err != nil {
		return "", fmt.Errorf("resolve table %q: %w", table, err)
	}
	has := func(s string) bool { return slices.Contains(schemas, s) }
	if !slices.Contains(searchPath, "pg_temp") && has("pg_temp") {
		return "pg_temp", nil
	}
	if !slices.Contains(searchPath, "pg_catalog") && has("pg_catalog") {
		return "pg_catalog", nil
	}
	for _, s := range searchPath {
		if s == "$user" {
			return "", errors.New("search_path holds an unsubstituted $user")
		}
		if has(s) {
			return s, nil
		}
	}
	return "", nil
}

// CreationSchema implements pgsql.Catalog: the first schema of searchPath
// that exists, or "pg_temp" when pg_temp comes before it (PostgreSQL
// then creates in the session's temporary schema, which the catalog
// connection cannot see). USAGE privileges are not checked.
func (c *catalog) CreationSchema(ctx context.Context, searchPath []string) (string, error) {
	c.lock(ctx)
	defer c.mu.Unlock()
	var schemas []string
	err := c.query(ctx, func(conn *pgx.Conn) error {
		rows, err := conn.Query(ctx, `SELECT nspname::text FROM pg_catalog.pg_namespace WHERE nspname = ANY($1::text[])`, searchPath)
		if err != nil {
			return err
		}
		schemas, err = pgx.CollectRows(rows, pgx.RowTo[string])
		return err
	})
	if err != nil {
		return "", fmt.Errorf("creation schema: %w", err)
	}
	for _, s := range searchPath {
		switch {
		case s == "$user":
			return "", errors.New("search_path holds an unsubstituted $user")
		case s == "pg_temp":
			return s, nil
		case slices.Contains(schemas, s):
			return s, nil
		}
	}
	return "", nil
}

// Columns implements pgsql.Catalog.
func (c *catalog) Columns(ctx context.Context, schema, table string) ([]string, error) {
	c.lock(ctx)
	defer c.mu.Unlock()
	var cols []string
	err := c.query(ctx, func(conn *pgx.Conn) error {
		rows, err := conn.Query(ctx, `SELECT a.attname FROM pg_catalog.pg_attribute a
JOIN pg_catalog.pg_class c ON c.oid = a.attrelid
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE (n.nspname = $1 OR ($1 = 'pg_temp' AND n.nspname LIKE 'pg\_temp\_%'))
	AND c.relname = $2 AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY a.attnum`, schema, table)
		if err != nil {
			return err
		}
		cols, err = pgx.CollectRows(rows, pgx.RowTo[string])
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("columns of %q.%q: %w", schema, table, err)
	}
	return cols, nil
}

// derivedSQL lists the relations derived from the tables named by the
// arrays $1 (schemas) and $2 (tables): inheritance children and partitions
// (recursively), inheritance parents and partitioned tables above them
// (recursively), and views and materialized views whose rules depend on
// any of these or on such views (pg_depend of pg_rewrite); kind c, p, v.
// It also lists relations with an encrypted table's name in another
// schema (kind s), so that their appearance purges cached plans.
// Temporary schemas read as pg_temp.
const derivedSQL = `WITH RECURSIVE
enc AS (
	SELECT c.oid FROM unnest($1::text[], $2::text[]) AS cfg(s, r)
	JOIN pg_catalog.pg_namespace n ON n.nspname = cfg.s
	JOIN pg_catalog.pg_class c ON c.relnamespace = n.oid AND c.relname = cfg.r
),
der(oid, base, kind, depth) AS (
	SELECT oid, oid, 'e'::text, 0 FROM enc
	UNION
	SELECT x.oid, d.base, x.kind, d.depth + 1
	FROM der d CROSS JOIN LATERAL (
		SELECT i.inhrelid AS oid, 'c'::text AS kind FROM pg_catalog.pg_inherits i
		WHERE i.inhparent = d.oid AND d.kind IN ('e', 'c')
		UNION ALL
		SELECT i.inhparent, 'p' FROM pg_catalog.pg_inherits i
		WHERE i.inhrelid = d.oid AND d.kind IN ('e', 'p')
		UNION ALL
		SELECT r.ev_class, 'v' FROM pg_catalog.pg_depend dep
		JOIN pg_catalog.pg_rewrite r ON r.oid = dep.objid
		WHERE dep.classid = 'pg_catalog.pg_rewrite'::regclass AND dep.refclassid = 'pg_catalog.pg_class'::regclass
			AND dep.refobjid = d.oid AND r.ev_class <> d.oid
	) x
	WHERE d.depth < 32
)
SELECT DISTINCT CASE WHEN n.nspname LIKE 'pg\_temp\_%' THEN 'pg_temp' ELSE n.nspname::text END, c.relname::text, d.kind,
	bn.nspname::text, b.relname::text
FROM der d
JOIN pg_catalog.pg_class c ON c.oid = d.oid JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
JOIN pg_catalog.pg_class b ON b.oid = d.base JOIN pg_catalog.pg_namespace bn ON bn.oid = b.relnamespace
WHERE d.kind <> 'e'
UNION ALL
SELECT CASE WHEN n.nspname LIKE 'pg\_temp\_%' THEN 'pg_temp' ELSE n.nspname::text END, c.relname::text, 's', cfg.s, cfg.r
FROM unnest($1::text[], $2::text[]) AS cfg(s, r)
JOIN pg_catalog.pg_class c ON c.relname = cfg.r
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname <> cfg.s`

// derivedKinds maps derivedSQL's kinds.
var derivedKinds = map[string]pgsql.DerivedKind{
	"c": pgsql.DerivedChild, "p": pgsql.DerivedParent, "v": pgsql.DerivedView, "s": pgsql.DerivedNamesake,
}

// derivedRelations runs derivedSQL for the encrypted tables of c.rules.
func (c *catalog) derivedRelations(ctx context.Context) ([]pgsql.DerivedRelation, error) {
	var schemas, tables []string
	for _, t := range c.rules.Tables() {
		schemas, tables = append(schemas, t.Schema), append(tables, t.Table)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []pgsql.DerivedRelation
	err := c.query(ctx, func(conn *pgx.Conn) error {
		rows, err := conn.Query(ctx, derivedSQL, schemas, tables)
		if err != nil {
			return err
		}
		out, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (pgsql.DerivedRelation, error) {
			var d pgsql.DerivedRelation
			var kind string
			err := r.Scan(&d.Schema, &d.Name, &kind, &d.BaseSchema, &d.BaseTable)
			d.Kind = derivedKinds[kind]
			return d, err
		})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("relations derived from encrypted tables in database %q: %w", c.database, err)
	}
	return out, nil
}

// errPreparedBeforeDerived answers the Bind of a statement the pre-filter
// skipped at Parse whose text it no longer skips since the derived
// relations changed (session.bind).
var errPreparedBeforeDerived = errorResponse(sqlplan.StateFeatureNotSupported,
	"dbproxy: statement refused: prepared before a relation it names became known as derived from an encrypted table (a view, child or parent created directly in the database); prepare it again")

// refreshDerived reads the derived relations into the planner unless a
// refresh that started at or after since has already done so. Refreshes
// are serialized; a failed one changes nothing.
func (c *catalog) refreshDerived(ctx context.Context, since time.Time, p *pgsql.Planner) error {
	c.refreshMu.Lock()
	defer c.refreshMu.Unlock()
	if !c.derivedAt.IsZero() && !c.derivedAt.Before(since) {
		return nil
	}
	start := time.Now()
	rels, err := c.derivedRelations(ctx)
	if err != nil {
		return err
	}
	p.SetDerived(rels)
	c.derivedAt = start
	return nil
}
