package main

import (
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dbproxy/dbproxy/config"
	"github.com/dbproxy/dbproxy/fieldcrypt"
	"github.com/dbproxy/dbproxy/proxy"
	"github.com/dbproxy/dbproxy/rules"
)

const accessRules = `
encryption:
  - table: users
    columns:
      - {name: ssn, type: text, mode: deterministic}
      - {name: salary, type: bigint}
`

// loadAccess loads a configuration with accessRules and tail in dir (key
// paths resolve against it).
func loadAccess(t *testing.T, dir, tail string) *config.Config {
	t.Helper()
	path := filepath.Join(dir, "dbproxy.yaml")
	body := `
listeners:
  - protocol: postgres
    listen: 127.0.0.1:15432
    upstream: 127.0.0.1:5432
  - protocol: mysql
    listen: 127.0.0.1:13306
    upstream: 127.0.0.1:3306
` + localKeys + accessRules + tail
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	return cfg
}

// TestAccessPolicyFromConfig: the access: section compiles into the
// policy both protocols' sessions use; a pattern naming no encrypted
// column is an error naming the file and the rule.
func TestAccessPolicyFromConfig(t *testing.T) {
	cfg := loadAccess(t, t.TempDir(), `
access:
  default: deny
  rules:
    - name: rep
      match: {users: [reporting], sources: [10.0.0.0/8]}
      columns: [public.users.ssn, users.salary]
      action: mask
      mask: {keep_first: 1, char: "#"}
`)
	p, err := configPolicy(cfg)
	if err != nil {
		t.Fatal(err)
	}
	pgSet, _, _ := ruleSet(cfg, rules.DialectPostgres)
	mySet, _, _ := ruleSet(cfg, rules.DialectMySQL)
	rep := proxy.Principal{User: "reporting", Client: netip.MustParseAddrPort("10.1.1.1:4000")}
	for _, set := range []*rules.Set{pgSet, mySet} {
		for _, tbl := range set.Tables() {
			for _, col := range tbl.Columns {
				d := p.For(rep).Decide(col)
				// MySQL has no schema: public.users.ssn names no MySQL column.
				want := fieldcrypt.ActionMask
				if set == mySet && col.Column == "ssn" {
					want = fieldcrypt.ActionDeny
				}
				if d.Action != want {
					t.Errorf("%s: %s by %s, want %s", col, d.Action, d.Rule, want)
				}
				if d.Action == fieldcrypt.ActionMask && (d.Mask.KeepFirst != 1 || d.Mask.Char != '#' || d.Rule != `access.rules[0] "rep"`) {
					t.Errorf("%s: decision %+v", col, d)
				}
			}
		}
	}
	if d := p.For(proxy.Principal{User: "app"}).Decide(pgSet.Tables()[0].Columns[0]); d.Action != fieldcrypt.ActionDeny || d.Rule != "access.default" {
		t.Errorf("default: %+v", d)
	}

	bad := loadAccess(t, t.TempDir(), `
access:
  rules:
    - match: {users: [reporting]}
      columns: [users.ssm]
      action: deny
`)
	_, err = configPolicy(bad)
	if err == nil || !strings.Contains(err.Error(), bad.Path) || !strings.Contains(err.Error(), `access.rules[0].columns[0]: "users.ssm"`) {
		t.Fatalf("unmatched pattern: %v", err)
	}
	code, _, stderr := runCLI(t, nil, "check-config", "--config", bad.Path)
	if code != 1 || !strings.Contains(stderr, "naming no encrypted column") {
		t.Errorf("check-config: exit %d, %s", code, stderr)
	}
}

// TestAccessFingerprint: a change of the access: section changes every
// listener's fingerprint (its sessions are drained on reload); the same
// section in another place of the file does not.
func TestAccessFingerprint(t *testing.T) {
	fp := func(cfg *config.Config) string {
		set, specs, err := ruleSet(cfg, rules.DialectPostgres)
		if err != nil {
			t.Fatal(err)
		}
		x := &encryption{rules: set, specs: specs, keysCfg: cfg.Keys, access: cfg.Access}
		return x.fingerprint(config.ProtocolPostgres) + x.fingerprint(config.ProtocolMySQL)
	}
	dir := t.TempDir()
	base := fp(loadAccess(t, dir, ""))
	const section = "access:\n  rules:\n    - {columns: [users.ssn], action: deny}\n"
	deny := fp(loadAccess(t, dir, section))
	moved := fp(loadAccess(t, dir, "\n\n# moved down\n"+section))
	if base == deny {
		t.Error("adding access: kept the fingerprint")
	}
	if deny != moved {
		t.Error("the same access: section on other lines changed the fingerprint")
	}
}
