package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/dbproxy/dbproxy/crypto"
	"github.com/dbproxy/dbproxy/internal/testenv"
)

// noLibpqEnv clears the libpq variables and HOME (~/.pgpass) of this
// process, in which serve runs, for the test.
func noLibpqEnv(t *testing.T) {
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); strings.HasPrefix(k, "PG") {
			t.Setenv(k, "")
		}
	}
	t.Setenv("HOME", t.TempDir())
}

// connectRefused connects until the listener answers, and returns the
// server error the session was refused with (at login or at its first
// message).
func connectRefused(ctx context.Context, t *testing.T, dsn string) *pgconn.PgError {
	t.Helper()
	var pe *pgconn.PgError
	err := untilListening(func() (bool, error) {
		c, err := pgx.Connect(ctx, dsn)
		if err == nil {
			// The refusal may come with the session's first message.
			err = c.Ping(ctx)
			_ = c.Close(ctx)
			if err == nil {
				t.Fatal("connect and ping succeeded, want a refusal")
			}
		}
		return errors.As(err, &pe), err
	})
	if pe == nil {
		t.Fatalf("connect through serve: %v", err)
	}
	return pe
}

// TestServeCatalogFromConfigScram: a SCRAM upstream, no PG* variable and
// no ~/.pgpass in the proxy's environment, the catalog login from the
// listener's catalog: section (password_env). Encrypted round trips work
// through pgx and through psql; with a wrong password or no catalog
// section serve logs at start what failed and which setting fixes it, and
// a statement on an encrypted table is refused with that hint.
func TestServeCatalogFromConfigScram(t *testing.T) {
	pg, ctx, direct := startPostgresWith(t, usersTablePG, testenv.PGOptions{Auth: "scram-sha-256"})
	noLibpqEnv(t)
	for _, tc := range []struct {
		name, catalog, password string
	}{
		{"right password", "catalog: {user: %s, password_env: CATALOG_PW}", pg.Password},
		{"wrong password", "catalog: {user: %s, password_env: CATALOG_PW}", "not-the-password"},
		{"no catalog", "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr := freeAddr(t)
			var catalog []string
			if tc.catalog != "" {
				catalog = append(catalog, fmt.Sprintf(tc.catalog, pg.User))
			}
			cfgPath := writeConfig(t, listenerYAML("postgres", addr, pg.Addr(), catalog...)+localConfig)
			logs := serveInBackground(t, cfgPath, func(k string) string {
				if k == "CATALOG_PW" {
					return tc.password
				}
				return ""
			})
			dsn := pgURL(pg, addr)
			if tc.name != "right password" {
				// Without a working catalog a session cannot learn which
				// relations derive from encrypted tables: it is refused at
				// start, with the setting that fixes it.
				err := connectRefused(ctx, t, dsn)
				if !strings.Contains(err.Message, "listeners[0].catalog") || err.Code != "57P03" {
					t.Fatalf("connect without a working catalog: %v, want 57P03 naming listeners[0].catalog", err)
				}
			}
			switch tc.name {
			case "wrong password":
				waitLog(t, logs, "listeners[0].catalog.user ("+pg.User+") and the password in the environment variable CATALOG_PW")
				waitLog(t, logs, "password authentication failed")
			case "no catalog":
				waitLog(t, logs, "no catalog credentials")
				waitLog(t, logs, "set listeners[0].catalog.user and listeners[0].catalog.password_env")
			}
			if tc.name != "right password" {
				return
			}
			c := connectRetry(ctx, t, dsn)
			_, err := c.Exec(ctx, `INSERT INTO users (email, ssn, salary) VALUES ($1, $2, $3)`, "pgx@example.com", "123-45-6789", int64(99))
			if err != nil {
				t.Fatalf("insert: %v", err)
			}
			waitLog(t, logs, "catalog connection ok")
			var ssn string
			var salary int64
			if err := c.QueryRow(ctx, `SELECT ssn, salary FROM users WHERE email = $1`, "pgx@example.com").Scan(&ssn, &salary); err != nil || ssn != "123-45-6789" || salary != 99 {
				t.Fatalf("lookup: %q %d %v", ssn, salary, err)
			}
			// psql, with its own environment (the client's password).
			psql, err := exec.LookPath("psql")
			if err != nil {
				t.Fatalf("psql not found: apt-get install postgresql-client (%v)", err)
			}
			host, port, _ := strings.Cut(addr, ":")
			cmd := exec.CommandContext(ctx, psql, "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1",
				"-c", `INSERT INTO users (email, ssn, salary) VALUES ('psql@example.com', '987-65-4321', 7)`,
				"-c", `SELECT ssn, salary FROM users WHERE email = 'psql@example.com'`)
			cmd.Env = []string{"PGHOST=" + host, "PGPORT=" + port, "PGUSER=" + pg.User, "PGPASSWORD=" + pg.Password,
				"PGDATABASE=" + pg.Database, "PGSSLMODE=disable", "PATH=/usr/bin:/bin", "LANG=C.UTF-8"}
			out, err := cmd.CombinedOutput()
			if err != nil || !strings.Contains(string(out), "987-65-4321|7") {
				t.Fatalf("psql through serve: %v\n%s", err, out)
			}
			var n int
			if err := direct.QueryRow(ctx, `SELECT count(*) FROM users WHERE get_byte(email, 0) = 1 AND get_byte(ssn, 0) = 1 AND get_byte(salary, 0) = 1`).Scan(&n); err != nil || n != 2 {
				t.Fatalf("rows stored as ciphertext: %d %v", n, err)
			}
			var email, rawSSN []byte
			if err := direct.QueryRow(ctx, `SELECT email, ssn FROM users WHERE id = (SELECT max(id) FROM users)`).Scan(&email, &rawSSN); err != nil {
				t.Fatal(err)
			}
			assertCiphertexts(t, [][]byte{email, rawSSN}, "psql@example.com", "987-65-4321")
			if _, err := direct.Exec(ctx, `DELETE FROM users`); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestServeCatalogFromConfigMySQL: the MySQL catalog login from the
// listener's catalog: section, with a password-authenticated user: an
// INSERT without a column list (which needs the catalog) is encrypted;
// with a wrong password serve logs what failed and which setting fixes it,
// and the statement is refused with nothing written.
func TestServeCatalogFromConfigMySQL(t *testing.T) {
	my, ctx, direct := startMariaDBWith(t, usersTableMySQL)
	for _, password := range []string{my.Password, "wrong"} {
		t.Run("password="+strconv.FormatBool(password == my.Password), func(t *testing.T) {
			addr := freeAddr(t)
			cfgPath := writeConfig(t, listenerYAML("mysql", addr, my.Addr(), "catalog: {user: "+my.User+", password_env: MY_CATALOG_PW}")+localConfig)
			logs := serveInBackground(t, cfgPath, func(k string) string {
				if k == "MY_CATALOG_PW" {
					return password
				}
				return ""
			})
			db := openMySQLRetry(ctx, t, my, addr)
			n, err := insertWithoutColumns(ctx, t, db, direct)
			if password != my.Password {
				if err == nil || n != 0 {
					t.Fatalf("column-less INSERT with a failing catalog: err %v, %d rows written", err, n)
				}
				waitLog(t, logs, "catalog connection as "+my.User+" failed")
				waitLog(t, logs, "the password in the environment variable MY_CATALOG_PW (listeners[0].catalog.password_env)")
				return
			}
			if err != nil || n != 1 {
				t.Fatalf("column-less INSERT: %v (%d rows)", err, n)
			}
			waitLog(t, logs, "catalog connection ok")
			var rawSSN []byte
			if err := direct.QueryRowContext(ctx, `SELECT ssn FROM users`).Scan(&rawSSN); err != nil || !crypto.IsCiphertext(rawSSN) {
				t.Fatalf("stored ssn %x: %v", rawSSN, err)
			}
		})
	}
}
