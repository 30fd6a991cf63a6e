package main

import (
	"io"
	"strings"
	"testing"
	"time"

	"github.com/dbproxy/dbproxy/config"
	"github.com/dbproxy/dbproxy/migrate"
	"github.com/dbproxy/dbproxy/rules"
	"github.com/dbproxy/dbproxy/value"
)

func TestMigrateUsage(t *testing.T) {
	for _, args := range [][]string{
		{"migrate"},
		{"migrate", "shuffle"},
		{"migrate", "encrypt"},
		{"migrate", "encrypt", "--table", "t", "--batch", "0"},
		{"migrate", "decrypt", "--table", "t", "extra"},
		{"keys", "retire", "k"},
	} {
		if code, _, errs := runCLI(t, nil, args...); code != exitUsage {
			t.Errorf("%v: exit %d, want %d (%s)", args, code, exitUsage, errs)
		}
	}
}

func TestMigrateTargets(t *testing.T) {
	cfg, err := config.Parse("dbproxy.yaml", []byte(listenerYAML("postgres", "127.0.0.1:6432", "127.0.0.1:5432")+localKeys+`encryption:
  - table: Users
    database: app
    columns:
      - {name: SSN, type: text}
      - {name: born, type: date}
  - table: users
    schema: other
    database: app
    columns:
      - {name: ssn, type: text, key: shared}
  - table: nodb
    columns:
      - {name: a, type: text}
`))
	if err != nil {
		t.Fatal(err)
	}
	got, err := migrateTargets(cfg, migrate.OpEncrypt, migrateFlags{table: "public.USERS", columns: "ssn"}, rules.DialectPostgres)
	if err != nil || len(got) != 1 {
		t.Fatalf("targets: %+v %v", got, err)
	}
	tg := got[0]
	if tg.database != "app" || tg.table.String() != "public.users" || len(tg.table.Columns) != 1 {
		t.Fatalf("target %+v", tg)
	}
	if c := tg.table.Columns[0]; c.Column != "ssn" || c.Type != value.TypeText || c.Key == "" {
		t.Fatalf("column %+v", c)
	}
	if _, err := migrateTargets(cfg, migrate.OpEncrypt, migrateFlags{table: "users"}, rules.DialectPostgres); err == nil || !strings.Contains(err.Error(), "qualify") {
		t.Fatalf("ambiguous table: %v", err)
	}
	if _, err := migrateTargets(cfg, migrate.OpEncrypt, migrateFlags{table: "public.users", columns: "ssn,nosuch"}, rules.DialectPostgres); err == nil || !strings.Contains(err.Error(), "nosuch") {
		t.Fatalf("unknown column: %v", err)
	}
	if _, err := migrateTargets(cfg, migrate.OpEncrypt, migrateFlags{table: "nodb"}, rules.DialectPostgres); err == nil || !strings.Contains(err.Error(), "--database") {
		t.Fatalf("rule without database: %v", err)
	}
	all, err := migrateTargets(cfg, migrate.OpReencrypt, migrateFlags{key: "shared"}, rules.DialectPostgres)
	if err != nil || len(all) != 1 || all[0].table.String() != "other.users" {
		t.Fatalf("reencrypt --key: %+v %v", all, err)
	}
}

// TestMigrateTargetsMySQL: on a MySQL listener the database is the
// table's qualifier and names match without regard to case.
func TestMigrateTargetsMySQL(t *testing.T) {
	cfg, err := config.Parse("dbproxy.yaml", []byte(listenerYAML("mysql", "127.0.0.1:6433", "127.0.0.1:3306")+localKeys+`encryption:
  - table: People
    database: app
    columns:
      - {name: SSN, type: text}
`))
	if err != nil {
		t.Fatal(err)
	}
	for _, table := range []string{"people", "app.PEOPLE"} {
		got, err := migrateTargets(cfg, migrate.OpEncrypt, migrateFlags{table: table, columns: "ssn"}, rules.DialectMySQL)
		if err != nil || len(got) != 1 {
			t.Fatalf("%s: targets %+v %v", table, got, err)
		}
		if tg := got[0].table; tg.Dialect != rules.DialectMySQL || tg.String() != "app.people" || tg.Columns[0].Column != "ssn" {
			t.Fatalf("%s: target %+v", table, tg)
		}
	}
	if _, err := migrateTargets(cfg, migrate.OpEncrypt, migrateFlags{table: "other.people"}, rules.DialectMySQL); err == nil {
		t.Fatal("a table of another database matched")
	}
}

func TestProgressLine(t *testing.T) {
	pr := migrate.Progress{Op: migrate.OpEncrypt, Table: "public.users", Phase: "backfill", Done: 5000, Total: 20000}
	got := progressLine(pr, 2*time.Second, 4000)
	if want := "encrypt public.users: backfill 5000/20000 rows (25%), 2000 rows/s, ETA 8s"; got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
	if got := progressLine(pr, 0, 0); got != "encrypt public.users: backfill 5000/20000 rows (25%)" {
		t.Fatalf("at the start: %q", got)
	}
}

// TestProgressJSON: --json writes one object per update, with the phase
// and counts.
func TestProgressJSON(t *testing.T) {
	var out strings.Builder
	p := newProgressSink(env{stdout: &out, stderr: io.Discard}, true)
	p.update(migrate.Progress{Op: migrate.OpReencrypt, Table: "public.t", Phase: "backfill", Done: 10, Total: 20, Changed: 3})
	p.finish()
	for _, want := range []string{`"op":"reencrypt"`, `"phase":"backfill"`, `"done":10`, `"total":20`, `"changed":3`, `"time":"`} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("JSON progress lacks %s: %s", want, out.String())
		}
	}
}
