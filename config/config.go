package config

import "time"

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
}

// Listener is one client-facing socket and the database it forwards to.
type Listener struct {
	Name     string   `yaml:"name"` // defaults to the protocol name; unique
	Protocol Protocol `yaml:"protocol"`
	// Listen is host:port with a numeric port; an empty host means every
	// interface.
	Listen string `yaml:"listen"`
	// Upstream is host:port of the database; the host is required.
	Upstream    string      `yaml:"upstream"`
	TLS         *ServerTLS  `yaml:"tls,omitempty"` // nil: plaintext clients only
	UpstreamTLS UpstreamTLS `yaml:"upstream_tls"`
}

// ServerTLS is the client -> proxy leg. Both files exist when loaded (the
// loader checks existence only; it does not parse them).
type ServerTLS struct {
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	Require  bool   `yaml:"require"`
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
	Provider string `yaml:"provider"`           // ProviderLocal | ProviderAWSKMS
	File     string `yaml:"file,omitempty"`     // local; may not exist yet (keys init creates it)
	KeyID    string `yaml:"key_id,omitempty"`   // aws-kms: key id, ARN or alias
	Region   string `yaml:"region,omitempty"`   // aws-kms
	Endpoint string `yaml:"endpoint,omitempty"` // aws-kms, optional http(s) URL
	// PreviousFiles are older local master key files, used to unwrap data
	// keys wrapped before a master key rotation (keys rewrap). Allowed with
	// either provider; each file must exist.
	PreviousFiles []string `yaml:"previous_files,omitempty"`
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
	Schema   string   `yaml:"schema"`             // PostgreSQL only; default public
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
