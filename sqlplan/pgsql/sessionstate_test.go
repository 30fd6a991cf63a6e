package pgsql_test

import (
	"slices"
	"testing"

	"github.com/dbproxy/dbproxy/sqlplan/pgsql"
)

func TestSessionEffects(t *testing.T) {
	const (
		path = pgsql.EffectSearchPath
		sp   = pgsql.EffectSearchPath | pgsql.EffectRole
	)
	cases := []struct {
		sql  string
		want []pgsql.SessionEffect
	}{
		{"SELECT 1", []pgsql.SessionEffect{0}},
		{"SET search_path = app, public", []pgsql.SessionEffect{path}},
		{"set LOCAL Search_Path to app", []pgsql.SessionEffect{path}},
		{`SET "search_path" = app`, []pgsql.SessionEffect{path}},
		{"SET SCHEMA 'app'", []pgsql.SessionEffect{path}},
		{"SET ROLE alice", []pgsql.SessionEffect{sp}},
		{"SET SESSION AUTHORIZATION alice", []pgsql.SessionEffect{sp}},
		{"RESET ROLE", []pgsql.SessionEffect{sp}},
		{"RESET search_path", []pgsql.SessionEffect{path}},
		{"RESET ALL", []pgsql.SessionEffect{sp}},
		{"DISCARD ALL", []pgsql.SessionEffect{sp}},
		{"DISCARD PLANS", []pgsql.SessionEffect{sp}},
		{"SET statement_timeout = 0", []pgsql.SessionEffect{0}},
		{"RESET statement_timeout", []pgsql.SessionEffect{0}},
		{"SET TIME ZONE 'UTC'", []pgsql.SessionEffect{0}},
		{"SET TRANSACTION ISOLATION LEVEL SERIALIZABLE", []pgsql.SessionEffect{0}},
		{"SELECT current_setting('search_path')", []pgsql.SessionEffect{0}},
		{"SELECT 'SET search_path = x'", []pgsql.SessionEffect{0}},
		{"SELECT 1 -- SET search_path = x", []pgsql.SessionEffect{0}},
		{"SELECT /* ; SET ROLE x; */ 1", []pgsql.SessionEffect{0}},
		{"SELECT $$; SET search_path = x; $$", []pgsql.SessionEffect{0}},
		{"SELECT pg_catalog.SET_CONFIG('search_path', 'x', false)", []pgsql.SessionEffect{sp}},
		{"SELECT set_config('work_mem', '1MB', false)", []pgsql.SessionEffect{sp}},
		{"PREPARE p AS SELECT set_config('search_path', $1, false)", []pgsql.SessionEffect{sp}},
		{"DO $$BEGIN EXECUTE 'SET search' || '_path = x'; END$$", []pgsql.SessionEffect{sp}},
		{"CALL p()", []pgsql.SessionEffect{sp}},
		{"SET search_path = x; SELECT 1", []pgsql.SessionEffect{path, 0}},
		{"SELECT 1; SELECT set_config('role', 'x', false); SELECT 2", []pgsql.SessionEffect{0, sp, 0}},
		{"ALTER ROLE alice SET search_path = x", []pgsql.SessionEffect{0}},
		{"CREATE FUNCTION f() RETURNS int LANGUAGE sql SET search_path = x AS 'SELECT 1'", []pgsql.SessionEffect{0}},
	}
	for _, c := range cases {
		got, err := pgsql.SessionEffects(c.sql)
		if err != nil || !slices.Equal(got, c.want) {
			t.Errorf("%q: got %v %v, want %v", c.sql, got, err, c.want)
		}
	}
	if _, err := pgsql.SessionEffects("SET search_path = 'x"); err == nil {
		t.Error("unterminated string: no error")
	}
}
