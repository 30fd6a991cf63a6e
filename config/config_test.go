package config_test

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/dbproxy/dbproxy/config"
	"github.com/dbproxy/dbproxy/value"
)

// newDir returns a temporary directory holding the files TLS settings may
// name: server.crt, server.key and ca.pem (contents do not matter here).
func newDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for _, name := range []string{"server.crt", "server.key", "ca.pem"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte("placeholder\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// parse parses src as the file dbproxy.yaml in a fresh newDir. A leading
// newline in src is dropped, so that line 1 is the first line after the
// opening backquote.
func parse(t *testing.T, src string) (*config.Config, error) {
	t.Helper()
	return config.Parse(filepath.Join(newDir(t), "dbproxy.yaml"), []byte(strings.TrimPrefix(src, "\n")))
}

func mustParse(t *testing.T, src string) *config.Config {
	t.Helper()
	cfg, err := parse(t, src)
	if err != nil {
		t.Fatalf("Parse: unexpected error:\n%v", err)
	}
	return cfg
}

func mustLoad(t *testing.T, path string) *config.Config {
	t.Helper()
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	return cfg
}

// asErrors checks that err is a non-empty config.Errors.
func asErrors(t *testing.T, err error) config.Errors {
	t.Helper()
	if err == nil {
		t.Fatal("Parse succeeded, want errors")
	}
	var errs config.Errors
	if !errors.As(err, &errs) {
		t.Fatalf("error is %T, want config.Errors: %v", err, err)
	}
	if len(errs) == 0 {
		t.Fatal("empty config.Errors")
	}
	return errs
}

// want is one expected problem: "LINE:COL", the field path and a substring
// of the message.
type want struct {
	pos, field, msg string
}

func checkErrors(t *testing.T, err error, wants []want) {
	t.Helper()
	errs := asErrors(t, err)
	if len(errs) != len(wants) {
		t.Fatalf("got %d problems, want %d:\n%v", len(errs), len(wants), err)
	}
	for i, w := range wants {
		fe := errs[i]
		if got := fmt.Sprintf("%d:%d", fe.Line, fe.Col); got != w.pos {
			t.Errorf("problem %d at %s, want %s: %v", i, got, w.pos, fe)
		}
		if fe.Field != w.field {
			t.Errorf("problem %d field %q, want %q: %v", i, fe.Field, w.field, fe)
		}
		if !strings.Contains(fe.Msg, w.msg) {
			t.Errorf("problem %d message %q does not contain %q", i, fe.Msg, w.msg)
		}
		if !strings.HasSuffix(fe.File, "dbproxy.yaml") {
			t.Errorf("problem %d file %q", i, fe.File)
		}
		prefix := fmt.Sprintf("%s:%s: ", fe.File, w.pos)
		if !strings.HasPrefix(fe.Error(), prefix) {
			t.Errorf("Error() = %q, want prefix %q", fe.Error(), prefix)
		}
	}
}

// Fixtures that many tests share. Each starts with a newline (parse drops
// it), so that a fixture's lines are numbered as they read in the source.

// keysYAML is a valid keys section for configs with encryption rules
// (lines 1-4).
const keysYAML = masterKeyYAML + `    provider: local
    file: master.key
`

// masterKeyYAML starts the keys section: lines 1 (keys:) and 2
// (master_key:); fixtures add the master key's fields from line 3.
const masterKeyYAML = `
keys:
  master_key:
`

// pgListenerYAML is one PostgreSQL listener (lines 1-4: listeners:,
// protocol, listen 127.0.0.1:6432, upstream db:5432); fixtures add its
// other fields from line 5.
const pgListenerYAML = `
listeners:
  - protocol: postgres
    listen: 127.0.0.1:6432
    upstream: db:5432
`

// listenerAYAML is a listener list whose first listener, a, is PostgreSQL
// on 127.0.0.1:6432 (lines 1-5); fixtures add a second from line 6.
const listenerAYAML = `
listeners:
  - name: a
    protocol: postgres
    listen: 127.0.0.1:6432
    upstream: db1:5432
`

// usersTableYAML starts a rule for table users: after keysYAML, lines 6
// (encryption:) and 7 (the table); fixtures add its fields from line 8.
const usersTableYAML = `
encryption:
  - table: users
`

// usersEmailYAML encrypts users.email (randomized text). After keysYAML it
// is lines 6-10: encryption:, the table (7), columns: (8), the column's
// name (9) and type (10); fixtures add columns or tables from line 11.
const usersEmailYAML = usersTableYAML + `    columns:
      - name: email
        type: text
`

// appUsersSSNYAML goes on a list of rules with one for users.ssn in
// database app (5 lines, the table name at column 12 of the first).
const appUsersSSNYAML = `  - table: users
    database: app
    columns:
      - name: ssn
        type: text
`

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name  string
		src   string
		wants []want
	}{
		// Document-level problems.
		{"empty file", ``, []want{{"1:1", "", "empty configuration"}}},
		{"only comments", "\n# nothing here\n", []want{{"1:1", "", "empty configuration"}}},
		{"null document", "\n~\n", []want{{"1:1", "", "empty configuration"}}},
		{"multiple documents", `
log:
  level: info
---
log:
  level: debug
`, []want{{"3:1", "", "multiple YAML documents"}}},
		{"root is a list", `
- protocol: postgres
`, []want{{"1:1", "", "expected a mapping, got a list"}}},
		{"syntax error", `
listeners:
  - protocol: postgres
   listen: [
`, []want{{"2:1", "", "invalid YAML: did not find expected '-' indicator (in the list starting on this line"}}},
		{"syntax error in a flow list", `
log:
  level: info
listeners: [
`, []want{{"4:1", "", "invalid YAML: did not find expected node content"}}}, // at the end of the file

		{"tab indentation", "\nlog:\n\tlevel: info\n", []want{{"2:1", "", "invalid YAML: found character that cannot start any token"}}},

		// Strict decoding.
		{"unknown top-level key with suggestion", `
listener: []
`, []want{{"1:1", "listener", `unknown key "listener"; did you mean "listeners"?`}}},
		{"unknown nested key lists valid keys", pgListenerYAML + `    pool: 10
`, []want{{"5:5", "listeners[0].pool", `unknown key "pool"; valid keys: name, protocol, listen, upstream, tls, upstream_tls`}}},
		{"dash instead of underscore", pgListenerYAML + `    upstream-tls:
      mode: require
`, []want{{"5:5", "listeners[0].upstream-tls", `did you mean "upstream_tls"?`}}},
		{"duplicate key", `
log:
  level: info
  level: debug
`, []want{{"3:3", "log.level", `duplicate key "level" (first set at line 2)`}}},
		{"string where a list is expected", `
listeners: postgres
`, []want{{"1:12", "listeners", `expected a list, got string "postgres"`}}},
		{"list where a string is expected", `
log:
  level: [info]
`, []want{{"2:10", "log.level", "expected a string, got a list"}}},
		{"boolean where a string is expected", `
log:
  format: true
`, []want{{"2:11", "log.format", "expected a string, got boolean true"}}},
		{"scalar where a mapping is expected", `
log: debug
`, []want{{"1:6", "log", `expected a mapping, got string "debug"`}}},
		{"require: maybe", pgListenerYAML + `    tls:
      cert_file: server.crt
      key_file: server.key
      require: maybe
`, []want{{"8:16", "listeners[0].tls.require", `expected true or false, got string "maybe"`}}},
		{"string where an integer is expected", keysYAML + `
  cache:
    max_entries: many
`, []want{{"7:18", "keys.cache.max_entries", `expected an integer, got string "many"`}}},
		{"float where an integer is expected", keysYAML + `
  cache:
    max_entries: 1.5
`, []want{{"7:18", "keys.cache.max_entries", "expected an integer, got number 1.5"}}},
		{"duration without unit", keysYAML + `
  cache:
    ttl: 600
`, []want{{"7:10", "keys.cache.ttl", `invalid duration "600": use Go syntax`}}},
		{"duration in words", `
shutdown_timeout: 10 minutes
`, []want{{"1:19", "shutdown_timeout", `invalid duration "10 minutes"`}}},
		{"zero duration", keysYAML + `
  cache:
    ttl: 0s
`, []want{{"7:10", "keys.cache.ttl", "must be greater than 0"}}},
		{"negative duration", `
shutdown_timeout: -1s
`, []want{{"1:19", "shutdown_timeout", "must be greater than 0, got -1s"}}},
		{"zero max_entries", keysYAML + `
  cache:
    max_entries: 0
`, []want{{"7:18", "keys.cache.max_entries", "must be greater than 0, got 0"}}},
		{"alias of the wrong kind", `
listeners: &l [*l]
`, []want{{"1:16", "listeners[0]", "expected a mapping, got a list"}}},
		{"merge cycle", `
listeners:
  - &l
    <<: *l
    protocol: postgres
`, []want{{"3:9", "listeners[0]", "merge alias refers to itself"}}},

		// Listeners.
		{"unknown protocol", `
listeners:
  - protocol: oracle
    listen: 127.0.0.1:1521
    upstream: db:1521
`, []want{{"2:15", "listeners[0].protocol", `unknown protocol "oracle": must be postgres or mysql`}}},
		{"missing protocol, listen and upstream reported at the listener", `
listeners:
  - name: x
`, []want{
			{"2:5", "listeners[0].protocol", "required: postgres or mysql"},
			{"2:5", "listeners[0].listen", "required: host:port"},
			{"2:5", "listeners[0].upstream", "required: host:port"},
		}},
		{"listen without port", `
listeners:
  - protocol: postgres
    listen: 6432
    upstream: db:5432
`, []want{{"3:13", "listeners[0].listen", `invalid address "6432": must be host:port`}}},
		{"port out of range", `
listeners:
  - protocol: postgres
    listen: 127.0.0.1:0
    upstream: db:65536
`, []want{
			{"3:13", "listeners[0].listen", `invalid port "0"`},
			{"4:15", "listeners[0].upstream", `invalid port "65536" in "db:65536": must be a number from 1 to 65535`},
		}},
		{"service name as port", `
listeners:
  - protocol: postgres
    listen: 127.0.0.1:postgresql
    upstream: db:5432
`, []want{{"3:13", "listeners[0].listen", `invalid port "postgresql"`}}},
		{"upstream without host", `
listeners:
  - protocol: postgres
    listen: :6432
    upstream: :5432
`, []want{{"4:15", "listeners[0].upstream", `host is missing in ":5432"`}}},
		{"two unnamed postgres listeners", `
listeners:
  - protocol: postgres
    listen: 127.0.0.1:6432
    upstream: db1:5432
  - protocol: postgres
    listen: 127.0.0.1:6433
    upstream: db2:5432
`, []want{{"5:5", "listeners[1].name", `duplicate listener name "postgres" (also used by listeners[0]); an unnamed listener is named after its protocol`}}},
		{"duplicate explicit name", `
listeners:
  - name: main
    protocol: postgres
    listen: 127.0.0.1:6432
    upstream: db1:5432
  - name: main
    protocol: mysql
    listen: 127.0.0.1:3307
    upstream: db2:3306
`, []want{{"6:11", "listeners[1].name", `duplicate listener name "main" (also used by listeners[0])`}}},
		{"duplicate listen address", listenerAYAML + `  - name: b
    protocol: postgres
    listen: 127.0.0.1:6432
    upstream: db2:5432
`, []want{{"8:13", "listeners[1].listen", "address 127.0.0.1:6432 conflicts with listeners[0].listen (same port 6432)"}}},
		{"wildcard listen overlaps a specific address", listenerAYAML + `  - name: b
    protocol: mysql
    listen: 0.0.0.0:6432
    upstream: db2:3306
`, []want{{"8:13", "listeners[1].listen", "conflicts with listeners[0].listen"}}},
		{"tls without key_file", pgListenerYAML + `    tls:
      cert_file: server.crt
`, []want{{"6:7", "listeners[0].tls.key_file", "required: the server private key"}}},
		{"tls files that do not exist", pgListenerYAML + `    tls:
      cert_file: missing.crt
      key_file: /nonexistent/server.key
`, []want{
			{"6:18", "listeners[0].tls.cert_file", "missing.crt does not exist"},
			{"7:17", "listeners[0].tls.key_file", "file /nonexistent/server.key does not exist"},
		}},
		{"tls file is a directory", pgListenerYAML + `    tls:
      cert_file: .
      key_file: server.key
`, []want{{"6:18", "listeners[0].tls.cert_file", "is a directory"}}},
		{"unknown sslmode", pgListenerYAML + `    upstream_tls:
      mode: allow
`, []want{{"6:13", "listeners[0].upstream_tls.mode", `unknown mode "allow": must be disable, prefer, require, verify-ca or verify-full`}}},
		{"missing ca_file", pgListenerYAML + `    upstream_tls:
      mode: verify-ca
      ca_file: rds-bundle.pem
`, []want{{"7:16", "listeners[0].upstream_tls.ca_file", "rds-bundle.pem does not exist"}}},

		// Keys.
		{"encryption without keys", `
encryption:
  - table: users
    columns:
      - name: email
        type: text
`, []want{{"1:1", "keys.master_key.provider", "required: local, aws-kms or pkcs11"}}},
		{"unknown provider", `
keys:
  master_key:
    provider: vault
`, []want{{"3:15", "keys.master_key.provider", `unknown provider "vault": must be local, aws-kms or pkcs11`}}},
		{"local provider without file", `
keys:
  master_key:
    provider: local
`, []want{{"3:5", "keys.master_key.file", "required with provider local"}}},
		{"local provider with aws settings", masterKeyYAML + `    provider: local
    file: master.key
    region: us-east-1
`, []want{{"5:13", "keys.master_key.region", "only used with provider aws-kms"}}},
		{"aws-kms without key_id and region", masterKeyYAML + `    provider: aws-kms
`, []want{
			{"3:5", "keys.master_key.key_id", "required with provider aws-kms"},
			{"3:5", "keys.master_key.region", "required with provider aws-kms"},
		}},
		{"aws-kms endpoint not a URL, file set", masterKeyYAML + `    provider: aws-kms
    key_id: alias/dbproxy
    region: us-east-1
    endpoint: 127.0.0.1:4599
    file: master.key
`, []want{
			{"6:15", "keys.master_key.endpoint", "must be an http:// or https:// URL"},
			{"7:11", "keys.master_key.file", "only used with provider local"},
		}},
		{"pkcs11 without its settings", `
keys:
  master_key:
    provider: pkcs11
`, []want{
			{"3:5", "keys.master_key.module", "required: the PKCS#11 library of the HSM"},
			{"3:5", "keys.master_key.token_label", "required with provider pkcs11"},
			{"3:5", "keys.master_key.key_label", "required with provider pkcs11"},
			{"3:5", "keys.master_key.pin_env", "required with provider pkcs11: the environment variable holding the user PIN (or pin_file)"},
		}},
		{"pkcs11 with a PIN in the YAML, both PIN sources, a missing module", `
keys:
  master_key:
    provider: pkcs11
    module: /nonexistent/libsofthsm2.so
    token_label: dbproxy
    key_label: dbproxy-master
    pin: "1234"
    pin_env: HSM_PIN
    pin_file: /bin/sh
    key_id: alias/x
`, []want{
			{"4:13", "keys.master_key.module", "/nonexistent/libsofthsm2.so does not exist"},
			{"7:5", "keys.master_key.pin", `unknown key "pin"`},
			{"9:15", "keys.master_key.pin_file", "set pin_env or pin_file, not both"},
			{"10:13", "keys.master_key.key_id", "only used with provider aws-kms"},
		}},
		{"previous master keys", `
keys:
  master_key:
    provider: local
    file: master.key
    previous:
      - provider: pkcs11
        module: /bin/sh
        token_label: dbproxy
        key_label: old
        pin_env: "not a name"
      - provider: local
        file: old.key
        previous_files: [older.key]
`, []want{
			{"10:18", "keys.master_key.previous[0].pin_env", `invalid environment variable name "not a name"`},
			{"12:15", "keys.master_key.previous[1].file", "old.key does not exist"},
			{"13:25", "keys.master_key.previous[1].previous_files", "only used in the current master key"},
		}},
		{"missing previous master key file", `
keys:
  master_key:
    provider: local
    file: master.key
    previous_files: [old.key]
`, []want{{"5:22", "keys.master_key.previous_files[0]", "old.key does not exist"}}},
		{"unknown store type", keysYAML + `
  store:
    type: s3
`, []want{{"7:11", "keys.store.type", `unknown store type "s3": must be file or database`}}},
		{"database store without dsn", keysYAML + `
  store:
    type: database
`, []want{{"7:5", "keys.store.dsn", "required with store type database"}}},
		{"dsn with a wrong scheme", keysYAML + `
  store:
    type: database
    dsn: host=db user=keys
`, []want{{"8:10", "keys.store.dsn", "must start with postgres://, postgresql:// or mysql://"}}},
		{"postgres dsn with a password", keysYAML + `
  store:
    type: database
    dsn: postgres://keys:hunter2@db:5432/app
`, []want{{"8:10", "keys.store.dsn", "must not contain a password: put it in the environment variable named by password_env"}}},
		{"postgres dsn with a password parameter", keysYAML + `
  store:
    type: database
    dsn: postgresql://keys@db/app?sslmode=require&password=hunter2
`, []want{{"8:10", "keys.store.dsn", "must not contain a password"}}},
		{"mysql dsn with a password", keysYAML + `
  store:
    type: database
    dsn: mysql://keys:hunter2@tcp(db:3306)/app
`, []want{{"8:10", "keys.store.dsn", "must not contain a password"}}},
		{"bad keystore table and env name", keysYAML + `
  store:
    type: database
    dsn: mysql://keys@tcp(db:3306)/app
    table: keys;drop
    password_env: 1PASSWORD
`, []want{
			{"9:12", "keys.store.table", `invalid table name "keys;drop": must be a plain SQL identifier`},
			{"10:19", "keys.store.password_env", `invalid environment variable name "1PASSWORD"`},
		}},
		{"catalog without user, both password sources", pgListenerYAML + `    catalog:
      password_env: CAT_PW
      password_file: pw.txt
`, []want{
			{"6:7", "listeners[0].catalog.user", "required: the database user of the proxy's catalog connection"},
			{"7:22", "listeners[0].catalog.password_file", "set password_env or password_file, not both"},
		}},
		{"catalog password env name and missing file", pgListenerYAML + `    catalog: {user: cat, password_env: "1X"}
  - protocol: mysql
    listen: 127.0.0.1:3307
    upstream: db:3306
    catalog: {user: cat, password_file: nope.txt}
`, []want{
			{"5:40", "listeners[0].catalog.password_env", `invalid environment variable name "1X"`},
			{"9:41", "listeners[1].catalog.password_file", "nope.txt does not exist"},
		}},
		{"copy buffer", pgListenerYAML + `    limits: {copy_buffer: 12 parsecs}
  - protocol: mysql
    listen: 127.0.0.1:3307
    upstream: db:3306
    limits: {copy_buffer: 1MiB}
  - protocol: postgres
    name: pg2
    listen: 127.0.0.1:6433
    upstream: db:5432
    limits: {copy_buffer: 0}
`, []want{
			{"5:27", "listeners[0].limits.copy_buffer", `invalid size "12 parsecs"`},
			{"9:27", "listeners[1].limits.copy_buffer", "only used with protocol postgres"},
			{"14:27", "listeners[2].limits.copy_buffer", "must be greater than 0"},
		}},
		{"connection limits", pgListenerYAML + `    limits:
      handshake_timeout: 0s
      max_handshakes: 0
      max_connections: -1
      max_connections_per_source: -5
      idle_timeout: -1s
      upstream_keepalive: 500ms
  - protocol: mysql
    listen: 127.0.0.1:3307
    upstream: db:3306
    limits: {handshake_timeout: soon, max_connections: many, upstream_keepalive: -2s}
`, []want{
			{"6:26", "listeners[0].limits.handshake_timeout", "must be greater than 0, got 0s"},
			{"7:23", "listeners[0].limits.max_handshakes", "must be greater than 0, got 0"},
			{"8:24", "listeners[0].limits.max_connections", "must be greater than 0, got -1"},
			{"9:35", "listeners[0].limits.max_connections_per_source", "must not be negative, got -5 (0 turns it off)"},
			{"10:21", "listeners[0].limits.idle_timeout", "must not be negative, got -1s (0s turns it off)"},
			{"11:27", "listeners[0].limits.upstream_keepalive", "must be at least 1s"},
			{"15:33", "listeners[1].limits.handshake_timeout", `invalid duration "soon"`},
			{"15:56", "listeners[1].limits.max_connections", "expected an integer"},
			{"15:82", "listeners[1].limits.upstream_keepalive", "must not be negative, got -2s"},
		}},
		{"file store with database settings", keysYAML + `
  store:
    type: file
    table: dbproxy_keys
`, []want{{"8:12", "keys.store.table", "only used with store type database"}}},

		// Encryption rules.
		{"table rule without table and columns", keysYAML + `
encryption:
  - schema: app
`, []want{
			{"7:5", "encryption[0].table", "required: the table name"},
			{"7:5", "encryption[0].columns", "required: the list of encrypted columns"},
		}},
		{"empty columns", keysYAML + usersTableYAML + `    columns: []
`, []want{{"8:14", "encryption[0].columns", "must list at least one column"}}},
		{"schema-qualified table name", keysYAML + `
encryption:
  - table: public.users
    columns:
      - name: email
        type: text
`, []want{{"7:12", "encryption[0].table", `table name "public.users" contains "."`}}},
		{"column without name and type", keysYAML + usersTableYAML + `    columns:
      - mode: deterministic
`, []want{
			{"9:9", "encryption[0].columns[0].name", "required: the column name"},
			{"9:9", "encryption[0].columns[0].type", "required: one of text, smallint"},
		}},
		{"unknown type and mode", keysYAML + usersTableYAML + `    columns:
      - name: email
        type: varchar
        mode: searchable
`, []want{
			{"10:15", "encryption[0].columns[0].type", `unknown type "varchar": must be one of text, smallint, int, bigint`},
			{"11:15", "encryption[0].columns[0].mode", `unknown mode "searchable": must be deterministic or randomized`},
		}},
		{"duplicate column, case-insensitive", keysYAML + usersEmailYAML + `      - name: Email
        type: text
`, []want{{"11:15", "encryption[0].columns[1].name", `duplicate column "Email" in this table (also encryption[0].columns[0])`}}},
		{"duplicate table rule", keysYAML + usersEmailYAML + `  - table: users
    schema: public
    columns:
      - name: ssn
        type: text
`, []want{{"11:12", "encryption[1].table", "duplicate rule for table public.users (also encryption[0])"}}},
		{"duplicate table rule in one database", keysYAML + usersTableYAML + `    database: app
    columns:
      - name: email
        type: text
` + appUsersSSNYAML, []want{{"12:12", "encryption[1].table", "duplicate rule for table public.users in database app (also encryption[0])"}}},
		{"database rule overlapping an any-database rule", keysYAML + usersEmailYAML + appUsersSSNYAML, []want{{"11:12", "encryption[1].table", "overlaps encryption[0], which applies to every database"}}},
		{"shared key with different type and mode", keysYAML + usersTableYAML + `    columns:
      - name: email
        mode: deterministic
        type: text
        key: contact
  - table: orders
    columns:
      - name: customer_id
        type: bigint
        key: contact
`, []want{
			{"12:14", "encryption[0].columns[0].key", `data key "contact" is also used by encryption[1].columns[0] (column public.orders.customer_id, randomized bigint) but this column is deterministic text`},
			{"17:14", "encryption[1].columns[0].key", `data key "contact" is also used by encryption[0].columns[0] (column public.users.email, deterministic text) but this column is randomized bigint`},
		}},
		{"explicit key colliding with a default key name", keysYAML + usersEmailYAML + `      - name: phone
        type: text
        mode: deterministic
        key: public.users.email
`, []want{
			{"9:9", "encryption[0].columns[0].key", "is also used by encryption[0].columns[1]"},
			{"14:14", "encryption[0].columns[1].key", "is also used by encryption[0].columns[0]"},
		}},

		// Log.
		{"unknown log level and format", `
log:
  level: verbose
  format: xml
`, []want{
			{"2:10", "log.level", `unknown value "verbose": must be debug, info, warn or error`},
			{"3:11", "log.format", `unknown value "xml": must be text or json`},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parse(t, tt.src)
			checkErrors(t, err, tt.wants)
		})
	}
}

