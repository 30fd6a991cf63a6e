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

// Config is a loaded, defaulted and validated configuration. All relative
// paths in it have been resolved against the config file's directory.
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
	Name        string      `yaml:"name"` // defaults to the protocol name
	Protocol    Protocol    `yaml:"protocol"`
	Listen      string      `yaml:"listen"`
	Upstream    string      `yaml:"upstream"`
	TLS         *ServerTLS  `yaml:"tls"` // nil: plaintext clients only
	UpstreamTLS UpstreamTLS `yaml:"upstream_tls"`
}

// ServerTLS is the client -> proxy leg.
type ServerTLS struct {
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	Require  bool   `yaml:"require"`
}

// UpstreamTLS is the proxy -> database leg, with libpq sslmode semantics.
type UpstreamTLS struct {
	Mode       SSLMode `yaml:"mode"` // default prefer
	CAFile     string  `yaml:"ca_file"`
	ServerName string  `yaml:"server_name"` // default: host part of upstream
}

// Keys configures the master key, where wrapped data keys live, and the
// in-memory cache of unwrapped data keys.
type Keys struct {
	MasterKey MasterKey `yaml:"master_key"`
	Store     Store     `yaml:"store"`
	Cache     Cache     `yaml:"cache"`
}

// MasterKey names the provider that wraps data keys.
type MasterKey struct {
	Provider string `yaml:"provider"` // local | aws-kms
	File     string `yaml:"file"`     // local
	KeyID    string `yaml:"key_id"`   // aws-kms
	Region   string `yaml:"region"`   // aws-kms
	Endpoint string `yaml:"endpoint"` // aws-kms, optional
}

// Store says where wrapped data keys are kept.
type Store struct {
	Type        string `yaml:"type"` // file | database
	Path        string `yaml:"path"` // file
	DSN         string `yaml:"dsn"`  // database
	PasswordEnv string `yaml:"password_env"`
	Table       string `yaml:"table"` // default dbproxy_keys
}

// Cache bounds the unwrapped data keys held in memory.
type Cache struct {
	MaxEntries int           `yaml:"max_entries"` // default 1024
	TTL        time.Duration `yaml:"ttl"`         // default 10m
}

// Table lists the encrypted columns of one table.
type Table struct {
	Table    string   `yaml:"table"`
	Schema   string   `yaml:"schema"`   // PostgreSQL only; default public
	Database string   `yaml:"database"` // optional
	Columns  []Column `yaml:"columns"`
}

// Column is one encrypted column.
type Column struct {
	Name string `yaml:"name"`
	Mode Mode   `yaml:"mode"`
	// Type is the plaintext type name (value.ParseType accepts it).
	Type string `yaml:"type"`
	// Key is the data key name; the loader fills in the default
	// "<schema>.<table>.<column>" (or "<table>.<column>" when the config has
	// only MySQL listeners).
	Key string `yaml:"key"`
}

// Log configures the process logger.
type Log struct {
	Level  string `yaml:"level"`  // debug | info | warn | error; default info
	Format string `yaml:"format"` // text | json; default text
}
