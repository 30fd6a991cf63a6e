package mysqlsql_test

import (
	"context"
	"strings"
	"testing"

	"github.com/dbproxy/dbproxy/sqlplan/mysqlsql"
)

// FuzzPlan checks that the planner never panics and that whatever it lets
// through carries no plaintext for an encrypted column: planning the
// forwarded text again must find only values that are already (fake)
// ciphertexts, which start with S (store) or M (match).
func FuzzPlan(f *testing.F) {
	for _, s := range []string{
		"INSERT INTO users (id, email, ssn) VALUES (1, 'a@x', 'secret')",
		"INSERT INTO users (email, age) VALUES ('a', 42), (NULL, -1)",
		"INSERT INTO users SET email = 'a'",
		"REPLACE INTO `app`.`USERS` (`Email`) VALUES ('a')",
		"INSERT INTO users (id, email) VALUES (1, 'a') ON DUPLICATE KEY UPDATE email = VALUES(email), ssn = 's'",
		"SELECT id, email FROM users WHERE email = 'a'",
		"SELECT * FROM users u WHERE u.email <> 'a' AND u.age IN (42, NULL)",
		"UPDATE users SET ssn = 'x', name = 'n' WHERE email = 'a'",
		"DELETE u FROM users u JOIN orders o ON o.uid = u.id WHERE u.email = 'a'",
		"USE app; INSERT INTO users (email) VALUES ('a')",
		"SELECT id FROM users WHERE email = ? AND id > ?",
		"UPDATE users SET note = 'a\\', email = 'secret' #' WHERE id = 1",
		"UPDATE users SET note = 'x' /*! , email = 'secret' */ WHERE id = 1",
		"SELECT * FROM users WHERE email LIKE 'a%'",
		"WITH x AS (SELECT email FROM users) SELECT * FROM x WHERE email = 'a'",
		"INSERT INTO users (email) SELECT email FROM other",
	} {
		f.Add(s)
	}
	p := newPlanner(f, nil)
	ctx := context.Background()
	f.Fuzz(func(t *testing.T, sql string) {
		plan, err := p.Plan(ctx, "app", sql)
		if err != nil {
			return
		}
		out := sql
		if !plan.Passthrough {
			b, err := plan.Rewrite(ctx, fakeEnc{}, nil, nil)
			if err != nil {
				return
			}
			out = string(b)
		}
		again, err := p.Plan(ctx, "app", out)
		if err != nil {
			if plan.Passthrough {
				t.Fatalf("passthrough text refused on replanning: %v", err)
			}
			return
		}
		for _, s := range again.Slots {
			if s.Kind == mysqlsql.SlotStore || s.Kind == mysqlsql.SlotMatch {
				if !strings.HasPrefix(s.Literal.Text, "S") && !strings.HasPrefix(s.Literal.Text, "M") {
					t.Fatalf("plaintext for %s forwarded:\nin:  %q\nout: %q", s.Column, sql, out)
				}
			}
		}
	})
}
