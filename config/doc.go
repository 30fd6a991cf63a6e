// Package config owns the dbproxy YAML configuration (docs/config.md): its
// schema (the structs in config.go), its defaults, and its validation.
//
// # Loading
//
// Load reads a file and Parse decodes bytes; both return a *Config that is
// decoded, defaulted and validated, or an Errors value listing every problem
// found (not just the first), each as FILE:LINE:COL: field: message. The
// loader walks the yaml.Node tree itself instead of unmarshalling, so that it
// knows the position of every value:
//
//   - unknown keys are errors (with a "did you mean" suggestion), as are
//     duplicate keys, values of the wrong type (a string where a list or
//     integer is expected, "require: maybe"), durations not in Go syntax
//     ("10m", "30s"), an empty file and a file with several documents;
//   - a missing required field is reported at the mapping that lacks it;
//   - anchors, aliases and "<<" merge keys are accepted;
//   - semantic checks (enumerations, host:port, file existence, duplicate
//     listeners and tables, data keys shared by incompatible columns, DSNs
//     without passwords) run after decoding and report at the node of the
//     offending value.
//
// Relative paths (TLS files, master key files, the file keystore) are
// resolved against the directory of the configuration file, and Config.Path
// is the absolute path of the file. TLS certificate, key and CA files must
// exist; the local master key file need not (keys init creates it).
// verify-ca and verify-full without a ca_file verify against the system
// roots.
//
// # Defaults
//
// Listener name: the protocol name. upstream_tls.mode: prefer;
// upstream_tls.server_name: the host of upstream when it names one host
// (with several, unset: each host's own name is checked).
// target_session_attrs: any. Store type: file, path
// keys.json; database store table: dbproxy_keys, poll 30s (file store: no
// poll unless set). Cache: 1024 entries, TTL
// 10m. Table schema: public. Column mode: randomized. Column key:
// "<schema>.<table>.<column>", or "<table>.<column>" when every listener is
// MySQL (and there is at least one) and the table sets no schema. Note that
// a default key name is bound into ciphertexts: adding a PostgreSQL listener
// to a MySQL-only configuration changes the default key names, so set key:
// explicitly in that case. log: info, text. shutdown_timeout: 30s.
// access.default: decrypt; a mask: without char masks with *. The access:
// section is checked here (actions, masks, lookup, CIDR sources, pattern
// syntax); whether each column pattern names an encrypted column is
// checked where the rules are built (cmd/dbproxy, check-config).
//
// # Identifiers
//
// Table, schema, database and column names are stored exactly as written.
// This package does not fold case; the proxy layers compare names the way
// their database does. Duplicate detection here is case-insensitive, so no
// two rules can claim the same column under any folding.
//
// # Secrets
//
// Passwords never live in the file: a keystore DSN with a password is an
// error (use password_env). Error messages never quote a DSN. Redacted
// prints the effective configuration for "dbproxy check-config -v".
//
// # Boundaries
//
// This package must not import proxy/..., crypto/... or any runtime
// networking. It uses net only for address parsing (net.SplitHostPort) and
// net/url for URL syntax; it touches the file system only to read the
// configuration and to check that referenced files exist. It imports value
// for the plaintext type names.
package config
