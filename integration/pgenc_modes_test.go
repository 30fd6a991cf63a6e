package integration

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/dbproxy/dbproxy/rules"
	"github.com/dbproxy/dbproxy/value"
)

var allModes = []pgx.QueryExecMode{
	pgx.QueryExecModeSimpleProtocol, pgx.QueryExecModeExec, pgx.QueryExecModeCacheStatement,
	pgx.QueryExecModeCacheDescribe, pgx.QueryExecModeDescribeExec,
}

func numeric(s string) pgtype.Numeric {
	var n pgtype.Numeric
	if err := n.Scan(s); err != nil {
		panic(err)
	}
	return n
}

// goTypeCases: per plaintext type, Go values pgx sends and scans back.
var goTypeCases = []struct {
	typ  value.Type
	vals []any
}{
	{value.TypeText, []any{"", "héllo ☃ wörld", "line\nbreak 'quote' \\"}},
	{value.TypeSmallint, []any{int16(math.MinInt16), int16(0), int16(math.MaxInt16)}},
	{value.TypeInt, []any{int32(math.MinInt32), int32(7), int32(math.MaxInt32)}},
	{value.TypeBigint, []any{int64(math.MinInt64), int64(-1), int64(math.MaxInt64)}},
	{value.TypeReal, []any{float32(math.NaN()), float32(math.Inf(1)), float32(math.Inf(-1)), float32(1.5), float32(-3.25e-10)}},
	{value.TypeDouble, []any{math.NaN(), math.Inf(1), math.Inf(-1), 0.1, 5e-324, -1.7976931348623157e308}},
	{value.TypeNumeric, []any{numeric("0"), numeric("-123.45"), numeric("99999999999999999999.000000001"), numeric("0.0001"), numeric("10000")}},
	{value.TypeBoolean, []any{true, false}},
	{value.TypeDate, []any{time.Date(1969, 12, 31, 0, 0, 0, 0, time.UTC), time.Date(1900, 2, 28, 0, 0, 0, 0, time.UTC), time.Date(2040, 1, 1, 0, 0, 0, 0, time.UTC)}},
	{value.TypeTimestamp, []any{time.Date(1960, 1, 1, 12, 34, 56, 789000000, time.UTC), time.Date(2039, 6, 30, 23, 59, 59, 999999000, time.UTC)}},
	{value.TypeTimestamptz, []any{time.Date(1969, 7, 20, 20, 17, 40, 0, time.UTC), time.Date(2040, 2, 29, 12, 0, 0, 0, time.FixedZone("x", -8*3600))}},
	{value.TypeUUID, []any{pgtype.UUID{Valid: true}, pgtype.UUID{Valid: true, Bytes: [16]byte{0xa0, 0xee, 0xbc, 0x99, 0x9c, 0x0b, 0x4e, 0xf8, 0xbb, 0x6d, 0x6b, 0xb9, 0xbd, 0x38, 0x0a, 0x11}}}},
	{value.TypeBytes, []any{[]byte{}, []byte{0, 1, 255, 16}}},
	{value.TypeJSON, []any{`{"a": [1, 2, {"b": null}]}`, `"zoë"`}},
}

func sameValue(a, b any) bool {
	switch x := a.(type) {
	case float32:
		y, ok := b.(float32)
		return ok && (x == y || (x != x && y != y))
	case float64:
		y, ok := b.(float64)
		return ok && (x == y || (x != x && y != y))
	case time.Time:
		y, ok := b.(time.Time)
		return ok && x.Equal(y)
	case []byte:
		y, ok := b.([]byte)
		return ok && bytes.Equal(x, y)
	case pgtype.Numeric:
		y, ok := b.(pgtype.Numeric)
		if !ok {
			return false
		}
		xv, _ := x.Value()
		yv, _ := y.Value()
		return fmt.Sprint(xv) == fmt.Sprint(yv) || strings.TrimRight(strings.TrimRight(fmt.Sprint(xv), "0"), ".") == strings.TrimRight(strings.TrimRight(fmt.Sprint(yv), "0"), ".")
	}
	return reflect.DeepEqual(a, b)
}

