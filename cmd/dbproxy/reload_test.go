package main

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/dbproxy/dbproxy/config"
	"github.com/dbproxy/dbproxy/crypto"
	"github.com/dbproxy/dbproxy/internal/testenv"
)

// TestServeReload: a reload that adds an encrypted column applies to new
// sessions at once and ends the sessions opened before (so none keeps
// writing that column in plaintext); a broken config changes nothing.
func TestServeReload(t *testing.T) {
	pg := testenv.StartPostgres(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	direct, err := pgx.Connect(ctx, pg.DSN())
	if err != nil {
		t.Fatal(err)
	}
	defer direct.Close(context.Background())
	if _, err := direct.Exec(ctx, `CREATE TABLE notes (id serial PRIMARY KEY, email bytea, note bytea)`); err != nil {
		t.Fatal(err)
	}
	addr := freeAddr(t)
	head := fmt.Sprintf(`
listeners:
  - protocol: postgres
    listen: %s
    upstream: %s
    upstream_tls:
      mode: disable
keys:
  master_key:
    provider: local
    file: master.key
  store:
    type: file
    path: keys.json
encryption:
  - table: notes
    columns:
      - name: email
        mode: deterministic
        type: text
`, addr, pg.Addr())
	cfgPath := writeConfig(t, head)
	if code, out, errs := runCLI(t, nil, "keys", "init", "--config", cfgPath); code != 0 {
		t.Fatalf("keys init: exit %d\n%s%s", code, out, errs)
	}
	t.Setenv("PGPASSWORD", pg.Password) // the catalog connection's password

	var logs bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&logs, nil))
	e := env{stdout: &logs, stderr: &logs, getenv: os.Getenv}
	cfg, err := config.Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	enc, err := openEncryption(ctx, cfg, e, logger)
	if err != nil {
		t.Fatal(err)
	}
	reloads := make(chan struct{})
	rl := &reloader{signals: reloads, load: func(ctx context.Context) (*config.Config, *encryption, error) {
		next, err := config.Load(cfgPath)
		if err != nil {
			return nil, nil, err
		}
		nextEnc, err := openEncryption(ctx, next, e, logger)
		return next, nextEnc, err
	}}
	sctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- serveWith(sctx, cfg, logger, enc, rl) }()
	defer func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	}()

	u := url.URL{Scheme: "postgres", User: url.UserPassword(pg.User, pg.Password), Host: addr, Path: "/" + pg.Database, RawQuery: "sslmode=disable"}
	connect := func() *pgx.Conn {
		t.Helper()
		var c *pgx.Conn
		var err error
		for range 100 {
			if c, err = pgx.Connect(ctx, u.String()); err == nil {
				return c
			}
			time.Sleep(50 * time.Millisecond) // waiting for the listener to bind
		}
		t.Fatalf("connect through serve: %v\n%s", err, logs.String())
		return nil
	}
	old := connect()
	defer old.Close(context.Background())
	if _, err := old.Exec(ctx, `INSERT INTO notes (email) VALUES ($1)`, "a@example.com"); err != nil {
		t.Fatal(err)
	}

	// Reload with a second encrypted column.
	if err := os.WriteFile(cfgPath, []byte(head+`      - name: note
        type: text
`), 0o600); err != nil {
		t.Fatal(err)
	}
	if code, out, errs := runCLI(t, nil, "keys", "init", "--config", cfgPath); code != 0 {
		t.Fatalf("keys init: exit %d\n%s%s", code, out, errs)
	}
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
	defer fresh.Close(context.Background())
	checkNote(fresh, "secret note one")

	// A broken config is reported and changes nothing.
	if err := os.WriteFile(cfgPath, []byte("listeners: [\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	reloads <- struct{}{}
	later := connect()
	defer later.Close(context.Background())
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
