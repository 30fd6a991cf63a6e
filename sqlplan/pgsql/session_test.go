package pgsql_test

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/dbproxy/dbproxy/crypto"
	"github.com/dbproxy/dbproxy/internal/testkeys"
	"github.com/dbproxy/dbproxy/rules"
	"github.com/dbproxy/dbproxy/sqlplan"
	"github.com/dbproxy/dbproxy/sqlplan/pgsql"
	"github.com/dbproxy/dbproxy/value"
)

func TestPrepareExecute(t *testing.T) {
	ctx := context.Background()
	p := newPlanner(t, nil)
	const e = "users_email"
	var sess pgsql.Prepared

	// run plans and rewrites sql, then commits every statement as if each
	// had completed.
	run := func(t *testing.T, sql string) (string, *pgsql.Plan, error) {
		t.Helper()
		pl, err := p.Plan(ctx, sql, "")
		if err != nil {
			return "", nil, err
		}
		out, err := rewrite(t, pl, sql, &sess)
		if err != nil {
			return "", pl, err
		}
		for i := range pl.Statements {
			sess.Commit(&pl.Statements[i])
		}
		return out, pl, nil
	}
	steps := []struct {
		name, sql, want string
		refuse          string
	}{
		{"prepare with declared types", "PREPARE ins(int, text, text) AS INSERT INTO users (id, email, ssn) VALUES ($1, $2, $3)",
			"PREPARE ins(int, bytea, bytea) AS INSERT INTO users (id, email, ssn) VALUES ($1, $2, $3)", ""},
		{"execute stores", "EXECUTE ins(1, 'a@x', 'secret')",
			"EXECUTE ins(1, " + st(e, "a@x") + ", " + st("users_ssn", "secret") + ")", ""},
		{"execute with null and typed literal", "EXECUTE ins(2, NULL, 's'::text)",
			"EXECUTE ins(2, NULL, " + st("users_ssn", "s") + ")", ""},
		{"execute with an expression for an encrypted parameter", "EXECUTE ins(3, lower('A'), 'x')", "", "must be a constant"},
		{"prepare lookup without types", "PREPARE look AS SELECT * FROM users WHERE email = $1 AND age = ANY($2)",
			"PREPARE look AS SELECT * FROM users WHERE (email = ANY($1::bytea[])) AND (age = ANY($2::bytea[]))", ""},
		{"execute lookup", "EXECUTE look('a@x', ARRAY[1, NULL, 2])",
			"EXECUTE look(ARRAY[" + m(e, "a@x") + "]::bytea[], ARRAY[" + m("users_age", "00000001") + ", " + m("users_age", "00000002") + ", NULL]::bytea[])", ""},
		{"execute lookup with a string array", "EXECUTE look('a@x', '{1,2}')", "", "must be ARRAY"},
		{"execute lookup with an array for a scalar", "EXECUTE look(ARRAY['a'], ARRAY[1])", "", "is an array"},
		{"prepare plain statement", "PREPARE plain AS SELECT * FROM items WHERE id = $1", "=", ""},
		{"execute plain statement", "EXECUTE plain(1)", "=", ""},
		{"deallocate", "DEALLOCATE ins", "=", ""},
		{"execute after deallocate", "EXECUTE ins(1, 'a', 'b')", "", "not known to the proxy"},
		{"unknown statement", "EXECUTE nope('secret')", "", "not known to the proxy"},
		{"prepare and execute in one string", "PREPARE one(text) AS SELECT * FROM users WHERE email = $1; EXECUTE one('z')",
			"PREPARE one(bytea[]) AS SELECT * FROM users WHERE (email = ANY($1::bytea[])); EXECUTE one(ARRAY[" + m(e, "z") + "]::bytea[])", ""},
		{"explain analyze execute", "EXPLAIN ANALYZE EXECUTE one('y')", "EXPLAIN ANALYZE EXECUTE one(ARRAY[" + m(e, "y") + "]::bytea[])", ""},
		{"discard all", "DISCARD ALL", "=", ""},
		{"execute after discard", "EXECUTE one('z')", "", "not known to the proxy"},
		{"deallocate all then execute in one string", "PREPARE two AS SELECT 1; DEALLOCATE ALL; EXECUTE two", "", "not known to the proxy"},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			got, _, err := run(t, s.sql)
			if s.refuse != "" {
				var r *sqlplan.Refusal
				if !errors.As(err, &r) || !strings.Contains(r.Reason, s.refuse) {
					t.Fatalf("got %v, want refusal %q", err, s.refuse)
				}
				if strings.Contains(r.Error(), "secret") {
					t.Fatalf("refusal contains a value: %q", r.Error())
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			want := s.want
			if want == "=" {
				want = s.sql
			}
			if got != want {
				t.Fatalf("\n got: %s\nwant: %s", got, want)
			}
		})
	}
	t.Run("prepared params", func(t *testing.T) {
		var fresh pgsql.Prepared
		pl, err := p.Plan(ctx, "PREPARE q(text[]) AS SELECT * FROM users WHERE email = ANY($1) AND id = $2", "")
		if err != nil {
			t.Fatal(err)
		}
		fresh.Commit(&pl.Statements[0])
		ps, ok := fresh.Lookup("q")
		if !ok {
			t.Fatal("not committed")
		}
		if got := describeParams(ps.Params); !slices.Equal(got, []string{"match-array public.users.email", "plain"}) {
			t.Fatalf("params = %q", got)
		}
		if !strings.Contains(mustRewrite(t, pl, "PREPARE q(text[]) AS SELECT * FROM users WHERE email = ANY($1) AND id = $2"), "PREPARE q(bytea[])") {
			t.Fatal("declared array type not rewritten")
		}
	})
	t.Run("protocol-level statements share the namespace", func(t *testing.T) {
		var fresh pgsql.Prepared
		pl, err := p.Plan(ctx, "INSERT INTO users (email) VALUES ($1)", "")
		if err != nil {
			t.Fatal(err)
		}
		fresh.Add("stmt1", pl.Params)
		pl2, err := p.Plan(ctx, "EXECUTE stmt1('v')", "")
		if err != nil {
			t.Fatal(err)
		}
		got, err := rewrite(t, pl2, "EXECUTE stmt1('v')", &fresh)
		if err != nil || got != "EXECUTE stmt1("+st(e, "v")+")" {
			t.Fatalf("got %q, %v", got, err)
		}
		fresh.Remove("stmt1")
		if _, err := rewrite(t, pl2, "EXECUTE stmt1('v')", &fresh); err == nil {
			t.Fatal("removed statement still executable")
		}
	})
}

