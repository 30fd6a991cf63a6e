package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dbproxy/dbproxy/config"
	"github.com/dbproxy/dbproxy/rules"
)

// fingerprintOf loads a config with a PostgreSQL and a MySQL listener and
// the given keys/encryption sections, and returns what each listener takes
// from it.
// Key file paths resolve against dir, the same for all calls of a test.
func fingerprintOf(t *testing.T, dir, tail string) (pg, my string) {
	t.Helper()
	path := filepath.Join(dir, "dbproxy.yaml")
	body := `
listeners:
  - name: pg
    protocol: postgres
    listen: 127.0.0.1:15432
    upstream: 127.0.0.1:5432
  - name: my
    protocol: mysql
    listen: 127.0.0.1:13306
    upstream: 127.0.0.1:3306
` + tail
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatalf("load:\n%s\n%v", body, err)
	}
	if len(cfg.Encryption) == 0 {
		var none *encryption
		return none.fingerprint(config.ProtocolPostgres), none.fingerprint(config.ProtocolMySQL)
	}
	set, specs, err := ruleSet(cfg, rules.DialectPostgres)
	if err != nil {
		t.Fatal(err)
	}
	x := &encryption{rules: set, specs: specs, keysCfg: cfg.Keys}
	return x.fingerprint(config.ProtocolPostgres), x.fingerprint(config.ProtocolMySQL)
}

// TestReloadFingerprint pins down which reloads change which listener:
// a listener is drained exactly when its protocol's rules (as its database
// folds names) or the keys: section change.
func TestReloadFingerprint(t *testing.T) {
	const keysSection = localKeys
	long := strings.Repeat("c", 63)
	rulesWith := func(schema, table string, cols ...string) string {
		s := "encryption:\n  - table: " + table + "\n"
		if schema != "" {
			s += "    schema: '" + schema + "'\n"
		}
		s += "    columns:\n"
		for _, c := range cols {
			s += fmt.Sprintf("      - name: %s\n        type: text\n        key: k.%s\n", c, c[:1])
		}
		return s
	}
	dir := t.TempDir()
	base := keysSection + rulesWith("", "notes", "email", "note")
	basePG, baseMy := fingerprintOf(t, dir, base)
	for _, tc := range []struct {
		name           string
		tail           string
		pgSame, mySame bool
	}{
		{"identical", base, true, true},
		{"log level only", base + "log:\n  level: debug\n", true, true},
		{"columns reordered", keysSection + rulesWith("", "notes", "note", "email"), true, true},
		{"table name case (both fold it)", keysSection + rulesWith("", "NOTES", "email", "note"), true, true},
		{"column added", keysSection + rulesWith("", "notes", "email", "note", "extra"), false, false},
		{"quoted schema: PostgreSQL only", keysSection + rulesWith(`"Public"`, "notes", "email", "note"), false, true},
		{"cache ttl", base + "  cache:\n    ttl: 1s\n", false, false},
		{"encryption removed", "log:\n  level: info\n", false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tail := tc.tail
			if tc.name == "cache ttl" {
				tail = keysSection + "  cache:\n    ttl: 1s\n" + rulesWith("", "notes", "email", "note")
			}
			pg, my := fingerprintOf(t, dir, tail)
			if (pg == basePG) != tc.pgSame || (my == baseMy) != tc.mySame {
				t.Fatalf("PostgreSQL unchanged %v (want %v), MySQL unchanged %v (want %v)", pg == basePG, tc.pgSame, my == baseMy, tc.mySame)
			}
		})
	}

	// PostgreSQL truncates identifiers to 63 bytes, MySQL does not: two
	// column names that differ after byte 63 change the MySQL listener
	// only.
	a := keysSection + rulesWith("", "notes", long+"a")
	b := keysSection + rulesWith("", "notes", long+"b")
	pgA, myA := fingerprintOf(t, dir, a)
	pgB, myB := fingerprintOf(t, dir, b)
	if pgA != pgB || myA == myB {
		t.Fatalf("names differing after byte 63: PostgreSQL unchanged %v (want true), MySQL unchanged %v (want false)", pgA == pgB, myA == myB)
	}
}

// TestGenerationClosesAfterLastSession: a retired generation closes once,
// when its last session ends (at once without sessions), and takes no new
// sessions.
func TestGenerationClosesAfterLastSession(t *testing.T) {
	closed := 0
	g := &generation[int]{close: func() { closed++ }}
	for range 2 {
		if !g.acquire() {
			t.Fatal("a current generation refused a session")
		}
	}
	g.release()
	g.retire()
	if closed != 0 {
		t.Fatal("closed while a session still uses it")
	}
	if g.acquire() {
		t.Fatal("a retired generation took a new session")
	}
	g.release()
	if closed != 1 {
		t.Fatalf("closed %d times after its last session ended, want 1", closed)
	}
	idle := &generation[int]{close: func() { closed++ }}
	idle.retire()
	idle.retire()
	if closed != 2 {
		t.Fatalf("a generation without sessions closed %d times when retired, want once", closed-1)
	}
}
