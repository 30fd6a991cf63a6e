package value

import "errors"

// Sentinels for the kinds of conversion failure, for callers that map them
// to wire error codes (PostgreSQL 22P02, 22003/22008, XX001 ...). Match them
// with errors.Is on the *Error this package returns.
var (
	// ErrSyntax: the text is not a valid literal of the type.
	ErrSyntax = errors.New("invalid input syntax")
	// ErrRange: the literal is well formed but its value does not fit the type.
	ErrRange = errors.New("value out of range")
	// ErrCorrupt: a canonical encoding has the wrong length or shape (for
	// example a decrypted plaintext that was not produced by this package).
	ErrCorrupt = errors.New("invalid canonical encoding")
	// ErrUnsupported: an unknown Type, or a Go value Canonical cannot convert.
	ErrUnsupported = errors.New("unsupported")
)

// Error is the error returned by every conversion in this package. It names
// the type and the kind of failure, never the value: the value may be a
// secret and error strings end up in logs and on the wire.
type Error struct {
	Type Type
	// Kind is ErrSyntax, ErrRange, ErrCorrupt or ErrUnsupported.
	Kind error
	// Detail is a fixed phrase chosen by this package (or a Go type name for
	// ErrUnsupported); it is never derived from the value.
	Detail string
}

func (e *Error) Error() string {
	var msg string
	switch e.Kind {
	case ErrRange:
		msg = "value out of range for type " + e.Type.String()
	case ErrCorrupt:
		msg = "invalid canonical encoding for type " + e.Type.String()
	case ErrUnsupported:
		msg = "unsupported value for type " + e.Type.String()
	default:
		msg = "invalid input for type " + e.Type.String()
	}
	if e.Detail != "" {
		msg += ": " + e.Detail
	}
	return msg
}

// Unwrap returns Kind, so errors.Is(err, ErrRange) works.
func (e *Error) Unwrap() error { return e.Kind }

func syntaxError(t Type, detail string) error {
	return &Error{Type: t, Kind: ErrSyntax, Detail: detail}
}

func rangeError(t Type, detail string) error {
	return &Error{Type: t, Kind: ErrRange, Detail: detail}
}

func corruptError(t Type, detail string) error {
	return &Error{Type: t, Kind: ErrCorrupt, Detail: detail}
}

func unsupportedError(t Type, detail string) error {
	return &Error{Type: t, Kind: ErrUnsupported, Detail: detail}
}
