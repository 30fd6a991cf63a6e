package pgsql_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/dbproxy/dbproxy/sqlplan"
	"github.com/dbproxy/dbproxy/sqlplan/pgsql"
)

// TestRewriteMatchSlots: with Env.Slots, a RoleMatch parameter becomes an
// IN list of that many array elements (what a generic plan looks up in the
// index); without, = ANY of the array. RoleMatchArray parameters keep
// = ANY whatever Slots says.
func TestRewriteMatchSlots(t *testing.T) {
	p := newPlanner(t, newFakeCatalog())
	ctx := context.Background()
	cases := []struct {
		sql   string
		slots []int
		want  string
	}{
		{`SELECT id FROM users WHERE email = $1`, nil, `SELECT id FROM users WHERE (email = ANY($1::bytea[]))`},
		{`SELECT id FROM users WHERE email = $1`, []int{1}, `SELECT id FROM users WHERE (email = (($1::bytea[])[1]))`},
		{`SELECT id FROM users WHERE email = $1`, []int{3}, `SELECT id FROM users WHERE (email IN ((($1::bytea[])[1]), (($1::bytea[])[2]), (($1::bytea[])[3])))`},
		{`SELECT id FROM users WHERE email <> $1`, []int{1}, `SELECT id FROM users WHERE (email <> (($1::bytea[])[1]))`},
		{`SELECT id FROM users WHERE email <> $1`, []int{2}, `SELECT id FROM users WHERE (email NOT IN ((($1::bytea[])[1]), (($1::bytea[])[2])))`},
		{`SELECT id FROM users WHERE age = $2 AND email = $1`, []int{2, 1}, `SELECT id FROM users WHERE (age = (($2::bytea[])[1])) AND (email IN ((($1::bytea[])[1]), (($1::bytea[])[2])))`},
		{`SELECT id FROM users WHERE email = ANY($1)`, []int{0}, `SELECT id FROM users WHERE (email = ANY($1::bytea[]))`},
	}
	for _, c := range cases {
		pl, err := p.Plan(ctx, c.sql, "")
		if err != nil {
			t.Fatalf("%s: %v", c.sql, err)
		}
		out, err := pl.Rewrite(ctx, nil, c.sql, pgsql.Env{Encrypter: fakeEncrypter{}, Slots: c.slots})
		if err != nil {
			t.Fatalf("%s: %v", c.sql, err)
		}
		if string(out) != c.want {
			t.Errorf("%s with slots %v:\n got %s\nwant %s", c.sql, c.slots, out, c.want)
		}
	}
}

// TestExecuteSlottedStatement: SQL EXECUTE of a protocol-level statement
// prepared with slots binds exactly that many ciphertexts, padded with the
// newest; more live versions than slots is refused, never truncated.
func TestExecuteSlottedStatement(t *testing.T) {
	p := newPlanner(t, newFakeCatalog())
	ctx := context.Background()
	stmt, err := p.Plan(ctx, `SELECT id FROM users WHERE email = $1`, "")
	if err != nil {
		t.Fatal(err)
	}
	params := append([]sqlplan.Param(nil), stmt.Params...)
	params[0].Slots = 3
	var prepared pgsql.Prepared
	prepared.Add("s1", params)
	const exec = `EXECUTE s1('a@b.c')`
	pl, err := p.Plan(ctx, exec, "")
	if err != nil {
		t.Fatal(err)
	}
	out, err := pl.Rewrite(ctx, nil, exec, pgsql.Env{Encrypter: fakeEncrypter{versions: 2}, Prepared: &prepared})
	if err != nil {
		t.Fatal(err)
	}
	got := readable(string(out))
	if want := `EXECUTE s1(ARRAY[CT(v2:users_email:a@b.c), CT(v1:users_email:a@b.c), CT(v2:users_email:a@b.c)]::bytea[])`; got != want {
		t.Errorf("EXECUTE with 2 versions in 3 slots:\n got %s\nwant %s", got, want)
	}
	_, err = pl.Rewrite(ctx, nil, exec, pgsql.Env{Encrypter: fakeEncrypter{versions: 4}, Prepared: &prepared})
	var ref *sqlplan.Refusal
	if !errors.As(err, &ref) || !strings.Contains(err.Error(), "rotated") {
		t.Errorf("EXECUTE with 4 versions in 3 slots: %v, want a refusal about the rotation", err)
	}
}
