package pgsql_test

import (
	"context"
	"testing"

	"github.com/dbproxy/dbproxy/rules"
	"github.com/dbproxy/dbproxy/sqlplan"
	"github.com/dbproxy/dbproxy/sqlplan/pgsql"
)

// TestDDL: DDL after which a value bound for an encrypted column could
// reach the database without the proxy seeing it bound for that column is
// refused, whether or not its text names the table; other DDL is allowed.
func TestDDL(t *testing.T) {
	p := newPlanner(t, nil)
	ssn := "public.users.ssn"
	runRefusals(t, p, "", []refusalCase{
		// 1. Renames and schema moves.
		{"rename encrypted column", "ALTER TABLE users RENAME COLUMN ssn TO x", ssn, "renaming an encrypted column", ""},
		{"rename column onto encrypted name", "ALTER TABLE users RENAME COLUMN name TO ssn", ssn, "to the name of an encrypted column", ""},
		{"rename encrypted table", "ALTER TABLE users RENAME TO people", "", "renaming encrypted table public.users", ""},
		{"rename qualified encrypted table", "ALTER TABLE IF EXISTS public.users RENAME TO people", "", "renaming encrypted table public.users", ""},
		{"rename another table to an encrypted name", "ALTER TABLE items RENAME TO orders", "", "the name of encrypted table public.orders", ""},
		{"rename a view to an encrypted name", "ALTER VIEW v RENAME TO users", "", "the name of encrypted table public.users", ""},
		{"set schema", "ALTER TABLE users SET SCHEMA archive", "", "take encrypted table public.users out from under its rules", ""},
		{"set schema of a namesake", "ALTER TABLE bob.users SET SCHEMA app2", "", "out from under its rules, or shadow it", ""},
		{"rename schema", "ALTER SCHEMA public RENAME TO old", "", "renaming schema public", ""},
		{"rename schema onto a rule's", "ALTER SCHEMA staging RENAME TO app", "", "renaming schema staging", ""},
		// 2. Inheritance, partitions, LIKE, OF.
		{"inherits", "CREATE TABLE kid () INHERITS (users)", "", "inheriting from encrypted table public.users would take rows the proxy does not encrypt, and they would appear in public.users", ""},
		{"partition of", "CREATE TABLE p1 PARTITION OF users FOR VALUES IN (1)", "", "a partition of encrypted table public.users", ""},
		{"foreign partition", "CREATE FOREIGN TABLE f PARTITION OF users FOR VALUES IN (1) SERVER s", "", "a partition of encrypted table public.users", ""},
		{"like", "CREATE TABLE copy (LIKE users INCLUDING ALL)", "", "(LIKE public.users)", ""},
		{"of row type", "CREATE TABLE typed OF users", "", "row type of encrypted table public.users", ""},
		{"alter inherit", "ALTER TABLE kid INHERIT users", "", "inheriting from encrypted table public.users", ""},
		{"encrypted table inherits", "ALTER TABLE users INHERIT base", "", "cannot become an inheritance child", ""},
		{"attach to encrypted", "ALTER TABLE users ATTACH PARTITION p1 FOR VALUES IN (1)", "", "attaching a partition to encrypted table public.users", ""},
		{"attach encrypted", "ALTER TABLE big ATTACH PARTITION users FOR VALUES IN (1)", "", "cannot become a partition", ""},
		// 3. Triggers and rules.
		{"trigger", "CREATE TRIGGER t BEFORE INSERT ON users FOR EACH ROW EXECUTE FUNCTION f()", "", "a trigger on encrypted table public.users", ""},
		{"constraint trigger", "CREATE CONSTRAINT TRIGGER t AFTER INSERT ON public.users FOR EACH ROW EXECUTE FUNCTION f()", "", "a trigger on encrypted table public.users", ""},
		{"rule on", "CREATE RULE r AS ON INSERT TO users DO ALSO NOTIFY x", "", "a rule on encrypted table public.users", ""},
		// 4. Dynamic SQL.
		{"do without the name", "DO $$ BEGIN EXECUTE 'insert into us'||'ers (ssn) values (''1'')'; END $$", "", "DO block with EXECUTE runs SQL built at run time", sqlplan.StateInsufficientPrivilege},
		{"do as a string", "do 'BEGIN ExEcUtE $q$select 1$q$; END'", "", "DO block with EXECUTE", sqlplan.StateInsufficientPrivilege},
		{"do after a comment", "/* x */DO/* y */$body$BEGIN execute 'x'; END$body$", "", "DO block with EXECUTE", sqlplan.StateInsufficientPrivilege},
		{"do later in a string", "SELECT 1; DO $$ BEGIN EXECUTE format('x'); END $$", "", "DO block with EXECUTE", sqlplan.StateInsufficientPrivilege},
		{"do in another language", "DO LANGUAGE plperl $$ spi_exec_query('x') $$", "", "DO block in plperl", sqlplan.StateInsufficientPrivilege},
		{"do with a SQL runner", "DO $$ BEGIN PERFORM query_to_xml('select 1', true, true, ''); END $$", "", "runs SQL text", sqlplan.StateInsufficientPrivilege},
		{"do with an escaped name", `DO E'BEGIN INSERT INTO \x75sers (ssn) VALUES (1); END'`, "", "whose body names an encrypted table", ""},
		{"plpgsql function", "CREATE FUNCTION f() RETURNS void LANGUAGE plpgsql AS $$ BEGIN EXECUTE 'insert into us'||'ers values (1)'; END $$", "", "CREATE FUNCTION with EXECUTE", sqlplan.StateInsufficientPrivilege},
		{"procedure", "CREATE OR REPLACE PROCEDURE pr() LANGUAGE plpgsql AS $$ BEGIN RETURN QUERY EXECUTE 'x'; END $$", "", "CREATE PROCEDURE with EXECUTE", sqlplan.StateInsufficientPrivilege},
		{"procedure in python", "CREATE PROCEDURE pr() LANGUAGE plpython3u AS $$ plpy.execute('x') $$", "", "CREATE PROCEDURE in plpython3u", sqlplan.StateInsufficientPrivilege},
		{"function without language", "CREATE FUNCTION f() RETURNS int AS 'select 1'", "", "an unspecified language", sqlplan.StateInsufficientPrivilege},
		{"sql body with an escaped name", `CREATE FUNCTION f(t text) RETURNS void LANGUAGE sql AS E'insert into \x75sers (ssn) values (t::bytea)'`, "", "whose body names an encrypted table", ""},
		{"sql standard body", "CREATE FUNCTION f(t bytea) RETURNS void LANGUAGE sql BEGIN ATOMIC INSERT INTO users (ssn) VALUES (t); END", "", "whose body names an encrypted table", ""},
		{"query_to_xml", "SELECT query_to_xml('select * from us'||'ers where email = ''a@x''', true, false, '')", "", "query_to_xml runs SQL text", sqlplan.StateInsufficientPrivilege},
		{"query_to_xml spelled with escapes", `SELECT U&"query\005fto_xml"('select 1', true, false, '')`, "", "query_to_xml runs SQL text", sqlplan.StateInsufficientPrivilege},
		{"dblink_exec", "SELECT dblink_exec('dbname=app', 'insert into us'||'ers values (1)')", "", "dblink_exec runs SQL text", sqlplan.StateInsufficientPrivilege},
		{"ts_stat", "SELECT * FROM pg_catalog.ts_stat('select 1')", "", "ts_stat runs SQL text", sqlplan.StateInsufficientPrivilege},
		{"sql function calling a runner", "CREATE FUNCTION q() RETURNS xml LANGUAGE sql AS $$ SELECT query_to_xml('select 1', true, false, '') $$", "", "calls a function that runs SQL text", sqlplan.StateInsufficientPrivilege},
		{"rename through ALTER INDEX", "ALTER INDEX users RENAME TO people", "", "renaming encrypted table public.users", ""},
		{"rename attribute", "ALTER TYPE users RENAME ATTRIBUTE ssn TO x", ssn, "renaming an encrypted column", ""},
		{"unparseable DDL", "CREATE FUNCTION f( RETURNS", "", "could not be parsed", sqlplan.StateSyntaxError},
		// 5. Shadowing.
		{"temp table", "CREATE TEMP TABLE users (id int, email bytea, ssn bytea)", "", "CREATE TABLE of pg_temp.users would shadow encrypted table public.users", ""},
		{"pg_temp table", "CREATE TABLE pg_temp.users (id int)", "", "would shadow encrypted table public.users", ""},
		{"other schema", "CREATE TABLE bob.users (id int)", "", "CREATE TABLE of bob.users would shadow", ""},
		{"view in other schema", "CREATE VIEW bob.orders AS SELECT 1 AS x", "", "CREATE VIEW of bob.orders would shadow encrypted table public.orders", ""},
		{"temp view", "CREATE TEMP VIEW orders AS SELECT 1 AS x", "", "would shadow encrypted table public.orders", ""},
		{"materialized view in other schema", "CREATE MATERIALIZED VIEW bob.users AS SELECT 1 AS x", "", "would shadow", ""},
		{"table as", "CREATE TEMP TABLE users AS SELECT 1 AS x", "", "CREATE TABLE AS of pg_temp.users would shadow", ""},
		{"select into", "SELECT 1 AS x INTO TEMP users", "", "SELECT INTO of pg_temp.users would shadow", ""},
		{"explain analyze select into", "EXPLAIN ANALYZE CREATE TABLE bob.users AS SELECT 1 AS x", "", "would shadow", ""},
		{"foreign table", "CREATE FOREIGN TABLE bob.users (id int) SERVER s", "", "CREATE FOREIGN TABLE of bob.users would shadow", ""},
		{"import foreign schema", "IMPORT FOREIGN SCHEMA remote FROM SERVER s INTO bob", "", "without LIMIT TO", ""},
		{"import a namesake", "IMPORT FOREIGN SCHEMA remote LIMIT TO (users) FROM SERVER s INTO bob", "", "named like encrypted table public.users", ""},
		// 6. Views over encrypted tables, column DDL.
		{"view reading an encrypted table", "CREATE VIEW v AS SELECT id FROM users", "", "a view over an encrypted table", ""},
		{"materialized view reading an encrypted table", "CREATE MATERIALIZED VIEW mv AS SELECT count(*) FROM users", "", "a materialized view over an encrypted table", ""},
		{"alter type", "ALTER TABLE users ALTER COLUMN ssn TYPE text USING convert_from(ssn, 'UTF8')", ssn, "changing the type", ""},
		{"using over an encrypted column", "ALTER TABLE users ALTER COLUMN name TYPE bytea USING ssn", ssn, "USING expression", ""},
		{"set default", "ALTER TABLE users ALTER COLUMN ssn SET DEFAULT '123'", ssn, "DEFAULT", ""},
		{"add identity", "ALTER TABLE users ALTER COLUMN age ADD GENERATED ALWAYS AS IDENTITY", "public.users.age", "generated or identity", ""},
		{"set expression", "ALTER TABLE users ALTER COLUMN ssn SET EXPRESSION AS (name::bytea)", ssn, "generated or identity", ""},
		{"generated plaintext column from an encrypted one", "ALTER TABLE users ADD COLUMN ssn2 bytea GENERATED ALWAYS AS (ssn) STORED", ssn, "generated column computed from an encrypted column", ""},
		{"check on a new plaintext column", "CREATE TABLE users (id int, email bytea, n int CHECK (email IS NOT NULL))", "public.users.email", "CHECK constraint", ""},
		// 7. Replication.
		{"subscription", "CREATE SUBSCRIPTION s CONNECTION 'host=x' PUBLICATION p", "", "a subscription replicates rows", ""},
	})
	// DDL that stores nothing and routes nothing stays allowed.
	wantForwarded(t, p, "",
		"ALTER TABLE users DROP COLUMN ssn",
		// PL/pgSQL without dynamic SQL reaches tables only by name.
		"DO $$ BEGIN RAISE NOTICE 'hello, world'; END $$",
		"DO $$ BEGIN INSERT INTO items (name) VALUES ('executed'); END $$",
		"CREATE FUNCTION f(a int, OUT b int) LANGUAGE plpgsql AS $$ BEGIN b := a + 1; END $$",
		"ALTER TABLE users RENAME COLUMN name TO full_name",
		"ALTER TABLE items RENAME TO goods",
		"ALTER TABLE items SET SCHEMA archive",
		"ALTER TABLE users ADD COLUMN note text",
		"CREATE TABLE users (id int, email bytea, ssn bytea, age bytea, salary bytea)",
		"CREATE TABLE public.orders (id int, card bytea)",
		"CREATE TABLE app.users (id int, email bytea)",
		"CREATE TABLE kid () INHERITS (items)",
		"CREATE TEMP TABLE scratch (id int)",
		"CREATE TRIGGER t BEFORE INSERT ON items FOR EACH ROW EXECUTE FUNCTION f()",
		"CREATE FUNCTION add(a int, b int) RETURNS int LANGUAGE sql AS 'select a + b'",
		"CREATE VIEW iv AS SELECT id, name FROM items",
		"ALTER SCHEMA staging RENAME TO staging2",
		"DROP TABLE users",
		"SELECT undo, dock, created_at, alternative FROM items WHERE note = 'do create alter'",
		"SELECT ts_rewrite('a & b'::tsquery, 'a'::tsquery, 'c'::tsquery)",
	)
	t.Run("shadowing through the search_path", func(t *testing.T) {
		runRefusals(t, p, "bob, public", []refusalCase{
			{"unqualified create in a schema before the rule's", "CREATE TABLE users (id int, email bytea)", "", "CREATE TABLE of bob.users would shadow", ""},
		})
		runRefusals(t, p, "pg_temp, public", []refusalCase{
			{"pg_temp first", "CREATE TABLE users (id int)", "", "CREATE TABLE of pg_temp.users would shadow", ""},
		})
	})
}

