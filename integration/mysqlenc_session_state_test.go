package integration

import (
	"testing"
	"time"

	"github.com/dbproxy/dbproxy/rules"
	"github.com/dbproxy/dbproxy/value"
)

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
