package integration

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	driver "github.com/go-sql-driver/mysql"

	"github.com/dbproxy/dbproxy/crypto"
	"github.com/dbproxy/dbproxy/crypto/keys"
	"github.com/dbproxy/dbproxy/internal/testenv"
	"github.com/dbproxy/dbproxy/internal/testkeys"
	"github.com/dbproxy/dbproxy/proxy/mysql/mycrypt"
	"github.com/dbproxy/dbproxy/rules"
	"github.com/dbproxy/dbproxy/sqlplan/mysqlsql"
)

// myEncEnv is a MariaDB database behind an encrypting MySQL proxy.
type myEncEnv struct {
	db     *testenv.MariaDB
	proxy  *myProxy
	mgr    *keys.Manager
	direct *sql.DB // straight to the database, bypassing the proxy
	specs  []rules.Spec
}

// startMyEncProxy creates the tables (ddl statements, run directly), a
// local master key, a file keystore with every data key of specs, and an
// encrypting proxy without a catalog.
func startMyEncProxy(t testing.TB, ddl []string, specs []rules.Spec) *myEncEnv {
	t.Helper()
	return startMyEncProxyWith(t, ddl, specs, nil)
}

// startMyEncProxyWith is startMyEncProxy with a catalog: catalog, if not
// nil, returns the proxy's mysqlsql.Catalog for the started database.
func startMyEncProxyWith(t testing.TB, ddl []string, specs []rules.Spec, catalog func(*testenv.MariaDB) mysqlsql.Catalog) *myEncEnv {
	t.Helper()
	return startMyEncProxyKeys(t, ddl, specs, catalog, testkeys.ForRules(specs))
}

// startMyEncProxyKeys is startMyEncProxyWith with the data keys created
// from keySpecs instead of from specs (for example a legacy algorithm);
// tweaks change the interceptor's options.
func startMyEncProxyKeys(t testing.TB, ddl []string, specs []rules.Spec, catalog func(*testenv.MariaDB) mysqlsql.Catalog, keySpecs []keys.Spec, tweaks ...func(*mycrypt.Options)) *myEncEnv {
	t.Helper()
	ctx := context.Background()
	db := testenv.StartMariaDB(t)
	for i := range specs {
		specs[i].Database = db.Database
	}
	mgr := testkeys.Manager(t, keySpecs...)
	set, err := rules.New(rules.DialectMySQL, specs)
	if err != nil {
		t.Fatal(err)
	}
	direct := openDB(t, myConfigAt(t, db.Addr(), db.User, db.Password, db.Database))
	for _, q := range ddl {
		if _, err := direct.ExecContext(ctx, q); err != nil {
			t.Fatalf("ddl: %v", err)
		}
	}
	opts := mycrypt.Options{Rules: set, Keys: mgr, Logger: slog.New(slog.DiscardHandler)}
	if catalog != nil {
		cat := catalog(db)
		opts.Catalog = cat
		if zones, ok := cat.(mycrypt.ZoneSource); ok {
			opts.Zones = zones // as cmd/dbproxy wires the catalog connection
		}
		if lex, ok := cat.(mycrypt.LexSource); ok {
			opts.Lex = lex
		}
	}
	for _, tweak := range tweaks {
		tweak(&opts)
	}
	ic, err := mycrypt.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	p := startMyProxy(t, db, myProxyOpts{Interceptor: ic})
	return &myEncEnv{db: db, proxy: p, mgr: mgr, direct: direct, specs: specs}
}

// rawRows reads every row of table directly, each column as raw bytes.
func (e *myEncEnv) rawRows(t testing.TB, table string) [][][]byte {
	t.Helper()
	rows, err := e.direct.QueryContext(context.Background(), "SELECT * FROM `"+table+"`")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	cols, _ := rows.Columns()
	var out [][][]byte
	for rows.Next() {
		vals := make([]sql.RawBytes, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			t.Fatal(err)
		}
		row := make([][]byte, len(cols))
		for i, v := range vals {
			if v != nil {
				row[i] = append([]byte{}, v...)
			}
		}
		out = append(out, row)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// myByteColumn reads the one column query selects, as stored: nil for
// NULL.
func myByteColumn(t testing.TB, db *sql.DB, query string) [][]byte {
	t.Helper()
	rows, err := db.QueryContext(context.Background(), query)
	if err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	defer rows.Close()
	var out [][]byte
	for rows.Next() {
		var b []byte
		if err := rows.Scan(&b); err != nil {
			t.Fatal(err)
		}
		out = append(out, b)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// checkAtRest asserts that every non-NULL value of every configured column
// is a ciphertext of the configured algorithm and type, and that none of
// the plaintexts occurs anywhere in the raw tables.
func (e *myEncEnv) checkAtRest(t testing.TB, plaintexts []string) {
	t.Helper()
	tables := checkColumnCiphertexts(t, e.specs, func(table, column string) [][]byte {
		return myByteColumn(t, e.direct, fmt.Sprintf("SELECT `%s` FROM `%s`", column, table))
	})
	for table := range tables {
		for _, row := range e.rawRows(t, table) {
			all := bytes.Join(row, []byte{0})
			for _, p := range plaintexts {
				if bytes.Contains(all, []byte(p)) {
					t.Errorf("table %s holds plaintext %q", table, p)
				}
			}
		}
	}
}

// wantRefused asserts err is the proxy's refusal naming want.
func wantRefused(t testing.TB, err error, want string) {
	t.Helper()
	var me *driver.MySQLError
	if !errors.As(err, &me) {
		t.Fatalf("want a refusal ERR, got %v", err)
	}
	if me.Number != 1235 || !strings.Contains(me.Message, want) {
		t.Fatalf("got ERR %d %q, want 1235 mentioning %q", me.Number, me.Message, want)
	}
}

// cryptoHeader returns the key version of a ciphertext.
func cryptoHeader(ct []byte) (uint32, error) {
	h, err := crypto.ParseHeader(ct)
	if err != nil {
		return 0, err
	}
	return h.KeyVersion, nil
}
