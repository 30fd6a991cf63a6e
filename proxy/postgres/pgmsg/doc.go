// Package pgmsg owns the decoding and encoding of the PostgreSQL protocol
// messages the encryption layer (pgcrypt) inspects or rewrites: the
// type-byte constants of both directions, typed zero-copy views over a
// message body (Bind, Parse, Describe, Close, Execute, FunctionCall,
// DataRow, RowDescription, ParameterDescription, ErrorResponse,
// CommandComplete, ParameterStatus, ReadyForQuery) and the tuples of a
// binary COPY stream, and appenders that re-encode them into a caller's
// buffer.
//
// A view is built by its Parse function from a message body (the bytes
// after the type byte and the length), which checks every bound up front
// and returns an error wrapping ErrMalformed on malformed input; it never
// panics. A view holds sub-slices of the body and allocates nothing, so it
// is valid only as long as the body is: keep nothing from it past the
// message without copying.
//
// # Boundaries
//
// No state and no I/O: the package knows the layout of messages, not what
// they mean for a session, and never reads or writes a connection. It does
// not import the rest of the proxy.
package pgmsg
