package pgcrypt

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/jackc/pgx/v5"

	"github.com/dbproxy/dbproxy/rules"
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
	tables map[uint32]*tableInfo
}

func newCatalog(database, user string, set *rules.Set, connect ConnectFunc) *catalog {
	return &catalog{database: database, user: user, rules: set, connect: connect, tables: map[uint32]*tableInfo{}}
}

// purge drops every cached answer.
func (c *catalog) purge() {
	c.mu.Lock()
	clear(c.tables)
	c.gen.Add(1)
	c.mu.Unlock()
}

func (c *catalog) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.conn != nil {
		_ = c.conn.Close(context.Background())
		c.conn = nil
	}
}

// withConn runs f on the connection, reconnecting once if it is broken.
// c.mu must be held.
func (c *catalog) withConn(ctx context.Context, f func(*pgx.Conn) error) error {
	for attempt := 0; ; attempt++ {
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
	c.mu.Lock()
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
	err := c.withConn(ctx, func(conn *pgx.Conn) error {
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
	}
	return ti, nil
}

// Resolve implements pgsql.Catalog.
func (c *catalog) Resolve(ctx context.Context, searchPath []string, table string) (string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var schemas []string
	err := c.withConn(ctx, func(conn *pgx.Conn) error {
		rows, err := conn.Query(ctx, `SELECT n.nspname FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE c.relname = $1 AND c.relkind IN ('r','p','v','m','f')`, table)
		if err != nil {
			return err
		}
		schemas, err = pgx.CollectRows(rows, pgx.RowTo[string])
		return err
	})
	if err != nil {
		return "", fmt.Errorf("resolve table %q: %w", table, err)
	}
	has := func(s string) bool {
		for _, x := range schemas {
			if x == s {
				return true
			}
		}
		return false
	}
	implicitCatalog := true
	for _, s := range searchPath {
		if s == "pg_catalog" {
			implicitCatalog = false
		}
	}
	if implicitCatalog && has("pg_catalog") {
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

// Columns implements pgsql.Catalog.
func (c *catalog) Columns(ctx context.Context, schema, table string) ([]string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var cols []string
	err := c.withConn(ctx, func(conn *pgx.Conn) error {
		rows, err := conn.Query(ctx, `SELECT a.attname FROM pg_catalog.pg_attribute a
JOIN pg_catalog.pg_class c ON c.oid = a.attrelid
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = $1 AND c.relname = $2 AND a.attnum > 0 AND NOT a.attisdropped
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
