package integration

import (
	"bytes"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/dbproxy/dbproxy/crypto"
	"github.com/dbproxy/dbproxy/crypto/keys"
)

// TestPGEncLegacyGCMRotation: a randomized column whose data key was made
// before XAES-256-GCM (version 1 is legacy AES-256-GCM) keeps writing 0x01
// ciphertexts (35 bytes of overhead) until `keys rotate`; the rotation adds
// an XAES-256-GCM version, after which every write — INSERT or UPDATE,
// simple or extended protocol — stores 0x03 ciphertexts (47 bytes of
// overhead) under version 2, and values of both versions read back. The
// stored bytes are read directly from the table.
func TestPGEncLegacyGCMRotation(t *testing.T) {
	e := startEncProxyKeys(t, usersDDL, usersSpecs(), []keys.Spec{
		{Name: "users_email", Algorithm: crypto.AlgorithmAESSIV},
		{Name: "users_name", Algorithm: crypto.AlgorithmAESGCM}, // legacy
		{Name: "users_salary", Algorithm: crypto.AlgorithmXAESGCM},
	})
	ctx := testCtx(t)
	ext := e.connectMode(t, pgx.QueryExecModeExec)
	simple := e.connectMode(t, pgx.QueryExecModeSimpleProtocol)

	// rawName returns the stored name of row id, checked against the
	// wanted algorithm, key version and length.
	rawName := func(id int64, plain string, alg crypto.Algorithm, version uint32) {
		t.Helper()
		var raw []byte
		if err := e.direct.QueryRow(ctx, `SELECT name FROM users WHERE id = $1`, id).Scan(&raw); err != nil {
			t.Fatal(err)
		}
		h, err := crypto.ParseHeader(raw)
		if err != nil {
			t.Fatalf("row %d: stored name is not a ciphertext: %v", id, err)
		}
		if h.Algorithm != alg || h.KeyVersion != version || len(raw) != len(plain)+alg.Overhead() {
			t.Fatalf("row %d: stored name is %s v%d, %d bytes; want %s v%d, %d bytes",
				id, h.Algorithm, h.KeyVersion, len(raw), alg, version, len(plain)+alg.Overhead())
		}
		if bytes.Contains(raw, []byte(plain)) {
			t.Fatalf("row %d: plaintext name stored", id)
		}
	}
	readName := func(c *pgx.Conn, id int64, want string) {
		t.Helper()
		var got string
		if err := c.QueryRow(ctx, `SELECT name FROM users WHERE id = $1`, id).Scan(&got); err != nil || got != want {
			t.Fatalf("row %d through the proxy: %q, %v; want %q", id, got, err, want)
		}
	}

	if _, err := ext.Exec(ctx, `INSERT INTO users (id, email, name, salary) VALUES (1, $1, $2, $3)`, "a@example.com", "legacy one", int64(1000)); err != nil {
		t.Fatal(err)
	}
	if _, err := simple.Exec(ctx, `INSERT INTO users (id, email, name) VALUES (2, 'b@example.com', 'legacy two')`); err != nil {
		t.Fatal(err)
	}
	rawName(1, "legacy one", crypto.AlgorithmAESGCM, 1)
	rawName(2, "legacy two", crypto.AlgorithmAESGCM, 1)
	var salary []byte
	if err := e.direct.QueryRow(ctx, `SELECT salary FROM users WHERE id = 1`).Scan(&salary); err != nil {
		t.Fatal(err)
	}
	if h, err := crypto.ParseHeader(salary); err != nil || h.Algorithm != crypto.AlgorithmXAESGCM || len(salary) != 8+47 {
		t.Fatalf("stored salary: %+v, %v, %d bytes; want XAES-256-GCM, 55 bytes", h, err, len(salary))
	}

	r, err := e.mgr.Rotate(ctx, "users_name")
	if err != nil {
		t.Fatal(err)
	}
	if r.Version != 2 || r.Algorithm != crypto.AlgorithmXAESGCM {
		t.Fatalf("rotation of the legacy key gave %s v%d, want XAES-256-GCM v2", r.Algorithm, r.Version)
	}

	if _, err := ext.Exec(ctx, `INSERT INTO users (id, email, name) VALUES (3, $1, $2)`, "c@example.com", "xaes three"); err != nil {
		t.Fatal(err)
	}
	if _, err := simple.Exec(ctx, `INSERT INTO users (id, email, name) VALUES (4, 'd@example.com', 'xaes four')`); err != nil {
		t.Fatal(err)
	}
	if _, err := ext.Exec(ctx, `UPDATE users SET name = $1 WHERE id = 2`, "rewritten two"); err != nil {
		t.Fatal(err)
	}
	rawName(1, "legacy one", crypto.AlgorithmAESGCM, 1) // untouched
	rawName(2, "rewritten two", crypto.AlgorithmXAESGCM, 2)
	rawName(3, "xaes three", crypto.AlgorithmXAESGCM, 2)
	rawName(4, "xaes four", crypto.AlgorithmXAESGCM, 2)

	for _, c := range []*pgx.Conn{ext, simple} {
		readName(c, 1, "legacy one")
		readName(c, 2, "rewritten two")
		readName(c, 3, "xaes three")
		readName(c, 4, "xaes four")
	}
	rows, err := ext.Query(ctx, `SELECT name FROM users ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil || len(names) != 4 || names[0] != "legacy one" || names[3] != "xaes four" {
		t.Fatalf("all names: %q, %v", names, err)
	}
}
