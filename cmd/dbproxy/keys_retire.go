package main

import (
	"context"
	"database/sql"
	"encoding/binary"
	"fmt"
	"log/slog"
	"strconv"

	"github.com/dbproxy/dbproxy/audit"
	"github.com/dbproxy/dbproxy/config"
	"github.com/dbproxy/dbproxy/crypto/keys"
	"github.com/dbproxy/dbproxy/schemaguard"
)

// retireKey runs `keys retire KEY VERSION`: it counts, through each
// listener's catalog login, the values of every configured column of KEY
// whose ciphertext header names VERSION, and removes the version from the
// keystore only when every column could be read and none has one.
func retireKey(ctx context.Context, cfg *config.Config, mgr *keys.Manager, key, versionArg, database string, e env) error {
	v, err := strconv.ParseUint(versionArg, 10, 32)
	if err != nil || v == 0 {
		return usagef("keys retire: VERSION %q is not a key version number", versionArg)
	}
	version := uint32(v)
	if key == audit.KeyName {
		// Its versions seal the audit files: a retired one would make
		// every file it sealed unverifiable.
		return fmt.Errorf("keys retire: %q is the audit key; its versions are kept for audit verify", key)
	}
	primary, err := mgr.PrimaryVersion(ctx, key)
	if err != nil {
		return err
	}
	if primary == version {
		return fmt.Errorf("keys retire: data key %q version %d is the primary version: rotate the key, run dbproxy migrate reencrypt, then retire it", key, version)
	}
	problems := 0
	for i := range cfg.Listeners {
		lc := &cfg.Listeners[i]
		for _, g := range guardGroups(cfg, lc.Protocol, database) {
			problems += countVersion(ctx, lc, i, g, key, version, cfg, e)
		}
	}
	if problems > 0 {
		return fmt.Errorf("keys retire: data key %q version %d not retired: %d column(s) still use it or could not be checked (run dbproxy migrate reencrypt --key %s)", key, version, problems, key)
	}
	if err := mgr.Retire(ctx, key, version); err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "data key %s: version %d retired (removed from the keystore)\n", key, version)
	return nil
}

// countVersion counts the values of key's columns in group g (behind
// listener lc) under version, reports each column that has some or cannot
// be read, and returns how many it reported.
func countVersion(ctx context.Context, lc *config.Listener, index int, g guardGroup, key string, version uint32, cfg *config.Config, e env) int {
	where := "listener " + listenerName(lc)
	var targets []schemaguard.Target
	bad := 0
	for _, t := range g.targets {
		if columnKey(cfg, lc.Protocol, t) != key {
			continue
		}
		if t.Database == "" {
			fmt.Fprintf(e.stderr, "%s: %s: the rule names no database: set database: in the rule or pass --database\n", where, t)
			bad++
			continue
		}
		targets = append(targets, t)
	}
	if len(targets) == 0 {
		return bad
	}
	db, err := openGuardDB(ctx, lc, index, e.getenv, g.database, slog.New(slog.NewTextHandler(e.stderr, nil)))
	if err != nil {
		fmt.Fprintf(e.stderr, "%s: %v\n", where, err)
		return bad + len(targets)
	}
	defer db.Close()
	ver := binary.BigEndian.AppendUint32(nil, version)
	for _, t := range targets {
		n, err := countColumnVersion(ctx, db, lc.Protocol, t, ver)
		switch {
		case err != nil:
			fmt.Fprintf(e.stderr, "%s: %s: cannot count values of version %d: %v\n", where, t, version, err)
			bad++
		case n > 0:
			fmt.Fprintf(e.stderr, "%s: %s: %d value(s) still under version %d\n", where, t, n, version)
			bad++
		}
	}
	return bad
}

func countColumnVersion(ctx context.Context, db *sql.DB, p config.Protocol, t schemaguard.Target, ver []byte) (int64, error) {
	d := dialectOf(p)
	col := schemaguard.QuoteIdent(d, t.Column)
	var q string
	if p == config.ProtocolMySQL {
		q = fmt.Sprintf("SELECT COUNT(*) FROM %s.%s WHERE %s IS NOT NULL AND SUBSTRING(%s, 3, 4) = ?",
			schemaguard.QuoteIdent(d, t.Database), schemaguard.QuoteIdent(d, t.Table), col, col)
	} else {
		q = fmt.Sprintf("SELECT count(*) FROM %s.%s WHERE %s IS NOT NULL AND substring(%s from 3 for 4) = $1",
			schemaguard.QuoteIdent(d, t.Schema), schemaguard.QuoteIdent(d, t.Table), col, col)
	}
	var n int64
	err := db.QueryRowContext(ctx, q, ver).Scan(&n)
	return n, err
}

// columnKey is the data key of the configured column that guard target t
// was made from.
func columnKey(cfg *config.Config, p config.Protocol, t schemaguard.Target) string {
	for _, c := range cfg.Columns() {
		if p == config.ProtocolMySQL {
			if unquoteName(c.Table) == t.Table && unquoteName(c.Column) == t.Column {
				return c.Key
			}
			continue
		}
		schema := foldPG(c.Schema)
		if schema == "" {
			schema = "public"
		}
		if schema == t.Schema && foldPG(c.Table) == t.Table && foldPG(c.Column) == t.Column {
			return c.Key
		}
	}
	return ""
}
