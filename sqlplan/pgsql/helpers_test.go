package pgsql_test

import (
	"context"
	"encoding/hex"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/dbproxy/dbproxy/rules"
	"github.com/dbproxy/dbproxy/sqlplan"
	"github.com/dbproxy/dbproxy/sqlplan/pgsql"
	"github.com/dbproxy/dbproxy/value"
)

// publicSpec is the rule of column public.table.column under key.
func publicSpec(table, column, key string, mode rules.Mode, typ value.Type) rules.Spec {
	return rules.Spec{Schema: "public", Table: table, Column: column, Key: key, Mode: mode, Type: typ}
}

// testSpecs are the encryption rules of the tests.
func testSpecs() []rules.Spec {
	det := rules.ModeDeterministic
	rnd := rules.ModeRandomized
	return []rules.Spec{
		publicSpec("users", "email", "users_email", det, value.TypeText),
		publicSpec("users", "ssn", "users_ssn", rnd, value.TypeText),
		publicSpec("users", "age", "users_age", det, value.TypeInt),
		publicSpec("users", "salary", "users_salary", rnd, value.TypeBigint),
		publicSpec("admins", "email", "users_email", det, value.TypeText),
		publicSpec("admins", "ssn", "users_ssn", rnd, value.TypeText),
		publicSpec("orders", "card", "card", det, value.TypeText),
		publicSpec(`"Accounts"`, `"Secret"`, "acct", rnd, value.TypeText),
		{Schema: "app", Table: "users", Column: "email", Key: "app_email", Mode: det, Type: value.TypeText},
		publicSpec("docs", "flag", "flag", det, value.TypeBoolean),
		publicSpec("docs", "born", "born", det, value.TypeDate),
		publicSpec("docs", "at", "at", det, value.TypeTimestamptz),
		publicSpec("docs", "body", "body", rnd, value.TypeJSON),
		publicSpec("docs", "price", "price", det, value.TypeNumeric),
	}
}

// likeUsers returns the rules of public.users for the given columns, on
// public.table instead (a partition or child configured like it).
func likeUsers(table string, columns ...string) []rules.Spec {
	var out []rules.Spec
	for _, s := range testSpecs() {
		if s.Schema == "public" && s.Table == "users" && slices.Contains(columns, s.Column) {
			s.Table = table
			out = append(out, s)
		}
	}
	return out
}

