package main

import (
	"database/sql"
	"fmt"
	"log/slog"

	driver "github.com/go-sql-driver/mysql"

	"github.com/dbproxy/dbproxy/proxy/mysql/mycrypt"
	"github.com/dbproxy/dbproxy/rules"
)

// mysqlCatalogEnv names the environment variable holding the DSN
// (go-sql-driver form, user:password@tcp(host:port)/) of the catalog
// connection of the MySQL listeners: the column orders for INSERT without
// a column list into encrypted tables are read from information_schema
// over it. Unset: such INSERTs are refused.
const mysqlCatalogEnv = "DBPROXY_MYSQL_CATALOG_DSN"

// mysqlInterceptor returns the encryption layer of one MySQL listener: the
// same columns and keys as the PostgreSQL listeners, matched with MySQL's
// identifier rules.
func (x *encryption) mysqlInterceptor(log *slog.Logger) (*mycrypt.Interceptor, error) {
	set, err := rules.New(rules.DialectMySQL, x.specs)
	if err != nil {
		return nil, fmt.Errorf("encryption rules for mysql: %w", err)
	}
	opts := mycrypt.Options{Rules: set, Encryptor: x.enc, Logger: log}
	if x.getenv != nil {
		if dsn := x.getenv(mysqlCatalogEnv); dsn != "" {
			cfg, err := driver.ParseDSN(dsn)
			if err != nil {
				// ParseDSN errors quote no part of the DSN.
				return nil, fmt.Errorf("%s: %w", mysqlCatalogEnv, err)
			}
			conn, err := driver.NewConnector(cfg)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", mysqlCatalogEnv, err)
			}
			// Connected lazily, on the first lookup; the idle connection
			// is closed after a minute, so a replaced interceptor's pool
			// holds nothing.
			opts.Catalog = mycrypt.NewCatalog(sql.OpenDB(conn))
		}
	}
	return mycrypt.New(opts)
}
