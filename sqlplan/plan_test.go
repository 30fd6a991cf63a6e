package sqlplan_test

import (
	"errors"
	"fmt"
	"testing"

	"github.com/dbproxy/dbproxy/rules"
	"github.com/dbproxy/dbproxy/sqlplan"
	"github.com/dbproxy/dbproxy/value"
)

func TestRefusalError(t *testing.T) {
	cause := errors.New("catalog down")
	for _, tc := range []struct {
		r    sqlplan.Refusal
		want string
	}{
		{sqlplan.Refusal{Reason: "no"}, "dbproxy: statement refused: no"},
		{sqlplan.Refusal{Column: "public.users.email", Reason: "no"}, "dbproxy: statement refused: column public.users.email: no"},
		{sqlplan.Refusal{Table: "app.users", Reason: "no", Cause: cause}, "dbproxy: statement refused: app.users: no"},
	} {
		if got := tc.r.Error(); got != tc.want {
			t.Errorf("Error() = %q, want %q", got, tc.want)
		}
	}
	err := fmt.Errorf("plan: %w", &sqlplan.Refusal{Table: "app.users", Reason: "no", Cause: cause})
	if !errors.Is(err, cause) {
		t.Error("a refusal does not unwrap to its cause")
	}
}

func TestValueErrorState(t *testing.T) {
	for err, want := range map[error]string{
		value.ErrRange:            sqlplan.StateOutOfRange,
		value.ErrUnsupported:      sqlplan.StateFeatureNotSupported,
		value.ErrSyntax:           sqlplan.StateInvalidText,
		errors.New("other error"): sqlplan.StateInvalidText,
	} {
		if got := sqlplan.ValueErrorState(fmt.Errorf("x: %w", err)); got != want {
			t.Errorf("ValueErrorState(%v) = %s, want %s", err, got, want)
		}
	}
}

func TestParam(t *testing.T) {
	col := &rules.ColumnRule{Type: value.TypeInt}
	for _, tc := range []struct {
		p         sqlplan.Param
		encrypted bool
		client    value.Type
		array     bool
		name      string
	}{
		{sqlplan.Param{}, false, value.TypeUnknown, false, "invalid"},
		{sqlplan.Param{Role: sqlplan.RolePlain}, false, value.TypeUnknown, false, "plain"},
		{sqlplan.Param{Role: sqlplan.RoleStore, Column: col}, true, value.TypeInt, false, "store"},
		{sqlplan.Param{Role: sqlplan.RoleMatch, Column: col}, true, value.TypeInt, false, "match"},
		{sqlplan.Param{Role: sqlplan.RoleMatchArray, Column: col}, true, value.TypeInt, true, "match-array"},
		{sqlplan.Param{Role: 9}, false, value.TypeUnknown, false, "Role(9)"},
	} {
		p := tc.p
		if p.Encrypted() != tc.encrypted || p.ClientType() != tc.client || p.ClientArray() != tc.array || p.Role.String() != tc.name {
			t.Errorf("%+v: encrypted %v, client type %s, array %v, name %s", p, p.Encrypted(), p.ClientType(), p.ClientArray(), p.Role)
		}
	}
}