// TestPGEncExecModes writes and reads every plaintext type with parameters
// in every pgx exec mode (simple protocol: text; the others: binary
// parameters and results where pgx prefers them), looks rows up by
// deterministic parameter, and checks what is at rest.
func TestPGEncExecModes(t *testing.T) {
	ddl, specs := typedTable("typed", "id int PRIMARY KEY, mode text", len(goTypeCases), func(i int) value.Type { return goTypeCases[i].typ })
	e := startEncProxy(t, ddl, specs)
	ctx := testCtx(t)
	id := 0
	for _, mode := range allModes {
		t.Run(mode.String(), func(t *testing.T) {
			c := e.connectMode(t, mode)
			for _, tc := range goTypeCases {
				colR := typedColumn(tc.typ, rules.ModeRandomized)
				colD := typedColumn(tc.typ, rules.ModeDeterministic)
				for _, v := range append([]any{nil}, tc.vals...) {
					id++
					if _, err := c.Exec(ctx, fmt.Sprintf(`INSERT INTO typed (id, mode, %s, %s) VALUES ($1, $2, $3, $4)`, colR, colD),
						id, mode.String(), v, v); err != nil {
						t.Fatalf("insert %s %v: %v", tc.typ, v, err)
					}
					q := fmt.Sprintf(`SELECT %s, %s FROM typed WHERE mode = $1 AND %s = $2`, colR, colD, colD)
					args := []any{mode.String(), v}
					if v == nil {
						q = fmt.Sprintf(`SELECT %s, %s FROM typed WHERE id = $1 AND %s IS NULL`, colR, colD, colD)
						args = []any{id}
					}
					rows, err := c.Query(ctx, q, args...)
					if err != nil {
						t.Fatalf("select %s %v: %v", tc.typ, v, err)
					}
					n := 0
					for rows.Next() {
						n++
						vals, err := rows.Values()
						if err != nil {
							t.Fatalf("%s %v: decode: %v", tc.typ, v, err)
						}
						if v == nil {
							if vals[0] != nil || vals[1] != nil {
								t.Errorf("%s NULL came back as %v", tc.typ, vals)
							}
							continue
						}
						for i := range 2 {
							got := reflect.New(reflect.TypeOf(v))
							if err := rows.Scan(got.Interface(), new(any)); i == 0 && err != nil {
								t.Fatalf("%s %v: scan: %v", tc.typ, v, err)
							}
							if i == 0 && !sameValue(v, got.Elem().Interface()) {
								t.Errorf("%s: wrote %v, read %v", tc.typ, v, got.Elem().Interface())
							}
						}
					}
					if err := rows.Err(); err != nil {
						t.Fatalf("select %s %v: %v", tc.typ, v, err)
					}
					if n != 1 {
						t.Errorf("%s %v: %d rows, want 1", tc.typ, v, n)
					}
				}
			}
		})
	}
	e.checkAtRest(t, []string{"héllo ☃ wörld", "line\nbreak", `{"a": [1, 2`, "zoë"})
}

// TestPGEncCRUDModes: users inserted, found, updated and deleted by
// deterministic email in every exec mode, and the refusals reported.
func TestPGEncCRUDModes(t *testing.T) {
	e := startEncProxy(t, usersDDL, usersSpecs())
	ctx := testCtx(t)
	for _, mode := range allModes {
		t.Run(mode.String(), func(t *testing.T) {
			c := e.connectMode(t, mode)
			email := "crud-" + mode.String() + "@example.com"
			var id int64
			if err := c.QueryRow(ctx, `INSERT INTO users (email, name, salary, note) VALUES ($1, $2, $3, $4) RETURNING id`,
				email, "Crud Person", int64(42), "n").Scan(&id); err != nil {
				t.Fatalf("insert: %v", err)
			}
			var name string
			var salary int64
			if err := c.QueryRow(ctx, `SELECT name, salary FROM users WHERE email = $1`, email).Scan(&name, &salary); err != nil || name != "Crud Person" || salary != 42 {
				t.Fatalf("lookup: %q %d %v", name, salary, err)
			}
			if err := c.QueryRow(ctx, `UPDATE users SET salary = $1 WHERE email = $2 RETURNING salary`, int64(43), email).Scan(&salary); err != nil || salary != 43 {
				t.Fatalf("update: %d %v", salary, err)
			}
			var n int
			if err := c.QueryRow(ctx, `SELECT count(*) FROM users WHERE email IN ($1, $2)`, email, "nobody@example.com").Scan(&n); err != nil || n != 1 {
				t.Fatalf("IN: %d %v", n, err)
			}
			for _, tc := range []struct {
				arr  any
				want int
			}{
				{[]string{email, "nobody@example.com"}, 1},
				{[]string{}, 0},
				{[]*string{nil, &email}, 1},
				{[][]string{{email}, {"x@y"}}, 1},
			} {
				// pgx inlines arrays as '{…}' literals in the simple protocol
				// (one ciphertext per element); it cannot encode 2-D arrays
				// without a Describe (exec and simple protocol modes).
				if _, twoD := tc.arr.([][]string); twoD && (mode == pgx.QueryExecModeExec || mode == pgx.QueryExecModeSimpleProtocol) {
					continue
				}
				if err := c.QueryRow(ctx, `SELECT count(*) FROM users WHERE email = ANY($1)`, tc.arr).Scan(&n); err != nil || n != tc.want {
					t.Fatalf("= ANY(%v): %d %v", tc.arr, n, err)
				}
			}
			before := e.tableDump(t, "users")
			_, err := c.Exec(ctx, `SELECT id FROM users WHERE email LIKE $1`, "crud%")
			var pgErr *pgconn.PgError
			if !errors.As(err, &pgErr) || pgErr.Code != "0A000" || !strings.Contains(pgErr.Message, "users.email") {
				t.Fatalf("LIKE: %v", err)
			}
			if _, err := c.Exec(ctx, `UPDATE users SET name = $1 WHERE name = $2`, "x", "Crud Person"); err == nil {
				t.Fatal("equality on randomized column accepted")
			}
			if got := e.tableDump(t, "users"); got != before {
				t.Fatal("table changed after refusals")
			}
			// The session is usable after a refusal in a pipeline.
			if err := c.QueryRow(ctx, `SELECT name FROM users WHERE email = $1`, email).Scan(&name); err != nil {
				t.Fatalf("after refusal: %v", err)
			}
			tag, err := c.Exec(ctx, `DELETE FROM users WHERE email = $1`, email)
			if err != nil || tag.RowsAffected() != 1 {
				t.Fatalf("delete: %v %v", tag, err)
			}
		})
	}
	// A batch (pipeline) with a refused statement in the middle.
	c := e.connectMode(t, pgx.QueryExecModeCacheStatement)
	b := &pgx.Batch{}
	b.Queue(`INSERT INTO users (email, name) VALUES ($1, $2)`, "batch1@example.com", "Batch One")
	b.Queue(`INSERT INTO users (email, name) VALUES ($1, $2)`, "batch2@example.com", "Batch Two")
	if err := c.SendBatch(ctx, b).Close(); err != nil {
		t.Fatalf("batch: %v", err)
	}
	var n int
	if err := c.QueryRow(ctx, `SELECT count(*) FROM users WHERE email = ANY(ARRAY[$1, $2])`, "batch1@example.com", "batch2@example.com").Scan(&n); err != nil || n != 2 {
		t.Fatalf("batch rows: %d %v", n, err)
	}
	e.checkAtRest(t, []string{"Crud Person", "crud-", "Batch One", "batch1@example.com"})
}

