package postgres

import (
	"errors"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/dbproxy/dbproxy/proxy"
)

// SQLSTATE codes the proxy itself sends.
const (
	codeProtocolViolation  = "08P01"
	codeConnectionFailure  = "08006"
	codeUnableToConnect    = "08001"
	codeInvalidAuthSpec    = "28000"
	codeAdminShutdown      = "57P01"
	codeIdleSessionTimeout = "57P05"
	codeCannotConnectNow   = "57P03"
	codeTooManyConnections = "53300"
	codeQueryCanceled      = "57014"
	codeFeatureUnsupported = "0A000"
	codeInternalError      = "XX000"
)

// Error is an error that goes back to the client as an ErrorResponse. Its
// Message must never carry SQL values, passwords or message bodies. Cause,
// if set, is for the proxy's log only.
type Error struct {
	Severity string // "FATAL" or "ERROR"; empty means FATAL
	Code     string // SQLSTATE
	Message  string
	Cause    error
}

func (e *Error) Error() string { return proxy.ClientErrorText(e.Message, e.Cause) }

func (e *Error) Unwrap() error { return e.Cause }

func fatalf(code, msg string, cause error) *Error {
	return &Error{Severity: "FATAL", Code: code, Message: msg, Cause: cause}
}

// appendError encodes err as an ErrorResponse. Every error the proxy sends a
// client goes through here: an *Error keeps its code and message, anything
// else becomes a generic internal error (its text stays in the log).
func appendError(dst []byte, err error) []byte {
	var pe *Error
	if !errors.As(err, &pe) {
		pe = fatalf(codeInternalError, "dbproxy: internal error", err)
	}
	sev := pe.Severity
	if sev == "" {
		sev = "FATAL"
	}
	msg := pgproto3.ErrorResponse{
		Severity:            sev,
		SeverityUnlocalized: sev,
		Code:                pe.Code,
		Message:             pe.Message,
	}
	out, encErr := msg.Encode(dst)
	if encErr != nil {
		// Encode only fails on oversized fields; ours are short constants.
		panic("BUG: encode ErrorResponse: " + encErr.Error())
	}
	return out
}

// drainError is the FATAL that ends a session drained for reason.
func drainError(reason proxy.DrainReason) error {
	switch reason {
	case proxy.DrainRulesChanged:
		return fatalf(codeAdminShutdown, "terminating connection because dbproxy's encryption rules changed (configuration reload); reconnect to continue under the new rules", nil)
	case proxy.DrainIdleTimeout:
		return fatalf(codeIdleSessionTimeout, "terminating connection due to dbproxy's idle timeout (limits.idle_timeout)", nil)
	default:
		return fatalf(codeAdminShutdown, "terminating connection because dbproxy is shutting down", nil)
	}
}