// TestDDLPreFilter: DDL keywords send statements to the planner even when
// they name no encrypted table; ordinary SELECTs (pgbench -S) stay
// unparsed, and so do words that merely contain a keyword.
func TestDDLPreFilter(t *testing.T) {
	p := newPlanner(t, nil)
	for _, tc := range []struct {
		sql   string
		skips bool
	}{
		{"SELECT abalance FROM pgbench_tellers WHERE tid = 48;", true},
		{"SELECT x FROM t WHERE y = 'a' -- DO$$", true},
		{"SELECT undo, dock, created_at, alternative, important FROM items", true},
		{"DO $$ BEGIN NULL; END $$", false},
		{"do'BEGIN NULL; END'", false},
		{"SELECT 1;\n-- c\nCREATE TABLE t (x int)", false},
		{"ALTER TABLE t RENAME TO u", false},
		{"IMPORT FOREIGN SCHEMA r FROM SERVER s INTO l", false},
		{"SELECT Query_To_Xml('select 1', true, false, '')", false},
		{"SELECT tstamp, dbname FROM items", true},
		{"create\tfunction f() returns int language sql as 'select 1'", false},
	} {
		if got := p.Skips(tc.sql); got != tc.skips {
			t.Errorf("Skips(%q) = %v, want %v", tc.sql, got, tc.skips)
		}
	}
}