// TestPGEncCursor: a cursor over an encrypted table decrypts through FETCH
// in both protocols (the server describes FETCH with the cursor's columns).
func TestPGEncCursor(t *testing.T) {
	e, ctx, s := startUsersSession(t, pgx.QueryExecModeSimpleProtocol)
	if _, err := s.Exec(ctx, `INSERT INTO users (email, name) VALUES ('cur@example.com', 'Cursor Person')`); err != nil {
		t.Fatal(err)
	}
	for _, mode := range []pgx.QueryExecMode{pgx.QueryExecModeSimpleProtocol, pgx.QueryExecModeCacheStatement} {
		t.Run(mode.String(), func(t *testing.T) {
			c := e.connectMode(t, mode)
			tx, err := c.Begin(ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer tx.Rollback(ctx)
			if _, err := tx.Exec(ctx, `DECLARE cur CURSOR FOR SELECT email, name FROM users`); err != nil {
				t.Fatal(err)
			}
			var email, name string
			err = tx.QueryRow(ctx, `FETCH NEXT FROM cur`).Scan(&email, &name)
			if err != nil || email != "cur@example.com" || name != "Cursor Person" {
				t.Fatalf("fetch: %q %q %v", email, name, err)
			}
		})
	}
}

// TestPGEncDecryptFailure: values that do not decrypt under their column's
// key (tampered, copied from another column, plaintext written directly)
// make the query fail in every mode; nothing of them reaches the client.
func TestPGEncDecryptFailure(t *testing.T) {
	e, ctx, s := startUsersSession(t, pgx.QueryExecModeSimpleProtocol)
	for _, em := range []string{"tamper@example.com", "moved@example.com", "plain@example.com"} {
		if _, err := s.Exec(ctx, `INSERT INTO users (email, name, note) VALUES ($1, 'Some Name', $1)`, em); err != nil {
			t.Fatal(err)
		}
	}
	for _, q := range []string{
		`UPDATE users SET name = set_byte(name, length(name) - 1, get_byte(name, length(name) - 1) # 1) WHERE note = 'tamper@example.com'`,
		`UPDATE users SET name = email WHERE note = 'moved@example.com'`,
		`UPDATE users SET name = 'plaintext bytes'::bytea WHERE note = 'plain@example.com'`,
	} {
		if _, err := e.direct.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	for _, mode := range allModes {
		for _, em := range []string{"tamper@example.com", "moved@example.com", "plain@example.com"} {
			t.Run(mode.String()+"/"+em, func(t *testing.T) {
				c := e.connectMode(t, mode)
				var name any
				err := c.QueryRow(ctx, `SELECT name FROM users WHERE email = $1`, em).Scan(&name)
				var pgErr *pgconn.PgError
				if !errors.As(err, &pgErr) || pgErr.Code != "XX001" || !strings.Contains(pgErr.Message, "users.name") {
					t.Fatalf("got %v, %v; want a decryption error", name, err)
				}
				// The session goes on.
				var n int
				if err := c.QueryRow(ctx, `SELECT count(*) FROM users WHERE email = $1`, em).Scan(&n); err != nil || n != 1 {
					t.Fatalf("after the error: %d %v", n, err)
				}
			})
		}
	}
}
