package main

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
)

// TestAuditRecordsPolicyDenial: a read the access policy denies is refused
// to the client with 42501 naming the column and the rule, and the audit
// log records the denial (column, rule; no value), in a chain that
// verifies.
func TestAuditRecordsPolicyDenial(t *testing.T) {
	addr := freeAddr(t)
	pg, ctx, _ := startPostgresWith(t, usersTablePG)
	access := `access:
  rules:
    - name: no-ssn
      match: {users: [` + pg.User + `]}
      columns: [public.users.ssn]
      action: deny
`
	cfgPath := writeConfig(t, listenerYAML("postgres", addr, pg.Addr())+localConfig+auditYAML+access)
	t.Setenv("PGPASSWORD", pg.Password)
	_, stop := serveStoppable(t, cfgPath, func(string) string { return "" })
	c := connectRetry(ctx, t, pgURL(pg, addr))
	// deny covers writes too.
	_, err := c.Exec(ctx, `INSERT INTO users (email, ssn, salary) VALUES ($1, $2, $3)`, "deny@example.com", "555-01-2345", int64(1))
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != "42501" {
		t.Fatalf("denied write: %v, want 42501", err)
	}
	if _, err := c.Exec(ctx, `INSERT INTO users (email, salary) VALUES ($1, $2)`, "deny@example.com", int64(1)); err != nil {
		t.Fatalf("insert: %v", err)
	}
	var ssn string
	err = c.QueryRow(ctx, `SELECT ssn FROM users WHERE email = $1`, "deny@example.com").Scan(&ssn)
	if !errors.As(err, &pe) || pe.Code != "42501" || !strings.Contains(pe.Message, "public.users.ssn") || !strings.Contains(pe.Message, "no-ssn") {
		t.Fatalf("denied read: %v, want 42501 naming the column and the rule", err)
	}
	c.Close(ctx)
	stop()
	file := filepath.Join(filepath.Dir(cfgPath), "audit.jsonl")
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var denial string
	for _, line := range strings.Split(string(b), "\n") {
		if strings.Contains(line, `"type":"denied"`) {
			denial = line
			break
		}
	}
	if denial == "" || !strings.Contains(denial, "public.users.ssn") || !strings.Contains(denial, "no-ssn") {
		t.Fatalf("no denial event naming the column and the rule:\n%s", b)
	}
	if strings.Contains(string(b), "555-01-2345") {
		t.Fatal("the audit log holds a plaintext value")
	}
	verifyCLI(t, cfgPath, file)
}
