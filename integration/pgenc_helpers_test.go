package integration

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/dbproxy/dbproxy/crypto"
	"github.com/dbproxy/dbproxy/crypto/keys"
	"github.com/dbproxy/dbproxy/internal/testenv"
	"github.com/dbproxy/dbproxy/internal/testkeys"
	"github.com/dbproxy/dbproxy/proxy/postgres/pgcrypt"
	"github.com/dbproxy/dbproxy/rules"
	"github.com/dbproxy/dbproxy/value"
)

// encEnv is a PostgreSQL database behind an encrypting proxy.
type encEnv struct {
	pg     *testenv.Postgres
	proxy  *pgProxy
	mgr    *keys.Manager
	direct *pgx.Conn // straight to the database, bypassing the proxy
	specs  []rules.Spec
}

// encSpec is a short way to write a rule for schema public.
func encSpec(table, column string, mode rules.Mode, typ value.Type, key string) rules.Spec {
	return rules.Spec{Schema: "public", Table: table, Column: column, Mode: mode, Type: typ, Key: key}
}

// typedColumn names the column of a typed table holding typ encrypted in
// mode.
func typedColumn(typ value.Type, mode rules.Mode) string {
	return fmt.Sprintf("c_%s_%s", typ, mode)
}

// typedTable returns the DDL of table with the columns head and, for each
// of n types (typ(i)), a bytea column per mode (typedColumn), and the rules
// of those columns.
func typedTable(table, head string, n int, typ func(i int) value.Type) (string, []rules.Spec) {
	var ddl strings.Builder
	fmt.Fprintf(&ddl, "CREATE TABLE %s (%s", table, head)
	var specs []rules.Spec
	for i := range n {
		for _, mode := range []rules.Mode{rules.ModeRandomized, rules.ModeDeterministic} {
			col := typedColumn(typ(i), mode)
			fmt.Fprintf(&ddl, ", %s bytea", col)
			specs = append(specs, encSpec(table, col, mode, typ(i), col))
		}
	}
	ddl.WriteString(")")
	return ddl.String(), specs
}

// startEncProxy creates the tables (ddl, run directly), a local master key,
// a file keystore with every data key of specs, and a proxy encrypting per
// specs.
func startEncProxy(t testing.TB, ddl string, specs []rules.Spec) *encEnv {
	t.Helper()
	return startEncProxyKeys(t, ddl, specs, testkeys.ForRules(specs))
}

// startEncProxyKeys is startEncProxy with the data keys created from
// keySpecs instead of from specs (for example a legacy algorithm); tweaks
// change the interceptor's options.
func startEncProxyKeys(t testing.TB, ddl string, specs []rules.Spec, keySpecs []keys.Spec, tweaks ...func(*pgcrypt.Options)) *encEnv {
	t.Helper()
	ctx := context.Background()
	pg := testenv.StartPostgres(t)
	mgr := testkeys.Manager(t, keySpecs...)
	direct := testenv.ConnectPG(t, pg.DSN())
	if ddl != "" {
		if _, err := direct.Exec(ctx, ddl); err != nil {
			t.Fatalf("ddl: %v", err)
		}
	}
	ic := pgEncInterceptor(t, pg, specs, mgr, func(o *pgcrypt.Options) {
		for _, tweak := range tweaks {
			tweak(o)
		}
	})
	p := startPGProxy(t, pg, proxyOpts{Interceptor: ic})
	return &encEnv{pg: pg, proxy: p, mgr: mgr, direct: direct, specs: specs}
}

// pgEncInterceptor returns an interceptor encrypting per specs with the
// data keys of mgr, whose catalog logs in to pg as pg's user; tweak, if
// not nil, changes its options first. It is closed when the test ends.
func pgEncInterceptor(t testing.TB, pg *testenv.Postgres, specs []rules.Spec, mgr *keys.Manager, tweak func(*pgcrypt.Options)) *pgcrypt.Interceptor {
	t.Helper()
	set, err := rules.New(rules.DialectPostgres, specs)
	if err != nil {
		t.Fatal(err)
	}
	opts := pgcrypt.Options{
		Rules:     set,
		Encryptor: rules.NewEncryptor(mgr),
		Connect: func(ctx context.Context, database, user string) (*pgx.Conn, error) {
			return pgx.Connect(ctx, pg.DSN())
		},
		Logger: slog.New(slog.DiscardHandler),
	}
	if tweak != nil {
		tweak(&opts)
	}
	ic, err := pgcrypt.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ic.Close)
	return ic
}

