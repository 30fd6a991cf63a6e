package integration

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
)

// TestPGEncDumpRestore: pg_dump through the proxy writes a logical backup
// with the decrypted values, and restoring it through the proxy (psql -f)
// encrypts them again: after a TRUNCATE the same rows come back, stored as
// ciphertext. COPY's text escaping survives the round trip (tab,
// backslash, newline, NULL, non-ASCII).
func TestPGEncDumpRestore(t *testing.T) {
	e, ctx, c := startUsersSession(t, pgx.QueryExecModeCacheStatement)
	type row struct {
		email, name string
		salary      *int64
	}
	salary := int64(-42)
	want := []row{
		{"dump@example.com", "Dümp Person", &salary},
		{"tab\tand\\back@example.com", "line one\nline two", nil},
	}
	for _, r := range want {
		if _, err := c.Exec(ctx, `INSERT INTO users (email, name, salary, note) VALUES ($1, $2, $3, 'n')`, r.email, r.name, r.salary); err != nil {
			t.Fatal(err)
		}
	}
	env := e.proxy.psqlEnv("disable")
	dir := t.TempDir()
	if out, errOut, code := runTool(t, env, dir, "pg_dump", "--data-only", "--table=users", "-f", "dump.sql"); code != 0 {
		t.Fatalf("pg_dump through the proxy: exit %d: %s %s", code, out, errOut)
	}
	dump, err := os.ReadFile(filepath.Join(dir, "dump.sql"))
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"dump@example.com", "Dümp Person", "-42", `tab\tand\\back@example.com`, `line one\nline two`} {
		if !strings.Contains(string(dump), s) {
			t.Errorf("dump lacks the decrypted %q", s)
		}
	}
	if strings.Contains(string(dump), `\x0102`) {
		t.Error("dump holds raw ciphertext")
	}

	if _, err := e.direct.Exec(ctx, `TRUNCATE users`); err != nil {
		t.Fatal(err)
	}
	if out, errOut, code := runTool(t, env, dir, "psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-f", "dump.sql"); code != 0 {
		t.Fatalf("restore through the proxy: exit %d: %s %s", code, out, errOut)
	}
	rows, err := c.Query(ctx, `SELECT email, name, salary FROM users ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	got, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (row, error) {
		var x row
		err := r.Scan(&x.email, &x.name, &x.salary)
		return x, err
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Fatalf("restored %d rows, want %d", len(got), len(want))
	}
	for i := range want {
		w, g := want[i], got[i]
		if g.email != w.email || g.name != w.name || (g.salary == nil) != (w.salary == nil) || (g.salary != nil && *g.salary != *w.salary) {
			t.Errorf("row %d restored as %q %q %v, want %q %q %v", i, g.email, g.name, g.salary, w.email, w.name, w.salary)
		}
	}
	e.checkAtRest(t, []string{"dump@example.com", "Dümp Person", "tab\tand\\back@example.com", "line one\nline two"})
}
