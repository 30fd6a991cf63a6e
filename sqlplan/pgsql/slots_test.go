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
// index), and with one slot a plain bytea parameter; without, = ANY of the
// array. RoleMatchArray parameters keep = ANY whatever Slots says.
func TestRewriteMatchSlots(t *testing.T) {
	p := newPlanner(t, newFakeCatalog())
	ctx := context.Background()
	cases := []struct {
		sql   string
		slots []int
		want  string
	}{
		{`SELECT id FROM users WHERE email = $1`, nil, `SELECT id FROM users WHERE (email = ANY($1::bytea[]))`},
		{`SELECT id FROM users WHERE email = $1`, []int{1}, `SELECT id FROM users WHERE (email = $1::bytea)`},
		{`SELECT id FROM users WHERE email = $1`, []int{3}, `SELECT id FROM users WHERE (email IN ((($1::bytea[])[1]), (($1::bytea[])[2]), (($1::bytea[])[3])))`},
		{`SELECT id FROM users WHERE email <> $1`, []int{1}, `SELECT id FROM users WHERE (email <> $1::bytea)`},
		{`SELECT id FROM users WHERE email <> $1`, []int{2}, `SELECT id FROM users WHERE (email NOT IN ((($1::bytea[])[1]), (($1::bytea[])[2])))`},
		{`SELECT id FROM users WHERE age = $2 AND email = $1`, []int{2, 1}, `SELECT id FROM users WHERE (age = $2::bytea) AND (email IN ((($1::bytea[])[1]), (($1::bytea[])[2])))`},
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

	// One slot: the statement's parameter is a bytea, and gets the
	// ciphertext itself; a second live version is refused as above.
	params[0].Slots = 1
	prepared.Add("s1", params)
	out, err = pl.Rewrite(ctx, nil, exec, pgsql.Env{Encrypter: fakeEncrypter{versions: 1}, Prepared: &prepared})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := readable(string(out)), `EXECUTE s1(CT(v1:users_email:a@b.c))`; got != want {
		t.Errorf("EXECUTE with 1 version in 1 slot:\n got %s\nwant %s", got, want)
	}
	const execNull = `EXECUTE s1(NULL)`
	pn, err := p.Plan(ctx, execNull, "")
	if err != nil {
		t.Fatal(err)
	}
	if out, err = pn.Rewrite(ctx, nil, execNull, pgsql.Env{Encrypter: fakeEncrypter{versions: 1}, Prepared: &prepared}); err != nil {
		t.Fatal(err)
	}
	if got, want := string(out), `EXECUTE s1(NULL)`; got != want {
		t.Errorf("EXECUTE of NULL in 1 slot:\n got %s\nwant %s", got, want)
	}
	_, err = pl.Rewrite(ctx, nil, exec, pgsql.Env{Encrypter: fakeEncrypter{versions: 2}, Prepared: &prepared})
	if !errors.As(err, &ref) || !strings.Contains(err.Error(), "rotated") {
		t.Errorf("EXECUTE with 2 versions in 1 slot: %v, want a refusal about the rotation", err)
	}
}
