package mysql

import (
	"math/bits"
	"sync"
)

// Buffer sizes. Every session holds two relay buffers of relayBufSize; a
// packet that a hook must see whole and that does not fit is assembled in a
// buffer borrowed for as long as it is being handled. Buffers up to
// maxPooledBuf are pooled by power-of-two size class; larger ones are
// allocated exactly and left to the garbage collector, so a 20 MB row does
// not pin 20 MB per session afterwards. (A copy of proxy/postgres's pool: a
// candidate for an internal package shared by both.)
const (
	relayBufSize  = 16 << 10
	minPooledBits = 14 // 16 KiB
	maxPooledBits = 22 // 4 MiB
	maxPooledBuf  = 1 << maxPooledBits
	// maxKeptWriter is the capacity above which a hook Writer's buffer is
	// dropped after a flush instead of reused.
	maxKeptWriter = 1 << 20
)

var bufPools [maxPooledBits - minPooledBits + 1]sync.Pool

// getBuf returns a buffer of length at least n.
func getBuf(n int) []byte {
	if n > maxPooledBuf {
		return make([]byte, n)
	}
	class := 0
	if n > 1<<minPooledBits {
		class = bits.Len(uint(n-1)) - minPooledBits
	}
	if p, ok := bufPools[class].Get().(*[]byte); ok {
		return *p
	}
	return make([]byte, 1<<(class+minPooledBits))
}

// putBuf returns a buffer obtained from getBuf. Buffers of a size that is
// not a pooled class are dropped.
func putBuf(b []byte) {
	n := cap(b)
	if n < 1<<minPooledBits || n > maxPooledBuf || n&(n-1) != 0 {
		return
	}
	b = b[:n]
	bufPools[bits.Len(uint(n))-1-minPooledBits].Put(&b)
}
