package main

import (
	"context"
	"database/sql"
	"encoding/base64"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dbproxy/dbproxy/crypto/keystore"
	"github.com/dbproxy/dbproxy/crypto/kms"
	"github.com/dbproxy/dbproxy/internal/testlog"
)

const auditYAML = `audit:
  file: audit.jsonl
  summary_interval: 1h
`

// serveStoppable runs keys init and serve on cfgPath like
// serveInBackground, but returns a stop func that waits for serve to exit
// 0 (its sessions ended, its audit log closed).
func serveStoppable(t *testing.T, cfgPath string, getenv func(string) string) (logs *testlog.Buffer, stop func()) {
	t.Helper()
	keysInit(t, cfgPath)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	logs = &testlog.Buffer{}
	go func() {
		done <- run(ctx, []string{"serve", "--config", cfgPath}, env{stdout: logs, stderr: logs, getenv: getenv})
	}()
	var code *int
	stop = func() {
		if code == nil {
			cancel()
			c := <-done
			code = &c
		}
		if *code != 0 {
			t.Fatalf("serve exit %d\n%s", *code, logs.String())
		}
	}
	t.Cleanup(stop)
	return logs, stop
}

// TestAuditServe runs an encrypting session through serve with audit on,
// for PostgreSQL (with the metrics on as well) and MySQL: the audit file records the unwraps, the login,
// the first uses and the session's end; it holds none of the plaintexts
// and none of the key material (master key, data keys, audit MAC key, in
// hex or base64); audit verify accepts it, then names the line edited.
func TestAuditServe(t *testing.T) {
	for _, protocol := range []string{"postgres", "mysql"} {
		t.Run(protocol, func(t *testing.T) {
			addr := freeAddr(t)
			var cfgPath string
			var session func(t *testing.T)
			metricsSeen := func(*testing.T) {}
			getenv := func(string) string { return "" }
			if protocol == "postgres" {
				pg, ctx, _ := startPostgresWith(t, usersTablePG)
				// With admin: too, the metrics and the audit monitor both
				// see every key use.
				adminAddr := freeAddr(t)
				cfgPath = writeConfig(t, listenerYAML("postgres", addr, pg.Addr())+localConfig+auditYAML+"admin:\n  listen: "+adminAddr+"\n")
				metricsSeen = func(t *testing.T) {
					adminClient{t: t, base: "http://" + adminAddr}.waitMetric(`dbproxy_key_operations_total{key="public.users.ssn",op="decrypt"}`, 1)
				}
				t.Setenv("PGPASSWORD", pg.Password)
				session = func(t *testing.T) {
					c := connectRetry(ctx, t, pgURL(pg, addr))
					defer c.Close(ctx)
					if _, err := c.Exec(ctx, `INSERT INTO users (email, ssn, salary) VALUES ($1, $2, $3)`, "audit-pt@example.com", "987-65-4321", int64(424242)); err != nil {
						t.Fatalf("insert: %v", err)
					}
					var ssn string
					if err := c.QueryRow(ctx, `SELECT ssn FROM users WHERE email = $1`, "audit-pt@example.com").Scan(&ssn); err != nil || ssn != "987-65-4321" {
						t.Fatalf("select: %q %v", ssn, err)
					}
				}
			} else {
				my, ctx, _ := startMariaDBWith(t, usersTableMySQL)
				cfgPath = writeConfig(t, listenerYAML("mysql", addr, my.Addr())+localConfig+auditYAML)
				session = func(t *testing.T) {
					db := openMySQLRetry(ctx, t, my, addr)
					defer db.Close()
					runMySQLSession(ctx, t, db)
				}
			}
			_, stop := serveStoppable(t, cfgPath, getenv)
			session(t)
			metricsSeen(t)
			stop()
			dir := filepath.Dir(cfgPath)
			file := filepath.Join(dir, "audit.jsonl")
			ssnKey := "users.ssn"
			if protocol == "postgres" {
				ssnKey = "public.users.ssn"
			}
			checkAuditFile(t, file, protocol, ssnKey)
			checkNoSecrets(t, dir, file, "audit-pt@example.com", "987-65-4321", "424242")

			// A keys command continues the chain serve wrote.
			if code, out, errs := runCLI(t, nil, "keys", "rotate", ssnKey, "--config", cfgPath); code != 0 {
				t.Fatalf("keys rotate: exit %d\n%s%s", code, out, errs)
			}
			if b, _ := os.ReadFile(file); !strings.Contains(string(b), `"type":"key_admin","kv":1,"outcome":"ok","command":"rotate","key":"`+ssnKey+`","version":2`) {
				t.Fatalf("no key_admin event for the rotation:\n%s", b)
			}
			verifyCLI(t, cfgPath, file)
		})
	}
}

