package config

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// Protocol is the wire protocol a listener speaks. The zero value is invalid.
type Protocol string

const (
	ProtocolPostgres Protocol = "postgres"
	ProtocolMySQL    Protocol = "mysql"
)

// Mode is how a column is encrypted. The zero value is invalid; the loader
// fills in ModeRandomized when the YAML leaves it out.
type Mode string

const (
	ModeDeterministic Mode = "deterministic"
	ModeRandomized    Mode = "randomized"
)

// SSLMode is the libpq-style sslmode of the proxy -> database leg.
type SSLMode string

const (
	SSLDisable    SSLMode = "disable"
	SSLPrefer     SSLMode = "prefer"
	SSLRequire    SSLMode = "require"
	SSLVerifyCA   SSLMode = "verify-ca"
	SSLVerifyFull SSLMode = "verify-full"
)

// Master key providers and keystore types accepted in keys.master_key.provider
// and keys.store.type.
const (
	ProviderLocal  = "local"
	ProviderAWSKMS = "aws-kms"
	ProviderPKCS11 = "pkcs11"

	StoreFile     = "file"
	StoreDatabase = "database"
)

// Config is a loaded, defaulted and validated configuration. All relative
// paths in it have been resolved against the config file's directory.
//
// The yaml tags name the keys of the file; the loader walks the YAML node
// tree itself (see Parse) and the tags are also used by Redacted to print
// the effective configuration.
type Config struct {
	// Path is the file the configuration was loaded from (absolute).
	Path            string        `yaml:"-"`
	Listeners       []Listener    `yaml:"listeners"`
	Keys            Keys          `yaml:"keys"`
	Encryption      []Table       `yaml:"encryption"`
	Log             Log           `yaml:"log"`
	ShutdownTimeout time.Duration `yaml:"shutdown_timeout"` // default 30s
	// Admin is the operations listener (metrics, health); nil: off.
	Admin *Admin `yaml:"admin,omitempty"`
	// Access is the per-user access policy of encrypted columns; nil:
	// every session decrypts every column.
	Access *Access `yaml:"access,omitempty"`
	// Audit is the tamper-evident audit log of key use; nil: off.
	Audit *Audit `yaml:"audit,omitempty"`
}

// Listener is one client-facing socket and the database it forwards to.
type Listener struct {
	Name     string   `yaml:"name"` // defaults to the protocol name; unique
	Protocol Protocol `yaml:"protocol"`
	// Listen is host:port with a numeric port; an empty host means every
	// interface.
	Listen string `yaml:"listen"`
	// Upstream is host:port of the database (the host is required), or
	// several separated by commas ("db1:5432,db2:5432", as libpq), tried
	// in order; see UpstreamHosts.
	Upstream    string      `yaml:"upstream"`
	TLS         *ServerTLS  `yaml:"tls,omitempty"` // nil: plaintext clients only
	UpstreamTLS UpstreamTLS `yaml:"upstream_tls"`
	// TargetSessionAttrs is libpq's target_session_attrs for the upstream
	// hosts: any (default) or read-write (postgres only).
	TargetSessionAttrs string `yaml:"target_session_attrs,omitempty"`
	// Catalog holds the credentials of the proxy's own connection to the
	// upstream for catalog reads (and for `schema guard --apply` /
	// `schema check`). Nil: the environment fallbacks apply (libpq
	// variables for PostgreSQL, DBPROXY_MYSQL_CATALOG_USER/PASSWORD for
	// MySQL).
	Catalog *Catalog `yaml:"catalog,omitempty"`
	// AllowDynamicSQL lets statements whose effect the proxy cannot read
	// from their text (PostgreSQL DO blocks and non-SQL function bodies,
	// MySQL PREPARE … FROM @variable and stored program bodies) through a
	// listener with encryption rules. Off by default: such statements are
	// refused there.
	AllowDynamicSQL bool   `yaml:"allow_dynamic_sql"`
	Limits          Limits `yaml:"limits,omitempty"`
}

// UpstreamHosts returns the host:port items of Upstream, in order.
func (l *Listener) UpstreamHosts() []string {
	var out []string
	for _, a := range strings.Split(l.Upstream, ",") {
		if a = strings.TrimSpace(a); a != "" {
			out = append(out, a)
		}
	}
	return out
}

// Catalog is the login of a listener's catalog connection. The password
// comes from the environment variable PasswordEnv or the file
// PasswordFile (at most one; neither for trust or certificate logins),
// never from the YAML.
type Catalog struct {
	User         string `yaml:"user"`
	PasswordEnv  string `yaml:"password_env,omitempty"`
	PasswordFile string `yaml:"password_file,omitempty"`
}

