package main

import (
	"context"
	"database/sql/driver"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/dbproxy/dbproxy/config"
	"github.com/dbproxy/dbproxy/metrics"
)

// catalogLogin is how one listener's catalog connections log in: from the
// listener's catalog: section when it has one, else from the environment
// fallbacks (the libpq variables for PostgreSQL,
// DBPROXY_MYSQL_CATALOG_USER/PASSWORD for MySQL).
type catalogLogin struct {
	lc      *config.Listener
	index   int // the listener's position in listeners:, for messages
	getenv  func(string) string
	setting string // "listeners[N].catalog"
	// reads counts the catalog queries of the listener's sessions (nil:
	// none; observe.go).
	reads *metrics.Listener
}

func newCatalogLogin(lc *config.Listener, index int, getenv func(string) string) catalogLogin {
	return catalogLogin{lc: lc, index: index, getenv: getenv, setting: fmt.Sprintf("listeners[%d].catalog", index)}
}

// hint says which setting fixes a failed catalog login.
func (l catalogLogin) hint() string {
	cat := l.lc.Catalog
	switch {
	case cat == nil && l.lc.Protocol == config.ProtocolMySQL:
		return fmt.Sprintf("set %s.user and %s.password_env (or password_file) in the proxy's configuration", l.setting, l.setting)
	case cat == nil:
		return fmt.Sprintf("set %s.user and %s.password_env (or password_file) in the proxy's configuration (without it the proxy logs in as each session's user with PGPASSWORD or ~/.pgpass from its own environment)", l.setting, l.setting)
	case cat.PasswordEnv != "":
		return fmt.Sprintf("check %s.user (%s) and the password in the environment variable %s (%s.password_env)", l.setting, cat.User, cat.PasswordEnv, l.setting)
	case cat.PasswordFile != "":
		return fmt.Sprintf("check %s.user (%s) and the password in %s (%s.password_file)", l.setting, cat.User, cat.PasswordFile, l.setting)
	default:
		return fmt.Sprintf("check %s.user (%s), or set %s.password_env (or password_file) if the server asks for a password", l.setting, cat.User, l.setting)
	}
}

// failed wraps a failed catalog login or lookup with what to set.
func (l catalogLogin) failed(user string, err error) error {
	who := "catalog connection"
	if user != "" {
		who = fmt.Sprintf("catalog connection as %s", user)
	}
	return &catalogError{msg: fmt.Sprintf("%s failed: %v; %s", who, err, l.hint()), err: err}
}

// catalogError is a catalog login failure with its remedy in the message.
type catalogError struct {
	msg string
	err error
}

func (e *catalogError) Error() string { return e.msg }
func (e *catalogError) Unwrap() error { return e.err }

// pgConfig returns the pgx configuration of a catalog connection to
// database. sessionUser is the user to log in as when the listener has no
// catalog: section and PGUSER is unset ("" at start, when there is no
// session yet: then there is nobody to log in as and pgConfig returns nil;
// anyUser: the CLI's case, libpq's default, the operating system user).
//
// With a catalog: section the libpq environment is ignored for the login
// (PGUSER, PGPASSWORD, PGPASSFILE/~/.pgpass): the YAML says who logs in.
func (l catalogLogin) pgConfig(database, sessionUser string) (*pgx.ConnConfig, string, error) {
	return l.pgConfigAs(database, sessionUser, false)
}

func (l catalogLogin) pgConfigAs(database, sessionUser string, anyUser bool) (*pgx.ConnConfig, string, error) {
	var hosts, ports []string
	for _, h := range l.lc.UpstreamHosts() {
		host, port, err := net.SplitHostPort(h)
		if err != nil {
			return nil, "", fmt.Errorf("upstream %q: %w", h, err)
		}
		hosts, ports = append(hosts, host), append(ports, port)
	}
	mode := string(l.lc.UpstreamTLS.Mode)
	if mode == "" {
		mode = string(config.SSLPrefer)
	}
	// Several hosts: libpq's comma-separated lists, which pgx tries in
	// order (resolving each name on every connect) with each host's name
	// as TLS server name, honouring target_session_attrs as the sessions do.
	dsn := fmt.Sprintf("host='%s' port='%s' dbname='%s' sslmode='%s'", quoteKV(strings.Join(hosts, ",")),
		quoteKV(strings.Join(ports, ",")), quoteKV(database), quoteKV(mode))
	if t := l.lc.TargetSessionAttrs; t != "" {
		dsn += fmt.Sprintf(" target_session_attrs='%s'", quoteKV(t))
	}
	if l.lc.UpstreamTLS.CAFile != "" {
		dsn += fmt.Sprintf(" sslrootcert='%s'", quoteKV(l.lc.UpstreamTLS.CAFile))
	}
	cc, err := pgx.ParseConfig(dsn)
	if err != nil {
		return nil, "", err
	}
	if cat := l.lc.Catalog; cat != nil {
		pw, err := cat.Password(l.getenv)
		if err != nil {
			return nil, cat.User, fmt.Errorf("%s.password_env/password_file: %w", l.setting, err)
		}
		cc.User, cc.Password = cat.User, pw
	} else if l.getenv("PGUSER") == "" {
		switch {
		case sessionUser != "":
			cc.User = sessionUser
		case !anyUser:
			return nil, "", nil
		}
	}
	if sn := l.lc.UpstreamTLS.ServerName; sn != "" {
		if cc.TLSConfig != nil {
			cc.TLSConfig.ServerName = sn
		}
		for _, fb := range cc.Fallbacks {
			if fb.TLSConfig != nil {
				fb.TLSConfig.ServerName = sn
			}
		}
	}
	cc.RuntimeParams["application_name"] = "dbproxy catalog"
	return cc, cc.User, nil
}