func mustRules(t testing.TB, specs ...rules.Spec) *rules.Set {
	t.Helper()
	s, err := rules.New(rules.DialectPostgres, specs)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// oneTextRule is a rule set of one text column, database.schema.table.column,
// under key "k".
func oneTextRule(t testing.TB, mode rules.Mode, database, schema, table, column string) *rules.Set {
	t.Helper()
	return mustRules(t, rules.Spec{Database: database, Schema: schema, Table: table, Column: column, Key: "k", Mode: mode, Type: value.TypeText})
}

// fakeCatalog is an in-memory Catalog. Resolve substitutes "$user" with
// user and checks pg_temp first, as PostgreSQL does.
type fakeCatalog struct {
	tables map[string][]string // "schema.table" -> columns
	user   string
	calls  atomic.Int64
}

func newFakeCatalog() *fakeCatalog {
	return &fakeCatalog{user: "alice", tables: map[string][]string{
		"public.users":        {"id", "email", "ssn", "age", "salary", "name"},
		"public.admins":       {"id", "email", "ssn", "name"},
		"public.orders":       {"id", "user_id", "card", "total"},
		"public.items":        {"id", "name", "price"},
		"public.plain_emails": {"id", "email"},
		"public.Accounts":     {"id", "Secret"},
		"public.docs":         {"id", "flag", "born", "at", "body", "price"},
		"app.users":           {"id", "email"},
		"bob.users":           {"id", "email"},
		"app.logs":            {"id", "msg"},
	}}
}

func (c *fakeCatalog) Resolve(_ context.Context, searchPath []string, table string) (string, error) {
	c.calls.Add(1)
	for _, s := range searchPath {
		if s == "$user" {
			s = c.user
		}
		if _, ok := c.tables[s+"."+table]; ok {
			return s, nil
		}
	}
	return "", nil
}

func (c *fakeCatalog) Columns(_ context.Context, schema, table string) ([]string, error) {
	c.calls.Add(1)
	cols, ok := c.tables[schema+"."+table]
	if !ok {
		return nil, fmt.Errorf("relation %s.%s does not exist", schema, table)
	}
	return cols, nil
}

func (c *fakeCatalog) CreationSchema(_ context.Context, searchPath []string) (string, error) {
	c.calls.Add(1)
	for i, s := range searchPath {
		if s == "pg_temp" && i == 0 {
			return s, nil
		}
		if s == "$user" {
			s = c.user
		}
		for k := range c.tables {
			if strings.HasPrefix(k, s+".") {
				return s, nil
			}
		}
	}
	return "", nil
}

func newPlanner(t testing.TB, cat pgsql.Catalog) *pgsql.Planner {
	t.Helper()
	return plannerWith(t, pgsql.Options{Database: "app", Catalog: cat})
}

// plannerWith returns a planner with opts, taking the rules of testSpecs
// and a fresh fakeCatalog where opts has none.
func plannerWith(t testing.TB, opts pgsql.Options) *pgsql.Planner {
	t.Helper()
	if opts.Rules == nil {
		opts.Rules = mustRules(t, testSpecs()...)
	}
	if opts.Catalog == nil {
		opts.Catalog = newFakeCatalog()
	}
	p, err := pgsql.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// fakeEncrypter makes readable "ciphertexts": store:<column>:<canon>,
// and for matches one per live version, v2 first.
type fakeEncrypter struct{ versions int }

func showCanon(col *rules.ColumnRule, canon []byte) string {
	if col.Type == value.TypeText || col.Type == value.TypeJSON || col.Type == value.TypeNumeric {
		return string(canon)
	}
	return hex.EncodeToString(canon)
}

func (f fakeEncrypter) AppendStore(_ context.Context, dst []byte, col *rules.ColumnRule, canon []byte) ([]byte, error) {
	return append(dst, "store:"+col.Key+":"+showCanon(col, canon)...), nil
}

func (f fakeEncrypter) AppendMatch(_ context.Context, buf []byte, cts [][]byte, col *rules.ColumnRule, canon []byte) ([]byte, [][]byte, error) {
	n := f.versions
	if n == 0 {
		n = 2
	}
	for v := n; v >= 1; v-- {
		start := len(buf)
		buf = fmt.Appendf(buf, "v%d:%s:%s", v, col.Key, showCanon(col, canon))
		cts = append(cts, buf[start:len(buf):len(buf)])
	}
	return buf, cts, nil
}

var byteaRE = regexp.MustCompile(`'\\x([0-9a-f]*)'::bytea`)

// readable replaces '\x…'::bytea constants made by fakeEncrypter with
// CT(<plaintext of the fake ciphertext>).
func readable(sql string) string {
	return byteaRE.ReplaceAllStringFunc(sql, func(m string) string {
		h := byteaRE.FindStringSubmatch(m)[1]
		b, err := hex.DecodeString(h)
		if err != nil {
			return m
		}
		return "CT(" + string(b) + ")"
	})
}

// describeParams renders plan params as "plain", "store public.users.email", …
func describeParams(ps []sqlplan.Param) []string {
	var out []string
	for _, p := range ps {
		if p.Column == nil {
			out = append(out, p.Role.String())
			continue
		}
		out = append(out, p.Role.String()+" "+p.Column.String())
	}
	return out
}

// rewrite renders a plan with the fake encrypter.
func rewrite(t testing.TB, pl *pgsql.Plan, sql string, prepared *pgsql.Prepared) (string, error) {
	t.Helper()
	out, err := pl.Rewrite(context.Background(), nil, sql, pgsql.Env{Encrypter: fakeEncrypter{}, Prepared: prepared})
	if err != nil {
		return "", err
	}
	return readable(string(out)), nil
}

func kinds(pl *pgsql.Plan) string {
	var ks []string
	for _, st := range pl.Statements {
		ks = append(ks, st.Kind.String())
	}
	return strings.Join(ks, ",")
}

// wantForwarded asserts that every one of sqls, under searchPath, is
// planned without a refusal and without an edit.
func wantForwarded(t *testing.T, p *pgsql.Planner, searchPath string, sqls ...string) {
	t.Helper()
	for _, sql := range sqls {
		pl, err := p.Plan(context.Background(), sql, searchPath)
		if err != nil {
			t.Errorf("Plan(%q): %v", sql, err)
			continue
		}
		if pl.HasEdits() {
			t.Errorf("Plan(%q) edits a statement that stores nothing", sql)
		}
	}
}