func mustRewrite(t *testing.T, pl *pgsql.Plan, sql string) string {
	t.Helper()
	out, err := rewrite(t, pl, sql, nil)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestCopyPlans(t *testing.T) {
	ctx := context.Background()
	p := newPlanner(t, nil)
	email := func() *rules.ColumnRule { return p.Rules().Column("app", "public", "users", "email") }
	ssn := func() *rules.ColumnRule { return p.Rules().Column("app", "public", "users", "ssn") }
	tests := []struct {
		name, sql string
		kind      pgsql.StmtKind
		format    pgsql.CopyFormat
		fields    []string // name:column-or-dash
		rewritten string   // "" = unchanged
		check     func(t *testing.T, c *pgsql.Copy)
	}{
		{name: "from stdin without column list", sql: "COPY users FROM STDIN", kind: pgsql.KindCopyFrom, format: pgsql.CopyText,
			fields:    []string{"id:-", "email:public.users.email", "ssn:public.users.ssn", "age:public.users.age", "salary:public.users.salary", "name:-"},
			rewritten: `COPY users ("id", "email", "ssn", "age", "salary", "name") FROM STDIN`,
			check: func(t *testing.T, c *pgsql.Copy) {
				if c.Delimiter != "\t" || c.Null != `\N` || c.Header {
					t.Errorf("text defaults wrong: %+v", c)
				}
			}},
		{name: "csv with options", sql: "COPY users (email, name) FROM STDIN WITH (FORMAT csv, HEADER, FORCE_NOT_NULL (email), FORCE_NULL (name), NULL 'NUL', DELIMITER ';', DEFAULT 'D')",
			kind: pgsql.KindCopyFrom, format: pgsql.CopyCSV, fields: []string{"email:public.users.email", "name:-"},
			check: func(t *testing.T, c *pgsql.Copy) {
				if c.Delimiter != ";" || c.Null != "NUL" || c.Quote != `"` || c.Escape != `"` || !c.Header || c.Default != "D" {
					t.Errorf("csv options wrong: %+v", c)
				}
				if !c.Fields[0].ForceNotNull || c.Fields[0].ForceNull || !c.Fields[1].ForceNull {
					t.Errorf("force flags wrong: %+v", c.Fields)
				}
			}},
		{name: "old syntax csv header", sql: "COPY users (ssn) TO STDOUT CSV HEADER FORCE QUOTE *", kind: pgsql.KindCopyTo, format: pgsql.CopyCSV,
			fields: []string{"ssn:public.users.ssn"},
			check: func(t *testing.T, c *pgsql.Copy) {
				if !c.Header || !c.Fields[0].ForceQuote {
					t.Errorf("options wrong: %+v %+v", c, c.Fields)
				}
			}},
		{name: "binary", sql: "COPY users (email) FROM STDIN (FORMAT binary)", kind: pgsql.KindCopyFrom, format: pgsql.CopyBinary,
			fields: []string{"email:public.users.email"}},
		{name: "to stdout", sql: "COPY public.users (email, name) TO STDOUT", kind: pgsql.KindCopyTo, format: pgsql.CopyText,
			fields: []string{"email:public.users.email", "name:-"}},
		{name: "query", sql: "COPY (SELECT name, email FROM users WHERE email = 'x') TO STDOUT (FORMAT csv)", kind: pgsql.KindCopyTo, format: pgsql.CopyCSV,
			fields: []string{"name:-", "email:public.users.email"}, rewritten: "COPY (SELECT name, email FROM users WHERE " + in("email", "users_email", "x") + ") TO STDOUT (FORMAT csv)"},
		{name: "query star", sql: "COPY (SELECT * FROM admins) TO STDOUT", kind: pgsql.KindCopyTo, format: pgsql.CopyText,
			fields: []string{"id:-", "email:public.admins.email", "ssn:public.admins.ssn", "name:-"}},
		{name: "query union decrypts by provenance", sql: "COPY (SELECT email FROM users UNION ALL SELECT email FROM admins) TO STDOUT", kind: pgsql.KindCopyTo,
			format: pgsql.CopyText, fields: []string{"email:public.users.email"}},
		{name: "where clause", sql: "COPY users (email) FROM STDIN WHERE email = 'x'", kind: pgsql.KindCopyFrom, format: pgsql.CopyText,
			fields: []string{"email:public.users.email"}, rewritten: "COPY users (email) FROM STDIN WHERE " + in("email", "users_email", "x")},
		{name: "plain table", sql: "COPY items FROM STDIN", kind: pgsql.KindPass},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pl, err := p.Plan(ctx, tt.sql, "")
			if err != nil {
				t.Fatal(err)
			}
			if tt.kind == pgsql.KindPass {
				if !pl.Passthrough() {
					t.Fatal("plan is not passthrough")
				}
				return
			}
			s := pl.Statements[0]
			if s.Kind != tt.kind {
				t.Fatalf("kind = %s, want %s", s.Kind, tt.kind)
			}
			if tt.kind == pgsql.KindPass {
				return
			}
			c := s.Copy
			if c.Format != tt.format {
				t.Errorf("format = %s, want %s", c.Format, tt.format)
			}
			var got []string
			for _, f := range c.Fields {
				col := "-"
				if f.Column != nil {
					col = f.Column.String()
				}
				got = append(got, f.Name+":"+col)
			}
			if !slices.Equal(got, tt.fields) {
				t.Errorf("fields = %q, want %q", got, tt.fields)
			}
			want := tt.rewritten
			if want == "" {
				want = tt.sql
			}
			if out := mustRewrite(t, pl, tt.sql); out != want {
				t.Errorf("rewrite\n got: %s\nwant: %s", out, want)
			}
			if tt.check != nil {
				tt.check(t, c)
			}
		})
	}
	if email() == nil || ssn() == nil {
		t.Fatal("rules lookup broken")
	}
}

