package integration

import (
	"testing"
	"time"

	"github.com/dbproxy/dbproxy/rules"
	"github.com/dbproxy/dbproxy/value"
)

// TestMySQLEncTypes round-trips every plaintext type through the text and
// binary protocols, written with placeholders and with literals.
func TestMySQLEncTypes(t *testing.T) {
	ddl := "CREATE TABLE typed (id INT PRIMARY KEY, s VARBINARY(200), b VARBINARY(200), r VARBINARY(200), d VARBINARY(200), " +
		"dt VARBINARY(200), tz VARBINARY(200), u VARBINARY(200), y VARBINARY(200), j VARBINARY(200), n VARBINARY(200))"
	col := func(c string, typ value.Type) rules.Spec {
		return rules.Spec{Table: "typed", Column: c, Key: "k_" + c, Mode: rules.ModeDeterministic, Type: typ}
	}
	e := startMyEncProxy(t, []string{ddl}, []rules.Spec{
		col("s", value.TypeSmallint), col("b", value.TypeBigint), col("r", value.TypeReal), col("d", value.TypeDouble),
		col("dt", value.TypeDate), col("tz", value.TypeTimestamptz), col("u", value.TypeUUID), col("y", value.TypeBytes),
		col("j", value.TypeJSON), col("n", value.TypeNumeric),
	})
	ctx := testCtx(t)
	date := time.Date(2024, 2, 29, 0, 0, 0, 0, time.UTC)
	tz := time.Date(2023, 12, 31, 23, 59, 58, 123456000, time.UTC)
	for _, mode := range []string{"interpolateParams=false", "interpolateParams=true"} {
		t.Run(mode, func(t *testing.T) {
			db := openDB(t, e.proxy.config(t, mode))
			if _, err := e.direct.ExecContext(ctx, "DELETE FROM typed"); err != nil {
				t.Fatal(err)
			}
			if _, err := db.ExecContext(ctx,
				"INSERT INTO typed (id, s, b, r, d, dt, tz, u, y, j, n) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
				1, -32768, int64(-9223372036854775808), float32(1.5), 0.1, "2024-02-29", tz,
				"a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", []byte{0, 1, 0xff}, `{"a": [1, 2]}`, "-0.50"); err != nil {
				t.Fatalf("insert: %v", err)
			}
			if _, err := db.ExecContext(ctx, "INSERT INTO typed (id, s, b, dt, u) VALUES (2, 7, 8, '2000-01-01', 'A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11')"); err != nil {
				t.Fatalf("literal insert: %v", err)
			}
			for _, q := range []struct {
				sql  string
				args []any
			}{
				{"SELECT s, b, r, d, dt, tz, u, y, j, n FROM typed WHERE id = ?", []any{1}},
				{"SELECT s, b, r, d, dt, tz, u, y, j, n FROM typed WHERE id = 1", nil},
			} {
				var (
					s   int16
					b   int64
					r   float32
					d   float64
					dt  time.Time
					tzv time.Time
					u   string
					y   []byte
					j   string
					n   string
				)
				if err := db.QueryRowContext(ctx, q.sql, q.args...).Scan(&s, &b, &r, &d, &dt, &tzv, &u, &y, &j, &n); err != nil {
					t.Fatalf("%s: %v", q.sql, err)
				}
				if s != -32768 || b != -9223372036854775808 || r != 1.5 || d != 0.1 || !dt.Equal(date) || !tzv.Equal(tz) ||
					u != "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11" || string(y) != "\x00\x01\xff" || j != `{"a": [1, 2]}` || n != "-0.5" {
					t.Fatalf("%s: got %v %v %v %v %v %v %v %x %v %v", q.sql, s, b, r, d, dt, tzv, u, y, j, n)
				}
			}
			var id int
			if err := db.QueryRowContext(ctx, "SELECT id FROM typed WHERE u = ? AND dt = ? AND s = ?", "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", "2000-01-01", 7).Scan(&id); err != nil || id != 2 {
				t.Fatalf("lookup by uuid/date/smallint: %d %v", id, err)
			}
		})
	}
	e.checkAtRest(t, []string{"a0eebc99", `{"a"`})
}
