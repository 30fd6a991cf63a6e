package main

import (
	"bytes"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/dbproxy/dbproxy/crypto"
)

// TestServeReload: a reload that adds an encrypted column applies to new
// sessions at once and ends the sessions opened before (so none keeps
// writing that column in plaintext); a broken config changes nothing.
func TestServeReload(t *testing.T) {
	pg, ctx, direct := startPostgresWith(t, `CREATE TABLE notes (id serial PRIMARY KEY, email bytea, note bytea)`)
	addr := freeAddr(t)
	head := listenerYAML("postgres", addr, pg.Addr()) + localKeys + `encryption:
  - table: notes
    columns:
      - name: email
        mode: deterministic
        type: text
`
	cfgPath := writeConfig(t, head)
	keysInit(t, cfgPath)
	t.Setenv("PGPASSWORD", pg.Password) // the catalog connection's password

	logs, reloads := serveReloading(t, ctx, cfgPath)
	connect := func() *pgx.Conn { return connectRetry(ctx, t, pgURL(pg, addr)) }
	old := connect()
	if _, err := old.Exec(ctx, `INSERT INTO notes (email) VALUES ($1)`, "a@example.com"); err != nil {
		t.Fatal(err)
	}

	// Reload with a second encrypted column.
	if err := os.WriteFile(cfgPath, []byte(head+`      - name: note
        type: text
`), 0o600); err != nil {
		t.Fatal(err)
	}
	keysInit(t, cfgPath)
	reloads <- struct{}{}
	// The session opened before the reload is ended at its idle point.
	deadline := time.Now().Add(20 * time.Second)
	for old.Ping(ctx) == nil {
		if time.Now().After(deadline) {
			t.Fatalf("the session opened before the reload is still open\n%s", logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}

	checkNote := func(c *pgx.Conn, note string) {
		t.Helper()
		if _, err := c.Exec(ctx, `INSERT INTO notes (email, note) VALUES ($1, $2)`, "b@example.com", note); err != nil {
			t.Fatal(err)
		}
		var raw []byte
		if err := direct.QueryRow(ctx, `SELECT note FROM notes WHERE note IS NOT NULL ORDER BY id DESC LIMIT 1`).Scan(&raw); err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(raw, []byte(note)) {
			t.Fatalf("note stored in plaintext after reload")
		}
		if h, err := crypto.ParseHeader(raw); err != nil || h.Algorithm != crypto.AlgorithmXAESGCM {
			t.Fatalf("note is not a randomized ciphertext: %v %+v", err, h)
		}
		var back string
		if err := c.QueryRow(ctx, `SELECT note FROM notes WHERE email = $1 ORDER BY id DESC LIMIT 1`, "b@example.com").Scan(&back); err != nil || back != note {
			t.Fatalf("read back %q, %v", back, err)
		}
	}
	fresh := connect()
	checkNote(fresh, "secret note one")

	// A broken config is reported and changes nothing.
	if err := os.WriteFile(cfgPath, []byte("listeners: [\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	reloads <- struct{}{}
	later := connect()
	checkNote(later, "secret note two")
	checkNote(fresh, "secret note three")
	deadline = time.Now().Add(20 * time.Second)
	for !strings.Contains(logs.String(), "reload failed") {
		if time.Now().After(deadline) {
			t.Fatalf("no log line for the failed reload\n%s", logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}
