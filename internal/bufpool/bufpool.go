// Package bufpool is the byte-buffer pool shared by the protocol relays
// (proxy/postgres, proxy/mysql): buffers up to [MaxPooled] bytes are pooled
// by power-of-two size class; larger ones are allocated exactly and left to
// the garbage collector, so a 20 MB row does not pin 20 MB per session
// afterwards.
//
// It owns only the pool; it must not import any dbproxy package.
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

var pools [maxPooledBits - minPooledBits + 1]sync.Pool

// Get returns a buffer of length at least n (exactly n above MaxPooled,
// otherwise a power of two of at least 16 KiB).
func Get(n int) []byte {
	if n > MaxPooled {
		return make([]byte, n)
	}
	class := 0
	if n > 1<<minPooledBits {
		class = bits.Len(uint(n-1)) - minPooledBits
	}
	if p, ok := pools[class].Get().(*[]byte); ok {
		return *p
	}
	return make([]byte, 1<<(class+minPooledBits))
}

// Put returns a buffer obtained from Get. Buffers whose capacity is not a
// pooled size class are dropped. The caller must not use b afterwards.
func Put(b []byte) {
	n := cap(b)
	if n < 1<<minPooledBits || n > MaxPooled || n&(n-1) != 0 {
		return
	}
	b = b[:n]
	pools[bits.Len(uint(n))-1-minPooledBits].Put(&b)
}