// Password reads the catalog password from its environment variable or
// file ("" when neither is set). getenv is os.Getenv in production.
func (c *Catalog) Password(getenv func(string) string) (string, error) {
	if c == nil {
		return "", nil
	}
	return readSecret("catalog password", c.PasswordEnv, c.PasswordFile, getenv)
}

// readSecret returns the value of the environment variable env, or else
// the content of file without its trailing line end. what names the
// secret in errors, which never hold it. Neither set: "".
func readSecret(what, env, file string, getenv func(string) string) (string, error) {
	switch {
	case env != "":
		v := getenv(env)
		if v == "" {
			return "", fmt.Errorf("%s: environment variable %s is empty or unset", what, env)
		}
		return v, nil
	case file != "":
		b, err := os.ReadFile(file)
		if err != nil {
			return "", fmt.Errorf("%s: %w", what, err)
		}
		return strings.TrimRight(string(b), "\r\n"), nil
	}
	return "", nil
}

// Limits bound what one listener's connections and sessions may hold.
// docs/config.md explains each default.
type Limits struct {
	// HandshakeTimeout bounds a client's handshake: from accept through
	// TLS and authentication to the first ReadyForQuery / OK (default 5s,
	// below MariaDB's 10s connect_timeout). Must be > 0.
	HandshakeTimeout time.Duration `yaml:"handshake_timeout"`
	// MaxHandshakes bounds the connections still in their handshake
	// (default 512). At the limit, a new connection closes the oldest
	// handshake of the client address holding the most. Must be > 0.
	MaxHandshakes int `yaml:"max_handshakes"`
	// MaxConnections bounds the listener's connections (default 10000);
	// one over it is refused with a protocol error naming the setting.
	// Must be > 0.
	MaxConnections int `yaml:"max_connections"`
	// MaxConnectionsPerSource bounds the connections from one client IP
	// address (default 0: no limit).
	MaxConnectionsPerSource int `yaml:"max_connections_per_source"`
	// IdleTimeout ends a session idle (outside a transaction, nothing
	// running) for that long (default 0: never).
	IdleTimeout time.Duration `yaml:"idle_timeout"`
	// UpstreamKeepalive is the TCP keepalive idle time of the proxy ->
	// database socket; probes follow every third of it and three
	// unanswered ones end the connection (default 15s: a dead database is
	// detected within 30s). 0 leaves the operating system's defaults.
	UpstreamKeepalive time.Duration `yaml:"upstream_keepalive"`
	// CopyBuffer bounds the COPY … FROM STDIN data the PostgreSQL proxy
	// holds while it reassembles one row (bytes; default 16 MiB). Written
	// in YAML as a size: 16MiB, 512KiB, 1GB or a plain byte count.
	CopyBuffer ByteSize `yaml:"copy_buffer,omitempty"`
}

// ByteSize is a size in bytes.
type ByteSize int64

// ServerTLS is the client -> proxy leg. Both files exist when loaded (the
// loader checks existence only; it does not parse them).
type ServerTLS struct {
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	Require  bool   `yaml:"require"`
	// ClientCAFile, if set, makes the listener ask clients for a
	// certificate and verify one that is given against these CAs (PEM);
	// its subject is then the session's TLS subject (access rules'
	// tls_subjects). Clients without a certificate are still accepted.
	ClientCAFile string `yaml:"client_ca_file,omitempty"`
}

// UpstreamTLS is the proxy -> database leg, with libpq sslmode semantics.
//
// verify-ca and verify-full without a ca_file verify against the system
// roots. A ca_file, when given, exists.
type UpstreamTLS struct {
	Mode       SSLMode `yaml:"mode"` // default prefer
	CAFile     string  `yaml:"ca_file,omitempty"`
	ServerName string  `yaml:"server_name,omitempty"` // default: host part of upstream
}

// Keys configures the master key, where wrapped data keys live, and the
// in-memory cache of unwrapped data keys.
//
// When the file has neither a keys section nor encryption rules, the keys
// section is not validated and MasterKey.Provider is empty (a pass-through
// proxy needs no keys); Store and Cache still carry their defaults.
type Keys struct {
	MasterKey MasterKey `yaml:"master_key"`
	Store     Store     `yaml:"store"`
	Cache     Cache     `yaml:"cache"`
}

