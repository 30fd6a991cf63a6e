package migrate

import (
	"strings"
	"testing"

	"github.com/dbproxy/dbproxy/rules"
	"github.com/dbproxy/dbproxy/value"
)

func TestHoldsPlain(t *testing.T) {
	cases := []struct {
		ft   string
		typ  value.Type
		want bool
	}{
		{"text", value.TypeText, true},
		{"character varying(20)", value.TypeText, true},
		{"numeric(12,2)", value.TypeNumeric, true},
		{"timestamp(3) with time zone", value.TypeTimestamptz, true},
		{"timestamp without time zone", value.TypeTimestamptz, false},
		{"integer", value.TypeBigint, false},
		{"bigint", value.TypeBigint, true},
		{"jsonb", value.TypeJSON, true},
	}
	for _, c := range cases {
		if got := holdsPlain(c.ft, c.typ); got != c.want {
			t.Errorf("holdsPlain(%q, %s) = %v", c.ft, c.typ, got)
		}
	}
}

func TestDerivedName(t *testing.T) {
	long := strings.Repeat("é", 40)
	a, b := shadowName(long), shadowName(long+"x")
	if len(a) > maxIdent || len(b) > maxIdent || a == b {
		t.Fatalf("shadow names %q %q", a, b)
	}
	if shadowName("ssn") != "dbproxy_new_ssn" {
		t.Fatal(shadowName("ssn"))
	}
}

// TestStatements pins the shape of the SQL: keys qualified everywhere
// (an unqualified ORDER BY would sort by the text output column),
// composite keys compared as rows, arrays per column.
func TestStatements(t *testing.T) {
	s := statements{op: OpEncrypt, t: Table{Schema: "app", Name: "Users", Columns: []*rules.ColumnRule{
		{Column: "ssn", Type: value.TypeText, Mode: rules.ModeRandomized, Key: "k"},
		{Column: "born", Type: value.TypeDate, Mode: rules.ModeRandomized, Key: "k"},
	}}, info: &tableInfo{keyCols: []string{"tenant", "id"}, keyTypes: []string{"integer", "bigint"},
		columns: map[string]columnInfo{"ssn": {typ: "text", notNull: true}, "born": {typ: "date"}}}}
	sel := s.selectBatch(true, true, true, 100)
	for _, want := range []string{
		`dbproxy_t."tenant"::text, dbproxy_t."id"::text, dbproxy_t."ssn"::text, dbproxy_t."born"::text FROM "app"."Users" AS dbproxy_t`,
		`(dbproxy_t."tenant", dbproxy_t."id") > ($1::text::integer, $2::text::bigint)`,
		`ORDER BY dbproxy_t."tenant", dbproxy_t."id" LIMIT 100 FOR UPDATE OF dbproxy_t`,
		`(dbproxy_t."dbproxy_new_ssn" IS NULL AND dbproxy_t."ssn" IS NOT NULL) OR`,
	} {
		if !strings.Contains(sel, want) {
			t.Errorf("select lacks %q:\n%s", want, sel)
		}
	}
	if idx, want := s.createPendingIndex(), `CREATE INDEX CONCURRENTLY IF NOT EXISTS "dbproxy_pending_Users" ON "app"."Users" ("tenant", "id") WHERE (("dbproxy_new_ssn" IS NULL AND "ssn" IS NOT NULL) OR ("dbproxy_new_born" IS NULL AND "born" IS NOT NULL))`; idx != want {
		t.Errorf("pending index:\n%s\nwant\n%s", idx, want)
	}
	up := s.update()
	if want := `SET "dbproxy_new_ssn" = v.c0, "dbproxy_new_born" = v.c1 FROM unnest($1::text[], $2::text[], $3::bytea[], $4::bytea[]) AS v(k0, k1, c0, c1) WHERE dbproxy_t."tenant" = v.k0::integer AND dbproxy_t."id" = v.k1::bigint`; !strings.Contains(up, want) {
		t.Errorf("update:\n%s\nwant %s", up, want)
	}
	swap := strings.Join(s.swap(), ";\n")
	for _, want := range []string{`DROP COLUMN "ssn"`, `RENAME COLUMN "dbproxy_new_ssn" TO "ssn"`, `ALTER COLUMN "ssn" SET NOT NULL`, `ADD CONSTRAINT "dbproxy_guard_born"`} {
		if !strings.Contains(swap, want) {
			t.Errorf("swap lacks %q:\n%s", want, swap)
		}
	}
	if strings.Contains(swap, `ALTER COLUMN "born" SET NOT NULL`) {
		t.Error("swap makes a nullable column NOT NULL")
	}
	s.op = OpDecrypt
	if up := s.update(); !strings.Contains(up, `"dbproxy_new_born" = v.c1::date`) || !strings.Contains(up, `$4::text[]`) {
		t.Errorf("decrypt update: %s", up)
	}
	s.op = OpReencrypt
	if up := s.update(); !strings.Contains(up, `"ssn" = COALESCE(v.c0, dbproxy_t."ssn")`) {
		t.Errorf("reencrypt update: %s", up)
	}
}
