// Package bufpool is the byte-buffer pool of the protocol relays (the
// proxy/relay pumps and the hook writers of proxy/postgres and
// proxy/mysql): buffers up to [MaxPooled] bytes are pooled by power-of-two
// size class; larger ones are allocated exactly and left to the garbage
// collector, so a 20 MB row does not pin 20 MB per session afterwards.
//
// It owns the pool and the two buffer sizes both relays use; it must not
// import any dbproxy package.
package bufpool

import (
	"math/bits"
	"sync"
)

const (
	minPooledBits = 14 // 16 KiB
	maxPooledBits = 22 // 4 MiB
	// MaxPooled is the largest buffer size that is pooled.
	MaxPooled = 1 << maxPooledBits
)

// Sizes the protocol relays share. Every session holds two relay buffers of
// RelayBufSize (the smallest size class); a message or packet that a hook
// must see whole and that does not fit borrows a larger buffer from [Get]
// for as long as it is being handled.
const (
	RelayBufSize = 1 << minPooledBits
	// MaxKeptWriter is the capacity above which a hook writer's buffer is
	// dropped after a flush instead of reused.
	MaxKeptWriter = 1 << 20
)

var pools [maxPooledBits - minPooledBits + 1]sync.Pool

// Get returns a buffer of length at least n (exactly n above MaxPooled,
// otherwise a power of two of at least 16 KiB).
func Get(n int) []byte { return *GetHandle(n) }

// Put returns a buffer obtained from Get. Buffers whose capacity is not a
// pooled size class are dropped. The caller must not use b afterwards.
func Put(b []byte) { PutHandle(&b) }

// GetHandle is Get for a caller that gives its buffer back and takes one
// again often (a relay between bursts): the handle *h is the buffer, and
// PutHandle takes it back without allocating.
func GetHandle(n int) *[]byte {
	if n > MaxPooled {
		b := make([]byte, n)
		return &b
	}
	class := 0
	if n > 1<<minPooledBits {
		class = bits.Len(uint(n-1)) - minPooledBits
	}
	if h, ok := pools[class].Get().(*[]byte); ok {
		return h
	}
	b := make([]byte, 1<<(class+minPooledBits))
	return &b
}

// PutHandle returns a handle obtained from GetHandle (or a buffer from Get,
// by its address). The caller must not use the buffer afterwards.
func PutHandle(h *[]byte) {
	n := cap(*h)
	if n < 1<<minPooledBits || n > MaxPooled || n&(n-1) != 0 {
		return
	}
	*h = (*h)[:n]
	pools[bits.Len(uint(n))-1-minPooledBits].Put(h)
}
