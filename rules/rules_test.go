package rules_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/dbproxy/dbproxy/rules"
	"github.com/dbproxy/dbproxy/value"
)

func pgSpecs() []rules.Spec {
	return []rules.Spec{
		{Schema: "public", Table: "users", Column: "email", Key: "users_email", Mode: rules.ModeDeterministic, Type: value.TypeText},
		{Schema: "public", Table: "users", Column: "ssn", Key: "public.users.ssn", Mode: rules.ModeRandomized, Type: value.TypeText},
		{Table: "Admins", Column: "Email", Key: "users_email", Mode: rules.ModeDeterministic, Type: value.TypeText},
		{Schema: `"Sales"`, Table: `"Orders"`, Column: `"Card"`, Key: "card", Mode: rules.ModeRandomized, Type: value.TypeText},
		{Database: "app", Schema: "public", Table: "salaries", Column: "amount", Key: "sal", Mode: rules.ModeRandomized, Type: value.TypeBigint},
		{Database: "other", Schema: "public", Table: "salaries", Column: "amount", Key: "sal_other", Mode: rules.ModeRandomized, Type: value.TypeBigint},
	}
}

func mustNew(t testing.TB, d rules.Dialect, specs []rules.Spec) *rules.Set {
	t.Helper()
	s, err := rules.New(d, specs)
	if err != nil {
		t.Fatalf("rules.New: %v", err)
	}
	return s
}

func TestNewRejects(t *testing.T) {
	good := rules.Spec{Table: "t", Column: "c", Key: "k", Mode: rules.ModeDeterministic, Type: value.TypeText}
	tests := []struct {
		name    string
		dialect rules.Dialect
		specs   []rules.Spec
		want    string
	}{
		{"unknown dialect", rules.DialectUnknown, []rules.Spec{good}, "unknown dialect"},
		{"no table", rules.DialectPostgres, []rules.Spec{{Column: "c", Key: "k", Mode: rules.ModeRandomized, Type: value.TypeText}}, "table and column are required"},
		{"no column", rules.DialectPostgres, []rules.Spec{{Table: "t", Key: "k", Mode: rules.ModeRandomized, Type: value.TypeText}}, "table and column are required"},
		{"no key", rules.DialectPostgres, []rules.Spec{{Table: "t", Column: "c", Mode: rules.ModeRandomized, Type: value.TypeText}}, "no data key name"},
		{"zero mode", rules.DialectPostgres, []rules.Spec{{Table: "t", Column: "c", Key: "k", Type: value.TypeText}}, "invalid mode"},
		{"zero type", rules.DialectPostgres, []rules.Spec{{Table: "t", Column: "c", Key: "k", Mode: rules.ModeRandomized}}, "invalid plaintext type"},
		{"duplicate after folding", rules.DialectPostgres, []rules.Spec{good, {Table: "T", Column: "C", Key: "k2", Mode: rules.ModeRandomized, Type: value.TypeText}}, "configured twice"},
		{"duplicate mysql", rules.DialectMySQL, []rules.Spec{good, {Table: "t", Column: "C", Key: "k2", Mode: rules.ModeRandomized, Type: value.TypeText}}, "configured twice"},
		{"key shared with other mode", rules.DialectPostgres, []rules.Spec{good, {Table: "u", Column: "c", Key: "k", Mode: rules.ModeRandomized, Type: value.TypeText}}, "must have the same mode and type"},
		{"key shared with other type", rules.DialectPostgres, []rules.Spec{good, {Table: "u", Column: "c", Key: "k", Mode: rules.ModeDeterministic, Type: value.TypeInt}}, "must have the same mode and type"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := rules.New(tt.dialect, tt.specs)
			if err == nil {
				t.Fatal("New succeeded")
			}
			if tt.dialect != rules.DialectUnknown && !errors.Is(err, rules.ErrInvalidSpec) {
				t.Errorf("error %v does not wrap ErrInvalidSpec", err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not contain %q", err, tt.want)
			}
		})
	}
}

