package integration

import (
	"bytes"
	"database/sql"
	"errors"
	"testing"

	driver "github.com/go-sql-driver/mysql"

	"github.com/dbproxy/dbproxy/crypto"
	"github.com/dbproxy/dbproxy/crypto/keys"
	"github.com/dbproxy/dbproxy/rules"
	"github.com/dbproxy/dbproxy/value"
)

// TestMySQLEncLegacyGCMRotation: a randomized column whose data key is
// legacy AES-256-GCM stores 0x01 ciphertexts until `keys rotate`, then
// XAES-256-GCM (0x03, 12 bytes longer) under version 2, over COM_QUERY and
// prepared statements; values of both versions read back. A VARBINARY
// column sized exactly for the legacy overhead cannot take the longer
// ciphertext: the server refuses it (strict mode), and nothing is stored.
func TestMySQLEncLegacyGCMRotation(t *testing.T) {
	specs := []rules.Spec{
		{Table: "people", Column: "ssn", Key: "ssn", Mode: rules.ModeRandomized, Type: value.TypeText},
		{Table: "people", Column: "tight", Key: "tight", Mode: rules.ModeRandomized, Type: value.TypeText},
	}
	// tight holds a 10-byte value under the legacy algorithm: 10+35 bytes.
	ddl := "CREATE TABLE people (id INT PRIMARY KEY, ssn VARBINARY(200), tight VARBINARY(45))"
	e := startMyEncProxyKeys(t, []string{ddl}, specs, nil, []keys.Spec{
		{Name: "ssn", Algorithm: crypto.AlgorithmAESGCM},
		{Name: "tight", Algorithm: crypto.AlgorithmAESGCM},
	})
	ctx := testCtx(t)
	prepared := openDB(t, e.proxy.config(t, "interpolateParams=false"))
	text := openDB(t, e.proxy.config(t, "interpolateParams=true"))

	stored := func(id int, col, plain string, alg crypto.Algorithm, version uint32) {
		t.Helper()
		var raw []byte
		if err := e.direct.QueryRowContext(ctx, "SELECT `"+col+"` FROM people WHERE id = ?", id).Scan(&raw); err != nil {
			t.Fatal(err)
		}
		h, err := crypto.ParseHeader(raw)
		if err != nil {
			t.Fatalf("row %d %s: stored value is not a ciphertext: %v", id, col, err)
		}
		if h.Algorithm != alg || h.KeyVersion != version || len(raw) != len(plain)+alg.Overhead() {
			t.Fatalf("row %d %s: stored %s v%d, %d bytes; want %s v%d, %d bytes",
				id, col, h.Algorithm, h.KeyVersion, len(raw), alg, version, len(plain)+alg.Overhead())
		}
		if bytes.Contains(raw, []byte(plain)) {
			t.Fatalf("row %d %s: plaintext stored", id, col)
		}
	}
	read := func(db *sql.DB, id int, want string) {
		t.Helper()
		var got string
		if err := db.QueryRowContext(ctx, "SELECT ssn FROM people WHERE id = ?", id).Scan(&got); err != nil || got != want {
			t.Fatalf("row %d through the proxy: %q, %v; want %q", id, got, err, want)
		}
	}

	if _, err := prepared.ExecContext(ctx, "INSERT INTO people (id, ssn, tight) VALUES (?, ?, ?)", 1, "legacy one", "0123456789"); err != nil {
		t.Fatal(err)
	}
	if _, err := text.ExecContext(ctx, "INSERT INTO people (id, ssn) VALUES (2, 'legacy two')"); err != nil {
		t.Fatal(err)
	}
	stored(1, "ssn", "legacy one", crypto.AlgorithmAESGCM, 1)
	stored(2, "ssn", "legacy two", crypto.AlgorithmAESGCM, 1)
	stored(1, "tight", "0123456789", crypto.AlgorithmAESGCM, 1)

	for _, name := range []string{"ssn", "tight"} {
		if r, err := e.mgr.Rotate(ctx, name); err != nil || r.Algorithm != crypto.AlgorithmXAESGCM || r.Version != 2 {
			t.Fatalf("rotate %s: %+v, %v; want XAES-256-GCM v2", name, r, err)
		}
	}
	if _, err := prepared.ExecContext(ctx, "INSERT INTO people (id, ssn) VALUES (?, ?)", 3, "xaes three"); err != nil {
		t.Fatal(err)
	}
	if _, err := text.ExecContext(ctx, "UPDATE people SET ssn = ? WHERE id = ?", "rewritten two", 2); err != nil {
		t.Fatal(err)
	}
	stored(1, "ssn", "legacy one", crypto.AlgorithmAESGCM, 1)
	stored(2, "ssn", "rewritten two", crypto.AlgorithmXAESGCM, 2)
	stored(3, "ssn", "xaes three", crypto.AlgorithmXAESGCM, 2)
	for _, db := range []*sql.DB{prepared, text} {
		read(db, 1, "legacy one")
		read(db, 2, "rewritten two")
		read(db, 3, "xaes three")
	}

	// 10+47 bytes do not fit VARBINARY(45).
	_, err := prepared.ExecContext(ctx, "UPDATE people SET tight = ? WHERE id = 1", "9876543210")
	var me *driver.MySQLError
	if !errors.As(err, &me) || me.Number != 1406 {
		t.Fatalf("12 bytes too long for the column: %v; want ERR 1406 (data too long)", err)
	}
	stored(1, "tight", "0123456789", crypto.AlgorithmAESGCM, 1) // unchanged
}
