package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"

	"github.com/dbproxy/dbproxy/config"
	"github.com/dbproxy/dbproxy/crypto/keys"
	"github.com/dbproxy/dbproxy/fieldcrypt"
	"github.com/dbproxy/dbproxy/metrics"
	"github.com/dbproxy/dbproxy/proxy/postgres/pgcrypt"
	"github.com/dbproxy/dbproxy/rules"
)

// encryption is what serve builds from the encryption: and keys: sections:
// the rules and an Encryptor over the key manager (its keyring), shared by
// every listener.
type encryption struct {
	rules   *rules.Set
	specs   []rules.Spec   // for the MySQL rule set (encryption_mysql.go)
	keysCfg config.Keys    // the keys: section the keyring was opened from
	access  *config.Access // the access: section keyUse.Policy was built from
	ring    *keyring
	log     *slog.Logger
	getenv  func(string) string
	// keyUse is the Monitor and access Policy of every session's field
	// cipher (fieldcrypt).
	keyUse fieldcrypt.Options
}

// keyring is a key manager with everything it holds open (master key
// provider client, keystore) and the Encryptor over it. It is shared by the
// encryption that opened it and every listener interceptor built on it,
// each holding one reference; the last release closes it: cached data keys
// are destroyed, the keystore and master keys closed.
type keyring struct {
	enc   *rules.Encryptor
	mgr   *keys.Manager // under enc, for the admin readiness checks
	mu    sync.Mutex
	refs  int
	close func()
}

func (k *keyring) acquire() *keyring {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.refs <= 0 {
		panic("BUG: keyring acquired after its last release")
	}
	k.refs++
	return k
}

func (k *keyring) release() {
	k.mu.Lock()
	k.refs--
	last := k.refs == 0
	k.mu.Unlock()
	if last {
		k.close()
	}
}

// openEncryption returns nil when cfg has no encryption rules. It refuses
// a configuration whose keystore file or local master key file is missing
// or unreadable (checkServeKeyFiles), so that serve does not start, nor a
// reload apply, only to fail every encrypted statement.
func openEncryption(ctx context.Context, cfg *config.Config, e env, logger *slog.Logger) (*encryption, error) {
	if len(cfg.Encryption) == 0 {
		return nil, nil
	}
	set, specs, err := ruleSet(cfg, rules.DialectPostgres)
	if err != nil {
		return nil, fmt.Errorf("encryption rules: %w", err)
	}
	policy, err := configPolicy(cfg)
	if err != nil {
		return nil, err
	}
	if err := checkServeKeyFiles(cfg.Keys); err != nil {
		return nil, fmt.Errorf("open keys: %w", err)
	}
	mgr, _, closeFn, err := openManager(ctx, cfg, e, logger)
	if err != nil {
		return nil, fmt.Errorf("open keys: %w", err)
	}
	ring := &keyring{enc: rules.NewEncryptor(mgr), mgr: mgr, refs: 1, close: closeFn}
	return &encryption{rules: set, specs: specs, keysCfg: cfg.Keys, access: cfg.Access, ring: ring, log: logger, getenv: e.getenv,
		keyUse: fieldcrypt.Options{Monitor: joinMonitors(e.ops.keyUseMonitor(), e.audit.monitor()), Policy: policy}}, nil
}

// ruleSet builds the rule set of cfg's encrypted columns for dialect d, and
// returns the specs it was built from.
func ruleSet(cfg *config.Config, d rules.Dialect) (*rules.Set, []rules.Spec, error) {
	var specs []rules.Spec
	for _, c := range cfg.Columns() {
		mode := rules.ModeRandomized
		if c.Mode == config.ModeDeterministic {
			mode = rules.ModeDeterministic
		}
		specs = append(specs, rules.Spec{Database: c.Database, Schema: c.Schema, Table: c.Table,
			Column: c.Column, Key: c.Key, Mode: mode, Type: c.Type})
	}
	set, err := rules.New(d, specs)
	return set, specs, err
}

// close releases the encryption's reference to its keyring; interceptors
// built from it keep theirs.
func (x *encryption) close() {
	if x != nil {
		x.ring.release()
	}
}

// shareKeyring makes x use the keyring of old (same keys: section): the
// reload keeps the key cache instead of opening a second one. x's own
// keyring is released.
func (x *encryption) shareKeyring(old *encryption) {
	own := x.ring
	x.ring = old.ring.acquire()
	own.release()
}

// fingerprint is what a listener of protocol p takes from x: its
// protocol's rule set as the lookups see it (names folded the way that
// database folds them, the schema only for PostgreSQL, each column's key,
// mode and type), the keys: section and the access: section. Two encryptions with the same
// fingerprint encrypt that listener's traffic identically, so a reload
// between them leaves its sessions alone. No encryption is "".
func (x *encryption) fingerprint(p config.Protocol) string {
	if x == nil {
		return ""
	}
	set := x.rules
	if p == config.ProtocolMySQL {
		var err error
		if set, err = rules.New(rules.DialectMySQL, x.specs); err != nil {
			return "unbuildable:" + err.Error() // the interceptor build fails with it
		}
	}
	var lines []string
	for _, t := range set.Tables() {
		for _, c := range t.Columns {
			lines = append(lines, strings.Join([]string{c.Database, c.Schema, c.Table, c.Column, c.Key,
				c.Mode.String(), c.Type.String()}, "\x00"))
		}
	}
	slices.Sort(lines)
	keysCfg, err := json.Marshal(x.keysCfg)
	if err != nil {
		panic("BUG: keys section does not marshal: " + err.Error())
	}
	accessCfg, err := json.Marshal(x.access)
	if err != nil {
		panic("BUG: access section does not marshal: " + err.Error())
	}
	return string(p) + "\n" + string(keysCfg) + "\n" + string(accessCfg) + "\n" + strings.Join(lines, "\n")
}

// postgresInterceptor returns the encryption layer of one PostgreSQL
// listener (index: its position in listeners:). Its catalog connections go
// to the listener's upstream with the listener's upstream sslmode, as the
// listener's catalog.user; without a catalog: section, with the libpq
// environment (PGUSER, PGPASSWORD, PGPASSFILE/.pgpass), the user
// defaulting to the session's user, so trust, certificate and .pgpass
// setups need nothing more. A failed login's error says which setting
// fixes it; pgcrypt puts it into the refusal the client sees.
func (x *encryption) postgresInterceptor(lc *config.Listener, index int, log *slog.Logger, reads *metrics.Listener) (*pgcrypt.Interceptor, error) {
	for _, h := range lc.UpstreamHosts() {
		if _, _, err := net.SplitHostPort(h); err != nil {
			return nil, fmt.Errorf("upstream %q: %w", h, err)
		}
	}
	login := newCatalogLogin(lc, index, x.getenv)
	login.reads = reads
	return pgcrypt.New(pgcrypt.Options{
		Rules:           x.rules,
		Encryptor:       x.ring.enc,
		Guard:           x.keyUse.Guard,
		Monitor:         x.keyUse.Monitor,
		Policy:          x.keyUse.Policy,
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
