package main

import (
	"os/exec"
	"strconv"
	"strings"
	"testing"

	"github.com/dbproxy/dbproxy/internal/testenv"
)

func TestSchemaUsageErrors(t *testing.T) {
	cfgPath := writeConfig(t, "listeners:\n  - {protocol: postgres, listen: '127.0.0.1:16432', upstream: '127.0.0.1:5432'}\n"+localConfig)
	for _, args := range [][]string{
		{"schema"},
		{"schema", "frob"},
		{"schema", "guard", "extra", "--config", cfgPath},
		{"schema", "check", "--apply", "--config", cfgPath},
		{"schema", "guard", "--bogus", "--config", cfgPath},
		{"schema", "check", "--database"},
	} {
		code, _, errs := runCLI(t, nil, args...)
		if code != exitUsage || !strings.Contains(errs, "Usage:") {
			t.Errorf("%v: exit %d, want 2 with usage\n%s", args, code, errs)
		}
	}
	// The same config with good arguments prints the DDL.
	if code, out, errs := runCLI(t, nil, "schema", "guard", "--config", cfgPath); code != 0 || !strings.Contains(out, "dbproxy_guard_ssn") {
		t.Fatalf("schema guard: exit %d\n%s%s", code, out, errs)
	}
}

func TestCheckConfigWarnsWithoutCatalog(t *testing.T) {
	cfgPath := writeConfig(t, `
listeners:
  - {protocol: postgres, listen: '127.0.0.1:16432', upstream: '127.0.0.1:5432'}
  - {protocol: mysql, listen: '127.0.0.1:16433', upstream: '127.0.0.1:3306', catalog: {user: cat, password_env: CAT_PW}}
  - {name: my2, protocol: mysql, listen: '127.0.0.1:16434', upstream: '127.0.0.1:3306'}
`+localConfig)
	code, out, errs := runCLI(t, nil, "check-config", "--config", cfgPath)
	if code != 0 || !strings.Contains(out, "OK") {
		t.Fatalf("exit %d\n%s%s", code, out, errs)
	}
	if !strings.Contains(errs, "warning: listeners[0] (postgres) has encryption rules but no catalog credentials") ||
		!strings.Contains(errs, "warning: listeners[2] (my2) has encryption rules but no catalog credentials") ||
		strings.Contains(errs, "listeners[1]") {
		t.Fatalf("warnings:\n%s", errs)
	}
	// No rules: nothing to warn about.
	cfgPath = writeConfig(t, "listeners:\n  - {protocol: postgres, listen: '127.0.0.1:16432', upstream: '127.0.0.1:5432'}\n")
	if code, _, errs := runCLI(t, nil, "check-config", "--config", cfgPath); code != 0 || errs != "" {
		t.Fatalf("without rules: exit %d, stderr %q", code, errs)
	}
}

// guardConfig is localConfig's rules for one database.
func guardConfig(listener, database string) string {
	return listener + strings.Replace(localConfig, "  - table: users\n", "  - table: users\n    database: "+database+"\n", 1)
}

