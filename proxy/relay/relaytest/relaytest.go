package relaytest

import (
	"bytes"
	"io"
	"math/rand/v2"
)

// ChunkReader returns its input in pseudo-random pieces of 1 to Max
// bytes, so that a framing test meets messages split anywhere.
type ChunkReader struct {
	R   io.Reader
	Rnd *rand.Rand
	Max int
}

// NewChunkReader reads in, in pieces of at most max bytes whose sizes
// the PCG generator seeded with seed1, seed2 picks.
func NewChunkReader(in []byte, seed1, seed2 uint64, max int) *ChunkReader {
	return &ChunkReader{R: bytes.NewReader(in), Rnd: rand.New(rand.NewPCG(seed1, seed2)), Max: max}
}

func (c *ChunkReader) Read(p []byte) (int, error) {
	n := 1 + c.Rnd.IntN(c.Max)
	if n < len(p) {
		p = p[:n]
	}
	return c.R.Read(p)
}
