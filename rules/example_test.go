package rules_test

import (
	"fmt"

	"github.com/dbproxy/dbproxy/rules"
	"github.com/dbproxy/dbproxy/value"
)

// ExampleNew builds a PostgreSQL rule set from Specs, as cmd/dbproxy does
// from the configuration's encrypted columns, and looks columns up the way
// the planner does: with names as the SQL parser delivers them.
func ExampleNew() {
	set, err := rules.New(rules.DialectPostgres, []rules.Spec{
		{Table: "users", Column: "email", Key: "public.users.email", Mode: rules.ModeDeterministic, Type: value.TypeText},
		{Table: "users", Column: "salary", Key: "public.users.salary", Mode: rules.ModeRandomized, Type: value.TypeBigint},
		{Table: `"Audit"`, Column: "note", Key: "public.Audit.note", Mode: rules.ModeRandomized, Type: value.TypeText},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	email := set.Column("", "public", "users", "email") // SQL users.email, USERS.Email, "users"."email"
	fmt.Println(email, email.Key, email.Deterministic)
	fmt.Println(set.Column("", "public", "users", "salary").Type)
	fmt.Println(set.Table("", "public", "Users") == nil)   // SQL "Users": another table
	fmt.Println(set.Similar("", "public", "Users") != nil) // which the planner refuses
	fmt.Println(set.Table("", "public", "Audit") != nil)   // a quoted configured name is kept exactly
	fmt.Println(set.MayTouch("SELECT 1"), set.MayTouch("SELECT * FROM USERS"))
	// Output:
	// public.users.email public.users.email true
	// bigint
	// true
	// true
	// true
	// false true
}
