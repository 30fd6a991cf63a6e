package main

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"strings"
	"testing"
	"time"

	_ "github.com/go-sql-driver/mysql"

	"github.com/dbproxy/dbproxy/crypto"
	"github.com/dbproxy/dbproxy/internal/testenv"
)

// TestServeEncryptsMySQL runs `dbproxy serve` with a MySQL listener in
// front of a real MariaDB: an INSERT without a column list is encrypted
// when the catalog user is configured (the column order comes from the
// listener's upstream), and refused, with nothing written, when it is not.
func TestServeEncryptsMySQL(t *testing.T) {
	my := testenv.StartMariaDB(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	direct, err := sql.Open("mysql", my.DSN())
	if err != nil {
		t.Fatal(err)
	}
	defer direct.Close()
	if _, err := direct.ExecContext(ctx, `CREATE TABLE users (id INT AUTO_INCREMENT PRIMARY KEY, email VARBINARY(200), ssn VARBINARY(200), salary VARBINARY(100))`); err != nil {
		t.Fatal(err)
	}
	for _, withCatalog := range []bool{false, true} {
		t.Run(fmt.Sprintf("catalog=%v", withCatalog), func(t *testing.T) {
			addr := freeAddr(t)
			cfgPath := writeConfig(t, fmt.Sprintf(`
listeners:
  - protocol: mysql
    listen: %s
    upstream: %s
    upstream_tls:
      mode: disable
%s`, addr, my.Addr(), localConfig))
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
			db, err := sql.Open("mysql", fmt.Sprintf("%s:%s@tcp(%s)/%s", my.User, my.Password, addr, my.Database))
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			for range 100 {
				if err = db.PingContext(ctx); err == nil {
					break
				}
				time.Sleep(50 * time.Millisecond) // waiting for the listener to bind, not asserting a duration
			}
			if err != nil {
				t.Fatalf("connect through serve: %v\n%s", err, logs.String())
			}
			if _, err := direct.ExecContext(ctx, `DELETE FROM users`); err != nil {
				t.Fatal(err)
			}
			_, err = db.ExecContext(ctx, `INSERT INTO users VALUES (NULL, ?, ?, ?)`, "serve@example.com", "123-45-6789", int64(99))
			var n int
			if err := direct.QueryRowContext(ctx, `SELECT COUNT(*) FROM users`).Scan(&n); err != nil {
				t.Fatal(err)
			}
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
			for _, ct := range [][]byte{email, rawSSN, rawSalary} {
				if !crypto.IsCiphertext(ct) || bytes.Contains(ct, []byte("serve@example.com")) || bytes.Contains(ct, []byte("123-45-6789")) {
					t.Errorf("stored value is not a ciphertext: %x", ct)
				}
			}
		})
	}
}
