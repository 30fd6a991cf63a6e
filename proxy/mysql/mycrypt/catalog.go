package mycrypt

import (
	"context"
	"database/sql"
	"fmt"
	"time"
)

// catalogTimeout bounds one catalog lookup.
const catalogTimeout = 5 * time.Second

// Catalog is the mysqlsql.Catalog of the encryption layer: it reads column
// orders from information_schema.columns over its own connection to the
// upstream server (a *sql.DB the caller opens, e.g. with
// github.com/go-sql-driver/mysql), separate from the sessions' connections.
// The user it logs in as must be able to see the encrypted tables' columns
// (any privilege on them). The Planner caches the answers, so it is asked
// only on plan-cache misses of column-less INSERTs, and again after DDL.
// Safe for concurrent use.
type Catalog struct {
	db *sql.DB
}

// NewCatalog returns a Catalog over db, which it takes over: it keeps at
// most one connection open, closes it after a minute without lookups, and
// [Catalog.Close] closes db.
func NewCatalog(db *sql.DB) *Catalog {
	db.SetMaxOpenConns(1)
	db.SetMaxIdleConns(1)
	db.SetConnMaxIdleTime(time.Minute)
	return &Catalog{db: db}
}

// Close closes the connection and the pool's goroutines; later lookups
// fail. [Interceptor.Close] calls it for the Catalog it was given.
func (c *Catalog) Close() error { return c.db.Close() }

// Columns implements mysqlsql.Catalog: the column names of database.table
// in ordinal order, none if the table does not exist (or is invisible to
// the catalog user).
func (c *Catalog) Columns(ctx context.Context, database, table string) ([]string, error) {
	ctx, cancel := context.WithTimeout(ctx, catalogTimeout)
	defer cancel()
	rows, err := c.db.QueryContext(ctx, "SELECT COLUMN_NAME FROM information_schema.COLUMNS "+
		"WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? ORDER BY ORDINAL_POSITION", database, table)
	if err != nil {
		return nil, fmt.Errorf("catalog lookup: %w", err)
	}
	defer rows.Close()
	var cols []string
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			return nil, fmt.Errorf("catalog lookup: %w", err)
		}
		cols = append(cols, name)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("catalog lookup: %w", err)
	}
	return cols, nil
}

// ServerTimeZone implements ZoneSource: the server's global time_zone and
// its system_time_zone.
func (c *Catalog) ServerTimeZone(ctx context.Context) (zone, system string, err error) {
	ctx, cancel := context.WithTimeout(ctx, catalogTimeout)
	defer cancel()
	if err := c.db.QueryRowContext(ctx, "SELECT @@GLOBAL.time_zone, @@GLOBAL.system_time_zone").Scan(&zone, &system); err != nil {
		return "", "", fmt.Errorf("server time_zone: %w", err)
	}
	return zone, system, nil
}

// ServerLexState implements LexSource: the server's global sql_mode,
// character_set_client and init_connect.
func (c *Catalog) ServerLexState(ctx context.Context) (sqlMode, charset, initConnect string, err error) {
	ctx, cancel := context.WithTimeout(ctx, catalogTimeout)
	defer cancel()
	var ic sql.NullString
	if err := c.db.QueryRowContext(ctx, "SELECT @@GLOBAL.sql_mode, @@GLOBAL.character_set_client, @@GLOBAL.init_connect").
		Scan(&sqlMode, &charset, &ic); err != nil {
		return "", "", "", fmt.Errorf("server sql_mode: %w", err)
	}
	return sqlMode, charset, ic.String, nil
}
