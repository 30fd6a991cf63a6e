package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"

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
// listener (index: its position in listeners:). Its catalog connections go
// to the listener's upstream with the listener's upstream sslmode, as the
// listener's catalog.user; without a catalog: section, with the libpq
// environment (PGUSER, PGPASSWORD, PGPASSFILE/.pgpass), the user
// defaulting to the session's user, so trust, certificate and .pgpass
// setups need nothing more. A failed login's error says which setting
// fixes it; pgcrypt puts it into the refusal the client sees.
func (x *encryption) postgresInterceptor(lc *config.Listener, index int, log *slog.Logger) (*pgcrypt.Interceptor, error) {
	if _, _, err := net.SplitHostPort(lc.Upstream); err != nil {
		return nil, fmt.Errorf("upstream %q: %w", lc.Upstream, err)
	}
	login := newCatalogLogin(lc, index, x.getenv)
	return pgcrypt.New(pgcrypt.Options{
		Rules:           x.rules,
		Encryptor:       x.enc,
		Connect:         login.pgConnect,
		AllowDynamicSQL: lc.AllowDynamicSQL,
		CopyBuffer:      int(lc.Limits.CopyBuffer),
		Logger:          log,
	})
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
