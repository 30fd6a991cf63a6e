package main

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/dbproxy/dbproxy/config"
	"github.com/dbproxy/dbproxy/internal/testlog"
)

// TestServeReloadAccess: a reload that changes access: applies the new
// policy to new sessions and ends the sessions opened before (a revoked
// permission does not live on in a pooled connection); a reload that
// leaves it alone keeps them.
func TestServeReloadAccess(t *testing.T) {
	pg, ctx, _ := startPostgresWith(t, `CREATE TABLE people (id int PRIMARY KEY, ssn bytea)`)
	addr := freeAddr(t)
	head := listenerYAML("postgres", addr, pg.Addr()) + localKeys + `encryption:
  - table: people
    columns:
      - {name: ssn, type: text}
`
	cfgPath := writeConfig(t, head)
	keysInit(t, cfgPath)
	t.Setenv("PGPASSWORD", pg.Password) // the catalog connection's password

	logs, reloads := serveReloading(t, ctx, cfgPath)
	connect := func() *pgx.Conn { return connectRetry(ctx, t, pgURL(pg, addr)) }
	readSSN := func(c *pgx.Conn) (string, error) {
		var s string
		err := c.QueryRow(ctx, `SELECT ssn FROM people WHERE id = 1`).Scan(&s)
		return s, err
	}
	reload := func(body, wantLog string) {
		t.Helper()
		if err := os.WriteFile(cfgPath, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		n := strings.Count(logs.String(), wantLog)
		reloads <- struct{}{}
		deadline := time.Now().Add(20 * time.Second)
		for strings.Count(logs.String(), wantLog) == n {
			if time.Now().After(deadline) {
				t.Fatalf("no %q log line after the reload", wantLog)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}

	old := connect()
	if _, err := old.Exec(ctx, `INSERT INTO people VALUES (1, '123-45-6789')`); err != nil {
		t.Fatal(err)
	}
	if s, err := readSSN(old); err != nil || s != "123-45-6789" {
		t.Fatalf("before the policy: %q %v", s, err)
	}

	masked := head + "access:\n  rules:\n    - match: {users: [" + pg.User + "]}\n      columns: [people.ssn]\n      action: mask\n      mask: {keep_last: 4}\n"
	reload(masked, "new encryption rules apply")
	deadline := time.Now().Add(20 * time.Second)
	for old.Ping(ctx) == nil {
		if time.Now().After(deadline) {
			t.Fatal("the session opened before the policy change is still open")
		}
		time.Sleep(50 * time.Millisecond)
	}
	fresh := connect()
	if s, err := readSSN(fresh); err != nil || s != "*******6789" {
		t.Fatalf("after the policy change: %q %v", s, err)
	}

	// The same policy, on other lines: nothing changes, the session goes on.
	reload(strings.Replace(masked, "access:", "# a comment\n\naccess:", 1), "sessions go on")
	if s, err := readSSN(fresh); err != nil || s != "*******6789" {
		t.Fatalf("after a reload that kept the policy: %q %v", s, err)
	}

	// Deny: new sessions are refused the column.
	reload(strings.Replace(masked, "action: mask\n      mask: {keep_last: 4}", "action: deny", 1), "new encryption rules apply")
	_, err := readSSN(connect())
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != "42501" || !strings.Contains(pe.Message, "access.rules[0] (action deny)") {
		t.Fatalf("after deny: %v", err)
	}
}

// serveReloading runs serve with the configuration at cfgPath until the
// test ends; a send on reloads is a SIGHUP. The logs are shown if the test
// failed.
func serveReloading(t *testing.T, ctx context.Context, cfgPath string) (*testlog.Buffer, chan<- struct{}) {
	t.Helper()
	logs := &testlog.Buffer{}
	logger := slog.New(slog.NewTextHandler(logs, nil))
	e := env{stdout: logs, stderr: logs, getenv: os.Getenv}
	cfg := loadConfig(t, cfgPath)
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
	t.Cleanup(func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
		if t.Failed() {
			t.Logf("serve logs:\n%s", logs.String())
		}
	})
	return logs, reloads
}