func TestPostgresLookup(t *testing.T) {
	s := mustNew(t, rules.DialectPostgres, pgSpecs())
	tests := []struct {
		db, schema, table, column string
		want                      string // ColumnRule.String(), "" for nil
	}{
		{"app", "public", "users", "email", "public.users.email"},
		{"app", "public", "users", "ssn", "public.users.ssn"},
		{"app", "public", "users", "name", ""},
		{"app", "public", "users", "Email", ""}, // quoted "Email": exact compare
		{"app", "public", "Users", "email", ""}, // quoted "Users"
		{"app", "other", "users", "email", ""},
		{"app", "public", "admins", "email", "public.admins.email"}, // unquoted config name folded, schema defaults to public
		{"app", "public", "Admins", "Email", ""},
		{"app", "Sales", "Orders", "Card", "Sales.Orders.Card"}, // quoted config name kept exactly
		{"app", "sales", "orders", "card", ""},
		{"app", "public", "salaries", "amount", "public.salaries.amount"},
		{"nope", "public", "salaries", "amount", ""},
	}
	for _, tt := range tests {
		t.Run(tt.schema+"."+tt.table+"."+tt.column+"@"+tt.db, func(t *testing.T) {
			got := s.Column(tt.db, tt.schema, tt.table, tt.column)
			if tt.want == "" {
				if got != nil {
					t.Fatalf("Column = %s, want nil", got)
				}
				return
			}
			if got == nil || got.String() != tt.want {
				t.Fatalf("Column = %v, want %s", got, tt.want)
			}
		})
	}
	t.Run("database specific rule wins", func(t *testing.T) {
		if got := s.Column("other", "public", "salaries", "amount"); got == nil || got.Key != "sal_other" {
			t.Fatalf("Column in database other = %+v, want key sal_other", got)
		}
		if got := s.Column("app", "public", "salaries", "amount"); got == nil || got.Key != "sal" {
			t.Fatalf("Column in database app = %+v, want key sal", got)
		}
	})
	t.Run("similar", func(t *testing.T) {
		if got := s.Similar("app", "public", "Users"); got == nil || got.Table != "users" {
			t.Fatalf(`Similar("Users") = %v, want users`, got)
		}
		if got := s.Similar("app", "public", "users"); got != nil {
			t.Fatalf("Similar of an exact match = %v, want nil", got)
		}
		if got := s.Similar("app", "public", "people"); got != nil {
			t.Fatalf("Similar(people) = %v, want nil", got)
		}
		tr := s.Table("app", "public", "users")
		if got := tr.SimilarColumn("EMAIL"); got == nil || got.Column != "email" {
			t.Fatalf("SimilarColumn(EMAIL) = %v", got)
		}
		if got := tr.SimilarColumn("email"); got != nil {
			t.Fatalf("SimilarColumn(email) = %v, want nil (exact match)", got)
		}
	})
	t.Run("rule fields", func(t *testing.T) {
		c := s.Column("", "public", "users", "email")
		if c.Key != "users_email" || c.Mode != rules.ModeDeterministic || !c.Deterministic || c.Type != value.TypeText {
			t.Fatalf("rule = %+v", c)
		}
		if r := s.Column("", "public", "users", "ssn"); r.Deterministic || r.Mode != rules.ModeRandomized {
			t.Fatalf("ssn rule = %+v", r)
		}
	})
	t.Run("tables named", func(t *testing.T) {
		if !s.HasTableNamed("users") || s.HasTableNamed("Users") || s.HasTableNamed("people") {
			t.Fatal("HasTableNamed wrong")
		}
		if got := s.TablesNamed(nil, "salaries"); len(got) != 2 {
			t.Fatalf("TablesNamed(salaries) = %d rules, want 2", len(got))
		}
	})
}

func TestLongIdentifierTruncated(t *testing.T) {
	long := strings.Repeat("a", 70)
	s := mustNew(t, rules.DialectPostgres, []rules.Spec{{Table: long, Column: "c", Key: "k", Mode: rules.ModeRandomized, Type: value.TypeText}})
	if s.Table("", "public", long[:63]) == nil {
		t.Fatal("a 70-byte config name does not match its 63-byte truncation, as PostgreSQL would see it")
	}
}

