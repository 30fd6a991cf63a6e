package mysqlsql_test

import (
	"context"
	"strings"
	"testing"
)

// TestPlanHiddenSQL: text the server executes but a naive parser would skip
// (versioned comments, backslash escapes under NO_BACKSLASH_ESCAPES) must
// never carry a plaintext for an encrypted column upstream.
func TestPlanHiddenSQL(t *testing.T) {
	p := newPlanner(t, nil)
	for _, sql := range []string{
		`UPDATE users SET note = 'x' /*M! , email = 'secret' */ WHERE id = 1`,
		`UPDATE users SET note = 'x' /*! , email = 'secret' */ WHERE id = 1`,
		`UPDATE users SET note = 'x' /*!50000 , email = 'secret' */ WHERE id = 1`,
		`UPDATE users SET note = 'a\', email = 'secret' #' WHERE id = 1`,
		`INSERT INTO users (id, note) VALUES (1, 'a\'), (2, 'b'), ('secret', 'c') #')`,
	} {
		t.Run(sql, func(t *testing.T) {
			plan, err := p.Plan(context.Background(), "app", sql)
			if err != nil {
				return // refused
			}
			if plan.Passthrough {
				t.Fatalf("forwarded unchanged")
			}
			got, err := plan.Rewrite(context.Background(), fakeEnc{}, nil, nil)
			if err != nil {
				return
			}
			if strings.Contains(string(got), "secret") {
				t.Fatalf("plaintext forwarded: %s", got)
			}
		})
	}
	// Ordinary escapes still work.
	wantAllowed(t, p,
		`INSERT INTO users (id, email) VALUES (1, 'O''Brien')`,
		`INSERT INTO users (id, note, email) VALUES (1, 'line\nbreak', 'a')`,
	)
}
