package sqlplan

import (
	"errors"

	"github.com/dbproxy/dbproxy/value"
)

// SQLSTATE codes of refusals, set by both planners. The PostgreSQL wire
// layer answers a refusal with its code; the MySQL wire layer answers every
// refusal with one error number and SQLSTATE of its own.
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
// The wire layer answers it with an error (PostgreSQL: an ErrorResponse
// with code SQLState) whose message is Error(), and forwards nothing of the
// statement.
//
// Column, Table and Reason never contain a value from the statement: they
// are built from identifiers, operator and function names and fixed
// phrases only, because they reach logs and clients.
type Refusal struct {
	// Column is the encrypted column concerned (schema.table.column or
	// database.table.column), or "".
	Column string
	// Table is the table or other relation concerned when the refusal is
	// about one rather than about one column, or "".
	Table string
	// Reason says what was refused and why.
	Reason string
	// SQLState is the five-character SQLSTATE code (one of the State
	// constants).
	SQLState string
	// Cause, if set, is the error behind the refusal (a failed catalog
	// lookup), for the log; it is not part of the message.
	Cause error
}

// Unwrap returns Cause.
func (r *Refusal) Unwrap() error { return r.Cause }

func (r *Refusal) Error() string {
	switch {
	case r.Column != "":
		return "dbproxy: statement refused: column " + r.Column + ": " + r.Reason
	case r.Table != "":
		return "dbproxy: statement refused: " + r.Table + ": " + r.Reason
	}
	return "dbproxy: statement refused: " + r.Reason
}

// ValueErrorState is the SQLSTATE of the refusal of a literal that is not a
// valid value of its column's type; err is the value package's error.
func ValueErrorState(err error) string {
	switch {
	case errors.Is(err, value.ErrRange):
		return StateOutOfRange
	case errors.Is(err, value.ErrUnsupported):
		return StateFeatureNotSupported
	}
	return StateInvalidText
}
