package sqlplan

import (
	"context"

	"github.com/dbproxy/dbproxy/rules"
)

// Encrypter produces the ciphertexts a plan's Rewrite splices into the SQL
// text. *rules.Encryptor satisfies it, and so does any per-session cipher
// with the same methods.
type Encrypter interface {
	// AppendStore appends to dst the ciphertext of canon under col's
	// primary key version and returns the extended buffer.
	AppendStore(ctx context.Context, dst []byte, col *rules.ColumnRule, canon []byte) ([]byte, error)
	// AppendMatch appends to buf the ciphertexts of canon under every
	// live version of col's key, newest first, and a slice of each to
	// cts, and returns both (rules.Encryptor.AppendMatch). buf must not
	// overlap canon.
	AppendMatch(ctx context.Context, buf []byte, cts [][]byte, col *rules.ColumnRule, canon []byte) ([]byte, [][]byte, error)
}

var _ Encrypter = (*rules.Encryptor)(nil)

// MatchRecorder receives the ciphertexts a Rewrite renders for comparisons
// with a deterministic column, so that a wire layer can recognise them in
// the results without decrypting them. *rules.Matches satisfies it.
type MatchRecorder interface {
	// RecordMatch reports that cts, the ciphertexts of canon (a canonical
	// plaintext) under every live version of col's key, were rendered into
	// the SQL. canon and cts are only valid during the call (copy them).
	RecordMatch(col *rules.ColumnRule, canon []byte, cts [][]byte)
}

var _ MatchRecorder = (*rules.Matches)(nil)

// DefaultCacheSize is the number of plans a planner keeps when its
// Options.CacheSize is 0.
const DefaultCacheSize = 1024
