package main

import (
	"database/sql"
	"fmt"
	"log/slog"

	driver "github.com/go-sql-driver/mysql"

	"github.com/dbproxy/dbproxy/config"
	"github.com/dbproxy/dbproxy/proxy"
	"github.com/dbproxy/dbproxy/proxy/mysql/mycrypt"
	"github.com/dbproxy/dbproxy/rules"
)

// The credentials of the MySQL listeners' catalog connection. MySQL relays
// each client's own authentication, so the proxy has no password of its
// own to reuse (the PostgreSQL side falls back on the libpq environment).
const (
	mysqlCatalogUserEnv     = "DBPROXY_MYSQL_CATALOG_USER"
	mysqlCatalogPasswordEnv = "DBPROXY_MYSQL_CATALOG_PASSWORD"
)

// mysqlInterceptor returns the encryption layer of one MySQL listener: the
// same columns and keys as the PostgreSQL listeners, matched with MySQL's
// identifier rules.
//
// Its catalog connection (column orders for INSERT/REPLACE without a column
// list into encrypted tables, from information_schema; the server's default
// time_zone, sql_mode and character set, which sessions start in) goes to the
// listener's upstream with the listener's upstream TLS, as the user named by
// DBPROXY_MYSQL_CATALOG_USER (password DBPROXY_MYSQL_CATALOG_PASSWORD).
// Without that user such statements are refused.
func (x *encryption) mysqlInterceptor(lc *config.Listener, log *slog.Logger) (*mycrypt.Interceptor, error) {
	set, err := rules.New(rules.DialectMySQL, x.specs)
	if err != nil {
		return nil, fmt.Errorf("encryption rules for mysql: %w", err)
	}
	opts := mycrypt.Options{Rules: set, Encryptor: x.enc, Logger: log}
	if user := x.getenv(mysqlCatalogUserEnv); user != "" {
		db, err := mysqlCatalogDB(lc, user, x.getenv(mysqlCatalogPasswordEnv))
		if err != nil {
			return nil, fmt.Errorf("catalog connection: %w", err)
		}
		cat := mycrypt.NewCatalog(db)
		opts.Catalog, opts.Zones, opts.Lex = cat, cat, cat
	}
	return mycrypt.New(opts)
}

// mysqlCatalogDB returns a (lazily connecting) pool for the catalog of lc's
// upstream. Its idle connection is closed after a minute, so a replaced
// interceptor's pool holds nothing.
func mysqlCatalogDB(lc *config.Listener, user, password string) (*sql.DB, error) {
	cfg := driver.NewConfig()
	cfg.User, cfg.Passwd = user, password
	cfg.Net, cfg.Addr = "tcp", lc.Upstream
	up, err := upstreamTLS(lc)
	if err != nil {
		return nil, err
	}
	switch up.Mode {
	case proxy.SSLDisable:
	case proxy.SSLPrefer:
		cfg.TLSConfig = "preferred"
	default:
		if cfg.TLS, err = up.ClientConfig(); err != nil {
			return nil, fmt.Errorf("upstream_tls: %w", err)
		}
	}
	conn, err := driver.NewConnector(cfg)
	if err != nil {
		return nil, err
	}
	return sql.OpenDB(conn), nil
}