// MasterKey names the provider that wraps data keys.
type MasterKey struct {
	Provider string `yaml:"provider"`           // ProviderLocal | ProviderAWSKMS | ProviderPKCS11
	File     string `yaml:"file,omitempty"`     // local; may not exist yet (keys init creates it)
	KeyID    string `yaml:"key_id,omitempty"`   // aws-kms: key id, ARN or alias
	Region   string `yaml:"region,omitempty"`   // aws-kms
	Endpoint string `yaml:"endpoint,omitempty"` // aws-kms, optional http(s) URL
	// pkcs11: the vendor's PKCS#11 library, the token and key labels, and
	// where the user PIN is (pin_env or pin_file; never in the YAML).
	Module     string `yaml:"module,omitempty"`
	TokenLabel string `yaml:"token_label,omitempty"`
	KeyLabel   string `yaml:"key_label,omitempty"`
	PINEnv     string `yaml:"pin_env,omitempty"`
	PINFile    string `yaml:"pin_file,omitempty"`
	// PreviousFiles are older local master key files, used to unwrap data
	// keys wrapped before a master key rotation (keys rewrap). Allowed with
	// any provider; each file must exist.
	PreviousFiles []string `yaml:"previous_files,omitempty"`
	// Previous are older master keys of any provider, used like
	// PreviousFiles. Their own previous and previous_files are not allowed.
	Previous []MasterKey `yaml:"previous,omitempty"`
}

// PIN returns the pkcs11 user PIN from the environment variable PINEnv or
// the file PINFile (without its trailing line end).
func (mk *MasterKey) PIN(getenv func(string) string) (string, error) {
	return readSecret("pkcs11 PIN", mk.PINEnv, mk.PINFile, getenv)
}

// Store says where wrapped data keys are kept.
type Store struct {
	Type string `yaml:"type"`           // StoreFile (default) | StoreDatabase
	Path string `yaml:"path,omitempty"` // file; default keys.json
	// DSN is a postgres://, postgresql:// or mysql:// URL without a password
	// (database store).
	DSN string `yaml:"dsn,omitempty"`
	// PasswordEnv names the environment variable holding the DSN's password.
	PasswordEnv string `yaml:"password_env,omitempty"`
	Table       string `yaml:"table,omitempty"` // database; default dbproxy_keys
	// Poll is how often serve re-reads the keystore for versions added by
	// other processes (keys rotate elsewhere, other replicas); a new
	// version becomes primary twice Poll after its creation. Default 30s
	// for database, 0 (off: no poll, a rotation is primary at once) for
	// file; when set, at least 1s.
	Poll time.Duration `yaml:"poll,omitempty"`
}

// Cache bounds the unwrapped data keys held in memory.
type Cache struct {
	MaxEntries int           `yaml:"max_entries"` // default 1024
	TTL        time.Duration `yaml:"ttl"`         // default 10m
}

// Table lists the encrypted columns of one table.
//
// Table, Schema, Database and column names are stored exactly as written:
// the config layer does not fold case. The proxy layers compare them the way
// their database does (unquoted identifiers fold case). The loader does treat
// names that differ only in case as duplicates, so that no two rules can
// claim the same column.
type Table struct {
	Table    string   `yaml:"table"`
	Schema   string   `yaml:"schema,omitempty"`   // PostgreSQL only; default public
	Database string   `yaml:"database,omitempty"` // optional; empty: any database
	Columns  []Column `yaml:"columns"`
}

// Column is one encrypted column.
type Column struct {
	Name string `yaml:"name"`
	Mode Mode   `yaml:"mode"` // default randomized
	// Type is the plaintext type name (value.ParseType accepts it).
	Type string `yaml:"type"`
	// Key is the data key name; the loader fills in the default
	// "<schema>.<table>.<column>" (or "<table>.<column>" when the config has
	// only MySQL listeners and the table sets no schema).
	Key string `yaml:"key"`
}

// Log configures the process logger.
type Log struct {
	Level  string `yaml:"level"`  // debug | info | warn | error; default info
	Format string `yaml:"format"` // text | json; default text
}

// byteUnits are the suffixes ParseByteSize accepts, longest first.
var byteUnits = []struct {
	suffix string
	mult   int64
}{
	{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30},
	{"KB", 1000}, {"MB", 1000 * 1000}, {"GB", 1000 * 1000 * 1000},
	{"B", 1},
}

// ParseByteSize reads a size: a byte count, or a number with one of the
// units B, KB, MB, GB (powers of 1000) or KiB, MiB, GiB (powers of 1024).
func ParseByteSize(s string) (ByteSize, error) {
	t := strings.TrimSpace(s)
	mult := int64(1)
	for _, u := range byteUnits {
		if strings.HasSuffix(t, u.suffix) {
			t, mult = strings.TrimSpace(strings.TrimSuffix(t, u.suffix)), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(t, 10, 64)
	if err != nil || n < 0 || (n > 0 && mult > (1<<62)/n) {
		return 0, fmt.Errorf("invalid size %q: use a byte count or a number with B, KB, MB, GB, KiB, MiB or GiB, such as 16MiB", clip(s))
	}
	return ByteSize(n * mult), nil
}
