package fieldcrypt

import (
	"context"

	"github.com/dbproxy/dbproxy/proxy"
	"github.com/dbproxy/dbproxy/rules"
)

// Op is what a column's data key is used for.
type Op uint8

const (
	_ Op = iota // the zero value is invalid
	// OpEncrypt: a value stored into the column (INSERT, UPDATE, COPY),
	// under the key's primary version.
	OpEncrypt
	// OpMatch: a value compared with a deterministic column, encrypted
	// under every live version of its key.
	OpMatch
	// OpDecrypt: a value of the column read back.
	OpDecrypt
)

func (o Op) String() string {
	switch o {
	case OpEncrypt:
		return "encrypt"
	case OpMatch:
		return "match"
	case OpDecrypt:
		return "decrypt"
	}
	return "invalid"
}

// Access is a use of a column's key about to happen: what a Guard decides
// on.
type Access struct {
	Principal proxy.Principal
	Op        Op
	// Column is the column's rule (never nil); Column.Key names its data
	// key. It is shared: do not modify it.
	Column *rules.ColumnRule
}

// Use is a use of a column's key that happened, or that the Guard refused:
// what a Monitor is told.
type Use struct {
	Access
	// KeyVersion is the version of the data key used (OpMatch: the
	// newest of them); 0 if none was (an error before a key was chosen).
	KeyVersion uint32
	// Versions is the number of ciphertexts made or opened: 1, or for
	// OpMatch one per live key version; 0 on error.
	Versions int
	// Bytes is the length of the plaintext; -1 if unknown (a decryption
	// that failed or was refused).
	Bytes int
	// Err is nil on success; a *RefusedError if the Guard refused; else
	// the Encryptor's error (it names the column and key, never a value).
	Err error
}

// Guard decides, before each use of a column's key, whether the session
// may use it: per-user access policy plugs in here. Check is called from
// the session's goroutines (two at once for PostgreSQL), for every value,
// so it must be safe for concurrent use, fast and non-blocking. A non-nil
// error refuses the use; the Cipher wraps it in a *RefusedError, and the
// client gets an error of its protocol naming the column. The error must
// not carry secrets: the client sees its text.
type Guard interface {
	Check(ctx context.Context, a Access) error
}

// GuardFunc is a Guard as a function.
type GuardFunc func(ctx context.Context, a Access) error

// Check calls f.
func (f GuardFunc) Check(ctx context.Context, a Access) error { return f(ctx, a) }

// Monitor is told of each use of a column's key after it happened, and of
// each use the Guard refused: audit of key use and metrics plug in here.
// KeyUsed is called from the session's goroutines (two at once for
// PostgreSQL), once per value, so it must be safe for concurrent use, fast
// and non-blocking (hand slow work to another goroutine).
type Monitor interface {
	KeyUsed(ctx context.Context, u Use)
}

// MonitorFunc is a Monitor as a function.
type MonitorFunc func(ctx context.Context, u Use)

// KeyUsed calls f.
func (f MonitorFunc) KeyUsed(ctx context.Context, u Use) { f(ctx, u) }

// RefusedError is a use of a column's key the session's Guard refused.
type RefusedError struct {
	Op     Op
	Column *rules.ColumnRule
	// Err is the Guard's reason.
	Err error
}

func (e *RefusedError) Error() string {
	return e.Op.String() + " of column " + e.Column.String() + " refused: " + e.Err.Error()
}

// Unwrap returns the Guard's reason.
func (e *RefusedError) Unwrap() error { return e.Err }