// TestSchemaGuardPostgres runs the schema commands against a SCRAM
// PostgreSQL with the catalog login from the YAML: check fails before the
// guard (one line per column), the printed DDL runs in psql, apply is
// idempotent, check passes, a dropped guard is reported, serve warns about
// it at start, and the database rejects plaintext.
func TestSchemaGuardPostgres(t *testing.T) {
	pg, ctx, direct := startPostgresWith(t, usersTablePG, testenv.PGOptions{Auth: "scram-sha-256"})
	addr := freeAddr(t)
	listener := listenerYAML("postgres", addr, pg.Addr(), "catalog: {user: "+pg.User+", password_env: CATALOG_PW}")
	environ := map[string]string{"CATALOG_PW": pg.Password}
	cfgPath := writeConfig(t, guardConfig(listener, pg.Database))

	code, out, errs := runCLI(t, environ, "schema", "check", "--config", cfgPath)
	if code != exitFailure || strings.Count(errs, "no guard (CHECK constraint dbproxy_guard_") != 3 {
		t.Fatalf("check before the guard: exit %d\n%s%s", code, out, errs)
	}
	// Rules without a database need --database.
	noDB := writeConfig(t, listener+localConfig)
	if code, out, errs := runCLI(t, environ, "schema", "check", "--config", noDB); code != exitFailure || !strings.Contains(errs, "the rule names no database") {
		t.Fatalf("check without a database: exit %d\n%s%s", code, out, errs)
	}

	// The printed DDL runs as is in psql.
	code, ddl, errs := runCLI(t, environ, "schema", "guard", "--config", noDB, "--database", pg.Database)
	if code != 0 || !strings.Contains(ddl, `ALTER TABLE "public"."users" DROP CONSTRAINT IF EXISTS "dbproxy_guard_email", ADD CONSTRAINT "dbproxy_guard_email" CHECK (`) ||
		!strings.Contains(ddl, `ALTER TABLE "public"."users" VALIDATE CONSTRAINT "dbproxy_guard_salary";`) {
		t.Fatalf("guard: exit %d\n%s%s", code, ddl, errs)
	}
	psql, err := exec.LookPath("psql")
	if err != nil {
		t.Fatalf("psql not found: apt-get install postgresql-client (%v)", err)
	}
	for range 2 { // twice: the script is idempotent too
		cmd := exec.CommandContext(ctx, psql, "-X", "-v", "ON_ERROR_STOP=1")
		cmd.Stdin = strings.NewReader(ddl)
		cmd.Env = []string{"PGHOST=" + pg.Host, "PGPORT=" + strconv.Itoa(pg.Port), "PGUSER=" + pg.User, "PGPASSWORD=" + pg.Password,
			"PGDATABASE=postgres", "PGSSLMODE=disable", "PATH=/usr/bin:/bin"}
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("psql < guard DDL: %v\n%s", err, out)
		}
	}
	if code, out, errs := runCLI(t, environ, "schema", "check", "--config", cfgPath); code != 0 || !strings.Contains(out, "3 of 3 encrypted column(s) guarded") {
		t.Fatalf("check after the printed DDL: exit %d\n%s%s", code, out, errs)
	}

	// apply over existing guards changes nothing.
	code, out, errs = runCLI(t, environ, "schema", "guard", "--apply", "--config", cfgPath)
	if code != 0 || strings.Count(out, " unchanged") != 3 {
		t.Fatalf("apply: exit %d\n%s%s", code, out, errs)
	}
	if _, err := direct.Exec(ctx, `ALTER TABLE users DROP CONSTRAINT dbproxy_guard_ssn`); err != nil {
		t.Fatal(err)
	}
	code, out, errs = runCLI(t, environ, "schema", "check", "--config", cfgPath)
	if code != exitFailure || !strings.Contains(errs, "public.users.ssn: no guard") || strings.Count(errs, "\n") != 2 {
		t.Fatalf("check with a dropped guard: exit %d\n%s%s", code, out, errs)
	}
	// serve warns at start, and keeps serving.
	logs := serveInBackground(t, cfgPath, func(k string) string { return environ[k] })
	waitLog(t, logs, "encrypted column not guarded by the database: no guard (CHECK constraint dbproxy_guard_ssn)")
	if strings.Contains(logs.String(), "dbproxy_guard_email") {
		t.Errorf("serve warned about a guarded column:\n%s", logs.String())
	}
	code, out, errs = runCLI(t, environ, "schema", "guard", "--apply", "--config", cfgPath)
	if code != 0 || !strings.Contains(out, "public.users.ssn: guard dbproxy_guard_ssn added") {
		t.Fatalf("apply: exit %d\n%s%s", code, out, errs)
	}
	_, err = direct.Exec(ctx, `INSERT INTO users (ssn) VALUES ('123-45-6789 in plaintext, long enough')`)
	if err == nil || !strings.Contains(err.Error(), "23514") {
		t.Fatalf("plaintext insert under the guard: %v", err)
	}
	// A missing column is one problem line; the others still pass.
	if _, err := direct.Exec(ctx, `ALTER TABLE users DROP COLUMN salary`); err != nil {
		t.Fatal(err)
	}
	code, out, errs = runCLI(t, environ, "schema", "check", "--config", cfgPath)
	if code != exitFailure || !strings.Contains(errs, "public.users.salary: column not found") || !strings.Contains(out, "2 of 3") {
		t.Fatalf("check with a missing column: exit %d\n%s%s", code, out, errs)
	}
}