func runMySQLSession(ctx context.Context, t *testing.T, db *sql.DB) {
	t.Helper()
	if _, err := db.ExecContext(ctx, `INSERT INTO users (email, ssn, salary) VALUES (?, ?, ?)`, "audit-pt@example.com", "987-65-4321", int64(424242)); err != nil {
		t.Fatalf("insert: %v", err)
	}
	var ssn string
	if err := db.QueryRowContext(ctx, `SELECT ssn FROM users WHERE email = ?`, "audit-pt@example.com").Scan(&ssn); err != nil || ssn != "987-65-4321" {
		t.Fatalf("select: %q %v", ssn, err)
	}
}

// checkAuditFile checks that the file holds the events of one session.
func checkAuditFile(t *testing.T, file, listener, ssnKey string) {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	for _, want := range []string{
		`"type":"chain_start"`,
		`"type":"unwrap","kv":1,"outcome":"ok","key":"_audit","version":1`,
		`"type":"unwrap","kv":1,"outcome":"ok","key":"` + ssnKey + `"`,
		`"type":"login","kv":1,"principal":{"listener":"` + listener + `"`,
		`"type":"first_use"`, `"op":"encrypt","column":`, `"op":"decrypt","column":`,
		`"type":"session_end"`, `"values":1`,
	} {
		if !strings.Contains(s, want) {
			t.Errorf("audit file lacks %s:\n%s", want, s)
		}
	}
}

// checkNoSecrets greps the audit file for the plaintexts and for the key
// material in dir (master key, every data key version, the audit MAC
// key), raw, in hex and in base64.
func checkNoSecrets(t *testing.T, dir, file string, plaintexts ...string) {
	t.Helper()
	ctx := context.Background()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	master, err := os.ReadFile(filepath.Join(dir, "master.key"))
	if err != nil {
		t.Fatal(err)
	}
	secrets := [][]byte{master}
	mk, err := kms.OpenLocalFile(filepath.Join(dir, "master.key"))
	if err != nil {
		t.Fatal(err)
	}
	store, err := keystore.OpenFile(filepath.Join(dir, "keys.json"))
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	recs, err := store.List(ctx)
	if err != nil || len(recs) < 4 {
		t.Fatalf("keystore: %d records, %v", len(recs), err)
	}
	for _, r := range recs {
		pt, err := mk.Unwrap(ctx, kms.KeyRef{Name: r.Name, Version: r.Version}, r.Wrapped)
		if err != nil {
			t.Fatal(err)
		}
		secrets = append(secrets, pt, r.Wrapped)
	}
	mgr, closeFn := openTestManager(t, loadConfig(t, filepath.Join(dir, "dbproxy.yaml")))
	defer closeFn()
	_, macKey, err := auditMACKey(ctx, mgr)
	if err != nil {
		t.Fatal(err)
	}
	secrets = append(secrets, macKey)
	lower := strings.ToLower(string(b))
	for _, p := range plaintexts {
		if strings.Contains(string(b), p) {
			t.Errorf("audit file holds plaintext %q", p)
		}
	}
	for i, k := range secrets {
		for _, enc := range []string{string(k), hex.EncodeToString(k), base64.StdEncoding.EncodeToString(k),
			base64.RawStdEncoding.EncodeToString(k), base64.RawURLEncoding.EncodeToString(k)} {
			if len(enc) >= 16 && (strings.Contains(string(b), enc) || strings.Contains(lower, strings.ToLower(enc[:16]))) {
				t.Errorf("audit file holds key material #%d", i)
			}
		}
	}
}

// verifyCLI: audit verify accepts file, names a line edited in a copy
// (exit 1) and refuses bad usage (exit 2).
func verifyCLI(t *testing.T, cfgPath, file string) {
	t.Helper()
	code, out, errs := runCLI(t, nil, "audit", "verify", "--config", cfgPath, file)
	if code != 0 || !strings.HasPrefix(out, "OK: ") {
		t.Fatalf("audit verify: exit %d\n%s%s", code, out, errs)
	}
	b, _ := os.ReadFile(file)
	edited := filepath.Join(t.TempDir(), "edited.jsonl")
	lines := strings.SplitAfter(string(b), "\n")
	lines[2] = strings.Replace(lines[2], `"kv":1,`, `"kv":1,"x":1,`, 1)
	if err := os.WriteFile(edited, []byte(strings.Join(lines, "")), 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, errs = runCLI(t, nil, "audit", "verify", "--config", cfgPath, edited)
	if code != 1 || !strings.Contains(errs, edited+":3: bad mac") {
		t.Fatalf("audit verify of an edited file: exit %d\n%s%s", code, out, errs)
	}
	for _, args := range [][]string{{"audit"}, {"audit", "verify", "--config", cfgPath}, {"audit", "check", file}} {
		if code, _, errs := runCLI(t, nil, args...); code != 2 {
			t.Errorf("%q: exit %d, want 2\n%s", args, code, errs)
		}
	}
	if code, _, _ := runCLI(t, nil, "audit", "verify", "--config", cfgPath, file+".missing"); code != 1 {
		t.Errorf("audit verify of a missing file: exit %d, want 1", code)
	}
}