// TestPreFilterPgbench: with rules on users only, the statements of
// pgbench -S and -N are not parsed.
func TestPreFilterPgbench(t *testing.T) {
	set := oneTextRule(t, rules.ModeRandomized, "", "public", "users", "ssn")
	p := plannerWith(t, pgsql.Options{Rules: set, Database: "app"})
	for _, sql := range []string{
		"SELECT abalance FROM pgbench_accounts WHERE aid = 48123;",
		"UPDATE pgbench_accounts SET abalance = abalance + -3017 WHERE aid = 48123;",
		"INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (7, 1, 48123, -3017, CURRENT_TIMESTAMP);",
		"BEGIN;", "END;",
	} {
		if !p.Skips(sql) {
			t.Errorf("Skips(%q) = false: the statement would be parsed", sql)
		}
	}
}

// TestAllowDynamicSQL: the listener opt-in lets DO blocks and procedural
// functions through, but not when their text names an encrypted table.
func TestAllowDynamicSQL(t *testing.T) {
	p := plannerWith(t, pgsql.Options{Database: "app", AllowDynamicSQL: true})
	wantForwarded(t, p, "",
		"DO $$ BEGIN PERFORM 1; END $$",
		"CREATE FUNCTION f() RETURNS void LANGUAGE plpgsql AS $$ BEGIN NULL; END $$",
	)
	runRefusals(t, p, "", []refusalCase{
		{"do naming a table", "DO $$ BEGIN INSERT INTO users (ssn) VALUES ('1'); END $$", "", "DO block whose body names an encrypted table", ""},
	})
}