func TestMySQLLookup(t *testing.T) {
	s := mustNew(t, rules.DialectMySQL, []rules.Spec{
		{Database: "App", Table: "Users", Column: "Email", Key: "k", Mode: rules.ModeDeterministic, Type: value.TypeText},
	})
	for _, name := range []string{"users", "USERS", "Users"} {
		if c := s.Column("app", "ignored", name, "EMAIL"); c == nil {
			t.Errorf("Column(app, %s, EMAIL) = nil", name)
		}
	}
	if c := s.Column("other", "", "users", "email"); c != nil {
		t.Errorf("rule for database App matched database other")
	}
	if s.Similar("app", "", "users") != nil {
		t.Error("Similar is PostgreSQL-only")
	}
	if got := s.Column("APP", "", strings.Repeat("x", 200), "email"); got != nil {
		t.Error("long name matched")
	}
}

func TestForDatabase(t *testing.T) {
	s := mustNew(t, rules.DialectPostgres, pgSpecs())
	app := s.ForDatabase("app")
	if got := app.Column("app", "public", "salaries", "amount"); got == nil || got.Key != "sal" {
		t.Fatalf("app set: salaries rule = %+v", got)
	}
	if n := len(app.Tables()); n != 4 {
		t.Fatalf("app set has %d tables, want 4 (users, admins, Sales.Orders, salaries@app)", n)
	}
	none := mustNew(t, rules.DialectPostgres, []rules.Spec{{Database: "x", Table: "t", Column: "c", Key: "k", Mode: rules.ModeRandomized, Type: value.TypeText}}).ForDatabase("y")
	if !none.Empty() || none.MayTouch("select * from t") {
		t.Fatal("rules of another database leaked into ForDatabase")
	}
}

func TestMayTouch(t *testing.T) {
	pg := mustNew(t, rules.DialectPostgres, []rules.Spec{
		{Table: "users", Column: "email", Key: "k", Mode: rules.ModeDeterministic, Type: value.TypeText},
		{Table: `"we""ird"`, Column: "c", Key: "k2", Mode: rules.ModeRandomized, Type: value.TypeText},
	})
	tests := []struct {
		sql  string
		want bool
	}{
		{"SELECT 1", false},
		{"SELECT * FROM orders WHERE id = 1", false},
		{"", false},
		{"select * from users", true},
		{"SELECT * FROM USERS", true},
		{`SELECT * FROM "users"`, true},
		{`SELECT * FROM public."Users"`, true},
		{"SELECT * FROM app_users_log", true}, // false positive: costs a parse only
		{"SELECT 'users'", true},
		{"SELECT * FROM use", false},
		{`SELECT * FROM U&"user\0073"`, true},
		{`SELECT * FROM u&"x"`, true},
		{`SELECT * FROM "we""ird"`, true},
		{`SELECT * FROM "we"`, false},
		{"SELECT 'héllo'", false},
		{"INSERT INTO accounts VALUES ('usersX')", true},
	}
	for _, tt := range tests {
		t.Run(tt.sql, func(t *testing.T) {
			if got := pg.MayTouch(tt.sql); got != tt.want {
				t.Fatalf("MayTouch = %v, want %v", got, tt.want)
			}
		})
	}
	t.Run("non-ASCII name", func(t *testing.T) {
		s := mustNew(t, rules.DialectPostgres, []rules.Spec{{Table: "kunden_ü", Column: "c", Key: "k", Mode: rules.ModeRandomized, Type: value.TypeText}})
		if !s.MayTouch("SELECT * FROM KUNDEN_Ü") {
			t.Error("non-ASCII spelling not caught")
		}
		if s.MayTouch("SELECT * FROM orders") {
			t.Error("ASCII-only statement matched")
		}
	})
	t.Run("mysql backticks", func(t *testing.T) {
		s := mustNew(t, rules.DialectMySQL, []rules.Spec{{Table: "users", Column: "c", Key: "k", Mode: rules.ModeRandomized, Type: value.TypeText}})
		if !s.MayTouch("SELECT * FROM `Users`") || s.MayTouch("SELECT 1") {
			t.Error("mysql MayTouch wrong")
		}
		if s.MayTouch(`SELECT * FROM U&"x"`) {
			t.Error(`U&"…" is PostgreSQL syntax; MySQL must not treat it specially`)
		}
	})
	t.Run("empty set", func(t *testing.T) {
		s := mustNew(t, rules.DialectPostgres, nil)
		if s.MayTouch("SELECT * FROM users") {
			t.Error("empty set touched")
		}
		var nilSet *rules.Set
		if nilSet.MayTouch("x") || nilSet.Table("", "public", "users") != nil {
			t.Error("nil set matched")
		}
	})
}

