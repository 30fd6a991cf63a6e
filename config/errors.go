package config

import (
	"fmt"
	"strings"
)

// FieldError is one problem in a configuration file.
//
// Line and Col are 1-based positions in the file. Line 0 means the problem
// is not tied to a position (the file could not be read); Col is 1 when the
// YAML parser reported a line but no column.
type FieldError struct {
	File string
	Line int
	Col  int
	// Field is the path of the offending setting, e.g.
	// "listeners[1].upstream_tls.mode"; empty for document-level problems.
	Field string
	Msg   string
	// Err is the underlying error, if any (e.g. from reading the file).
	Err error
}

// Error formats the problem as "FILE:LINE:COL: field: message" (or
// "FILE: message" when Line is 0). It never contains a secret.
func (e *FieldError) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d:%d", e.Line, e.Col)
	}
	b.WriteString(": ")
	if e.Field != "" {
		b.WriteString(e.Field)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Unwrap returns the underlying error, if any.
func (e *FieldError) Unwrap() error { return e.Err }

// Errors is every problem found in one configuration file, sorted by
// position. Load and Parse return it (never an empty one) on failure.
type Errors []*FieldError

// Error joins the problems, one per line.
func (e Errors) Error() string {
	lines := make([]string, len(e))
	for i, fe := range e {
		lines[i] = fe.Error()
	}
	return strings.Join(lines, "\n")
}

// Unwrap lets errors.As and errors.Is look at each FieldError.
func (e Errors) Unwrap() []error {
	errs := make([]error, len(e))
	for i, fe := range e {
		errs[i] = fe
	}
	return errs
}
