package main

import (
	"fmt"
	"strings"
	"testing"

	_ "github.com/go-sql-driver/mysql"
)

// TestServeEncryptsMySQL runs `dbproxy serve` with a MySQL listener in
// front of a real MariaDB: an INSERT without a column list is encrypted
// when the catalog user is configured (the column order comes from the
// listener's upstream), and refused, with nothing written, when it is not.
func TestServeEncryptsMySQL(t *testing.T) {
	my, ctx, direct := startMariaDBWith(t, usersTableMySQL)
	for _, withCatalog := range []bool{false, true} {
		t.Run(fmt.Sprintf("catalog=%v", withCatalog), func(t *testing.T) {
			addr := freeAddr(t)
			cfgPath := writeConfig(t, listenerYAML("mysql", addr, my.Addr())+localConfig)
			getenv := func(k string) string {
				switch {
				case !withCatalog:
					return ""
				case k == mysqlCatalogUserEnv:
					return my.User
				case k == mysqlCatalogPasswordEnv:
					return my.Password
				}
				return ""
			}
			logs := serveInBackground(t, cfgPath, getenv)
			db := openMySQLRetry(ctx, t, my, addr)
			n, err := insertWithoutColumns(ctx, t, db, direct)
			if !withCatalog {
				if err == nil || !strings.Contains(err.Error(), "column") || n != 0 {
					t.Fatalf("column-less INSERT without a catalog: err %v, %d rows written; want a refusal and none", err, n)
				}
				return
			}
			if err != nil || n != 1 {
				t.Fatalf("column-less INSERT: %v (%d rows)\n%s", err, n, logs.String())
			}
			var ssn string
			var salary int64
			if err := db.QueryRowContext(ctx, `SELECT ssn, salary FROM users WHERE email = ?`, "serve@example.com").Scan(&ssn, &salary); err != nil || ssn != "123-45-6789" || salary != 99 {
				t.Fatalf("lookup: %q %d %v", ssn, salary, err)
			}
			var email, rawSSN, rawSalary []byte
			if err := direct.QueryRowContext(ctx, `SELECT email, ssn, salary FROM users`).Scan(&email, &rawSSN, &rawSalary); err != nil {
				t.Fatal(err)
			}
			assertCiphertexts(t, [][]byte{email, rawSSN, rawSalary}, "serve@example.com", "123-45-6789")
		})
	}
}
