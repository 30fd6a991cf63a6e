package integration

import (
	"fmt"
	"testing"
)

// TestMySQLEncLiteralTemplates: statements that differ only in their
// constants share a cached plan template. Through the proxy, many such statements (text protocol,
// values as literals) store and find the right value in the right row,
// the table holds none of them in plaintext, and a value the planner
// refuses is refused on a template hit as on a fresh plan.
func TestMySQLEncLiteralTemplates(t *testing.T) {
	e := startMyEncProxy(t, []string{myEncDDL}, myEncSpecs())
	db := openDB(t, e.proxy.config(t, "interpolateParams=false"))
	ctx := testCtx(t)
	const n = 30
	var plaintexts []string
	for i := 1; i <= n; i++ {
		// id and note are plaintext constants, rendered into the rewritten
		// text; email is encrypted.
		if _, err := db.ExecContext(ctx, fmt.Sprintf("INSERT INTO users (id, email, note) VALUES (%d, 'u%d@example.com', 'n')", i, i)); err != nil {
			t.Fatalf("insert %d: %v", i, err)
		}
		plaintexts = append(plaintexts, fmt.Sprintf("u%d@example.com", i), fmt.Sprintf("ssn-%d-x", i))
	}
	for i := 1; i <= n; i++ {
		// From the third statement of a shape on, a template.
		q := fmt.Sprintf("UPDATE users SET ssn = 'ssn-%d-x', age = %d WHERE email = 'u%d@example.com' AND note = 'n'", i, 7*i, i)
		res, err := db.ExecContext(ctx, q)
		if err != nil {
			t.Fatalf("update %d: %v", i, err)
		}
		if k, _ := res.RowsAffected(); k != 1 {
			t.Fatalf("update %d affected %d rows", i, k)
		}
	}
	for i := n; i >= 1; i-- {
		var id, age int
		var ssn string
		q := fmt.Sprintf("SELECT id, ssn, age FROM users WHERE email = 'u%d@example.com'", i)
		if err := db.QueryRowContext(ctx, q).Scan(&id, &ssn, &age); err != nil {
			t.Fatalf("select %d: %v", i, err)
		}
		if id != i || ssn != fmt.Sprintf("ssn-%d-x", i) || age != 7*i {
			t.Fatalf("select %d: got id %d ssn %q age %d", i, id, ssn, age)
		}
		var count int
		q = fmt.Sprintf("SELECT COUNT(*) FROM users WHERE age = %d", 7*i)
		if err := db.QueryRowContext(ctx, q).Scan(&count); err != nil || count != 1 {
			t.Fatalf("count by age %d: %d %v", 7*i, count, err)
		}
	}
	// An upsert whose fixed parts stay the same: the last values win.
	for i := 1; i <= 5; i++ {
		q := fmt.Sprintf("INSERT INTO users (id, email, ssn) VALUES (1000, 'first', 'first') "+
			"ON DUPLICATE KEY UPDATE email = 'upsert%d@example.com', ssn = 'upsert-ssn-%d'", i, i)
		if _, err := db.ExecContext(ctx, q); err != nil {
			t.Fatalf("upsert %d: %v", i, err)
		}
		plaintexts = append(plaintexts, fmt.Sprintf("upsert%d@example.com", i), fmt.Sprintf("upsert-ssn-%d", i))
	}
	var ssn string
	if err := db.QueryRowContext(ctx, "SELECT ssn FROM users WHERE email = 'upsert5@example.com'").Scan(&ssn); err != nil || ssn != "upsert-ssn-5" {
		t.Fatalf("after upserts: %q %v", ssn, err)
	}
	// Plaintext constants vary too: each row gets its own note.
	for i := 1; i <= n; i++ {
		q := fmt.Sprintf("UPDATE users SET note = 'note %d', ssn = 'ssn-%d-y' WHERE id = %d", i, i, i)
		if _, err := db.ExecContext(ctx, q); err != nil {
			t.Fatalf("update note %d: %v", i, err)
		}
		plaintexts = append(plaintexts, fmt.Sprintf("ssn-%d-y", i))
	}
	for i := 1; i <= n; i++ {
		var note string
		q := fmt.Sprintf("SELECT note, ssn FROM users WHERE id = %d AND email = 'u%d@example.com'", i, i)
		if err := db.QueryRowContext(ctx, q).Scan(&note, &ssn); err != nil || note != fmt.Sprintf("note %d", i) || ssn != fmt.Sprintf("ssn-%d-y", i) {
			t.Fatalf("row %d: note %q ssn %q %v", i, note, ssn, err)
		}
	}
	// A value a fresh plan refuses is refused on a template hit too, and
	// nothing is written.
	_, err := db.ExecContext(ctx, "UPDATE users SET ssn = 'dbproxy_slot_0', age = 1 WHERE email = 'u1@example.com' AND note = 'n'")
	wantRefused(t, err, "reserved identifier")
	_, err = db.ExecContext(ctx, "UPDATE users SET ssn = 'x', age = 'not a number' WHERE email = 'u1@example.com' AND note = 'n'")
	wantRefused(t, err, "valid int")
	if err := db.QueryRowContext(ctx, "SELECT ssn FROM users WHERE email = 'u1@example.com'").Scan(&ssn); err != nil || ssn != "ssn-1-y" {
		t.Fatalf("after refusals: %q %v", ssn, err)
	}
	e.checkAtRest(t, plaintexts)
}