func TestParamDescription(t *testing.T) {
	p := newPlanner(t, nil)
	pl, err := p.Plan(context.Background(), "UPDATE users SET ssn = $1 WHERE email = $2 AND age = ANY($3) AND id = $4", "")
	if err != nil {
		t.Fatal(err)
	}
	want := []struct {
		role   sqlplan.Role
		oid    uint32
		client value.Type
		array  bool
	}{
		{sqlplan.RoleStore, pgsql.OIDBytea, value.TypeText, false},
		{sqlplan.RoleMatch, pgsql.OIDByteaArray, value.TypeText, false},
		{sqlplan.RoleMatchArray, pgsql.OIDByteaArray, value.TypeInt, true},
		{sqlplan.RolePlain, 0, value.TypeUnknown, false},
	}
	if len(pl.Params) != len(want) {
		t.Fatalf("%d params, want %d", len(pl.Params), len(want))
	}
	for i, w := range want {
		got := pl.Params[i]
		if got.Role != w.role || pgsql.UpstreamOID(got) != w.oid || got.ClientType() != w.client || got.ClientArray() != w.array || got.Encrypted() != (w.role != sqlplan.RolePlain) {
			t.Errorf("$%d = %+v (oid %d, client %s)", i+1, got, pgsql.UpstreamOID(got), got.ClientType())
		}
	}
	if pl.Passthrough() {
		t.Error("a plan with encrypted parameters is not passthrough")
	}
}

