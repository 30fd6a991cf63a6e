package integration

import (
	"context"
	"database/sql"
	"testing"
	"time"

	driver "github.com/go-sql-driver/mysql"

	"github.com/dbproxy/dbproxy/internal/testenv"
	"github.com/dbproxy/dbproxy/proxy/mysql/mycrypt"
	"github.com/dbproxy/dbproxy/sqlplan/mysqlsql"
)

// sideCatalog returns a mycrypt.Catalog over its own connection to the
// database (as the user the sessions use), the way cmd/dbproxy wires it.
func sideCatalog(t testing.TB) func(*testenv.MariaDB) mysqlsql.Catalog {
	return func(db *testenv.MariaDB) mysqlsql.Catalog {
		conn, err := driver.NewConnector(myConfigAt(t, db.Addr(), db.User, db.Password, db.Database))
		if err != nil {
			t.Fatal(err)
		}
		side := sql.OpenDB(conn)
		t.Cleanup(func() { _ = side.Close() })
		return mycrypt.NewCatalog(side)
	}
}

// TestMySQLEncInsertWithoutColumnList writes with INSERT and REPLACE
// without a column list (single and multi-row, literals and placeholders,
// prepared and interpolated), reads the rows back through the proxy and
// the table directly (ciphertext at rest), then adds a column with ALTER
// TABLE through the proxy and inserts again.
func TestMySQLEncInsertWithoutColumnList(t *testing.T) {
	for _, mode := range []string{"interpolateParams=false", "interpolateParams=true"} {
		t.Run(mode, func(t *testing.T) {
			e := startMyEncProxyWith(t, []string{myEncDDL}, myEncSpecs(), sideCatalog(t))
			db := openDB(t, e.proxy.config(t, mode))
			ctx := testCtx(t)
			born := time.Date(1990, 5, 17, 8, 30, 15, 0, time.UTC)
			if _, err := db.ExecContext(ctx, "INSERT INTO users VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
				1, "alice@example.com", "111-22-3333", 30, born, "1234.50", true, "n1"); err != nil {
				t.Fatalf("single-row insert: %v", err)
			}
			if _, err := db.ExecContext(ctx, "INSERT INTO users VALUES (?, ?, ?, ?, ?, ?, ?, ?), (?, ?, ?, ?, ?, ?, ?, ?)",
				2, "bob@example.com", nil, nil, nil, nil, nil, "n2",
				3, "carol@example.com", "ssn-carol", 41, born, "7", false, "n3"); err != nil {
				t.Fatalf("multi-row insert: %v", err)
			}
			if _, err := db.ExecContext(ctx, "INSERT INTO users VALUES (4, 'dave@example.com', 'ssn-dave', -7, NULL, NULL, NULL, 'n4'), "+
				"(5, 'erin@example.com', 'ssn-erin', 5, NULL, '0.5', 1, 'n5')"); err != nil {
				t.Fatalf("multi-row literal insert: %v", err)
			}
			if _, err := db.ExecContext(ctx, "REPLACE INTO users VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
				5, "erin2@example.com", "ssn-erin2", 6, nil, nil, nil, "n5"); err != nil {
				t.Fatalf("replace: %v", err)
			}
			got := scanUsers(t)(db.QueryContext(ctx, usersSelect+" WHERE email = ?", "alice@example.com"))
			checkAlice(t, got, born, "row 1")
			got = scanUsers(t)(db.QueryContext(ctx, usersSelect+" ORDER BY id"))
			if len(got) != 5 || got[1].ssn.Valid || got[2].ssn.String != "ssn-carol" || got[2].age.Int64 != 41 ||
				got[3].age.Int64 != -7 || got[4].email != "erin2@example.com" || got[4].age.Int64 != 6 || got[4].note != "n5" {
				t.Fatalf("rows: %+v", got)
			}
			plaintexts := []string{"alice@example.com", "bob@example.com", "carol@example.com", "dave@example.com",
				"erin@example.com", "erin2@example.com", "111-22-3333", "ssn-carol", "ssn-dave", "ssn-erin", "1234.5"}
			e.checkAtRest(t, plaintexts)

			// A new column in the middle, added through the proxy: the next
			// column-less INSERT follows the new order.
			if _, err := db.ExecContext(ctx, "ALTER TABLE users ADD COLUMN extra VARCHAR(20) AFTER id"); err != nil {
				t.Fatalf("alter: %v", err)
			}
			if _, err := db.ExecContext(ctx, "INSERT INTO users VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
				6, "x6", "frank@example.com", "ssn-frank", 60, nil, nil, nil, "n6"); err != nil {
				t.Fatalf("insert after alter: %v", err)
			}
			if _, err := db.ExecContext(ctx, "INSERT INTO users VALUES (7, 'x7', 'gina@example.com', 'ssn-gina', 70, NULL, NULL, NULL, 'n7')"); err != nil {
				t.Fatalf("literal insert after alter: %v", err)
			}
			for id, want := range map[int]string{6: "frank@example.com", 7: "gina@example.com"} {
				var email, ssn, extra, note string
				if err := db.QueryRowContext(ctx, "SELECT email, ssn, extra, note FROM users WHERE id = ?", id).Scan(&email, &ssn, &extra, &note); err != nil ||
					email != want || extra != "x"+string(rune('0'+id)) || note != "n"+string(rune('0'+id)) {
					t.Fatalf("row %d after alter: %q %q %q %q %v", id, email, ssn, extra, note, err)
				}
			}
			// Same width, new order: only the purge after the DDL tells.
			if _, err := db.ExecContext(ctx, "ALTER TABLE users MODIFY note VARCHAR(100) AFTER id"); err != nil {
				t.Fatalf("alter order: %v", err)
			}
			if _, err := db.ExecContext(ctx, "INSERT INTO users VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
				8, "n8", "x8", "hank@example.com", "ssn-hank", 80, nil, nil, nil); err != nil {
				t.Fatalf("insert after reorder: %v", err)
			}
			var email, note string
			if err := db.QueryRowContext(ctx, "SELECT email, note FROM users WHERE id = 8").Scan(&email, &note); err != nil ||
				email != "hank@example.com" || note != "n8" {
				t.Fatalf("row 8 after reorder: %q %q %v", email, note, err)
			}
			e.checkAtRest(t, append(plaintexts, "frank@example.com", "gina@example.com", "ssn-frank", "ssn-gina",
				"hank@example.com", "ssn-hank"))
			// Directly: the extra column holds what was written there.
			var extra sql.NullString
			if err := e.direct.QueryRowContext(ctx, "SELECT extra FROM users WHERE id = 7").Scan(&extra); err != nil || extra.String != "x7" {
				t.Fatalf("extra at rest: %v %v", extra, err)
			}
		})
	}
}

