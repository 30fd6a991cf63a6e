package config

import (
	"bytes"
	"fmt"
	"net/url"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/dbproxy/dbproxy/value"
)

// Redacted returns the effective configuration as YAML: defaults filled in,
// paths resolved, and secrets redacted. A valid file holds no secret
// (passwords come from the environment), but a DSN password is masked anyway
// in case c was built by hand. The output of a loaded configuration parses
// back (with Parse, at the same path) to an equal configuration.
func (c *Config) Redacted() string {
	cp := *c
	if cp.Keys.Store.DSN != "" {
		cp.Keys.Store.DSN = redactDSN(cp.Keys.Store.DSN)
	}
	if !cp.hasPostgres() {
		// schema is a PostgreSQL notion: a MySQL-only file does not show
		// the default one (keys are printed in full, so nothing changes).
		cp.Encryption = append([]Table(nil), cp.Encryption...)
		for i := range cp.Encryption {
			if cp.Encryption[i].Schema == DefaultSchema {
				cp.Encryption[i].Schema = ""
			}
		}
	}
	var root yaml.Node
	if err := root.Encode(&cp); err != nil {
		// Encoding plain structs of strings, ints and bools cannot fail.
		panic(fmt.Sprintf("BUG: config: encode effective config: %v", err))
	}
	if cp.Keys.MasterKey.Provider == "" {
		// The file had no keys section (and no encryption rules): leave it
		// out, so that the output still validates.
		for i := 0; i+1 < len(root.Content); i += 2 {
			if root.Content[i].Value == "keys" {
				root.Content = append(root.Content[:i], root.Content[i+2:]...)
				break
			}
		}
	}
	var b bytes.Buffer
	if c.Path != "" {
		fmt.Fprintf(&b, "# effective configuration of %s\n", c.Path)
	}
	b.WriteString("# defaults filled in, relative paths resolved, secrets redacted\n")
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(&root); err != nil {
		panic(fmt.Sprintf("BUG: config: encode effective config: %v", err))
	}
	if err := enc.Close(); err != nil {
		panic(fmt.Sprintf("BUG: config: encode effective config: %v", err))
	}
	return b.String()
}

func (c *Config) hasPostgres() bool {
	for _, l := range c.Listeners {
		if l.Protocol == ProtocolPostgres {
			return true
		}
	}
	return false
}

const redactedMark = "xxxxx"

// redactDSN masks the password of a postgres:// or mysql:// DSN. A DSN it
// cannot parse is masked entirely.
func redactDSN(dsn string) string {
	if strings.HasPrefix(strings.ToLower(dsn), "mysql://") {
		rest := dsn[len("mysql://"):]
		if span, ok := mysqlPassword(rest); ok {
			return dsn[:len("mysql://")] + rest[:span[0]] + redactedMark + rest[span[1]:]
		}
		return dsn
	}
	u, err := url.Parse(dsn)
	if err != nil {
		return "<redacted>"
	}
	_, hasPassword := u.User.Password()
	q := u.Query()
	if !hasPassword && !q.Has("password") {
		return dsn // print it exactly as written
	}
	if q.Has("password") {
		q.Set("password", redactedMark)
		u.RawQuery = q.Encode()
	}
	return u.Redacted()
}

// ResolvedColumn is one encrypted column with every default applied, as
// the keys CLI and the proxy consume it.
type ResolvedColumn struct {
	Database string // empty: any database
	Schema   string // "public" unless set
	Table    string
	Column   string
	Mode     Mode
	Type     value.Type
	Key      string // data key name
}

// Columns lists every encrypted column in configuration order. Names are as
// written in the file (no case folding).
func (c *Config) Columns() []ResolvedColumn {
	var out []ResolvedColumn
	for _, t := range c.Encryption {
		for _, col := range t.Columns {
			typ, err := value.ParseType(col.Type)
			if err != nil {
				typ = value.TypeUnknown // only for a Config not built by Load/Parse
			}
			out = append(out, ResolvedColumn{
				Database: t.Database,
				Schema:   t.Schema,
				Table:    t.Table,
				Column:   col.Name,
				Mode:     col.Mode,
				Type:     typ,
				Key:      col.Key,
			})
		}
	}
	return out
}
