package config

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Defaults filled in by the loader.
const (
	DefaultShutdownTimeout = 30 * time.Second
	DefaultCacheMaxEntries = 1024
	DefaultCacheTTL        = 10 * time.Minute
	DefaultStorePath       = "keys.json"
	DefaultStoreTable      = "dbproxy_keys"
	DefaultStorePoll       = 30 * time.Second // database store; the file store polls only when set
	MinStorePoll           = time.Second
	DefaultSchema          = "public"
	DefaultLogLevel        = "info"
	DefaultLogFormat       = "text"
	DefaultCopyBuffer      = 16 << 20

	DefaultHandshakeTimeout  = 5 * time.Second
	DefaultMaxHandshakes     = 512
	DefaultMaxConnections    = 10000
	DefaultUpstreamKeepalive = 15 * time.Second
)

// maxKeyNameLen bounds a data key name (it is bound into every ciphertext's
// associated data and stored in the keystore).
const maxKeyNameLen = 255

var (
	sqlIdentRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,62}$`)
	envNameRE  = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
)

// validate fills in defaults, resolves relative paths and records every
// problem of the decoded configuration.
func (d *decoder) validate(c *Config) {
	d.listeners(c)
	d.keys(c)
	d.encryption(c)
	d.admin(c)
	d.access(c)
	d.audit(c)

	d.enum(&c.Log.Level, "log.level", DefaultLogLevel, "debug", "info", "warn", "error")
	d.enum(&c.Log.Format, "log.format", DefaultLogFormat, "text", "json")
	d.positiveDuration(&c.ShutdownTimeout, "shutdown_timeout", DefaultShutdownTimeout)
}

type listenAddr struct {
	host string
	port int
	path string
}

func (d *decoder) listeners(c *Config) {
	names := map[string]string{}
	byPort := map[int][]listenAddr{}
	for i := range c.Listeners {
		l := &c.Listeners[i]
		p := fmt.Sprintf("listeners[%d]", i)

		switch l.Protocol {
		case ProtocolPostgres, ProtocolMySQL:
		case "":
			d.errf(p+".protocol", "required: postgres or mysql")
		default:
			d.errf(p+".protocol", "unknown protocol %q: must be postgres or mysql", clip(string(l.Protocol)))
		}

		named := l.Name != ""
		if !named && (l.Protocol == ProtocolPostgres || l.Protocol == ProtocolMySQL) {
			l.Name = string(l.Protocol)
		}
		if l.Name != "" {
			if prev, dup := names[l.Name]; dup {
				hint := ""
				if !named {
					hint = "; an unnamed listener is named after its protocol, set name: to tell them apart"
				}
				d.errf(p+".name", "duplicate listener name %q (also used by %s)%s", clip(l.Name), prev, hint)
			} else {
				names[l.Name] = p
			}
		}

		if host, port, ok := d.hostPort(p+".listen", l.Listen, false); ok {
			for _, other := range byPort[port] {
				if strings.EqualFold(host, other.host) || isWildcard(host) || isWildcard(other.host) {
					d.errf(p+".listen", "address %s conflicts with %s.listen (same port %d)", clip(l.Listen), other.path, port)
					break
				}
			}
			byPort[port] = append(byPort[port], listenAddr{host: host, port: port, path: p})
		}

		upHost, upOK := d.upstream(l, p)

		if l.TLS != nil {
			d.existingFile(&l.TLS.CertFile, p+".tls.cert_file", "the server certificate (PEM)")
			d.existingFile(&l.TLS.KeyFile, p+".tls.key_file", "the server private key (PEM)")
			if l.TLS.ClientCAFile != "" {
				d.existingFile(&l.TLS.ClientCAFile, p+".tls.client_ca_file", "the CAs of client certificates (PEM)")
			}
		}

		d.upstreamTLS(&l.UpstreamTLS, p, upHost, upOK)
		if l.Catalog != nil {
			d.catalog(l.Catalog, p+".catalog")
		}

		d.limits(&l.Limits, p+".limits")

		d.copyBuffer(l, p+".limits.copy_buffer")
	}
}

// upstream checks a listener's upstream (one host:port, or several
// separated by commas) and target_session_attrs. It returns the host to
// verify TLS certificates against when upstream_tls.server_name is unset:
// that of the only host, "" with several (each host's own is used).
func (d *decoder) upstream(l *Listener, p string) (string, bool) {
	hosts := l.UpstreamHosts()
	if len(hosts) == 0 {
		hosts = []string{""} // hostPort says it is required
	}
	host, ok := "", true
	for _, h := range hosts {
		hh, _, hok := d.hostPort(p+".upstream", h, true)
		host, ok = hh, ok && hok
	}
	if len(hosts) > 1 {
		host = ""
	}
	switch l.TargetSessionAttrs {
	case "":
		l.TargetSessionAttrs = "any"
	case "any":
	case "read-write":
		if l.Protocol == ProtocolMySQL {
			d.errf(p+".target_session_attrs", "read-write is supported for protocol postgres only: a mysql listener takes the first upstream host that accepts a connection (use any)")
		}
	default:
		d.errf(p+".target_session_attrs", "unknown value %q: must be any or read-write", clip(l.TargetSessionAttrs))
	}
	return host, ok
}

// upstreamTLS fills in and checks a listener's upstream_tls: the mode
// (prefer when unset), the CA file, and the server name to verify (the
// upstream host when unset).
func (d *decoder) upstreamTLS(ut *UpstreamTLS, p, upHost string, upOK bool) {
	switch ut.Mode {
	case "":
		ut.Mode = SSLPrefer
	case SSLDisable, SSLPrefer, SSLRequire, SSLVerifyCA, SSLVerifyFull:
	default:
		d.errf(p+".upstream_tls.mode", "unknown mode %q: must be disable, prefer, require, verify-ca or verify-full", clip(string(ut.Mode)))
	}
	if ut.CAFile != "" {
		d.existingFile(&ut.CAFile, p+".upstream_tls.ca_file", "")
	}
	if ut.ServerName == "" && upOK && upHost != "" {
		ut.ServerName = upHost
	}
}

// catalog checks a listener's catalog login at path cp.
func (d *decoder) catalog(cat *Catalog, cp string) {
	if cat.User == "" {
		d.errf(cp+".user", "required: the database user of the proxy's catalog connection")
	}
	switch {
	case cat.PasswordEnv != "" && cat.PasswordFile != "":
		d.errf(cp+".password_file", "set password_env or password_file, not both")
	case cat.PasswordEnv != "" && !envNameRE.MatchString(cat.PasswordEnv):
		d.errf(cp+".password_env", "invalid environment variable name %q", clip(cat.PasswordEnv))
	case cat.PasswordFile != "":
		d.existingFile(&cat.PasswordFile, cp+".password_file", "")
	}
}

// copyBuffer fills in and checks limits.copy_buffer (at path lp), which
// only PostgreSQL listeners use.
func (d *decoder) copyBuffer(l *Listener, lp string) {
	if !d.isSet(lp) {
		if l.Protocol == ProtocolPostgres {
			l.Limits.CopyBuffer = DefaultCopyBuffer
		}
	} else if l.Limits.CopyBuffer <= 0 {
		d.errf(lp, "must be greater than 0")
	} else if l.Limits.CopyBuffer > 1<<30 {
		d.errf(lp, "must be at most 1GiB (the largest message PostgreSQL accepts)")
	} else if l.Protocol == ProtocolMySQL {
		d.errf(lp, "only used with protocol postgres (COPY … FROM STDIN)")
	}
}

// limits fills in and checks a listener's connection limits (copy_buffer
// is checked with the protocol, in listeners).
func (d *decoder) limits(l *Limits, p string) {
	d.positiveDuration(&l.HandshakeTimeout, p+".handshake_timeout", DefaultHandshakeTimeout)
	d.count(&l.MaxHandshakes, p+".max_handshakes", DefaultMaxHandshakes, false)
	d.count(&l.MaxConnections, p+".max_connections", DefaultMaxConnections, false)
	d.count(&l.MaxConnectionsPerSource, p+".max_connections_per_source", 0, true)
	if d.isSet(p+".idle_timeout") && l.IdleTimeout < 0 {
		d.errf(p+".idle_timeout", "must not be negative, got %s (0s turns it off)", l.IdleTimeout)
	}
	kp := p + ".upstream_keepalive"
	switch {
	case !d.isSet(kp):
		l.UpstreamKeepalive = DefaultUpstreamKeepalive
	case l.UpstreamKeepalive < 0:
		d.errf(kp, "must not be negative, got %s (0s leaves the operating system's defaults)", l.UpstreamKeepalive)
	case l.UpstreamKeepalive > 0 && l.UpstreamKeepalive < time.Second:
		d.errf(kp, "must be at least 1s (TCP keepalive counts whole seconds), or 0s for the operating system's defaults; got %s", l.UpstreamKeepalive)
	}
}

// count fills in def when the count at path is not set, and checks it:
// greater than 0, or also 0 when zeroOff (0 then turns the limit off).
func (d *decoder) count(p *int, path string, def int, zeroOff bool) {
	switch {
	case !d.isSet(path):
		*p = def
	case *p < 0 || (*p == 0 && !zeroOff):
		if zeroOff {
			d.errf(path, "must not be negative, got %d (0 turns it off)", *p)
		} else {
			d.errf(path, "must be greater than 0, got %d", *p)
		}
	}
}

func isWildcard(host string) bool {
	return host == "" || host == "0.0.0.0" || host == "::"
}

// hostPort checks that s is host:port with a numeric port in 1-65535.
func (d *decoder) hostPort(path, s string, needHost bool) (string, int, bool) {
	if s == "" {
		d.errf(path, "required: host:port, e.g. 127.0.0.1:6432")
		return "", 0, false
	}
	host, portStr, err := net.SplitHostPort(s)
	if err != nil {
		d.errf(path, "invalid address %q: must be host:port, e.g. 127.0.0.1:6432", clip(s))
		return "", 0, false
	}
	port, err := strconv.Atoi(portStr)
	if err != nil || portStr[0] < '0' || portStr[0] > '9' || port < 1 || port > 65535 {
		d.errf(path, "invalid port %q in %q: must be a number from 1 to 65535", clip(portStr), clip(s))
		return "", 0, false
	}
	if needHost && host == "" {
		d.errf(path, "host is missing in %q: must be host:port", clip(s))
		return "", 0, false
	}
	return host, port, true
}

// resolve makes a relative path absolute against the config directory.
func (d *decoder) resolve(p string) string {
	if filepath.IsAbs(p) {
		return filepath.Clean(p)
	}
	return filepath.Join(d.dir, p)
}

// existingFile resolves *p and checks that it names an existing file. what,
// if not empty, says what the required file is for.
func (d *decoder) existingFile(p *string, path, what string) {
	if *p == "" {
		if what == "" {
			d.errf(path, "required")
		} else {
			d.errf(path, "required: %s", what)
		}
		return
	}
	*p = d.resolve(*p)
	fi, err := os.Stat(*p)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		d.errf(path, "file %s does not exist", *p)
	case err != nil:
		d.errf(path, "cannot access %s: %v", *p, unwrapPathError(err))
	case fi.IsDir():
		d.errf(path, "%s is a directory, not a file", *p)
	}
}

func unwrapPathError(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// privateFile reports a key file that exists but is readable by group or
// others (serve refuses such a master key). A missing file is fine here:
// keys init creates it.
func (d *decoder) privateFile(p, path string) {
	fi, err := os.Stat(p)
	if err != nil || !fi.Mode().IsRegular() {
		return
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		d.errf(path, "%s has permissions %#o; a key file must not be accessible by group or others (chmod 600 %s)", p, perm, p)
	}
}

// notWith reports each listed key that is set although it does not apply.
func (d *decoder) notWith(parent, reason string, keys ...string) {
	for _, k := range keys {
		if p := joinPath(parent, k); d.isSet(p) {
			d.errf(p, "only used %s", reason)
		}
	}
}

func (d *decoder) keys(c *Config) {
	k := &c.Keys
	mk := &k.MasterKey
	if d.isSet("keys") || len(c.Encryption) > 0 {
		d.masterKey(mk, "keys.master_key", false)
	}
	for i := range mk.PreviousFiles {
		d.existingFile(&mk.PreviousFiles[i], fmt.Sprintf("keys.master_key.previous_files[%d]", i), "a previous master key file")
		d.privateFile(mk.PreviousFiles[i], fmt.Sprintf("keys.master_key.previous_files[%d]", i))
	}
	for i := range mk.Previous {
		p := fmt.Sprintf("keys.master_key.previous[%d]", i)
		d.masterKey(&mk.Previous[i], p, true)
		d.notWith(p, "in the current master key", "previous", "previous_files")
	}

	const sp = "keys.store"
	s := &k.Store
	switch s.Type {
	case "", StoreFile:
		s.Type = StoreFile
		if s.Path == "" {
			s.Path = DefaultStorePath
		}
		s.Path = d.resolve(s.Path)
		d.notWith(sp, "with store type database", "dsn", "password_env", "table")
	case StoreDatabase:
		d.checkDSN(sp+".dsn", s.DSN)
		if s.Table == "" {
			s.Table = DefaultStoreTable
		} else if !sqlIdentRE.MatchString(s.Table) {
			d.errf(sp+".table", "invalid table name %q: must be a plain SQL identifier (letters, digits, _; at most 63)", clip(s.Table))
		}
		if s.PasswordEnv != "" && !envNameRE.MatchString(s.PasswordEnv) {
			d.errf(sp+".password_env", "invalid environment variable name %q", clip(s.PasswordEnv))
		}
		d.notWith(sp, "with store type file", "path")
		if !d.isSet(sp + ".poll") {
			s.Poll = DefaultStorePoll
		}
	default:
		d.errf(sp+".type", "unknown store type %q: must be file or database", clip(s.Type))
	}
	if d.isSet(sp+".poll") && s.Poll < MinStorePoll {
		d.errf(sp+".poll", "must be at least %s, got %s", MinStorePoll, s.Poll)
	}

	if !d.isSet("keys.cache.max_entries") {
		k.Cache.MaxEntries = DefaultCacheMaxEntries
	} else if k.Cache.MaxEntries <= 0 {
		d.errf("keys.cache.max_entries", "must be greater than 0, got %d", k.Cache.MaxEntries)
	}
	d.positiveDuration(&k.Cache.TTL, "keys.cache.ttl", DefaultCacheTTL)
}

// masterKey checks the master key settings at mp. A previous master key's
// local file must exist.
func (d *decoder) masterKey(mk *MasterKey, mp string, previous bool) {
	const awsFields, p11Fields = "key_id region endpoint", "module token_label key_label pin_env pin_file"
	switch mk.Provider {
	case ProviderLocal:
		switch {
		case mk.File == "":
			d.errf(mp+".file", "required with provider local: the master key file (keys init creates it)")
		case previous:
			d.existingFile(&mk.File, mp+".file", "a previous master key file")
		default:
			mk.File = d.resolve(mk.File)
		}
		d.privateFile(mk.File, mp+".file")
		d.notWith(mp, "with provider aws-kms", strings.Fields(awsFields)...)
		d.notWith(mp, "with provider pkcs11", strings.Fields(p11Fields)...)
	case ProviderAWSKMS:
		if mk.KeyID == "" {
			d.errf(mp+".key_id", "required with provider aws-kms: a key id, ARN or alias")
		}
		if mk.Region == "" {
			d.errf(mp+".region", "required with provider aws-kms, e.g. us-east-1")
		}
		if mk.Endpoint != "" {
			if u, err := url.Parse(mk.Endpoint); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
				d.errf(mp+".endpoint", "must be an http:// or https:// URL")
			}
		}
		d.notWith(mp, "with provider local", "file")
		d.notWith(mp, "with provider pkcs11", strings.Fields(p11Fields)...)
	case ProviderPKCS11:
		d.pkcs11(mk, mp)
		d.notWith(mp, "with provider local", "file")
		d.notWith(mp, "with provider aws-kms", strings.Fields(awsFields)...)
	case "":
		d.errf(mp+".provider", "required: local, aws-kms or pkcs11")
	default:
		d.errf(mp+".provider", "unknown provider %q: must be local, aws-kms or pkcs11", clip(mk.Provider))
	}
}

// pkcs11 checks the settings of a pkcs11 master key at mp.
func (d *decoder) pkcs11(mk *MasterKey, mp string) {
	d.existingFile(&mk.Module, mp+".module", "the PKCS#11 library of the HSM, e.g. /usr/lib/softhsm/libsofthsm2.so")
	if mk.TokenLabel == "" {
		d.errf(mp+".token_label", "required with provider pkcs11: the label of the token holding the key")
	}
	if mk.KeyLabel == "" {
		d.errf(mp+".key_label", "required with provider pkcs11: the label of the AES key (keys init creates it)")
	}
	switch {
	case mk.PINEnv != "" && mk.PINFile != "":
		d.errf(mp+".pin_file", "set pin_env or pin_file, not both")
	case mk.PINEnv != "":
		if !envNameRE.MatchString(mk.PINEnv) {
			d.errf(mp+".pin_env", "invalid environment variable name %q", clip(mk.PINEnv))
		}
	case mk.PINFile != "":
		d.existingFile(&mk.PINFile, mp+".pin_file", "")
		d.privateFile(mk.PINFile, mp+".pin_file")
	default:
		d.errf(mp+".pin_env", "required with provider pkcs11: the environment variable holding the user PIN (or pin_file)")
	}
}

// checkDSN validates the keystore DSN. Messages never quote the DSN, which
// might hold a password.
func (d *decoder) checkDSN(path, dsn string) {
	const noPassword = "must not contain a password: put it in the environment variable named by password_env"
	lower := strings.ToLower(dsn)
	switch {
	case dsn == "":
		d.errf(path, "required with store type database: a postgres:// or mysql:// URL")
	case strings.HasPrefix(lower, "postgres://"), strings.HasPrefix(lower, "postgresql://"):
		u, err := url.Parse(dsn)
		if err != nil {
			d.errf(path, "invalid URL (check its syntax; the value is not shown in case it holds a secret)")
			return
		}
		if _, has := u.User.Password(); has || u.Query().Has("password") {
			d.errf(path, noPassword)
		}
	case strings.HasPrefix(lower, "mysql://"):
		if _, has := mysqlPassword(dsn[len("mysql://"):]); has {
			d.errf(path, noPassword)
		}
	default:
		d.errf(path, "must start with postgres://, postgresql:// or mysql://")
	}
}

// mysqlPassword finds the password in a go-sql-driver style DSN
// (user:password@tcp(host:port)/db?params), returning its byte range.
func mysqlPassword(rest string) (span [2]int, ok bool) {
	head := rest
	if q := strings.IndexByte(head, '?'); q >= 0 {
		head = head[:q]
	}
	at := strings.LastIndexByte(head, '@')
	if at < 0 {
		return span, false
	}
	colon := strings.IndexByte(head[:at], ':')
	if colon < 0 {
		return span, false
	}
	return [2]int{colon + 1, at}, true
}

func (d *decoder) positiveDuration(p *time.Duration, path string, def time.Duration) {
	if !d.isSet(path) {
		*p = def
		return
	}
	if *p <= 0 {
		d.errf(path, "must be greater than 0, got %s", *p)
	}
}

func (d *decoder) enum(p *string, path, def string, allowed ...string) {
	if *p == "" {
		*p = def
		return
	}
	for _, a := range allowed {
		if *p == a {
			return
		}
	}
	d.errf(path, "unknown value %q: must be %s", clip(*p), orList(allowed))
}

func orList(items []string) string {
	if len(items) == 1 {
		return items[0]
	}
	return strings.Join(items[:len(items)-1], ", ") + " or " + items[len(items)-1]
}

// identifier checks a table, schema or column name. It reports whether the
// name is usable.
func (d *decoder) identifier(path, name, what, required string) bool {
	switch {
	case name == "":
		d.errf(path, "%s", required)
		return false
	case strings.Contains(name, "."):
		if what == "table" {
			d.errf(path, "table name %q contains \".\": put the schema in schema: and only the table name in table:", clip(name))
		} else {
			d.errf(path, "%s name %q contains \".\": give the bare name", what, clip(name))
		}
		return false
	case strings.TrimSpace(name) != name || strings.ContainsFunc(name, unicode.IsControl):
		d.errf(path, "%s name %q has leading/trailing spaces or control characters", what, clip(name))
		return false
	}
	return true
}

func validKeyName(s string) bool {
	return s != "" && len(s) <= maxKeyNameLen && utf8.ValidString(s) && !strings.ContainsFunc(s, func(r rune) bool {
		return !unicode.IsPrint(r)
	})
}
