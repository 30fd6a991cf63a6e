package proxy

import (
	"context"
	"log/slog"
	"strings"
)

// refusalReasons name the SQLSTATEs of the encryption layers' refusals:
// the reason label of refused statements and the reason of their log.
var refusalReasons = map[string]string{
	"0A000": "feature_not_supported",
	"42601": "syntax_error",
	"42702": "ambiguous_column",
	"42804": "datatype_mismatch",
	"42P01": "undefined_table",
	"42602": "invalid_name",
	"42501": "insufficient_privilege",
	"26000": "undefined_prepared_statement",
	"34000": "undefined_cursor",
	"22P02": "invalid_text",
	"22003": "out_of_range",
	"57P03": "cannot_connect_now",
	"XX000": "internal",
	"XX001": "data_corrupted",
	"HY000": "error",
}

// RefusalReason returns the fixed word for a refusal's SQLSTATE
// ("other" for one not listed), so that the reasons stay few.
func RefusalReason(sqlstate string) string {
	if r, ok := refusalReasons[sqlstate]; ok {
		return r
	}
	return "other"
}

// Refusal is a statement an encryption layer refused, for [LogRefusal].
type Refusal struct {
	// Statement is the SQL text refused, when known; only its fingerprint
	// and first keyword are logged. Without it, Command names the
	// protocol message refused (Execute, COM_STMT_EXECUTE, ...).
	Statement []byte
	Command   string
	// SQLState classifies the refusal (the planner's SQLSTATE, which
	// PostgreSQL clients get; MySQL clients get error Code); Message is
	// the message the client got, which names columns and reasons, never
	// values.
	SQLState, Message string
	Code              int
	// Column is the encrypted column concerned, "" if none.
	Column string
}

// LogRefusal logs a refused statement once, through log (the session's
// logger: listener, client address, user and database), and counts it in
// obs. The statement is logged as its fingerprint ([Fingerprint]) and its
// first keyword, never as text: its values must not reach the log.
func LogRefusal(ctx context.Context, log *slog.Logger, obs Observer, r Refusal) {
	reason := RefusalReason(r.SQLState)
	obs.Refused(reason)
	if !log.Enabled(ctx, slog.LevelInfo) {
		return
	}
	attrs := make([]slog.Attr, 0, 7)
	if len(r.Statement) > 0 {
		attrs = append(attrs, slog.String("fingerprint", Fingerprint(r.Statement)),
			slog.String("command", firstKeyword(r.Statement)))
	} else if r.Command != "" {
		attrs = append(attrs, slog.String("command", r.Command))
	}
	if r.Column != "" {
		attrs = append(attrs, slog.String("column", r.Column))
	}
	attrs = append(attrs, slog.String("reason", reason), slog.String("sqlstate", r.SQLState))
	if r.Code != 0 {
		attrs = append(attrs, slog.Int("code", r.Code))
	}
	attrs = append(attrs, slog.String("error", r.Message))
	log.LogAttrs(ctx, slog.LevelInfo, "statement refused", attrs...)
}

// RefusedColumn returns the column a refusal message names ("dbproxy:
// statement refused: column C: ...", as sqlplan.Refusal words it), or "".
func RefusedColumn(msg string) string {
	const prefix = "dbproxy: statement refused: column "
	rest, ok := strings.CutPrefix(msg, prefix)
	if !ok {
		return ""
	}
	col, _, ok := strings.Cut(rest, ": ")
	if !ok {
		return ""
	}
	return col
}
