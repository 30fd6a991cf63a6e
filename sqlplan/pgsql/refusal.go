package pgsql

import (
	"errors"
	"fmt"
	"strings"

	pgparser "github.com/pganalyze/pg_query_go/v6/parser"

	"github.com/dbproxy/dbproxy/rules"
	"github.com/dbproxy/dbproxy/sqlplan"
)

// refuse builds a Refusal about column col (nil for none).
func refuse(col *rules.ColumnRule, state, format string, args ...any) *sqlplan.Refusal {
	r := &sqlplan.Refusal{Reason: fmt.Sprintf(format, args...), SQLState: state}
	if col != nil {
		r.Column = col.String()
	}
	return r
}

// unsupported is a 0A000 refusal about col.
func unsupported(col *rules.ColumnRule, format string, args ...any) *sqlplan.Refusal {
	return refuse(col, sqlplan.StateFeatureNotSupported, format, args...)
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
func valueRefusal(col *rules.ColumnRule, err error) *sqlplan.Refusal {
	return refuse(col, sqlplan.ValueErrorState(err), "literal is not a valid %s value: %v", col.Type, err)
}
