package integration

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dbproxy/dbproxy/rules"
	"github.com/dbproxy/dbproxy/value"
)

// nodeInstallHint is printed when node or npm is missing: this test never
// skips (CI installs them).
const nodeInstallHint = "install Node.js and npm (Debian: apt-get install -y nodejs npm)"

// nodeDir returns a directory holding integration/node's script with its
// dependencies installed by `npm ci` from the committed package-lock.json.
// The installation is kept in the temporary directory, keyed by the lock
// file's hash, so that later runs do not reinstall.
func nodeDir(t *testing.T) string {
	t.Helper()
	for _, bin := range []string{"node", "npm"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Fatalf("%s not found: %s", bin, nodeInstallHint)
		}
	}
	files := map[string][]byte{}
	h := sha256.New()
	for _, name := range []string{"package.json", "package-lock.json", "test.js"} {
		b, err := os.ReadFile(filepath.Join("node", name))
		if err != nil {
			t.Fatal(err)
		}
		files[name] = b
		if name != "test.js" {
			h.Write(b)
		}
	}
	dir := filepath.Join(os.TempDir(), "dbproxy-node-"+hex.EncodeToString(h.Sum(nil))[:16])
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	done := filepath.Join(dir, ".npm-ci-done")
	if _, err := os.Stat(done); err == nil {
		return dir
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "npm", "ci", "--no-audit", "--no-fund", "--loglevel=error")
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("npm ci in %s: %v\n%s", dir, err, out)
	}
	if err := os.WriteFile(done, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

type nodeMySQL struct {
	Host     string `json:"host"`
	Port     int    `json:"port"`
	User     string `json:"user"`
	Password string `json:"password"`
	Database string `json:"database"`
}

// TestNodeClients runs integration/node/test.js: node-postgres and mysql2,
// pinned in package-lock.json, through a relaying and an encrypting
// listener of each protocol: connect and end at once (compared with the
// server itself), simple and prepared queries, JSON columns (mysql2 returns
// MariaDB's JSON as objects only with the extended metadata) and an
// encrypted round trip, whose stored values are then read directly to
// prove that only ciphertext reached the database.
func TestNodeClients(t *testing.T) {
	dir := nodeDir(t)

	pgEnc := startEncProxy(t, `
		CREATE TABLE node_plain (id int PRIMARY KEY, doc jsonb, note text);
		CREATE TABLE node_enc (id int PRIMARY KEY, email bytea, doc bytea, age bytea);`,
		[]rules.Spec{
			encSpec("node_enc", "email", rules.ModeDeterministic, value.TypeText, "node_email"),
			encSpec("node_enc", "doc", rules.ModeRandomized, value.TypeJSON, "node_doc"),
			encSpec("node_enc", "age", rules.ModeDeterministic, value.TypeInt, "node_age"),
		})
	pgPlain := startPGProxy(t, pgEnc.pg, proxyOpts{})

	myEnc := startMyEncProxy(t, []string{
		"CREATE TABLE node_plain (id INT PRIMARY KEY, doc JSON, note VARCHAR(10))",
		"CREATE TABLE node_enc (id INT PRIMARY KEY, email VARBINARY(255), doc VARBINARY(1000), age VARBINARY(100))",
	}, []rules.Spec{
		{Table: "node_enc", Column: "email", Key: "node_email", Mode: rules.ModeDeterministic, Type: value.TypeText},
		{Table: "node_enc", Column: "doc", Key: "node_doc", Mode: rules.ModeRandomized, Type: value.TypeJSON},
		{Table: "node_enc", Column: "age", Key: "node_age", Mode: rules.ModeDeterministic, Type: value.TypeInt},
	})
	myPlain := startMyProxy(t, myEnc.db, myProxyOpts{})
	my := func(host string, port int) nodeMySQL {
		return nodeMySQL{Host: host, Port: port, User: myEnc.db.User, Password: myEnc.db.Password, Database: myEnc.db.Database}
	}

	conf, err := json.Marshal(map[string]any{
		"pg": map[string]string{
			"direct": pgEnc.pg.ConnString("disable"),
			"plain":  pgPlain.DSN("disable"),
			"enc":    pgEnc.proxy.DSN("disable"),
		},
		"mysql": map[string]nodeMySQL{
			"direct": my(myEnc.db.Host, myEnc.db.Port),
			"plain":  my(myPlain.Host, myPlain.Port),
			"enc":    my(myEnc.proxy.Host, myEnc.proxy.Port),
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "node", "test.js")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "DBPROXY_NODE="+string(conf))
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "all ok") {
		t.Fatalf("node test.js: %v\n%s", err, out)
	}
	t.Logf("node test.js:\n%s", out)

	secrets := []string{"ann@node.example", "bob@node.example", "secret-one", "secret-two"}
	pgEnc.checkAtRest(t, secrets)
	myEnc.checkAtRest(t, secrets)
	for name, logs := range map[string]string{
		"pg plain": pgPlain.Logs.String(), "pg enc": pgEnc.proxy.Logs.String(),
		"mysql plain": myPlain.Logs.String(), "mysql enc": myEnc.proxy.Logs.String(),
	} {
		if strings.Contains(logs, "level=WARN") || strings.Contains(logs, "level=ERROR") {
			t.Errorf("%s proxy logged problems:\n%s", name, logs)
		}
	}
}