// connectMode connects through the proxy with the given exec mode.
func (e *encEnv) connectMode(t testing.TB, mode pgx.QueryExecMode) *pgx.Conn {
	t.Helper()
	return connectMode(t, e.proxy.DSN("disable"), mode)
}

// rawColumn reads one column of every row directly (ciphertext at rest).
func (e *encEnv) rawColumn(t testing.TB, table, column string) [][]byte {
	t.Helper()
	rows, err := e.direct.Query(context.Background(),
		fmt.Sprintf("SELECT %s FROM %s", pgx.Identifier{column}.Sanitize(), pgx.Identifier{table}.Sanitize()))
	if err != nil {
		t.Fatal(err)
	}
	vals, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) ([]byte, error) {
		var b []byte
		err := r.Scan(&b)
		return b, err
	})
	if err != nil {
		t.Fatal(err)
	}
	return vals
}

// checkAtRest asserts that every non-NULL value of every configured column
// is a valid ciphertext of the configured algorithm and type, and that
// none of the plaintexts occurs in the raw table (as bytes or text).
func (e *encEnv) checkAtRest(t testing.TB, plaintexts []string) {
	t.Helper()
	tables := checkColumnCiphertexts(t, e.specs, func(table, column string) [][]byte {
		return e.rawColumn(t, table, column)
	})
	for table := range tables {
		var dump string
		if err := e.direct.QueryRow(context.Background(),
			fmt.Sprintf("SELECT coalesce(string_agg(t::text, '|'), '') FROM %s t", pgx.Identifier{table}.Sanitize())).Scan(&dump); err != nil {
			t.Fatal(err)
		}
		var raw bytes.Buffer
		for _, sp := range e.specs {
			if sp.Table == table {
				for _, v := range e.rawColumn(t, sp.Table, sp.Column) {
					raw.Write(v)
					raw.WriteByte(0)
				}
			}
		}
		for _, p := range plaintexts {
			if len(p) < 4 {
				continue // too short to scan for meaningfully
			}
			if strings.Contains(dump, p) || bytes.Contains(raw.Bytes(), []byte(p)) {
				t.Errorf("leak: plaintext %q found in table %s", p, table)
			}
		}
	}
}

// checkCiphertext reports a value stored in sp's column (either protocol)
// that is not a ciphertext of sp's algorithm and type under a key version.
// checkColumnCiphertexts asserts that every non-NULL value rawColumn reads
// from a column of specs is a ciphertext of the spec's algorithm and type.
// It returns the tables of specs.
func checkColumnCiphertexts(t testing.TB, specs []rules.Spec, rawColumn func(table, column string) [][]byte) map[string]bool {
	t.Helper()
	tables := map[string]bool{}
	for _, sp := range specs {
		tables[sp.Table] = true
		for _, ct := range rawColumn(sp.Table, sp.Column) {
			if ct != nil {
				checkCiphertext(t, sp, ct)
			}
		}
	}
	return tables
}

func checkCiphertext(t testing.TB, sp rules.Spec, ct []byte) {
	t.Helper()
	h, err := crypto.ParseHeader(ct)
	if err != nil {
		t.Errorf("%s.%s: stored value is not a ciphertext: %v", sp.Table, sp.Column, err)
		return
	}
	if h.Algorithm != sp.Mode.Algorithm() || h.Type != sp.Type || h.KeyVersion == 0 {
		t.Errorf("%s.%s: header %+v, want algorithm %v type %v", sp.Table, sp.Column, h, sp.Mode.Algorithm(), sp.Type)
	}
}

// tableDump returns the raw text of a table, to check it did not change.
func (e *encEnv) tableDump(t testing.TB, table string) string {
	t.Helper()
	var dump string
	if err := e.direct.QueryRow(context.Background(),
		fmt.Sprintf("SELECT coalesce(string_agg(t::text, '|' ORDER BY t::text), '') FROM %s t", pgx.Identifier{table}.Sanitize())).Scan(&dump); err != nil {
		t.Fatal(err)
	}
	return dump
}
