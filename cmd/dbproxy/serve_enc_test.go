package main

import (
	"testing"
)

// TestServeEncrypts runs `dbproxy serve` with an encryption section in
// front of a real PostgreSQL: values written through it are ciphertext at
// rest and read back as plaintext.
func TestServeEncrypts(t *testing.T) {
	pg, ctx, direct := startPostgresWith(t, usersTablePG)
	addr := freeAddr(t)
	cfgPath := writeConfig(t, listenerYAML("postgres", addr, pg.Addr())+localConfig)
	// The catalog connection takes its password from the libpq environment.
	t.Setenv("PGPASSWORD", pg.Password)
	serveInBackground(t, cfgPath, func(string) string { return "" })
	c := connectRetry(ctx, t, pgURL(pg, addr))
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
	assertCiphertexts(t, [][]byte{email, rawSSN}, "serve@example.com", "123-45-6789")
}