func TestDSNPasswordNotInError(t *testing.T) {
	for i, dsn := range []string{
		"postgres://keys:s3cr3t-value@db:5432/app",
		"postgresql://keys@db/app?password=s3cr3t-value",
		"mysql://keys:s3cr3t-value@tcp(db:3306)/app",
		"postgres://keys:s3cr3t-value@db:5432/app%zz", // invalid URL escape
		"jdbc:postgresql://db/app?password=s3cr3t-value",
	} {
		// The subtest name must not hold the password: it becomes part of
		// the temporary directory, and so of the file name in the error.
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			_, err := parse(t, keysYAML+"  store:\n    type: database\n    dsn: "+dsn+"\n")
			errs := asErrors(t, err)
			if strings.Contains(err.Error(), "s3cr3t") {
				t.Fatalf("error leaks the password: %v", err)
			}
			if errs[0].Field != "keys.store.dsn" {
				t.Fatalf("field %q, want keys.store.dsn: %v", errs[0].Field, err)
			}
		})
	}
}

func TestThreeMistakes(t *testing.T) {
	_, err := config.Load("testdata/three-mistakes.yaml")
	errs := asErrors(t, err)
	wants := []struct {
		line, col int
		field     string
		msg       string
	}{
		{8, 13, "listeners[0].upstream_tls.mode", `unknown mode "verify-everything"`},
		{15, 10, "keys.cache.ttl", `invalid duration "10 minutes"`},
		{23, 9, "encryption[0].columns[0].encrypt", `unknown key "encrypt"`},
	}
	if len(errs) != len(wants) {
		t.Fatalf("got %d problems, want %d:\n%v", len(errs), len(wants), err)
	}
	for i, w := range wants {
		fe := errs[i]
		if fe.Line != w.line || fe.Col != w.col || fe.Field != w.field || !strings.Contains(fe.Msg, w.msg) {
			t.Errorf("problem %d = %v, want %d:%d %s: ...%s...", i, fe, w.line, w.col, w.field, w.msg)
		}
	}
	wantText := fmt.Sprintf("testdata/three-mistakes.yaml:8:13: listeners[0].upstream_tls.mode: %s\n", errs[0].Msg)
	if !strings.HasPrefix(err.Error(), wantText) {
		t.Errorf("Error() = %q, want it to start with %q", err.Error(), wantText)
	}
	if n := strings.Count(err.Error(), "\n"); n != 2 {
		t.Errorf("Error() has %d newlines, want 2 (one problem per line)", n)
	}
}

func TestLoadMissingFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "absent.yaml")
	cfg, err := config.Load(path)
	if cfg != nil {
		t.Fatal("got a config for a missing file")
	}
	errs := asErrors(t, err)
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("errors.Is(err, fs.ErrNotExist) = false: %v", err)
	}
	if errs[0].Line != 0 {
		t.Errorf("line %d, want 0", errs[0].Line)
	}
	if want := path + ": read config: no such file or directory"; err.Error() != want {
		t.Errorf("Error() = %q, want %q", err.Error(), want)
	}
}

func TestExample(t *testing.T) {
	cfg := mustLoad(t, "testdata/example.yaml")
	dir, err := filepath.Abs("testdata")
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(dir, "example.yaml"); cfg.Path != want {
		t.Errorf("Path = %q, want %q", cfg.Path, want)
	}
	if len(cfg.Listeners) != 2 {
		t.Fatalf("%d listeners, want 2", len(cfg.Listeners))
	}
	pg, my := cfg.Listeners[0], cfg.Listeners[1]
	if pg.Name != "pg" || pg.Protocol != config.ProtocolPostgres || pg.Listen != "127.0.0.1:6432" || pg.Upstream != "127.0.0.1:5432" {
		t.Errorf("pg listener = %+v", pg)
	}
	if pg.TLS == nil || pg.TLS.CertFile != filepath.Join(dir, "server.crt") || pg.TLS.KeyFile != filepath.Join(dir, "server.key") || !pg.TLS.Require {
		t.Errorf("pg tls = %+v", pg.TLS)
	}
	if want := (config.UpstreamTLS{Mode: config.SSLVerifyFull, CAFile: filepath.Join(dir, "ca.pem"), ServerName: "localhost"}); pg.UpstreamTLS != want {
		t.Errorf("pg upstream_tls = %+v, want %+v", pg.UpstreamTLS, want)
	}
	if my.Name != "mysql" || my.Protocol != config.ProtocolMySQL || my.TLS != nil || my.UpstreamTLS.Mode != config.SSLDisable {
		t.Errorf("mysql listener = %+v", my)
	}
	if mk := cfg.Keys.MasterKey; mk.Provider != config.ProviderLocal || mk.File != filepath.Join(dir, "master.key") {
		t.Errorf("master key = %+v", mk)
	}
	if st := cfg.Keys.Store; st.Type != config.StoreFile || st.Path != filepath.Join(dir, "keys.json") {
		t.Errorf("store = %+v", st)
	}
	if c := cfg.Keys.Cache; c.MaxEntries != 1024 || c.TTL != 10*time.Minute {
		t.Errorf("cache = %+v", c)
	}
	wantCols := []config.ResolvedColumn{
		{"app", "public", "users", "email", config.ModeDeterministic, value.TypeText, "users_email"},
		{"app", "public", "users", "ssn", config.ModeRandomized, value.TypeText, "public.users.ssn"},
		{"app", "public", "users", "salary", config.ModeRandomized, value.TypeBigint, "public.users.salary"},
		{"", "public", "orders", "customer_email", config.ModeDeterministic, value.TypeText, "users_email"},
		{"", "public", "orders", "shipped_at", config.ModeRandomized, value.TypeTimestamptz, "public.orders.shipped_at"},
	}
	if got := cfg.Columns(); !reflect.DeepEqual(got, wantCols) {
		t.Errorf("Columns() =\n%+v\nwant\n%+v", got, wantCols)
	}
	if cfg.Log != (config.Log{Level: "info", Format: "text"}) || cfg.ShutdownTimeout != 30*time.Second {
		t.Errorf("log = %+v, shutdown_timeout = %v", cfg.Log, cfg.ShutdownTimeout)
	}
}

