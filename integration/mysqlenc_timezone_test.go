package integration

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	driver "github.com/go-sql-driver/mysql"

	"github.com/dbproxy/dbproxy/internal/testenv"
	"github.com/dbproxy/dbproxy/rules"
	"github.com/dbproxy/dbproxy/value"
)

// TestMySQLEncTimeZone: an encrypted timestamptz column follows the session
// time_zone exactly as MySQL's own TIMESTAMP column beside it does: a wall
// time written under +02:00 is the instant two hours earlier in UTC. A
// time_zone the proxy cannot follow (SYSTEM) refuses timestamptz values
// until a SET it understands.
func TestMySQLEncTimeZone(t *testing.T) {
	e := startMyEncProxy(t, []string{`CREATE TABLE tzt (id INT AUTO_INCREMENT PRIMARY KEY, tz VARBINARY(100), plain TIMESTAMP(6) NULL)`},
		[]rules.Spec{{Table: "tzt", Column: "tz", Key: "tzt_tz", Mode: rules.ModeDeterministic, Type: value.TypeTimestamptz}})
	ctx := testCtx(t)
	parse := func(s string) time.Time {
		t.Helper()
		return wallTime(t, s)
	}
	for _, mode := range []string{"interpolateParams=false", "interpolateParams=true"} {
		t.Run(mode, func(t *testing.T) {
			if _, err := e.direct.ExecContext(ctx, "DELETE FROM tzt"); err != nil {
				t.Fatal(err)
			}
			c := openConn(t, e.proxy.config(t, mode))
			if _, err := c.ExecContext(ctx, `SET time_zone = '+02:00'`); err != nil {
				t.Fatal(err)
			}
			if _, err := c.ExecContext(ctx, `INSERT INTO tzt (tz, plain) VALUES (?, ?)`, "2024-01-01 10:00:00", "2024-01-01 10:00:00"); err != nil {
				t.Fatal(err)
			}
			if _, err := c.ExecContext(ctx, `INSERT INTO tzt (tz, plain) VALUES ('2024-07-01 12:30:00', '2024-07-01 12:30:00')`); err != nil {
				t.Fatal(err)
			}
			check := func(zone string) {
				t.Helper()
				rows, err := c.QueryContext(ctx, `SELECT tz, plain FROM tzt ORDER BY id`)
				if err != nil {
					t.Fatal(err)
				}
				defer rows.Close()
				n := 0
				for rows.Next() {
					var enc, plain string
					if err := rows.Scan(&enc, &plain); err != nil {
						t.Fatal(err)
					}
					if !parse(enc).Equal(parse(plain)) {
						t.Errorf("under %s: encrypted timestamptz reads %q, MySQL's TIMESTAMP %q", zone, enc, plain)
					}
					n++
				}
				if err := rows.Err(); err != nil || n != 2 {
					t.Fatalf("under %s: %d rows, %v", zone, n, err)
				}
			}
			check("+02:00")
			if _, err := c.ExecContext(ctx, `SET SESSION time_zone = '+00:00'`); err != nil {
				t.Fatal(err)
			}
			check("+00:00")
			// Lookup by the instant, written in UTC now.
			var id int
			if err := c.QueryRowContext(ctx, `SELECT id FROM tzt WHERE tz = ?`, "2024-01-01 08:00:00").Scan(&id); err != nil {
				t.Fatalf("lookup by the UTC wall time: %v", err)
			}
			if _, err := c.ExecContext(ctx, `SET time_zone = 'SYSTEM'`); err != nil {
				t.Fatal(err)
			}
			_, err := c.ExecContext(ctx, `INSERT INTO tzt (tz) VALUES (?)`, "2024-01-01 10:00:00")
			var me *driver.MySQLError
			if !errors.As(err, &me) {
				t.Fatalf("timestamptz under an unknown time_zone: %v, want a refusal", err)
			}
			var n int
			if err := c.QueryRowContext(ctx, `SELECT count(*) FROM tzt`).Scan(&n); err != nil || n != 2 {
				t.Fatalf("rows after the refusal: %d %v", n, err)
			}
			if _, err := c.ExecContext(ctx, `SET time_zone = '-05:00'`); err != nil {
				t.Fatal(err)
			}
			check("-05:00")
		})
	}
}

