package pgsql_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/dbproxy/dbproxy/rules"
	"github.com/dbproxy/dbproxy/sqlplan/pgsql"
)

// recorder collects what Rewrite reports through Env.Matches.
type recorder struct{ got []string }

func (r *recorder) RecordMatch(col *rules.ColumnRule, canon []byte, cts [][]byte) {
	var s []string
	for _, ct := range cts {
		s = append(s, string(ct))
	}
	r.got = append(r.got, fmt.Sprintf("%s=%s %s", col.String(), showCanon(col, canon), strings.Join(s, ",")))
}

func TestRewriteRecordsMatches(t *testing.T) {
	p := newPlanner(t, nil)
	ctx := context.Background()
	var prepared pgsql.Prepared
	tests := []struct {
		sql  string
		want []string
	}{
		{`SELECT id FROM users WHERE email = 'a@x'`,
			[]string{"public.users.email=a@x v2:users_email:a@x,v1:users_email:a@x"}},
		// A template hit (another constant) reports the new value.
		{`SELECT id FROM users WHERE email = 'b@x'`,
			[]string{"public.users.email=b@x v2:users_email:b@x,v1:users_email:b@x"}},
		{`SELECT id FROM users WHERE email IN ('a@x', 'b@x') OR age = 7`,
			[]string{"public.users.email=a@x v2:users_email:a@x,v1:users_email:a@x",
				"public.users.email=b@x v2:users_email:b@x,v1:users_email:b@x",
				"public.users.age=00000007 v2:users_age:00000007,v1:users_age:00000007"}},
		// Stored values are not lookups.
		{`INSERT INTO users (email) VALUES ('c@x')`, nil},
		{`PREPARE q(text) AS SELECT id FROM users WHERE email = $1; EXECUTE q('d@x')`,
			[]string{"public.users.email=d@x v2:users_email:d@x,v1:users_email:d@x"}},
	}
	for _, tc := range tests {
		pl, err := p.Plan(ctx, tc.sql, "")
		if err != nil {
			t.Fatalf("%s: %v", tc.sql, err)
		}
		var rec recorder
		var scratch pgsql.Scratch
		out, err := pl.Rewrite(ctx, nil, tc.sql, pgsql.Env{Encrypter: fakeEncrypter{}, Prepared: &prepared,
			Matches: &rec, Scratch: &scratch})
		if err != nil {
			t.Fatalf("%s: %v", tc.sql, err)
		}
		if !slices.Equal(rec.got, tc.want) {
			t.Errorf("%s: recorded\n%q\nwant\n%q", tc.sql, rec.got, tc.want)
		}
		// A wire layer sets Matches up only when RecordsMatches says so.
		if got := pl.RecordsMatches(); got != (len(tc.want) > 0) {
			t.Errorf("%s: RecordsMatches() = %v, recorded %d", tc.sql, got, len(rec.got))
		}
		// Every recorded ciphertext is in the rewritten text.
		for _, g := range rec.got {
			_, cts, _ := strings.Cut(g, " ")
			for _, ct := range strings.Split(cts, ",") {
				if !strings.Contains(readable(string(out)), "CT("+ct+")") {
					t.Errorf("%s: recorded %s is not in %s", tc.sql, ct, readable(string(out)))
				}
			}
		}
	}
}
