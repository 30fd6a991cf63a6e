package integration

import (
	"bytes"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/dbproxy/dbproxy/internal/testenv"
	gomysql "github.com/go-mysql-org/go-mysql/mysql"
	driver "github.com/go-sql-driver/mysql"
)

// mysqlModes runs f through the proxy with CLIENT_DEPRECATE_EOF on (what
// go-sql-driver negotiates with MariaDB) and hidden (old-style EOF packets).
func mysqlModes(t *testing.T, f func(t *testing.T, db *testenv.MariaDB, p *myProxy)) {
	mysqlModesWith(t, myProxyOpts{}, f)
}

// mysqlModesWith is mysqlModes with more proxy options. Without an
// Interceptor of its own, each mode also runs with a pass-through
// interceptor that watches every packet and checks the relay's view of the
// responses ("checked").
func mysqlModesWith(t *testing.T, opts myProxyOpts, f func(t *testing.T, db *testenv.MariaDB, p *myProxy)) {
	db := testenv.StartMariaDB(t)
	for _, m := range []struct {
		name    string
		hide    uint64
		checked bool
	}{
		{"deprecate-eof", 0, false},
		{"eof-packets", uint64(gomysql.CLIENT_DEPRECATE_EOF), false},
		{"checked-deprecate-eof", 0, true},
		{"checked-eof-packets", uint64(gomysql.CLIENT_DEPRECATE_EOF), true},
	} {
		if m.checked && opts.Interceptor != nil {
			continue
		}
		t.Run(m.name, func(t *testing.T) {
			o := opts
			o.Hide = m.hide
			var ic *checkInterceptor
			if m.checked {
				ic = &checkInterceptor{}
				o.Interceptor = ic
			}
			p := startMyProxy(t, db, o)
			f(t, db, p)
			if ic != nil {
				ic.verify(t)
			}
		})
	}
}

func TestMySQLQueries(t *testing.T) {
	mysqlModes(t, func(t *testing.T, _ *testenv.MariaDB, p *myProxy) {
		ctx := testCtx(t)
		for _, params := range [][]string{nil, {"interpolateParams=true"}} {
			t.Run(fmt.Sprintf("params=%v", params), func(t *testing.T) {
				db := openDB(t, p.config(t, params...))
				execAll(t, ctx, db,
					`CREATE TABLE IF NOT EXISTS t (id INT PRIMARY KEY, name VARCHAR(100), note TEXT NULL, at DATETIME(6) NULL, n DECIMAL(10,2), f DOUBLE, b BLOB)`,
					`DELETE FROM t`,
				)
				at := time.Date(2024, 5, 6, 7, 8, 9, 123456000, time.UTC)
				for i := range 50 {
					var note any
					if i%3 != 0 {
						note = fmt.Sprintf("note %d", i)
					}
					res, err := db.ExecContext(ctx, `INSERT INTO t VALUES (?, ?, ?, ?, ?, ?, ?)`,
						i, fmt.Sprintf("name-%d", i), note, at, fmt.Sprintf("%d.25", i), float64(i)/4, []byte{0, 1, 0xfe, 0xff, byte(i)})
					if err != nil {
						t.Fatal(err)
					}
					if n, _ := res.RowsAffected(); n != 1 {
						t.Fatalf("rows affected %d", n)
					}
				}
				rows, err := db.QueryContext(ctx, `SELECT id, name, note, at, n, f, b FROM t WHERE id >= ? ORDER BY id`, 0)
				if err != nil {
					t.Fatal(err)
				}
				count := 0
				for rows.Next() {
					var (
						id   int
						name string
						note sql.NullString
						got  time.Time
						n    string
						f    float64
						b    []byte
					)
					if err := rows.Scan(&id, &name, &note, &got, &n, &f, &b); err != nil {
						t.Fatal(err)
					}
					if id != count || name != fmt.Sprintf("name-%d", id) || note.Valid != (id%3 != 0) ||
						!got.Equal(at) || n != fmt.Sprintf("%d.25", id) || f != float64(id)/4 ||
						!bytes.Equal(b, []byte{0, 1, 0xfe, 0xff, byte(id)}) {
						t.Fatalf("row %d: %v %q %v %v %q %v %x", count, id, name, note, got, n, f, b)
					}
					count++
				}
				if err := rows.Err(); err != nil {
					t.Fatal(err)
				}
				if count != 50 {
					t.Fatalf("%d rows, want 50", count)
				}
				// Empty result, errors, NULLs of every kind.
				var nothing int
				if err := db.QueryRowContext(ctx, `SELECT id FROM t WHERE id < 0`).Scan(&nothing); !errors.Is(err, sql.ErrNoRows) {
					t.Fatalf("empty result: %v", err)
				}
				var me *driver.MySQLError
				if _, err := db.ExecContext(ctx, `SELECT * FROM no_such_table`); !errors.As(err, &me) || me.Number != 1146 {
					t.Fatalf("missing table: %v", err)
				}
				var n1, n2 sql.NullInt64
				var n3 sql.NullString
				if err := db.QueryRowContext(ctx, `SELECT NULL, CAST(NULL AS SIGNED), ?`, nil).Scan(&n1, &n2, &n3); err != nil || n1.Valid || n2.Valid || n3.Valid {
					t.Fatalf("NULLs: %v %v %v %v", n1, n2, n3, err)
				}
			})
		}
	})
}

