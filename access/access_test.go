package access_test

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/dbproxy/dbproxy/access"
	"github.com/dbproxy/dbproxy/fieldcrypt"
	"github.com/dbproxy/dbproxy/proxy"
	"github.com/dbproxy/dbproxy/rules"
)

var (
	ssn    = &rules.ColumnRule{Schema: "public", Table: "users", Column: "ssn", Key: "ssn_key"}
	salary = &rules.ColumnRule{Schema: "public", Table: "users", Column: "salary", Key: "pay"}
	myCard = &rules.ColumnRule{Database: "shop", Table: "Cards", Column: "PAN", Key: "pan"}
)

func policy(t *testing.T) *access.Policy {
	t.Helper()
	p, err := access.New(fieldcrypt.Decision{Action: fieldcrypt.ActionDecrypt, Rule: "access.default"}, []access.Rule{
		{Name: "access.rules[0]", Users: []string{"reporting"}, Columns: []string{"public.users.ssn"},
			Decision: fieldcrypt.Decision{Action: fieldcrypt.ActionMask, Mask: fieldcrypt.Mask{KeepLast: 4}}},
		{Name: "access.rules[1]", Users: []string{"reporting", "audit"}, Databases: []string{"app"},
			Sources: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}, Columns: []string{"key:pa*"},
			Decision: fieldcrypt.Decision{Action: fieldcrypt.ActionDeny}},
		{Name: "access.rules[2]", TLSSubjects: []string{"CN=ingest"}, Columns: []string{"*"},
			Decision: fieldcrypt.Decision{Action: fieldcrypt.ActionWriteOnly}},
		{Name: "access.rules[3]", Users: []string{"shop"}, Columns: []string{"shop.cards.*"},
			Decision: fieldcrypt.Decision{Action: fieldcrypt.ActionNull}},
	})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestFirstMatchingRuleWins(t *testing.T) {
	p := policy(t)
	inside := netip.MustParseAddrPort("10.1.2.3:5000")
	outside := netip.MustParseAddrPort("192.0.2.1:5000")
	cases := []struct {
		who  proxy.Principal
		col  *rules.ColumnRule
		want fieldcrypt.Action
		rule string
	}{
		{proxy.Principal{User: "app"}, ssn, fieldcrypt.ActionDecrypt, "access.default"},
		{proxy.Principal{User: "reporting", Database: "app", Client: inside}, ssn, fieldcrypt.ActionMask, "access.rules[0]"},
		{proxy.Principal{User: "reporting", Database: "app", Client: inside}, salary, fieldcrypt.ActionDeny, "access.rules[1]"},
		// Every field of a match must fit: another database, another source.
		{proxy.Principal{User: "reporting", Database: "other", Client: inside}, salary, fieldcrypt.ActionDecrypt, "access.default"},
		{proxy.Principal{User: "audit", Database: "app", Client: outside}, salary, fieldcrypt.ActionDecrypt, "access.default"},
		{proxy.Principal{User: "audit", Database: "app", Client: inside}, salary, fieldcrypt.ActionDeny, "access.rules[1]"},
		// No client address (a Unix socket) fits no source.
		{proxy.Principal{User: "audit", Database: "app"}, salary, fieldcrypt.ActionDecrypt, "access.default"},
		{proxy.Principal{User: "x", CertSubject: "CN=ingest"}, ssn, fieldcrypt.ActionWriteOnly, "access.rules[2]"},
		{proxy.Principal{User: "x", CertSubject: "CN=other"}, ssn, fieldcrypt.ActionDecrypt, "access.default"},
		// MySQL: the schema part is the database; names fold case.
		{proxy.Principal{User: "shop"}, myCard, fieldcrypt.ActionNull, "access.rules[3]"},
	}
	for i, c := range cases {
		for range 2 { // the second time from the session's cache
			d := p.Decide(c.who, c.col)
			if d.Action != c.want || d.Rule != c.rule {
				t.Errorf("case %d: %s by %q, want %s by %q", i, d.Action, d.Rule, c.want, c.rule)
			}
		}
	}
}

func TestDeciderCacheAllocs(t *testing.T) {
	d := policy(t).For(proxy.Principal{User: "reporting"})
	d.Decide(ssn)
	if n := testing.AllocsPerRun(100, func() { d.Decide(ssn) }); n != 0 {
		t.Errorf("Decide allocates %.1f times per call once cached", n)
	}
}

func TestPatterns(t *testing.T) {
	for _, bad := range []string{"a.b.c.d", "users..ssn", "", "key:", "users.[ssn"} {
		if _, err := access.ParsePattern(bad); err == nil {
			t.Errorf("ParsePattern(%q) accepted", bad)
		}
	}
	p, err := access.New(fieldcrypt.Decision{}, []access.Rule{{Name: "r0", Columns: []string{"users.ssn", "users.ssm", "key:nope"}}})
	if err != nil {
		t.Fatal(err)
	}
	got := strings.Join(p.Unmatched([]*rules.ColumnRule{ssn, salary}), "; ")
	if got != `r0.columns[1]: "users.ssm"; r0.columns[2]: "key:nope"` {
		t.Errorf("Unmatched = %s", got)
	}
}

func TestMask(t *testing.T) {
	cases := []struct {
		m       fieldcrypt.Mask
		in, out string
	}{
		{fieldcrypt.Mask{KeepLast: 4}, "123-45-6789", "*******6789"},
		{fieldcrypt.Mask{KeepFirst: 1, KeepLast: 1, Char: '#'}, "Zoë Ångström", "Z##########m"},
		{fieldcrypt.Mask{KeepLast: 4}, "1234", "****"}, // too short: masked whole
		{fieldcrypt.Mask{}, "", ""},
		{fieldcrypt.Mask{Char: '•'}, "ab", "••"},
	}
	for _, c := range cases {
		if got := string(c.m.Append(nil, []byte(c.in))); got != c.out {
			t.Errorf("%+v.Append(%q) = %q, want %q", c.m, c.in, got, c.out)
		}
	}
}

// BenchmarkDecide is the per-cell cost of a session's decision once it
// has seen the column.
func BenchmarkDecide(b *testing.B) {
	p, err := access.New(fieldcrypt.Decision{}, []access.Rule{
		{Name: "r0", Users: []string{"reporting"}, Columns: []string{"public.users.ssn"}, Decision: fieldcrypt.Decision{Action: fieldcrypt.ActionMask}},
	})
	if err != nil {
		b.Fatal(err)
	}
	d := p.For(proxy.Principal{User: "reporting"})
	b.ReportAllocs()
	for b.Loop() {
		if d.Decide(ssn).Action != fieldcrypt.ActionMask {
			b.Fatal("wrong decision")
		}
	}
}

// TestGlobCrossesSlash: `key:*` names a key whose name holds a '/'.
func TestGlobCrossesSlash(t *testing.T) {
	if !access.Glob("*", "pii/ssn") || !access.Glob("pii/*", "pii/ssn") || access.Glob("pii/*", "pay/salary") {
		t.Fatal("glob does not treat '/' as an ordinary character")
	}
}