func TestRotationMatchesEveryLiveVersion(t *testing.T) {
	ctx := context.Background()
	set := mustRules(t, testSpecs()...)
	p := plannerWith(t, pgsql.Options{Rules: set, Database: "app"})
	keys := &memKeys{}
	keys.rotate(t, "users_email", crypto.AlgorithmAESSIV)
	enc := rules.NewEncryptor(keys)
	col := set.Column("app", "public", "users", "email")
	old, err := enc.EncryptForStore(ctx, col, []byte("a@x"))
	if err != nil {
		t.Fatal(err)
	}
	keys.rotate(t, "users_email", crypto.AlgorithmAESSIV)
	keys.rotate(t, "users_email", crypto.AlgorithmAESSIV)

	sql := "SELECT id FROM users WHERE email = 'a@x'"
	pl, err := p.Plan(ctx, sql, "")
	if err != nil {
		t.Fatal(err)
	}
	out, err := pl.Rewrite(ctx, nil, sql, pgsql.Env{Encrypter: enc})
	if err != nil {
		t.Fatal(err)
	}
	cts := byteaRE.FindAllStringSubmatch(string(out), -1)
	if len(cts) != 3 {
		t.Fatalf("rewritten lookup %s has %d ciphertexts, want one per live version (3)", out, len(cts))
	}
	var found bool
	for i, c := range cts {
		ct, _ := hex.DecodeString(c[1])
		h, err := crypto.ParseHeader(ct)
		if err != nil || h.KeyVersion != uint32(3-i) {
			t.Errorf("ciphertext %d: version %d, err %v (want newest first)", i, h.KeyVersion, err)
		}
		pt, err := enc.Decrypt(ctx, col, ct)
		if err != nil || string(pt) != "a@x" {
			t.Errorf("ciphertext %d decrypts to %q, %v", i, pt, err)
		}
		found = found || bytes.Equal(ct, old)
	}
	if !found {
		t.Error("the lookup does not match the row written under version 1")
	}
	if bytes.Contains(out, []byte("a@x")) {
		t.Error("the rewritten SQL contains the plaintext")
	}

	ins := "INSERT INTO users (email, ssn) VALUES ('b@x', 'secret-ssn')"
	keys.rotate(t, "users_ssn", crypto.AlgorithmAESGCM)
	pl, err = p.Plan(ctx, ins, "")
	if err != nil {
		t.Fatal(err)
	}
	out, err = pl.Rewrite(ctx, nil, ins, pgsql.Env{Encrypter: enc})
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(out, []byte("b@x")) || bytes.Contains(out, []byte("secret-ssn")) {
		t.Fatalf("plaintext in rewritten INSERT: %s", out)
	}
	cts = byteaRE.FindAllStringSubmatch(string(out), -1)
	if len(cts) != 2 {
		t.Fatalf("INSERT has %d ciphertexts, want 2", len(cts))
	}
	for i, want := range []crypto.Algorithm{crypto.AlgorithmAESSIV, crypto.AlgorithmAESGCM} {
		ct, _ := hex.DecodeString(cts[i][1])
		if h, err := crypto.ParseHeader(ct); err != nil || h.Algorithm != want || (i == 0 && h.KeyVersion != 3) {
			t.Errorf("stored ciphertext %d: %+v, %v", i, h, err)
		}
	}
}

// memKeys is a minimal rules.Keys.
type memKeys struct{ v map[string][]*crypto.Key }

func (k *memKeys) rotate(t *testing.T, name string, alg crypto.Algorithm) {
	t.Helper()
	if k.v == nil {
		k.v = map[string][]*crypto.Key{}
	}
	k.v[name] = append(k.v[name], testkeys.RandomKey(t, name, uint32(len(k.v[name])+1), alg))
}

func (k *memKeys) Primary(_ context.Context, name string) (*crypto.Key, error) {
	v := k.v[name]
	if len(v) == 0 {
		return nil, fmt.Errorf("no key %q", name)
	}
	return v[len(v)-1], nil
}

func (k *memKeys) Live(_ context.Context, name string) ([]*crypto.Key, error) {
	v := slices.Clone(k.v[name])
	slices.Reverse(v)
	return v, nil
}

func (k *memKeys) Decrypt(_ context.Context, name string, dst, ct []byte) ([]byte, value.Type, error) {
	h, err := crypto.ParseHeader(ct)
	if err != nil {
		return nil, 0, err
	}
	v := k.v[name]
	if int(h.KeyVersion) > len(v) || h.KeyVersion == 0 {
		return nil, 0, fmt.Errorf("no version %d", h.KeyVersion)
	}
	return v[h.KeyVersion-1].Decrypt(dst, ct)
}
