package config_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dbproxy/dbproxy/config"
)

// A MySQL-only file has no schemas: the effective config does not invent
// "schema: public", and it still parses back to the same rules.
func TestRedactedMySQLHasNoSchema(t *testing.T) {
	cfg := mustParse(t, `
listeners:
  - protocol: mysql
    listen: 127.0.0.1:3307
    upstream: db:3306
keys:
  master_key: {provider: local, file: m.key}
encryption:
  - table: users
    columns:
      - {name: email, mode: deterministic, type: text}
`)
	out := cfg.Redacted()
	if strings.Contains(out, "schema:") {
		t.Fatalf("effective MySQL-only config shows a schema:\n%s", out)
	}
	if !strings.Contains(out, "key: users.email") {
		t.Fatalf("effective config lacks the default key name:\n%s", out)
	}
}

// check-config refuses a master key file that serve would refuse.
func TestOpenMasterKeyFile(t *testing.T) {
	dir := t.TempDir()
	key := filepath.Join(dir, "master.key")
	if err := os.WriteFile(key, []byte("x\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	src := "keys:\n  master_key: {provider: local, file: master.key}\n"
	_, err := config.Parse(filepath.Join(dir, "dbproxy.yaml"), []byte(src))
	errs := asErrors(t, err)
	if len(errs) != 1 || !strings.Contains(errs[0].Error(), "keys.master_key.file") || !strings.Contains(errs[0].Error(), "chmod 600") {
		t.Fatalf("errors = %v, want one about the file's permissions", errs)
	}
	if err := os.Chmod(key, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := config.Parse(filepath.Join(dir, "dbproxy.yaml"), []byte(src)); err != nil {
		t.Fatalf("0600 key file: %v", err)
	}
}