// TestMySQLEncInsertWithoutColumnListRefused: without a catalog, or when
// the catalog cannot be reached, a column-less INSERT into an encrypted
// table is refused and nothing reaches the table.
func TestMySQLEncInsertWithoutColumnListRefused(t *testing.T) {
	unreachable := func(*testenv.MariaDB) mysqlsql.Catalog {
		cfg := myConfigAt(t, "127.0.0.1:1", "nobody", "x", "nothing")
		cfg.Timeout = time.Second
		conn, err := driver.NewConnector(cfg)
		if err != nil {
			t.Fatal(err)
		}
		side := sql.OpenDB(conn)
		t.Cleanup(func() { _ = side.Close() })
		return mycrypt.NewCatalog(side)
	}
	for name, cat := range map[string]func(*testenv.MariaDB) mysqlsql.Catalog{"no catalog": nil, "unreachable": unreachable} {
		t.Run(name, func(t *testing.T) {
			e := startMyEncProxyWith(t, []string{myEncDDL}, myEncSpecs(), cat)
			for _, mode := range []string{"interpolateParams=false", "interpolateParams=true"} {
				db := openDB(t, e.proxy.config(t, mode))
				_, err := db.ExecContext(context.Background(), "INSERT INTO users VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
					1, "alice@example.com", "111-22-3333", 30, nil, nil, nil, "n1")
				wantRefused(t, err, "column")
			}
			var n int
			if err := e.direct.QueryRow("SELECT COUNT(*) FROM users").Scan(&n); err != nil || n != 0 {
				t.Fatalf("rows written: %d %v", n, err)
			}
		})
	}
}
