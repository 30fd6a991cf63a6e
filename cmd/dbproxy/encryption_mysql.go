package main

import (
	"context"
	"database/sql"
	sqldriver "database/sql/driver"
	"errors"
	"fmt"
	"log/slog"
	"net"

	driver "github.com/go-sql-driver/mysql"

	"github.com/dbproxy/dbproxy/config"
	"github.com/dbproxy/dbproxy/internal/mysqllog"
	"github.com/dbproxy/dbproxy/metrics"
	"github.com/dbproxy/dbproxy/proxy"
	"github.com/dbproxy/dbproxy/proxy/mysql/mycrypt"
	"github.com/dbproxy/dbproxy/rules"
)

// The environment fallback for the credentials of a MySQL listener's
// catalog connection when it has no catalog: section. MySQL relays each
// client's own authentication, so the proxy has no password of its own to
// reuse (the PostgreSQL side falls back on the libpq environment).
const (
	mysqlCatalogUserEnv     = "DBPROXY_MYSQL_CATALOG_USER"
	mysqlCatalogPasswordEnv = "DBPROXY_MYSQL_CATALOG_PASSWORD"
)

// mysqlInterceptor returns the encryption layer of one MySQL listener
// (index: its position in listeners:): the same columns and keys as the
// PostgreSQL listeners, matched with MySQL's identifier rules.
//
// Its catalog connection (column orders for INSERT/REPLACE without a column
// list into encrypted tables, from information_schema; the server's default
// time_zone, sql_mode and character set, which sessions start in) goes to
// the listener's upstream with the listener's upstream TLS, as the
// listener's catalog.user; without a catalog: section, as the user named by
// DBPROXY_MYSQL_CATALOG_USER (password DBPROXY_MYSQL_CATALOG_PASSWORD).
// Without either, such statements are refused. A failed login's error
// (logged) says which setting fixes it.
func (x *encryption) mysqlInterceptor(lc *config.Listener, index int, log *slog.Logger, reads *metrics.Listener) (*mycrypt.Interceptor, error) {
	set, err := rules.New(rules.DialectMySQL, x.specs)
	if err != nil {
		return nil, fmt.Errorf("encryption rules for mysql: %w", err)
	}
	opts := mycrypt.Options{Rules: set, Encryptor: x.ring.enc, Guard: x.keyUse.Guard, Monitor: x.keyUse.Monitor, Policy: x.keyUse.Policy,
		AllowDynamicSQL: lc.AllowDynamicSQL, Logger: log}
	login := newCatalogLogin(lc, index, x.getenv)
	user, pw, err := login.mysqlUser()
	switch {
	case err != nil:
		// The password cannot be read: every lookup fails with that error
		// (logged with its remedy), as a failed login would.
		cat := countCatalog(mycrypt.NewCatalog(sql.OpenDB(failConnector{err: err})), reads)
		opts.Catalog, opts.Zones = cat, cat
	case user != "":
		db, err := mysqlCatalogDB(login, user, pw, log)
		if err != nil {
			return nil, fmt.Errorf("catalog connection: %w", err)
		}
		cat := countCatalog(mycrypt.NewCatalog(db), reads)
		opts.Catalog, opts.Zones, opts.Lex = cat, cat, cat
	}
	return mycrypt.New(opts)
}

// failConnector is a database/sql connector whose every login fails.
type failConnector struct{ err error }

func (c failConnector) Connect(context.Context) (sqldriver.Conn, error) { return nil, c.err }
func (c failConnector) Driver() sqldriver.Driver                        { return failDriver(c) }

type failDriver failConnector

func (d failDriver) Open(string) (sqldriver.Conn, error) { return nil, d.err }

// mysqlCatalogDB returns a (lazily connecting) pool for the catalog of the
// listener's upstream: its hosts in order, as the sessions try them, each
// name resolved on every connect and each host's name its TLS server name
// unless upstream_tls.server_name is set. Its idle connection is closed
// after a minute, so a replaced interceptor's pool holds nothing. Login
// errors carry the hint of login. The driver's own messages go to log.
func mysqlCatalogDB(login catalogLogin, user, password string, log *slog.Logger) (*sql.DB, error) {
	lc := login.lc
	up, err := upstreamTLS(lc)
	if err != nil {
		return nil, err
	}
	var hc hostsConnector
	for _, addr := range lc.UpstreamHosts() {
		cfg := driver.NewConfig()
		cfg.User, cfg.Passwd = user, password
		cfg.Net, cfg.Addr = "tcp", addr
		cfg.Logger = mysqllog.New(log)
		switch up.Mode {
		case proxy.SSLDisable:
		case proxy.SSLPrefer:
			cfg.TLSConfig = "preferred"
		default:
			t := up
			if t.ServerName == "" {
				t.ServerName, _, _ = net.SplitHostPort(addr)
			}
			if cfg.TLS, err = t.ClientConfig(); err != nil {
				return nil, fmt.Errorf("upstream_tls: %w", err)
			}
		}
		conn, err := driver.NewConnector(cfg)
		if err != nil {
			return nil, err
		}
		hc = append(hc, conn)
	}
	if len(hc) == 0 {
		return nil, fmt.Errorf("upstream %q: no host", lc.Upstream)
	}
	return sql.OpenDB(hintConnector{Connector: hc, login: login, user: user}), nil
}

// hostsConnector connects to the first of its hosts that accepts a login.
type hostsConnector []sqldriver.Connector

func (hc hostsConnector) Connect(ctx context.Context) (sqldriver.Conn, error) {
	errs := make([]error, 0, len(hc))
	for i := 0; i < len(hc) && ctx.Err() == nil; i++ {
		if conn, err := hc[i].Connect(ctx); err != nil {
			errs = append(errs, err)
		} else {
			return conn, nil
		}
	}
	if len(errs) == 0 {
		return nil, ctx.Err()
	}
	return nil, errors.Join(errs...)
}

func (hc hostsConnector) Driver() sqldriver.Driver { return hc[0].Driver() }
