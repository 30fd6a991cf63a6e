package pgsql

import (
	"errors"
	"fmt"
	"strings"

	pgparser "github.com/pganalyze/pg_query_go/v6/parser"

	"github.com/dbproxy/dbproxy/rules"
	"github.com/dbproxy/dbproxy/value"
)

// SQLSTATE codes used by refusals.
const (
	StateFeatureNotSupported   = "0A000" // an operation encrypted values cannot support
	StateSyntaxError           = "42601" // a statement touching an encrypted table that does not parse
	StateAmbiguousColumn       = "42702"
	StateDatatypeMismatch      = "42804" // a plaintext value where a ciphertext belongs, or keys that differ
	StateUndefinedTable        = "42P01"
	StateInvalidName           = "42602" // a name matching a rule only when case is ignored
	StateInsufficientPrivilege = "42501" // DDL or dynamic SQL that would route values around the rules
	StateUndefinedPStatement   = "26000" // EXECUTE of a statement the proxy did not see prepared
	StateInvalidText           = "22P02" // a literal for an encrypted column that is not a valid value
	StateOutOfRange            = "22003"
	StateInternal              = "XX000" // the planner could not place an edit precisely
)

// Refusal is the error for a statement the proxy will not send upstream.
// The wire layer answers it with an ErrorResponse (severity ERROR, code
// SQLState, message Error()) and forwards nothing of the statement.
//
// Reason and Column never contain a value from the statement: they are
// built from identifiers, operator and function names and fixed phrases
// only, because they reach logs and clients.
type Refusal struct {
	// Column is the encrypted column concerned, as schema.table.column, or
	// "" when the refusal is not about one column.
	Column string
	// Reason says what was refused and why.
	Reason string
	// SQLState is the five-character SQLSTATE code.
	SQLState string
}

func (r *Refusal) Error() string {
	if r.Column == "" {
		return "dbproxy: statement refused: " + r.Reason
	}
	return "dbproxy: statement refused: column " + r.Column + ": " + r.Reason
}

// refuse builds a Refusal about column col (nil for none).
func refuse(col *rules.ColumnRule, state, format string, args ...any) *Refusal {
	r := &Refusal{Reason: fmt.Sprintf(format, args...), SQLState: state}
	if col != nil {
		r.Column = col.String()
	}
	return r
}

// unsupported is a 0A000 refusal about col.
func unsupported(col *rules.ColumnRule, format string, args ...any) *Refusal {
	return refuse(col, StateFeatureNotSupported, format, args...)
}

// safeParseMessage reduces a pg_query parse or scan error to a message
// without statement text: PostgreSQL's "at or near" part quotes the SQL,
// which may contain a secret.
func safeParseMessage(err error) string {
	var pe *pgparser.Error
	msg := err.Error()
	pos := 0
	if errors.As(err, &pe) {
		msg = pe.Message
		pos = pe.Cursorpos
	}
	if i := strings.Index(msg, " at or near"); i >= 0 {
		msg = msg[:i]
	}
	if i := strings.Index(msg, " at end of input"); i >= 0 {
		msg = msg[:i]
	}
	if strings.ContainsAny(msg, "\"'$`") || len(msg) > 80 {
		msg = "syntax error"
	}
	if pos > 0 {
		return fmt.Sprintf("%s at position %d", msg, pos)
	}
	return msg
}

// valueRefusal turns a canonicalisation failure of a literal bound for col
// into a Refusal (the value package's errors never contain the value).
func valueRefusal(col *rules.ColumnRule, err error) *Refusal {
	state := StateInvalidText
	if errors.Is(err, value.ErrRange) {
		state = StateOutOfRange
	} else if errors.Is(err, value.ErrUnsupported) {
		state = StateFeatureNotSupported
	}
	return refuse(col, state, "literal is not a valid %s value: %v", col.Type, err)
}
