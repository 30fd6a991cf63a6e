package integration

import (
	"strings"
	"sync/atomic"
	"testing"

	"github.com/dbproxy/dbproxy/access"
	"github.com/dbproxy/dbproxy/fieldcrypt"
	"github.com/dbproxy/dbproxy/proxy"
	"github.com/dbproxy/dbproxy/rules"
	"github.com/dbproxy/dbproxy/value"
)

// The access policy tests (pgenc_access_test.go, mysqlenc_access_test.go)
// run four database users through the proxy over one table:
//
//	app:       every column decrypted (the default)
//	reporting: ssn and born masked (born is a date: NULL), salary denied
//	ingest:    every column write_only (no lookup)
//	auditor:   ssn as ciphertext with lookups allowed, salary NULL
const (
	accessPassword = "access-pw-1"
	ssnPlain       = "123-45-6789"
	ssnMasked      = "*******6789"
)

// accessSpecs are the encrypted columns of table users (in schema; ""
// for MySQL): ssn text (deterministic, for lookups), salary bigint and
// born date.
func accessSpecs(schema string) []rules.Spec {
	return []rules.Spec{
		{Schema: schema, Table: "users", Column: "ssn", Key: "ssn", Mode: rules.ModeDeterministic, Type: value.TypeText},
		{Schema: schema, Table: "users", Column: "salary", Key: "salary", Mode: rules.ModeRandomized, Type: value.TypeBigint},
		{Schema: schema, Table: "users", Column: "born", Key: "born", Mode: rules.ModeRandomized, Type: value.TypeDate},
	}
}

// accessUsers are the database user names of one test's principals.
type accessUsers struct{ app, reporting, ingest, auditor string }

func newAccessUsers(prefix string) accessUsers {
	return accessUsers{prefix + "_app", prefix + "_rep", prefix + "_ing", prefix + "_aud"}
}

func (u accessUsers) all() []string { return []string{u.app, u.reporting, u.ingest, u.auditor} }

// lazyPolicy is a fieldcrypt.Policy set once the user names are known
// (after the database, which names them, was created).
type lazyPolicy struct{ p atomic.Pointer[access.Policy] }

func (l *lazyPolicy) For(who proxy.Principal) fieldcrypt.Decider { return l.p.Load().For(who) }

// set compiles the policy of the test's users.
func (l *lazyPolicy) set(t testing.TB, u accessUsers) {
	t.Helper()
	p, err := access.New(fieldcrypt.Decision{Rule: "access.default"}, []access.Rule{
		{Name: "access.rules[0]", Users: []string{u.reporting}, Columns: []string{"users.ssn", "users.born"},
			Decision: fieldcrypt.Decision{Action: fieldcrypt.ActionMask, Mask: fieldcrypt.Mask{KeepLast: 4, Char: '*'}}},
		{Name: `access.rules[1] "reporting-pay"`, Users: []string{u.reporting}, Columns: []string{"users.salary"},
			Decision: fieldcrypt.Decision{Action: fieldcrypt.ActionDeny}},
		{Name: "access.rules[2]", Users: []string{u.ingest}, Columns: []string{"*"},
			Decision: fieldcrypt.Decision{Action: fieldcrypt.ActionWriteOnly}},
		{Name: "access.rules[3]", Users: []string{u.auditor}, Columns: []string{"users.ssn"},
			Decision: fieldcrypt.Decision{Action: fieldcrypt.ActionCiphertext, Lookup: true}},
		{Name: "access.rules[4]", Users: []string{u.auditor}, Columns: []string{"key:sal*"},
			Decision: fieldcrypt.Decision{Action: fieldcrypt.ActionNull}},
	})
	if err != nil {
		t.Fatal(err)
	}
	l.p.Store(p)
}

// wantMentions fails unless msg names every one of words.
func wantMentions(t testing.TB, what, msg string, words ...string) {
	t.Helper()
	for _, w := range words {
		if !strings.Contains(msg, w) {
			t.Errorf("%s: message %q does not mention %q", what, msg, w)
		}
	}
}
