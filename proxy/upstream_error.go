package proxy

import (
	"errors"
	"fmt"
	"strings"
)

// TargetSessionAttrs is libpq's target_session_attrs: which host of a
// multi-host upstream a session may use.
type TargetSessionAttrs uint8

const (
	// TargetAny takes the first host that accepts a connection.
	TargetAny TargetSessionAttrs = iota
	// TargetReadWrite skips hosts whose sessions are read-only
	// (PostgreSQL only: a hot standby, or default_transaction_read_only).
	TargetReadWrite
)

// ParseTargetSessionAttrs parses "any" (or "") and "read-write".
func ParseTargetSessionAttrs(s string) (TargetSessionAttrs, error) {
	switch s {
	case "", "any":
		return TargetAny, nil
	case "read-write":
		return TargetReadWrite, nil
	}
	return 0, fmt.Errorf("unknown target_session_attrs %q: must be any or read-write", s)
}

func (t TargetSessionAttrs) String() string {
	if t == TargetReadWrite {
		return "read-write"
	}
	return "any"
}

// ErrReadOnly says that a host's session was read-only where
// target_session_attrs is read-write.
var ErrReadOnly = errors.New("session is read-only")

// HostSkipped is a failure on one upstream host that makes a session
// move on to the next: the host could not be reached, or it answered in a
// way that another host may not (read-only, starting up, silent).
type HostSkipped struct{ Err error }

func (e *HostSkipped) Error() string { return e.Err.Error() }
func (e *HostSkipped) Unwrap() error { return e.Err }

// UpstreamError is the failure to reach any host of an upstream: why each
// host tried failed, in order.
type UpstreamError struct {
	Hosts  []string // host:port as configured
	Causes []error
}

// Add records that host h failed with err.
func (e *UpstreamError) Add(h *UpstreamHost, err error) {
	e.Hosts = append(e.Hosts, h.Addr)
	e.Causes = append(e.Causes, err)
}

// Tried names the hosts tried and, briefly, why each failed ("db1:5432
// (connection refused), db2:5432 (session is read-only)"): for the
// client's error message, so it carries no address a host name resolved
// to beyond what the error says, and no secrets (there are none in dial
// errors).
func (e *UpstreamError) Tried() string {
	parts := make([]string, len(e.Hosts))
	for i, h := range e.Hosts {
		parts[i] = h + " (" + shortCause(e.Causes[i]) + ")"
	}
	return strings.Join(parts, ", ")
}

func (e *UpstreamError) Error() string {
	if len(e.Hosts) == 0 {
		return "no upstream host tried"
	}
	return "could not connect to " + e.Tried()
}

// Unwrap returns the causes, so errors.Is sees a timeout or ErrReadOnly.
func (e *UpstreamError) Unwrap() []error { return e.Causes }

// shortCause is the innermost message of err (for a dial: "connection
// refused", "i/o timeout"), or err's own for joined errors of several
// addresses, the last one's.
func shortCause(err error) string {
	for {
		if j, ok := err.(interface{ Unwrap() []error }); ok {
			if errs := j.Unwrap(); len(errs) > 0 {
				err = errs[len(errs)-1]
				continue
			}
		}
		next := errors.Unwrap(err)
		if next == nil {
			return err.Error()
		}
		err = next
	}
}