// derivedPlanner is a planner that knows the relations derived from
// public.users: view v, child kid, parent base; and a configured child.
func derivedPlanner(t *testing.T) (*pgsql.Planner, *fakeCatalog) {
	t.Helper()
	specs := testSpecs()
	// public.users_2024 is configured like public.users (a partition
	// configured as the docs ask): not refused.
	specs = append(specs, likeUsers("users_2024", "email", "ssn", "age", "salary")...)
	// public.users_2023 misses ssn: still refused.
	specs = append(specs, likeUsers("users_2023", "email")...)
	set, err := rules.New(rules.DialectPostgres, specs)
	if err != nil {
		t.Fatal(err)
	}
	cat := newFakeCatalog()
	for _, n := range []string{"public.v", "public.kid", "public.base", "public.users_2024", "public.users_2023", "bob.v"} {
		cat.tables[n] = []string{"id", "email", "ssn"}
	}
	p, err := pgsql.New(pgsql.Options{Rules: set, Database: "app", Catalog: cat})
	if err != nil {
		t.Fatal(err)
	}
	p.SetDerived([]pgsql.DerivedRelation{
		{Schema: "public", Name: "v", Kind: pgsql.DerivedView, BaseSchema: "public", BaseTable: "users"},
		{Schema: "public", Name: "kid", Kind: pgsql.DerivedChild, BaseSchema: "public", BaseTable: "users"},
		{Schema: "public", Name: "base", Kind: pgsql.DerivedParent, BaseSchema: "public", BaseTable: "users"},
		{Schema: "public", Name: "users_2024", Kind: pgsql.DerivedChild, BaseSchema: "public", BaseTable: "users"},
		{Schema: "public", Name: "users_2023", Kind: pgsql.DerivedChild, BaseSchema: "public", BaseTable: "users"},
		{Schema: "bob", Name: "users", Kind: pgsql.DerivedNamesake, BaseSchema: "public", BaseTable: "users"},
	})
	return p, cat
}