// TestMySQLEncServerTimeZone: with a catalog connection the proxy learns
// the server's default time_zone, so a session that never sets one reads
// timestamptz literals in the server's zone, as MySQL's own TIMESTAMP
// column beside it does. The server runs at +02:00 for this test (the
// integration tests do not run in parallel; the global is restored).
func TestMySQLEncServerTimeZone(t *testing.T) {
	db := testenv.StartMariaDB(t)
	if db.External {
		t.Skip("changes the server's global time_zone: only on a server the tests started")
	}
	admin := adminDB(t, db)
	ctx := testCtx(t)
	var orig string
	if err := admin.QueryRowContext(ctx, `SELECT @@GLOBAL.time_zone`).Scan(&orig); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.ExecContext(ctx, `SET GLOBAL time_zone = '+02:00'`); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if _, err := admin.ExecContext(context.Background(), `SET GLOBAL time_zone = '`+orig+`'`); err != nil {
			t.Errorf("restore the global time_zone %q: %v", orig, err)
		}
	})
	e := startMyEncProxyWith(t, []string{`CREATE TABLE tzs (id INT AUTO_INCREMENT PRIMARY KEY, tz VARBINARY(100), plain TIMESTAMP NULL)`},
		[]rules.Spec{{Table: "tzs", Column: "tz", Key: "tzs_tz", Mode: rules.ModeDeterministic, Type: value.TypeTimestamptz}},
		sideCatalog(t))
	c := openConn(t, e.proxy.config(t))
	var zone string
	if err := c.QueryRowContext(ctx, `SELECT @@time_zone`).Scan(&zone); err != nil || zone != "+02:00" {
		t.Fatalf("session time_zone %q (%v), want the server's +02:00", zone, err)
	}
	if _, err := c.ExecContext(ctx, `INSERT INTO tzs (tz, plain) VALUES ('2024-01-01 10:00:00', '2024-01-01 10:00:00')`); err != nil {
		t.Fatal(err)
	}
	// In a UTC session both columns show the instant two hours earlier,
	// and the encrypted one is found by it.
	u := openConn(t, e.proxy.config(t))
	if _, err := u.ExecContext(ctx, `SET time_zone = '+00:00'`); err != nil {
		t.Fatal(err)
	}
	var enc, plain string
	if err := u.QueryRowContext(ctx, `SELECT tz, plain FROM tzs WHERE tz = '2024-01-01 08:00:00'`).Scan(&enc, &plain); err != nil {
		t.Fatalf("lookup by the UTC instant: %v", err)
	}
	wall := func(s string) string { return strings.Replace(s, "T", " ", 1) } // text or RFC 3339 rendering
	if !strings.HasPrefix(wall(enc), "2024-01-01 08:00:00") || !strings.HasPrefix(wall(plain), "2024-01-01 08:00:00") {
		t.Fatalf("under UTC: encrypted %q, MySQL's TIMESTAMP %q; want 08:00:00 for both", enc, plain)
	}
}