func TestDefaults(t *testing.T) {
	cfg := mustParse(t, `
listeners:
  - protocol: postgres
    listen: :6432
    upstream: db.internal:5432
keys:
  master_key:
    provider: local
    file: master.key
encryption:
  - table: users
    columns:
      - name: email
        type: text
`)
	dir := filepath.Dir(cfg.Path)
	l := cfg.Listeners[0]
	if l.Name != "postgres" {
		t.Errorf("listener name = %q, want postgres", l.Name)
	}
	if l.TLS != nil {
		t.Errorf("tls = %+v, want nil", l.TLS)
	}
	if want := (config.UpstreamTLS{Mode: config.SSLPrefer, ServerName: "db.internal"}); l.UpstreamTLS != want {
		t.Errorf("upstream_tls = %+v, want %+v", l.UpstreamTLS, want)
	}
	if want := (config.Limits{
		HandshakeTimeout: 5 * time.Second, MaxHandshakes: 512, MaxConnections: 10000,
		UpstreamKeepalive: 15 * time.Second, CopyBuffer: 16 << 20,
	}); l.Limits != want {
		t.Errorf("limits = %+v, want %+v", l.Limits, want)
	}
	if want := (config.Store{Type: "file", Path: filepath.Join(dir, "keys.json")}); cfg.Keys.Store != want {
		t.Errorf("store = %+v, want %+v", cfg.Keys.Store, want)
	}
	if want := (config.Cache{MaxEntries: 1024, TTL: 10 * time.Minute}); cfg.Keys.Cache != want {
		t.Errorf("cache = %+v, want %+v", cfg.Keys.Cache, want)
	}
	tbl := cfg.Encryption[0]
	if tbl.Schema != "public" || tbl.Database != "" {
		t.Errorf("table = %+v", tbl)
	}
	if want := (config.Column{Name: "email", Mode: config.ModeRandomized, Type: "text", Key: "public.users.email"}); tbl.Columns[0] != want {
		t.Errorf("column = %+v, want %+v", tbl.Columns[0], want)
	}
	if want := (config.Log{Level: "info", Format: "text"}); cfg.Log != want {
		t.Errorf("log = %+v, want %+v", cfg.Log, want)
	}
	if cfg.ShutdownTimeout != 30*time.Second {
		t.Errorf("shutdown_timeout = %v, want 30s", cfg.ShutdownTimeout)
	}

	db := mustParse(t, masterKeyYAML+`    provider: aws-kms
    key_id: alias/dbproxy
    region: us-east-1
  store:
    type: database
    dsn: postgres://dbproxy_keys@db.internal:5432/app
`)
	if got := db.Keys.Store; got.Table != "dbproxy_keys" || got.Path != "" {
		t.Errorf("database store = %+v, want table dbproxy_keys and no path", got)
	}
}