// TestSchemaGuardMySQL: the same commands on MariaDB, with a wrong column
// type reported and a bad catalog password named.
func TestSchemaGuardMySQL(t *testing.T) {
	my, ctx, direct := startMariaDBWith(t, `CREATE TABLE users (id INT, email VARBINARY(200), ssn BLOB, salary VARCHAR(100))`)
	listener := listenerYAML("mysql", freeAddr(t), my.Addr(), "catalog: {user: "+my.User+", password_env: CATALOG_PW}")
	cfgPath := writeConfig(t, listener+localConfig) // rules without database: --database
	if code, out, errs := runCLI(t, map[string]string{"CATALOG_PW": "wrong"}, "schema", "check", "--config", cfgPath, "--database", my.Database); code != exitFailure ||
		!strings.Contains(errs, "listeners[0].catalog.password_env") {
		t.Fatalf("check with a wrong password: exit %d\n%s%s", code, out, errs)
	}
	environ := map[string]string{"CATALOG_PW": my.Password}
	code, out, errs := runCLI(t, environ, "schema", "guard", "--apply", "--config", cfgPath, "--database", my.Database)
	if code != exitFailure || !strings.Contains(out, "users.email: guard dbproxy_guard_users_email added") ||
		!strings.Contains(errs, "users.salary: column type is varchar(100), not VARBINARY or BLOB") {
		t.Fatalf("apply: exit %d\n%s%s", code, out, errs)
	}
	code, out, errs = runCLI(t, environ, "schema", "check", "--config", cfgPath, "--database", my.Database)
	if code != exitFailure || !strings.Contains(errs, "users.salary: column type is varchar(100)") || strings.Count(errs, "\n") != 2 {
		t.Fatalf("check with a wrong type: exit %d\n%s%s", code, out, errs)
	}
	if _, err := direct.ExecContext(ctx, `ALTER TABLE users MODIFY salary VARBINARY(100)`); err != nil {
		t.Fatal(err)
	}
	code, out, errs = runCLI(t, environ, "schema", "guard", "--apply", "--config", cfgPath, "--database", my.Database)
	if code != 0 || strings.Count(out, " unchanged") != 2 || !strings.Contains(out, "guard dbproxy_guard_users_salary added") {
		t.Fatalf("second apply: exit %d\n%s%s", code, out, errs)
	}
	if code, out, errs := runCLI(t, environ, "schema", "check", "--config", cfgPath, "--database", my.Database); code != 0 {
		t.Fatalf("check: exit %d\n%s%s", code, out, errs)
	}
	_, err := direct.ExecContext(ctx, `INSERT INTO users (id, ssn) VALUES (1, 'plaintext long enough to pass a length check')`)
	if err == nil || !strings.Contains(err.Error(), "4025") {
		t.Fatalf("plaintext insert under the guard: %v", err)
	}
	code, ddl, _ := runCLI(t, environ, "schema", "guard", "--config", cfgPath)
	if code != 0 || !strings.Contains(ddl, "ALTER TABLE `users` ADD CONSTRAINT `dbproxy_guard_users_ssn` CHECK (`ssn` IS NULL OR (LENGTH(`ssn`) >= 35 AND ASCII(SUBSTRING(`ssn`, 1, 1)) = 1 AND ASCII(SUBSTRING(`ssn`, 7, 1)) = 1 AND (ASCII(SUBSTRING(`ssn`, 2, 1)) = 1 OR (ASCII(SUBSTRING(`ssn`, 2, 1)) = 3 AND LENGTH(`ssn`) >= 47))));") {
		t.Fatalf("printed DDL:\n%s", ddl)
	}
}