func TestKeyRelations(t *testing.T) {
	s := mustNew(t, rules.DialectPostgres, pgSpecs())
	email := s.Column("", "public", "users", "email")
	adminEmail := s.Column("", "public", "admins", "email")
	ssn := s.Column("", "public", "users", "ssn")
	if !rules.SameKey(email, adminEmail) {
		t.Error("users.email and admins.email share key users_email but SameKey is false")
	}
	if rules.SameKey(email, ssn) || rules.SameKey(ssn, ssn) || rules.SameKey(email, nil) {
		t.Error("SameKey true for different keys, a randomized column, or nil")
	}
	if !rules.Interchangeable(ssn, ssn) || !rules.Interchangeable(email, adminEmail) || rules.Interchangeable(email, ssn) || rules.Interchangeable(nil, ssn) {
		t.Error("Interchangeable wrong")
	}
}

func TestLookupsDoNotAllocate(t *testing.T) {
	pg := mustNew(t, rules.DialectPostgres, pgSpecs())
	my := mustNew(t, rules.DialectMySQL, pgSpecs()[:2])
	sql := "SELECT id, name FROM orders o JOIN customers c ON c.id = o.customer_id WHERE o.id = $1"
	n := testing.AllocsPerRun(100, func() {
		_ = pg.MayTouch(sql)
		_ = pg.Column("app", "public", "users", "email")
		_ = pg.Similar("app", "public", "Users")
		_ = my.Column("app", "", "USERS", "EMAIL")
	})
	if n != 0 {
		t.Fatalf("lookups allocate %v times per run", n)
	}
}

func BenchmarkMayTouch(b *testing.B) {
	s := mustNew(b, rules.DialectPostgres, pgSpecs())
	for _, bc := range []struct{ name, sql string }{
		{"skip/short", "SELECT * FROM orders WHERE id = $1"},
		{"skip/long", "SELECT o.id, o.total, c.name FROM orders o JOIN customers c ON c.id = o.customer_id WHERE o.created_at > now() - interval '1 day' AND c.region = $1 ORDER BY o.total DESC LIMIT 50"},
		{"hit", "SELECT * FROM users WHERE email = $1"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(bc.sql)))
			for b.Loop() {
				_ = s.MayTouch(bc.sql)
			}
		})
	}
}

func BenchmarkColumn(b *testing.B) {
	s := mustNew(b, rules.DialectPostgres, pgSpecs())
	b.ReportAllocs()
	for b.Loop() {
		_ = s.Column("app", "public", "users", "email")
	}
}

func TestIdentByte(t *testing.T) {
	for c := 0; c < 256; c++ {
		b := byte(c)
		want := b == '_' || b == '$' || b >= 0x80 ||
			strings.IndexByte("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ", b) >= 0
		if got := rules.IdentByte(b); got != want {
			t.Errorf("IdentByte(%q) = %v, want %v", b, got, want)
		}
	}
}

func TestWordNeedles(t *testing.T) {
	n := rules.NewWordNeedles(rules.DialectMySQL, []string{"v", "we`ird", "vue_é"})
	for _, tt := range []struct {
		sql  string
		want bool
	}{
		{"SELECT * FROM v", true},
		{"SELECT * FROM `V` WHERE 1", true},
		{"SELECT * FROM db.v;", true},
		{"SELECT * FROM vat", false},
		{"SELECT * FROM av", false},
		{"SELECT v$ FROM t", false},
		{"SELECT * FROM `we``ird`", true},
		{"SELECT 'ü'", true}, // a non-ASCII name makes any non-ASCII byte count
	} {
		if got := n.MayTouch(tt.sql); got != tt.want {
			t.Errorf("MayTouch(%q) = %v, want %v", tt.sql, got, tt.want)
		}
	}
	var none *rules.Needles
	if none.MayTouch("v") || rules.NewWordNeedles(rules.DialectMySQL, nil).MayTouch("v") {
		t.Error("no names matched")
	}
}
