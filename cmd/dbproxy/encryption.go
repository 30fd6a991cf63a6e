package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"

	"github.com/jackc/pgx/v5"

	"github.com/dbproxy/dbproxy/config"
	"github.com/dbproxy/dbproxy/proxy/postgres/pgcrypt"
	"github.com/dbproxy/dbproxy/rules"
)

// encryption is what serve builds from the encryption: and keys: sections:
// the rules and an Encryptor over the key manager, shared by every
// listener.
type encryption struct {
	rules  *rules.Set
	specs  []rules.Spec // for the MySQL rule set (encryption_mysql.go)
	enc    *rules.Encryptor
	log    *slog.Logger
	getenv func(string) string
	close  func()
}

// openEncryption returns nil when cfg has no encryption rules.
func openEncryption(ctx context.Context, cfg *config.Config, e env, logger *slog.Logger) (*encryption, error) {
	if len(cfg.Encryption) == 0 {
		return nil, nil
	}
	var specs []rules.Spec
	for _, c := range cfg.Columns() {
		mode := rules.ModeRandomized
		if c.Mode == config.ModeDeterministic {
			mode = rules.ModeDeterministic
		}
		specs = append(specs, rules.Spec{Database: c.Database, Schema: c.Schema, Table: c.Table,
			Column: c.Column, Key: c.Key, Mode: mode, Type: c.Type})
	}
	set, err := rules.New(rules.DialectPostgres, specs)
	if err != nil {
		return nil, fmt.Errorf("encryption rules: %w", err)
	}
	mgr, _, closeFn, err := openManager(ctx, cfg, e, logger)
	if err != nil {
		return nil, fmt.Errorf("open keys: %w", err)
	}
	return &encryption{rules: set, specs: specs, enc: rules.NewEncryptor(mgr), log: logger, getenv: e.getenv, close: closeFn}, nil
}

// postgresInterceptor returns the encryption layer of one PostgreSQL
// listener. Its catalog connections go to the listener's upstream with the
// listener's upstream sslmode; credentials come from the libpq environment
// (PGUSER, PGPASSWORD, PGPASSFILE/.pgpass), the user defaulting to the
// session's user, so trust, certificate and .pgpass setups need nothing
// more.
func (x *encryption) postgresInterceptor(lc *config.Listener, log *slog.Logger) (*pgcrypt.Interceptor, error) {
	host, port, err := net.SplitHostPort(lc.Upstream)
	if err != nil {
		return nil, fmt.Errorf("upstream %q: %w", lc.Upstream, err)
	}
	mode := string(lc.UpstreamTLS.Mode)
	if mode == "" {
		mode = string(config.SSLPrefer)
	}
	connect := func(ctx context.Context, database, user string) (*pgx.Conn, error) {
		dsn := fmt.Sprintf("host='%s' port='%s' dbname='%s' sslmode='%s'", quoteKV(host), quoteKV(port), quoteKV(database), quoteKV(mode))
		if lc.UpstreamTLS.CAFile != "" {
			dsn += fmt.Sprintf(" sslrootcert='%s'", quoteKV(lc.UpstreamTLS.CAFile))
		}
		cc, err := pgx.ParseConfig(dsn)
		if err != nil {
			return nil, err
		}
		if x.getenv("PGUSER") == "" {
			cc.User = user
		}
		if lc.UpstreamTLS.ServerName != "" && cc.TLSConfig != nil {
			cc.TLSConfig.ServerName = lc.UpstreamTLS.ServerName
		}
		cc.RuntimeParams["application_name"] = "dbproxy catalog"
		return pgx.ConnectConfig(ctx, cc)
	}
	return pgcrypt.New(pgcrypt.Options{Rules: x.rules, Encryptor: x.enc, Connect: connect, Logger: log})
}

// quoteKV escapes a libpq keyword/value string value.
func quoteKV(s string) string {
	out := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		if s[i] == '\'' || s[i] == '\\' {
			out = append(out, '\\')
		}
		out = append(out, s[i])
	}
	return string(out)
}