// TestDerivedRelations: statements naming a relation derived from an
// encrypted table are planned (the pre-filter knows the names) and refused,
// so that no lookup value for a view goes upstream in clear and nothing is
// inserted into a child.
func TestDerivedRelations(t *testing.T) {
	p, _ := derivedPlanner(t)
	for _, sql := range []string{"SELECT id FROM v WHERE email = 'a@x'", "insert into KID values (1)", "UPDATE base SET ssn = 'x'"} {
		if p.Skips(sql) {
			t.Errorf("Skips(%q): the pre-filter must know derived names", sql)
		}
	}
	runRefusals(t, p, "", []refusalCase{
		{"view lookup", "SELECT id FROM v WHERE email = 'a@x'", "", "relation public.v is a view over encrypted table public.users; query the table", ""},
		{"qualified view", "SELECT * FROM public.v", "", "is a view over encrypted table public.users", ""},
		{"child insert", "INSERT INTO kid (id, ssn) VALUES (1, '123-45-6789')", "", "relation public.kid is a partition/child of encrypted table public.users", ""},
		{"parent update", "UPDATE base SET ssn = '1'", "", "relation public.base is a parent/partitioned table of encrypted table public.users", ""},
		{"partially configured child", "INSERT INTO users_2023 (ssn) VALUES ('1')", "", "users_2023 is a partition/child", ""},
		{"in a subquery", "SELECT 1 WHERE EXISTS (SELECT 1 FROM v WHERE email = 'a@x')", "", "is a view over", ""},
		{"copy into a child", "COPY kid FROM STDIN", "", "is a partition/child", ""},
		{"trigger on a view", "CREATE TRIGGER t INSTEAD OF INSERT ON v FOR EACH ROW EXECUTE FUNCTION f()", "", "is a view over", ""},
		{"view over a view", "CREATE VIEW w AS SELECT id FROM v", "", "is a view over", ""},
	})
	for _, tc := range []struct{ sql, path string }{
		{"DROP VIEW v", ""},
		{"DROP TABLE kid", ""},
		{"ALTER TABLE kid NO INHERIT users", ""},
		{"ALTER TABLE users DETACH PARTITION kid", ""},
		{"GRANT SELECT ON v TO app", ""},
		{"SELECT * FROM v", "bob"},                             // bob.v is not derived
		{"INSERT INTO users_2024 (id) VALUES (1)", ""},         // configured like its parent
		{"SELECT id FROM items WHERE name = 'kid'", ""},        // the name in a literal only
		{"SELECT kid FROM items", ""},                          // a column, not a relation
		{"WITH x AS (SELECT 1) SELECT * FROM x, items", "bob"}, // nothing derived
	} {
		if _, err := p.Plan(context.Background(), tc.sql, tc.path); err != nil {
			t.Errorf("Plan(%q) under %q: %v", tc.sql, tc.path, err)
		}
	}
}