// pgConnect opens a catalog connection to database; errors say what to set.
func (l catalogLogin) pgConnect(ctx context.Context, database, sessionUser string) (*pgx.Conn, error) {
	cc, user, err := l.pgConfig(database, sessionUser)
	if err != nil {
		return nil, l.failed(user, err)
	}
	if cc == nil {
		return nil, l.failed("", errors.New("no user to log in as"))
	}
	if l.reads != nil {
		cc.Tracer = catalogTracer{reads: l.reads}
	}
	conn, err := pgx.ConnectConfig(ctx, cc)
	if err != nil {
		return nil, l.failed(user, err)
	}
	return conn, nil
}

// mysqlUser returns the MySQL catalog login ("" user: none configured).
func (l catalogLogin) mysqlUser() (user, password string, err error) {
	if cat := l.lc.Catalog; cat != nil {
		pw, err := cat.Password(l.getenv)
		if err != nil {
			return cat.User, "", l.failed(cat.User, fmt.Errorf("%s.password_env/password_file: %w", l.setting, err))
		}
		return cat.User, pw, nil
	}
	return l.getenv(mysqlCatalogUserEnv), l.getenv(mysqlCatalogPasswordEnv), nil
}

// hintConnector adds the catalog hint to the errors of a MySQL connector's
// logins, so that the proxy's log says what to set.
type hintConnector struct {
	driver.Connector
	login catalogLogin
	user  string
}

func (c hintConnector) Connect(ctx context.Context) (driver.Conn, error) {
	conn, err := c.Connector.Connect(ctx)
	if err != nil {
		return nil, c.login.failed(c.user, err)
	}
	return conn, nil
}

// probeTimeout bounds the catalog probe serve runs at start.
const probeTimeout = 10 * time.Second

// probeCatalog logs in once the way the listener's catalog connections
// will, and logs an error naming the setting that fixes a failure. It
// never stops the listener: sessions that need no catalog still work. It
// reports whether every login succeeded.
func probeCatalog(ctx context.Context, lc *config.Listener, index int, name string, getenv func(string) string, logger *slog.Logger, databases []string) bool {
	l := newCatalogLogin(lc, index, getenv)
	log := logger.With(slog.String("listener", name))
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	switch lc.Protocol {
	case config.ProtocolPostgres:
		if len(databases) == 0 {
			databases = []string{"postgres"}
		}
		ok := true
		for _, db := range databases {
			cc, user, err := l.pgConfig(db, "")
			if err != nil {
				log.Error(fmt.Sprintf("listener %s: %v", name, l.failed(user, err)), slog.String("database", db))
				ok = false
				continue
			}
			if cc == nil {
				log.Warn(fmt.Sprintf("no catalog credentials: the catalog connection will log in as each session's user with PGPASSWORD or ~/.pgpass from the proxy's environment, and statements on encrypted tables are refused when that fails; set %s.user and %s.password_env (or password_file)", l.setting, l.setting))
				return false
			}
			conn, err := pgx.ConnectConfig(ctx, cc)
			var pe *pgconn.PgError
			if errors.As(err, &pe) && pe.Code == "3D000" {
				err = nil // logged in; the database does not exist (yet)
			}
			if err != nil {
				log.Error(fmt.Sprintf("listener %s: %v", name, l.failed(user, err)), slog.String("database", db))
				ok = false
				continue
			}
			if conn != nil {
				_ = conn.Close(ctx)
			}
			log.Info("catalog connection ok", slog.String("user", user), slog.String("database", db))
		}
		return ok
	case config.ProtocolMySQL:
		user, pw, err := l.mysqlUser()
		if err != nil {
			log.Error(fmt.Sprintf("listener %s: %v", name, err))
			return false
		}
		if user == "" {
			log.Warn(fmt.Sprintf("no catalog credentials: INSERT and REPLACE without a column list into encrypted tables are refused and sessions are assumed to start in UTC; set %s.user and %s.password_env (or password_file)", l.setting, l.setting))
			return false
		}
		db, err := mysqlCatalogDB(l, user, pw, log)
		if err != nil {
			log.Error(fmt.Sprintf("listener %s: %v", name, l.failed(user, err)))
			return false
		}
		defer db.Close()
		if err := db.PingContext(ctx); err != nil {
			log.Error(fmt.Sprintf("listener %s: %v", name, err)) // hintConnector added the remedy
			return false
		}
		log.Info("catalog connection ok", slog.String("user", user))
		return true
	}
	return false
}
