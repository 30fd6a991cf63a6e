package mysql

import "github.com/dbproxy/dbproxy/internal/bufpool"

// Buffer sizes. Every session holds two relay buffers of relayBufSize; a
// packet that a hook must see whole and that does not fit is assembled in a
// buffer borrowed for as long as it is being handled. Buffers come from
// internal/bufpool, shared with the other protocol relay.
const (
	relayBufSize = 16 << 10
	// maxKeptWriter is the capacity above which a hook Writer's buffer is
	// dropped after a flush instead of reused.
	maxKeptWriter = 1 << 20
)

// getBuf returns a buffer of length at least n.
func getBuf(n int) []byte { return bufpool.Get(n) }

// putBuf returns a buffer obtained from getBuf.
func putBuf(b []byte) { bufpool.Put(b) }
