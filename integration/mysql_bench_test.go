package integration

import (
	"context"
	"database/sql"
	"testing"

	"github.com/dbproxy/dbproxy/internal/testenv"
)

// BenchmarkMySQLPointSelect measures one primary-key SELECT round trip
// (prepared statement over the binary protocol, and COM_QUERY with the
// value interpolated by the driver)
// directly and through the proxy, one connection, on loopback.
//
//	go test -run '^$' -bench MySQLPointSelect -benchtime 5s ./integration/
func BenchmarkMySQLPointSelect(b *testing.B) {
	db := testenv.StartMariaDB(b)
	p := startMyProxy(b, db, myProxyOpts{})
	ctx := context.Background()
	setup := openDB(b, myConfigAt(b, db.Addr(), db.User, db.Password, db.Database))
	if _, err := setup.ExecContext(ctx, `CREATE TABLE sbtest (id INT PRIMARY KEY, k INT, c CHAR(120), pad CHAR(60))`); err != nil {
		b.Fatal(err)
	}
	if _, err := setup.ExecContext(ctx, `INSERT INTO sbtest SELECT seq, seq * 7, REPEAT('c', 120), REPEAT('p', 60) FROM seq_1_to_10000`); err != nil {
		b.Fatal(err)
	}
	for _, target := range []struct{ name, addr string }{{"direct", db.Addr()}, {"proxy", p.Addr}} {
		for _, mode := range []string{"prepared", "interpolated"} {
			b.Run(target.name+"/"+mode, func(b *testing.B) {
				var params []string
				if mode == "interpolated" {
					params = append(params, "interpolateParams=true")
				}
				conn := openConn(b, myConfigAt(b, target.addr, db.User, db.Password, db.Database, params...))
				stmt, err := conn.PrepareContext(ctx, `SELECT c FROM sbtest WHERE id = ?`)
				if err != nil {
					b.Fatal(err)
				}
				defer stmt.Close()
				query := func(id int) *sql.Row { return stmt.QueryRowContext(ctx, id) }
				if mode == "interpolated" {
					// COM_QUERY with the literal spliced in by the driver.
					query = func(id int) *sql.Row { return conn.QueryRowContext(ctx, `SELECT c FROM sbtest WHERE id = ?`, id) }
				}
				var c string
				b.ReportAllocs()
				b.ResetTimer()
				for i := 0; b.Loop(); i++ {
					if err := query(1 + i%10000).Scan(&c); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}
