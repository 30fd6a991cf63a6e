package integration

import (
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dbproxy/dbproxy/rules"
	"github.com/dbproxy/dbproxy/value"
)

// TestMySQLEncDumpRestore: mariadb-dump through the proxy writes the
// decrypted values (its session runs under `/*!40103 SET TIME_ZONE='+00:00'
// */`, which the proxy follows for the timestamptz column), and feeding the
// dump back through the proxy with the mariadb client encrypts them again:
// after a TRUNCATE the same rows come back, stored as ciphertext. With
// --complete-insert the dump names its columns; without it the INSERTs
// have no column list and the catalog connection supplies the order.
func TestMySQLEncDumpRestore(t *testing.T) {
	dumpTool, err := exec.LookPath("mariadb-dump")
	if err != nil {
		t.Fatalf("mariadb-dump not found: install it with `apt-get install mariadb-client` (%v)", err)
	}
	client, err := exec.LookPath("mariadb")
	if err != nil {
		t.Fatalf("mariadb client not found: %v", err)
	}
	e := startMyEncProxyWith(t,
		[]string{"CREATE TABLE people (id INT PRIMARY KEY, email VARBINARY(512), name VARBINARY(512), seen VARBINARY(256), note VARCHAR(100))"},
		[]rules.Spec{
			{Table: "people", Column: "email", Key: "people_email", Mode: rules.ModeDeterministic, Type: value.TypeText},
			{Table: "people", Column: "name", Key: "people_name", Mode: rules.ModeRandomized, Type: value.TypeText},
			{Table: "people", Column: "seen", Key: "people_seen", Mode: rules.ModeRandomized, Type: value.TypeTimestamptz},
		}, sideCatalog(t))
	ctx := testCtx(t)
	db := openDB(t, e.proxy.config(t))
	seen := time.Date(2024, 2, 29, 23, 59, 58, 0, time.UTC)
	if _, err := db.ExecContext(ctx, "INSERT INTO people (id, email, name, seen, note) VALUES (?, ?, ?, ?, 'n'), (?, ?, ?, ?, 'n')",
		1, "dump@example.com", "O'Brien \\ Dümp", seen, 2, "second@example.com", nil, nil); err != nil {
		t.Fatal(err)
	}
	conn := func(bin string, extra ...string) *exec.Cmd {
		args := append([]string{"--no-defaults", "-h", "127.0.0.1", "-P", strconv.Itoa(e.proxy.Port), "-u", e.db.User, "-p" + e.db.Password}, extra...)
		cmd := exec.CommandContext(ctx, bin, args...)
		cmd.Env = []string{"PATH=/usr/bin:/bin", "LANG=C.UTF-8", "HOME=" + t.TempDir()}
		return cmd
	}
	for _, variant := range [][]string{{"--complete-insert"}, nil} {
		t.Run(strings.Join(append([]string{"dump"}, variant...), " "), func(t *testing.T) {
			args := append([]string{"--no-create-info"}, variant...)
			out, err := conn(dumpTool, append(args, e.db.Database, "people")...).Output()
			if err != nil {
				t.Fatalf("mariadb-dump through the proxy: %v", err)
			}
			dump := string(out)
			for _, s := range []string{"dump@example.com", `O\'Brien \\ Dümp`, "2024-02-29 23:59:58", "second@example.com"} {
				if !strings.Contains(dump, s) {
					t.Errorf("dump lacks the decrypted %q", s)
				}
			}
			if _, err := e.direct.ExecContext(ctx, "TRUNCATE people"); err != nil {
				t.Fatal(err)
			}
			restore := conn(client, e.db.Database)
			restore.Stdin = strings.NewReader(dump)
			if out, err := restore.CombinedOutput(); err != nil {
				t.Fatalf("restore through the proxy: %v\n%s", err, out)
			}
			var email, name string
			var got time.Time
			if err := db.QueryRowContext(ctx, "SELECT email, name, seen FROM people WHERE id = 1").Scan(&email, &name, &got); err != nil {
				t.Fatal(err)
			}
			if email != "dump@example.com" || name != "O'Brien \\ Dümp" || !got.Equal(seen) {
				t.Fatalf("restored %q %q %v", email, name, got)
			}
			var nullName *string
			if err := db.QueryRowContext(ctx, "SELECT name FROM people WHERE email = ?", "second@example.com").Scan(&nullName); err != nil || nullName != nil {
				t.Fatalf("second row: %v %v", nullName, err)
			}
			e.checkAtRest(t, []string{"dump@example.com", "O'Brien", "Dümp", "second@example.com", "2024-02-29"})
		})
	}
}
