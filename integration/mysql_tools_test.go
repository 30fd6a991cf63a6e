package integration

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/dbproxy/dbproxy/internal/testenv"
	"github.com/dbproxy/dbproxy/proxy"
)

const mariadbScript = `
CREATE TABLE cli_t (id INT PRIMARY KEY, name VARCHAR(50), at DATE NULL);
INSERT INTO cli_t VALUES (1, 'one', '2024-01-02'), (2, 'two', NULL), (3, 'three', '2024-03-04');
SELECT * FROM cli_t ORDER BY id; SELECT COUNT(*) AS n, MAX(name) FROM cli_t;
LOAD DATA LOCAL INFILE 'rows.tsv' INTO TABLE cli_t;
SELECT id, name, at FROM cli_t WHERE id > 3 ORDER BY id;
PREPARE p FROM 'SELECT name FROM cli_t WHERE id = ?'; SET @k = 2; EXECUTE p USING @k; DEALLOCATE PREPARE p;
BEGIN; UPDATE cli_t SET name = UPPER(name) WHERE id % 2 = 1; COMMIT;
SELECT GROUP_CONCAT(name ORDER BY id) FROM cli_t;
SHOW WARNINGS;
SELECT 'before error';
SELECT * FROM no_such_table;
SELECT 'not reached';
`

// mariadbArgs returns the command line for the mariadb client.
func mariadbArgs(host string, port int, user, password, database string, extra ...string) []string {
	args := []string{"--no-defaults", "-h", host, "-P", strconv.Itoa(port), "-u", user, "-p" + password,
		"--local-infile=1", "--batch", "--connect-timeout=10"}
	args = append(args, extra...)
	return append(args, database, "-e", mariadbScript)
}

// TestMySQLMariadbCLI runs a script (several result sets per line, LOCAL
// INFILE, SQL prepared statements, a transaction, an error) with the
// mariadb client directly and through the proxy, with and without TLS on
// each leg: the output and exit code must be identical.
func TestMySQLMariadbCLI(t *testing.T) {
	db := testenv.StartMariaDB(t)
	mariadb, err := exec.LookPath("mariadb")
	if err != nil {
		t.Fatalf("mariadb client not found: install it with `apt-get install mariadb-client` (%v)", err)
	}
	admin := adminDB(t, db)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "rows.tsv"), []byte("4\tfour\t2024-04-04\n5\tfive\t\\N\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	run := func(t *testing.T, port int, extra ...string) (string, string, int) {
		t.Helper()
		if _, err := admin.ExecContext(testCtx(t), "DROP TABLE IF EXISTS cli_t"); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(mariadb, mariadbArgs("127.0.0.1", port, db.User, db.Password, db.Database, extra...)...)
		cmd.Dir = dir
		cmd.Env = []string{"PATH=/usr/bin:/bin", "LANG=C.UTF-8", "HOME=" + dir}
		var out, errb strings.Builder
		cmd.Stdout, cmd.Stderr = &out, &errb
		err := cmd.Run()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		return out.String(), errb.String(), code
	}
	wantOut, wantErr, wantCode := run(t, db.Port, "--ssl")
	if wantCode != 1 || !strings.Contains(wantOut, "ONE,two,THREE,four,FIVE") || !strings.Contains(wantErr, "no_such_table") ||
		strings.Contains(wantOut, "not reached") {
		t.Fatalf("direct run unexpected (exit %d):\n%s\n%s", wantCode, wantOut, wantErr)
	}
	for _, tc := range []struct {
		name  string
		opts  myProxyOpts
		extra []string
	}{
		{"plaintext", myProxyOpts{}, []string{"--skip-ssl"}},
		{"client-tls", myProxyOpts{ClientTLS: true}, []string{"--ssl"}},
		{"both-tls", myProxyOpts{ClientTLS: true, Upstream: proxy.SSLVerifyFull}, []string{"--ssl"}},
		{"upstream-tls", myProxyOpts{Upstream: proxy.SSLRequire}, []string{"--skip-ssl"}},
		{"checked", myProxyOpts{Interceptor: &checkInterceptor{}}, []string{"--skip-ssl"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if ic, ok := tc.opts.Interceptor.(*checkInterceptor); ok {
				defer ic.verify(t)
			}
			p := startMyProxy(t, db, tc.opts)
			out, errOut, code := run(t, p.Port, tc.extra...)
			if out != wantOut || errOut != wantErr || code != wantCode {
				t.Fatalf("through the proxy (exit %d):\n%s\n%s\nwant (exit %d):\n%s\n%s", code, out, errOut, wantCode, wantOut, wantErr)
			}
		})
	}
}

// TestMySQLBinary runs the real dbproxy binary with a mysql listener: serve
// with a config file, relay a query, exit 0 on SIGTERM.
func TestMySQLBinary(t *testing.T) {
	db := testenv.StartMariaDB(t)
	addr := freeListenAddr(t)
	cfg := fmt.Sprintf("listeners:\n  - protocol: mysql\n    listen: %s\n    upstream: %s\n    upstream_tls:\n      mode: prefer\nshutdown_timeout: 5s\n", addr, db.Addr())
	d := newDBProxy(t, buildDBProxy(t), "", cfg, nil, addr)
	d.start(t)
	c := openConn(t, myConfigAt(t, addr, db.User, db.Password, db.Database))
	var s, cipher, name string
	if err := c.QueryRowContext(testCtx(t), `SELECT 'through the binary'`).Scan(&s); err != nil || s != "through the binary" {
		t.Fatalf("query: %q %v\n%s", s, err, d.logs.String())
	}
	if err := c.QueryRowContext(testCtx(t), `SHOW SESSION STATUS LIKE 'Ssl_cipher'`).Scan(&name, &cipher); err != nil || cipher == "" {
		t.Fatalf("upstream_tls prefer against a TLS server: cipher %q %v", cipher, err)
	}
	_ = c.Close()
	d.stop(t)
	if strings.Contains(d.logs.String(), db.Password) {
		t.Fatalf("password in the logs:\n%s", d.logs.String())
	}
}
