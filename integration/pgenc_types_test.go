package integration

import (
	"context"
	"fmt"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/dbproxy/dbproxy/rules"
	"github.com/dbproxy/dbproxy/value"
)

// encTypeCases lists, per plaintext type, the PostgreSQL type name and SQL
// literals covering its extremes.
var encTypeCases = []struct {
	typ    value.Type
	pgType string
	lits   []string
}{
	{value.TypeText, "text", []string{`''`, `'hello world'`, `'zoë ☃ 日本語'`, `'quote '' and \ backslash'`, `E'tab\tnew\nline'`}},
	{value.TypeSmallint, "smallint", []string{`-32768`, `0`, `32767`}},
	{value.TypeInt, "int", []string{`-2147483648`, `42`, `2147483647`}},
	{value.TypeBigint, "bigint", []string{`-9223372036854775808`, `0`, `9223372036854775807`}},
	{value.TypeReal, "real", []string{`'NaN'`, `'Infinity'`, `'-Infinity'`, `1.5`, `-0.000123`, `3.4028235e38`}},
	{value.TypeDouble, "double precision", []string{`'NaN'`, `'Infinity'`, `'-Infinity'`, `0.1`, `-1e308`, `5e-324`}},
	{value.TypeNumeric, "numeric", []string{`0`, `-123.4500`, `99999999999999999999999.000000001`, `'NaN'`}},
	{value.TypeBoolean, "boolean", []string{`true`, `false`}},
	{value.TypeDate, "date", []string{`'1969-12-31'`, `'1900-02-28'`, `'2040-01-01'`, `'0044-03-15 BC'`, `'infinity'`}},
	{value.TypeTimestamp, "timestamp", []string{`'1960-01-01 12:34:56.789'`, `'2039-06-30 23:59:59.999999'`, `'-infinity'`}},
	{value.TypeTimestamptz, "timestamptz", []string{`'1969-07-20 20:17:40+00'`, `'2040-02-29 12:00:00-08'`, `'2026-03-29 02:30:00.5+05:30'`, `'1900-01-01 00:00:00'`}},
	{value.TypeUUID, "uuid", []string{`'00000000-0000-0000-0000-000000000000'`, `'A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11'`}},
	{value.TypeBytes, "bytea", []string{`'\x'`, `'\x00ff10'`, `'\xdeadbeefcafe'`}},
	{value.TypeJSON, "json", []string{`'{"a": [1, 2, {"b": null}]}'`, `'"zoë"'`, `'[]'`}},
}

func TestPGEncTypesSimple(t *testing.T) {
	ddl, specs := typedTable("typed", "id int PRIMARY KEY", len(encTypeCases), func(i int) value.Type { return encTypeCases[i].typ })
	e := startEncProxy(t, ddl, specs)
	ctx := testCtx(t)
	for _, zone := range []string{"UTC", "America/New_York", "Asia/Kolkata"} {
		t.Run(zone, func(t *testing.T) {
			c := e.connectMode(t, pgx.QueryExecModeSimpleProtocol)
			if _, err := c.Exec(ctx, `SET TIME ZONE '`+zone+`'`); err != nil {
				t.Fatal(err)
			}
			direct := e.connectDirectSimple(t)
			if _, err := direct.Exec(ctx, `SET TIME ZONE '`+zone+`'`); err != nil {
				t.Fatal(err)
			}
			if _, err := c.Exec(ctx, `DELETE FROM typed`); err != nil {
				t.Fatal(err)
			}
			id := 0
			for _, tc := range encTypeCases {
				for _, lit := range append([]string{"NULL"}, tc.lits...) {
					id++
					colR := typedColumn(tc.typ, rules.ModeRandomized)
					colD := typedColumn(tc.typ, rules.ModeDeterministic)
					if _, err := c.Exec(ctx, fmt.Sprintf(`INSERT INTO typed (id, %s, %s) VALUES (%d, %s, %s)`, colR, colD, id, lit, lit)); err != nil {
						t.Fatalf("insert %s %s: %v", tc.pgType, lit, err)
					}
					// The server's own text rendering of the literal is the expected output.
					want := directText(ctx, t, direct, lit, tc.typ, tc.pgType)
					where := fmt.Sprintf("id = %d", id)
					if lit != "NULL" {
						where = fmt.Sprintf("%s = %s", colD, lit) // deterministic lookup by literal
					}
					rows, err := c.Query(ctx, fmt.Sprintf(`SELECT %s, %s FROM typed WHERE %s`, colR, colD, where))
					if err != nil {
						t.Fatalf("select %s %s: %v", tc.pgType, lit, err)
					}
					n := 0
					for rows.Next() {
						n++
						raw := rows.RawValues()
						for i, v := range raw {
							if (v == nil) != (want == nil) || (want != nil && string(v) != *want) {
								t.Errorf("%s %s col %d: got %q, want %v", tc.pgType, lit, i, v, deref(want))
							}
						}
						if _, err := rows.Values(); err != nil {
							t.Errorf("%s %s: pgx cannot decode: %v", tc.pgType, lit, err)
						}
						if fd := rows.FieldDescriptions(); fd[0].DataTypeOID == 17 && tc.typ != value.TypeBytes {
							t.Errorf("%s: result type OID not rewritten", tc.pgType)
						}
					}
					if err := rows.Err(); err != nil {
						t.Fatalf("select %s %s: %v", tc.pgType, lit, err)
					}
					if n != 1 {
						t.Errorf("%s %s: %d rows, want 1", tc.pgType, lit, n)
					}
				}
			}
		})
	}
	e.checkAtRest(t, []string{"hello world", "zoë ☃ 日本語", "A0EEBC99", "deadbeefcafe"})
}

func deref(s *string) string {
	if s == nil {
		return "NULL"
	}
	return *s
}

// directText is the server's own text output for lit (numeric with its
// scale trimmed: canonical numerics drop trailing zeros).
func directText(ctx context.Context, t *testing.T, direct *pgx.Conn, lit string, typ value.Type, pgType string) *string {
	t.Helper()
	q := fmt.Sprintf(`SELECT (%s)::%s`, lit, pgType)
	if typ == value.TypeNumeric {
		q = fmt.Sprintf(`SELECT trim_scale((%s)::numeric)`, lit)
	}
	rows, err := direct.Query(ctx, q)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	if !rows.Next() {
		t.Fatalf("no row for %s: %v", q, rows.Err())
	}
	v := rows.RawValues()[0]
	if v == nil {
		return nil
	}
	s := string(v)
	return &s
}

// connectDirectSimple connects straight to the database with the simple
// protocol (text results, as through psql).
func (e *encEnv) connectDirectSimple(t testing.TB) *pgx.Conn {
	t.Helper()
	return connectMode(t, e.pg.DSN(), pgx.QueryExecModeSimpleProtocol)
}