// TestSetDerivedPurges: a change in the derived set drops cached plans
// (a plan made before a view existed must not be reused after).
func TestSetDerivedPurges(t *testing.T) {
	cat := newFakeCatalog()
	cat.tables["public.v"] = []string{"id"}
	p := newPlanner(t, cat)
	sql := "SELECT u.id FROM users u JOIN v ON v.id = u.id"
	if _, err := p.Plan(context.Background(), sql, ""); err != nil {
		t.Fatal(err)
	}
	p.SetDerived([]pgsql.DerivedRelation{{Schema: "public", Name: "v", Kind: pgsql.DerivedView, BaseSchema: "public", BaseTable: "users"}})
	if _, err := p.Plan(context.Background(), sql, ""); err == nil {
		t.Fatal("a plan made before v was known to be a view over users was reused")
	}
	p.SetDerived(nil)
	if _, err := p.Plan(context.Background(), sql, ""); err != nil {
		t.Fatalf("after the view was dropped: %v", err)
	}
}

// TestCreationSchemaNotCached: where an unqualified CREATE lands depends
// on which schemas exist, which no purge tracks, so the plan is not
// reused after a schema appears on the search_path.
func TestCreationSchemaNotCached(t *testing.T) {
	cat := newFakeCatalog()
	p := newPlanner(t, cat)
	sql := "CREATE TABLE users (id int, email bytea)"
	if _, err := p.Plan(context.Background(), sql, "carol, public"); err != nil {
		t.Fatalf("no schema carol yet: %v", err)
	}
	cat.tables["carol.other"] = []string{"id"} // schema carol created directly
	runRefusals(t, p, "carol, public", []refusalCase{
		{"after the schema appeared", sql, "", "CREATE TABLE of carol.users would shadow", ""},
	})
}

// TestConfiguredPartitions: a partition or child configured with every
// encrypted column of its parent (same keys) is an encrypted table in its
// own right, so linking it is allowed; one missing a column is not.
func TestConfiguredPartitions(t *testing.T) {
	p, _ := derivedPlanner(t)
	p.SetDerived(nil)
	for _, sql := range []string{
		"CREATE TABLE users_2024 PARTITION OF users FOR VALUES IN (2024)",
		"CREATE TABLE public.users_2024 () INHERITS (users)",
		"CREATE TABLE users_2024 (LIKE users INCLUDING ALL)",
		"ALTER TABLE users ATTACH PARTITION users_2024 FOR VALUES IN (2024)",
		"ALTER TABLE users_2024 INHERIT users",
	} {
		if _, err := p.Plan(context.Background(), sql, ""); err != nil {
			t.Errorf("Plan(%q): %v", sql, err)
		}
	}
	runRefusals(t, p, "", []refusalCase{
		{"partition missing a column", "CREATE TABLE users_2023 PARTITION OF users FOR VALUES IN (2023)", "", "a partition of encrypted table public.users", ""},
		{"attach missing a column", "ALTER TABLE users ATTACH PARTITION users_2023 FOR VALUES IN (2023)", "", "attaching a partition to encrypted table public.users", ""},
		{"encrypted table under an unconfigured parent", "ALTER TABLE users_2024 INHERIT items", "", "public.users_2024 cannot become an inheritance child", ""},
		{"temporary partition", "CREATE TEMP TABLE users_2024 PARTITION OF users FOR VALUES IN (2024)", "", "would shadow", ""},
	})
}