func TestNoKeysNoListeners(t *testing.T) {
	cfg := mustParse(t, `
log:
  level: debug
`)
	if len(cfg.Listeners) != 0 || len(cfg.Encryption) != 0 || cfg.Keys.MasterKey.Provider != "" {
		t.Errorf("config = %+v", cfg)
	}
	if cfg.Log.Level != "debug" {
		t.Errorf("log level %q", cfg.Log.Level)
	}
}

func TestDefaultKeyNames(t *testing.T) {
	const pgListener = `
  - protocol: postgres
    listen: 127.0.0.1:6432
    upstream: db:5432`
	const myListener = `
  - protocol: mysql
    listen: 127.0.0.1:3307
    upstream: db:3306`
	const rules = `
encryption:
  - table: users
    columns:
      - name: email
        type: text
  - table: users
    schema: crm
    columns:
      - name: email
        type: text
`
	tests := []struct {
		name      string
		listeners string
		want      []string
	}{
		{"no listeners", "", []string{"public.users.email", "crm.users.email"}},
		{"postgres only", "listeners:" + pgListener, []string{"public.users.email", "crm.users.email"}},
		{"mysql only", "listeners:" + myListener, []string{"users.email", "crm.users.email"}},
		{"both", "listeners:" + pgListener + myListener, []string{"public.users.email", "crm.users.email"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := mustParse(t, tt.listeners+keysYAML+rules)
			var got []string
			for _, c := range cfg.Columns() {
				got = append(got, c.Key)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("keys = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestRelativePaths(t *testing.T) {
	root := t.TempDir()
	confDir := filepath.Join(root, "etc")
	certDir := filepath.Join(root, "certs")
	for _, d := range []string{confDir, certDir} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	absCA := filepath.Join(root, "ca.pem")
	for _, f := range []string{filepath.Join(certDir, "server.crt"), filepath.Join(confDir, "server.key"), absCA, filepath.Join(confDir, "old.key")} {
		if err := os.WriteFile(f, []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	src := pgListenerYAML + `    tls:
      cert_file: ../certs/server.crt
      key_file: server.key
    upstream_tls:
      mode: verify-ca
      ca_file: ` + absCA + masterKeyYAML + `    provider: local
    file: secret/master.key
    previous_files: [old.key]
  store:
    path: data/keys.json
`
	path := filepath.Join(confDir, "dbproxy.yaml")
	if err := os.WriteFile(path, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	// Load through a relative path, from another working directory.
	t.Chdir(root)
	cfg := mustLoad(t, filepath.Join("etc", "dbproxy.yaml"))
	checks := []struct{ name, got, want string }{
		{"Path", cfg.Path, path},
		{"cert_file", cfg.Listeners[0].TLS.CertFile, filepath.Join(certDir, "server.crt")},
		{"key_file", cfg.Listeners[0].TLS.KeyFile, filepath.Join(confDir, "server.key")},
		{"ca_file", cfg.Listeners[0].UpstreamTLS.CAFile, absCA},
		{"master key (need not exist)", cfg.Keys.MasterKey.File, filepath.Join(confDir, "secret", "master.key")},
		{"previous_files", cfg.Keys.MasterKey.PreviousFiles[0], filepath.Join(confDir, "old.key")},
		{"store path", cfg.Keys.Store.Path, filepath.Join(confDir, "data", "keys.json")},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %q, want %q", c.name, c.got, c.want)
		}
	}
}

func TestAnchorsAndMerge(t *testing.T) {
	cfg := mustParse(t, `
listeners:
  - &base
    name: a
    protocol: postgres
    listen: 127.0.0.1:6432
    upstream: db:5432
    upstream_tls: &tls
      mode: verify-full
      ca_file: ca.pem
  - <<: *base
    name: b
    listen: 127.0.0.1:6433
    upstream_tls: *tls
`)
	a, b := cfg.Listeners[0], cfg.Listeners[1]
	if b.Name != "b" || b.Protocol != config.ProtocolPostgres || b.Listen != "127.0.0.1:6433" || b.Upstream != "db:5432" {
		t.Errorf("merged listener = %+v", b)
	}
	if a.UpstreamTLS != b.UpstreamTLS || b.UpstreamTLS.Mode != config.SSLVerifyFull {
		t.Errorf("aliased upstream_tls: a=%+v b=%+v", a.UpstreamTLS, b.UpstreamTLS)
	}
}

func TestRedacted(t *testing.T) {
	t.Run("round trip", func(t *testing.T) {
		cfg := mustLoad(t, "testdata/example.yaml")
		out := cfg.Redacted()
		for _, s := range []string{"ttl: 10m0s", "server_name: 127.0.0.1", "key: public.users.ssn", "mode: randomized", "shutdown_timeout: 30s"} {
			if !strings.Contains(out, s) {
				t.Errorf("effective config lacks %q:\n%s", s, out)
			}
		}
		back, err := config.Parse(cfg.Path, []byte(out))
		if err != nil {
			t.Fatalf("effective config does not parse: %v\n%s", err, out)
		}
		if !reflect.DeepEqual(back, cfg) {
			t.Errorf("round trip changed the config:\n got %+v\nwant %+v", back, cfg)
		}
	})
	t.Run("no keys section", func(t *testing.T) {
		cfg := mustParse(t, "\nlog:\n  format: json\n")
		out := cfg.Redacted()
		if strings.Contains(out, "keys:") {
			t.Errorf("effective config has a keys section:\n%s", out)
		}
		if _, err := config.Parse(cfg.Path, []byte(out)); err != nil {
			t.Errorf("effective config does not parse: %v\n%s", err, out)
		}
	})
	t.Run("dsn password masked", func(t *testing.T) {
		for _, dsn := range []string{
			"postgres://keys:s3cr3t@db:5432/app",
			"postgres://keys@db:5432/app?password=s3cr3t",
			"mysql://keys:s3cr3t@tcp(db:3306)/app",
			"postgres://keys:s3cr3t@db/%zz",
		} {
			cfg := &config.Config{Keys: config.Keys{
				MasterKey: config.MasterKey{Provider: "local", File: "/k"},
				Store:     config.Store{Type: "database", DSN: dsn},
			}}
			out := cfg.Redacted()
			if strings.Contains(out, "s3cr3t") {
				t.Errorf("password of %q not redacted:\n%s", dsn, out)
			}
			if !strings.Contains(out, "dsn: ") {
				t.Errorf("dsn missing from output:\n%s", out)
			}
		}
	})
}

func TestErrorsFormat(t *testing.T) {
	errs := config.Errors{
		{File: "a.yaml", Line: 3, Col: 5, Field: "log.level", Msg: "bad"},
		{File: "a.yaml", Line: 7, Col: 1, Msg: "worse"},
	}
	if got, want := errs.Error(), "a.yaml:3:5: log.level: bad\na.yaml:7:1: worse"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
	var fe *config.FieldError
	if !errors.As(fmt.Errorf("wrapped: %w", errs), &fe) || fe.Line != 3 {
		t.Errorf("errors.As(*FieldError) = %v", fe)
	}
}

func TestAliasExpansionIsBounded(t *testing.T) {
	// 600 tables that alias one rule with 600 aliased columns expand to
	// 360,000 columns from a file of a few kilobytes.
	var b strings.Builder
	b.WriteString(strings.TrimPrefix(keysYAML, "\n"))
	b.WriteString("encryption:\n  - &t\n    table: t\n    columns: [&c {name: a, type: text}")
	b.WriteString(strings.Repeat(", *c", 599))
	b.WriteString("]\n")
	b.WriteString(strings.Repeat("  - *t\n", 599))
	_, err := parse(t, b.String())
	errs := asErrors(t, err)
	if len(errs) != 1 || !strings.Contains(errs[0].Msg, "configuration too large") {
		t.Fatalf("got %v, want one 'configuration too large' problem", err)
	}
}
