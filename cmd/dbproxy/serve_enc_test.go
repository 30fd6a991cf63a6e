package main

import (
	"bytes"
	"context"
	"fmt"
	"net/url"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/dbproxy/dbproxy/crypto"
	"github.com/dbproxy/dbproxy/internal/testenv"
)

// TestServeEncrypts runs `dbproxy serve` with an encryption section in
// front of a real PostgreSQL: values written through it are ciphertext at
// rest and read back as plaintext.
func TestServeEncrypts(t *testing.T) {
	pg := testenv.StartPostgres(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	direct, err := pgx.Connect(ctx, pg.DSN())
	if err != nil {
		t.Fatal(err)
	}
	defer direct.Close(context.Background())
	if _, err := direct.Exec(ctx, `CREATE TABLE users (id serial PRIMARY KEY, email bytea, ssn bytea, salary bytea)`); err != nil {
		t.Fatal(err)
	}
	addr := freeAddr(t)
	cfgPath := writeConfig(t, fmt.Sprintf(`
listeners:
  - protocol: postgres
    listen: %s
    upstream: %s
    upstream_tls:
      mode: disable
%s`, addr, pg.Addr(), localConfig))
	// The catalog connection takes its password from the libpq environment.
	t.Setenv("PGPASSWORD", pg.Password)
	logs := serveInBackground(t, cfgPath, func(string) string { return "" })
	u := url.URL{Scheme: "postgres", User: url.UserPassword(pg.User, pg.Password), Host: addr, Path: "/" + pg.Database, RawQuery: "sslmode=disable"}
	var c *pgx.Conn
	for range 100 {
		if c, err = pgx.Connect(ctx, u.String()); err == nil {
			break
		}
		time.Sleep(50 * time.Millisecond) // waiting for the listener to bind, not asserting a duration
	}
	if err != nil {
		t.Fatalf("connect through serve: %v\n%s", err, logs.String())
	}
	defer c.Close(context.Background())
	if _, err := c.Exec(ctx, `INSERT INTO users (email, ssn, salary) VALUES ($1, $2, $3)`, "serve@example.com", "123-45-6789", int64(99)); err != nil {
		t.Fatalf("insert: %v", err)
	}
	var ssn string
	var salary int64
	if err := c.QueryRow(ctx, `SELECT ssn, salary FROM users WHERE email = $1`, "serve@example.com").Scan(&ssn, &salary); err != nil || ssn != "123-45-6789" || salary != 99 {
		t.Fatalf("lookup: %q %d %v", ssn, salary, err)
	}
	var email, rawSSN []byte
	if err := direct.QueryRow(ctx, `SELECT email, ssn FROM users`).Scan(&email, &rawSSN); err != nil {
		t.Fatal(err)
	}
	for _, ct := range [][]byte{email, rawSSN} {
		if !crypto.IsCiphertext(ct) || bytes.Contains(ct, []byte("serve@example.com")) || bytes.Contains(ct, []byte("123-45-6789")) {
			t.Errorf("stored value is not a ciphertext: %x", ct)
		}
	}
}