// TestMySQLEncTimeZoneSessionState attacks the proxy's reading of the
// session time_zone with statements that change it in ways no simple SET
// spells out: several assignments in one SET, mysqldump's executable
// comments and its restore from a user variable, a stored procedure, a
// prepared SET, a SET followed by an INSERT in one string. After each, an
// INSERT of a timestamptz is either refused or stored as the instant
// MySQL's own TIMESTAMP column beside it stores: never another one.
func TestMySQLEncTimeZoneSessionState(t *testing.T) {
	e := startMyEncProxy(t, []string{
		`CREATE TABLE tzs2 (id INT AUTO_INCREMENT PRIMARY KEY, step VARCHAR(40), tz VARBINARY(100), plain TIMESTAMP NULL)`,
		`CREATE PROCEDURE setz() SET time_zone = '+03:00'`,
	}, []rules.Spec{{Table: "tzs2", Column: "tz", Key: "tzs2_tz", Mode: rules.ModeDeterministic, Type: value.TypeTimestamptz}})
	ctx := testCtx(t)
	c := openConn(t, e.proxy.config(t, "multiStatements=true"))
	exec := func(sql string) {
		t.Helper()
		if _, err := c.ExecContext(ctx, sql); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	// insert tries a row; stored reports whether the proxy let it through.
	inserted := map[string]bool{}
	insert := func(step string) {
		t.Helper()
		_, err := c.ExecContext(ctx, `INSERT INTO tzs2 (step, tz, plain) VALUES ('`+step+`', '2024-01-01 10:00:00', '2024-01-01 10:00:00')`)
		inserted[step] = err == nil
	}
	mustInsert := func(step string) {
		t.Helper()
		insert(step)
		if !inserted[step] {
			t.Fatalf("%s: the insert was refused", step)
		}
	}

	exec(`SET NAMES utf8mb4, time_zone = '+02:00'`)
	mustInsert("set names and time_zone")
	exec(`/*!40103 SET @OLD_TIME_ZONE=@@TIME_ZONE */`)
	mustInsert("saved into a user variable")
	exec(`/*!40103 SET TIME_ZONE='+05:00' */`)
	mustInsert("executable comment")
	exec(`/*!40103 SET TIME_ZONE=@OLD_TIME_ZONE */`)
	insert("restored from a user variable")
	exec(`SET time_zone = '+00:00'`)
	exec(`CALL setz()`)
	insert("stored procedure")
	exec(`SET time_zone = '+00:00'`)
	exec(`PREPARE s FROM 'SET time_zone = ?'`)
	exec(`SET @z = '+04:00'`)
	exec(`EXECUTE s USING @z`)
	insert("prepared SET")
	exec(`SET time_zone = '+00:00'`)
	if _, err := c.ExecContext(ctx, `SET time_zone = '+06:00'; INSERT INTO tzs2 (step, tz, plain) VALUES ('same string', '2024-01-01 10:00:00', '2024-01-01 10:00:00')`); err == nil {
		inserted["same string"] = true
	}
	for _, step := range []string{"restored from a user variable", "stored procedure", "prepared SET", "same string"} {
		t.Logf("%s: inserted %v", step, inserted[step])
	}

	// Every row the proxy stored holds the instant MySQL stored.
	exec(`SET time_zone = '+00:00'`)
	rows, err := c.QueryContext(ctx, `SELECT step, tz, plain FROM tzs2 ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	n := 0
	for rows.Next() {
		var step, enc, plain string
		if err := rows.Scan(&step, &enc, &plain); err != nil {
			t.Fatal(err)
		}
		if !wallTime(t, enc).Equal(wallTime(t, plain)) {
			t.Errorf("%s: the encrypted timestamptz reads %q, MySQL's TIMESTAMP %q", step, enc, plain)
		}
		n++
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	want := 0
	for _, ok := range inserted {
		if ok {
			want++
		}
	}
	if n != want {
		t.Fatalf("%d rows, want %d", n, want)
	}
}

// wallTime reads a wall time as the driver renders it (text rows, or a
// binary DATETIME formatted as RFC 3339 in UTC), zone ignored.
func wallTime(t *testing.T, s string) time.Time {
	t.Helper()
	for _, layout := range []string{"2006-01-02 15:04:05.999999", time.RFC3339Nano} {
		if tm, err := time.Parse(layout, s); err == nil {
			return time.Date(tm.Year(), tm.Month(), tm.Day(), tm.Hour(), tm.Minute(), tm.Second(), tm.Nanosecond(), time.UTC)
		}
	}
	t.Fatalf("cannot parse %q", s)
	return time.Time{}
}