func TestMySQLMultiStatementsAndResults(t *testing.T) {
	mysqlModes(t, func(t *testing.T, _ *testenv.MariaDB, p *myProxy) {
		ctx := testCtx(t)
		db := openDB(t, p.config(t, "multiStatements=true"))
		for _, s := range []string{
			`DROP PROCEDURE IF EXISTS two_results`,
			`CREATE PROCEDURE two_results(IN k INT) BEGIN SELECT k AS a; SELECT k + 1 AS b, 'x' AS c UNION ALL SELECT k + 2, NULL; END`,
		} {
			if _, err := db.ExecContext(ctx, s); err != nil {
				t.Fatal(err)
			}
		}
		// Text protocol: several statements, results and OKs interleaved.
		rows, err := db.QueryContext(ctx, `SELECT 1 AS one; DO 0; SELECT 2, 'two' UNION ALL SELECT 3, 'three'; CALL two_results(10)`)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for {
			cols, _ := rows.Columns()
			for rows.Next() {
				vals := make([]sql.NullString, len(cols))
				ptrs := make([]any, len(cols))
				for i := range vals {
					ptrs[i] = &vals[i]
				}
				if err := rows.Scan(ptrs...); err != nil {
					t.Fatal(err)
				}
				var parts []string
				for _, v := range vals {
					if v.Valid {
						parts = append(parts, v.String)
					} else {
						parts = append(parts, "NULL")
					}
				}
				got = append(got, fmt.Sprint(cols, parts))
			}
			if !rows.NextResultSet() {
				break
			}
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		want := []string{"[one] [1]", "[2 two] [2 two]", "[2 two] [3 three]", "[a] [10]", "[b c] [11 x]", "[b c] [12 NULL]"}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("results\n got %q\nwant %q", got, want)
		}
		// An error in the middle of a multi-statement ends it; the
		// connection stays usable.
		conn, err := db.Conn(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		_, err = conn.ExecContext(ctx, `SELECT 1; SELECT * FROM missing_table; SELECT 3`)
		var me *driver.MySQLError
		if !errors.As(err, &me) || me.Number != 1146 {
			t.Fatalf("error in multi-statement: %v", err)
		}
		requireSelect(t, ctx, conn, 42, "after error")
		// Binary protocol: a prepared CALL returns several result sets.
		stmt, err := conn.PrepareContext(ctx, `CALL two_results(?)`)
		if err != nil {
			t.Fatal(err)
		}
		defer stmt.Close()
		for k := range 3 {
			rows, err := stmt.QueryContext(ctx, k)
			if err != nil {
				t.Fatal(err)
			}
			var sets, nrows int
			for {
				sets++
				for rows.Next() {
					nrows++
				}
				if !rows.NextResultSet() {
					break
				}
			}
			if err := rows.Err(); err != nil {
				t.Fatal(err)
			}
			if sets < 2 || nrows != 3 {
				t.Fatalf("prepared CALL: %d result sets, %d rows", sets, nrows)
			}
		}
	})
}

func TestMySQLTransactions(t *testing.T) {
	mysqlModes(t, func(t *testing.T, _ *testenv.MariaDB, p *myProxy) {
		ctx := testCtx(t)
		db := openDB(t, p.config(t))
		execAll(t, ctx, db,
			`CREATE TABLE IF NOT EXISTS acct (id INT PRIMARY KEY, bal INT) ENGINE=InnoDB`,
			`REPLACE INTO acct VALUES (1, 100), (2, 0)`,
		)
		for _, commit := range []bool{false, true} {
			tx, err := db.BeginTx(ctx, nil)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := tx.ExecContext(ctx, `UPDATE acct SET bal = bal - 10 WHERE id = ?`, 1); err != nil {
				t.Fatal(err)
			}
			if _, err := tx.ExecContext(ctx, `UPDATE acct SET bal = bal + 10 WHERE id = 2`); err != nil {
				t.Fatal(err)
			}
			var inside int
			if err := tx.QueryRowContext(ctx, `SELECT bal FROM acct WHERE id = 2`).Scan(&inside); err != nil || inside != 10 {
				t.Fatalf("inside the transaction: %d %v", inside, err)
			}
			if commit {
				err = tx.Commit()
			} else {
				err = tx.Rollback()
			}
			if err != nil {
				t.Fatal(err)
			}
			var b1, b2 int
			if err := db.QueryRowContext(ctx, `SELECT (SELECT bal FROM acct WHERE id=1), (SELECT bal FROM acct WHERE id=2)`).Scan(&b1, &b2); err != nil {
				t.Fatal(err)
			}
			if want := map[bool][2]int{false: {100, 0}, true: {90, 10}}[commit]; [2]int{b1, b2} != want {
				t.Fatalf("commit=%v: balances %d %d, want %v", commit, b1, b2, want)
			}
		}
	})
}

// TestMySQLLargeRows moves values above 16 MiB (multi-packet payloads)
// both ways, with prepared statements and with interpolated COM_QUERY.
func TestMySQLLargeRows(t *testing.T) {
	db := testenv.StartMariaDB(t)
	admin := adminDB(t, db)
	ctx := testCtx(t)
	if _, err := admin.ExecContext(ctx, `SET GLOBAL max_allowed_packet = 64*1024*1024`); err != nil {
		t.Fatal(err)
	}
	ic := &checkInterceptor{}
	for _, tc := range []struct {
		params  []string
		checked bool
	}{{nil, false}, {[]string{"interpolateParams=true"}, false}, {nil, true}, {[]string{"interpolateParams=true"}, true}} {
		t.Run(fmt.Sprintf("params=%v/checked=%v", tc.params, tc.checked), func(t *testing.T) {
			var opts myProxyOpts
			if tc.checked {
				opts.Interceptor = ic // hands 16 MiB rows and commands to a hook: assembled
				defer ic.verify(t)
			}
			p := startMyProxy(t, db, opts)
			c := openDB(t, p.config(t, append(tc.params, "maxAllowedPacket=0")...))
			execAll(t, ctx, c,
				`CREATE TABLE IF NOT EXISTS big (id INT PRIMARY KEY, v LONGBLOB, s LONGTEXT)`,
				`DELETE FROM big`,
			)
			sizes := []int{1<<24 - 1 - 40, 1<<24 - 1, 1 << 24, 20 << 20}
			for i, n := range sizes {
				v := bytes.Repeat([]byte{byte(i + 1), 0xfe, 0, 0xff}, n/4+1)[:n]
				if _, err := c.ExecContext(ctx, `INSERT INTO big VALUES (?, ?, ?)`, i, v, "s"); err != nil {
					t.Fatalf("insert %d bytes: %v", n, err)
				}
				for _, q := range []string{`SELECT v, s FROM big WHERE id = ?`, `SELECT v, s FROM big WHERE id = ` + fmt.Sprint(i)} {
					var got []byte
					var s string
					args := []any{}
					if strings.Contains(q, "?") {
						args = append(args, i)
					}
					if err := c.QueryRowContext(ctx, q, args...).Scan(&got, &s); err != nil {
						t.Fatalf("select %d bytes: %v", n, err)
					}
					if !bytes.Equal(got, v) || s != "s" {
						t.Fatalf("%d bytes came back as %d bytes (equal prefix: %v)", n, len(got), bytes.HasPrefix(v, got))
					}
				}
			}
		})
	}
}

// TestMySQLLoadDataLocal sends a LOCAL INFILE of several MB: hundreds of
// packets, so the sequence ids wrap around.
func TestMySQLLoadDataLocal(t *testing.T) {
	mysqlModes(t, func(t *testing.T, _ *testenv.MariaDB, p *myProxy) {
		ctx := testCtx(t)
		db := openDB(t, p.config(t))
		execAll(t, ctx, db,
			`CREATE TABLE IF NOT EXISTS infile_t (id INT PRIMARY KEY, v VARCHAR(200))`,
			`DELETE FROM infile_t`,
		)
		var data bytes.Buffer
		const n = 40000
		for i := range n {
			fmt.Fprintf(&data, "%d\t%s\n", i, strings.Repeat("v", 100))
		}
		name := "infile-" + strings.ReplaceAll(t.Name(), "/", "-")
		driver.RegisterReaderHandler(name, func() io.Reader { return bytes.NewReader(data.Bytes()) })
		defer driver.DeregisterReaderHandler(name)
		res, err := db.ExecContext(ctx, `LOAD DATA LOCAL INFILE 'Reader::`+name+`' INTO TABLE infile_t`)
		if err != nil {
			t.Fatal(err)
		}
		if got, _ := res.RowsAffected(); got != n {
			t.Fatalf("loaded %d rows, want %d", got, n)
		}
		var count int
		if err := db.QueryRowContext(ctx, `SELECT COUNT(*) FROM infile_t`).Scan(&count); err != nil || count != n {
			t.Fatalf("count %d %v", count, err)
		}
	})
}
