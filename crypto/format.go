package crypto

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/dbproxy/dbproxy/value"
)

// ErrMalformed is wrapped by every error about a ciphertext that is not a
// well-formed docs/ciphertext.md ciphertext: too short, unknown format version,
// unknown algorithm, unknown plaintext type code. These checks read only the
// public header, so the wrapping error says which one failed.
var ErrMalformed = errors.New("malformed ciphertext")

// ErrKeyMismatch is wrapped by the error Decrypt returns for a well-formed
// ciphertext whose header names another algorithm or another key version
// than the Key it was given: the caller picked the wrong Key (see
// ParseHeader). It is never returned for a failed authentication; that is
// ErrDecrypt.
var ErrKeyMismatch = errors.New("ciphertext does not belong to this data key")

// headerProblem is what parseHeader found wrong, without allocating; the
// exported functions turn it into an error.
type headerProblem uint8

const (
	headerOK headerProblem = iota
	headerShort
	headerBadVersion
	headerBadAlgorithm
	headerBadType
	headerShortPayload
)

// parseHeader checks the fixed header and the algorithm's minimum payload
// length. It never allocates.
func parseHeader(src []byte) (Header, headerProblem) {
	if len(src) < HeaderSize {
		return Header{}, headerShort
	}
	if src[0] != FormatVersion {
		return Header{}, headerBadVersion
	}
	alg := Algorithm(src[1])
	if !alg.Valid() {
		return Header{}, headerBadAlgorithm
	}
	t := value.Type(src[6])
	if !t.Valid() {
		return Header{}, headerBadType
	}
	h := Header{Algorithm: alg, KeyVersion: binary.BigEndian.Uint32(src[2:6]), Type: t}
	if len(src) < alg.Overhead() {
		return h, headerShortPayload
	}
	return h, headerOK
}

// headerError describes p for src. The message carries only public header
// fields and lengths, never payload bytes.
func headerError(p headerProblem, src []byte) error {
	switch p {
	case headerShort:
		return fmt.Errorf("%w: %d bytes is shorter than the %d-byte header", ErrMalformed, len(src), HeaderSize)
	case headerBadVersion:
		return fmt.Errorf("%w: unsupported format version 0x%02x (want 0x%02x)", ErrMalformed, src[0], FormatVersion)
	case headerBadAlgorithm:
		return fmt.Errorf("%w: unknown algorithm 0x%02x", ErrMalformed, src[1])
	case headerBadType:
		return fmt.Errorf("%w: unknown plaintext type code %d", ErrMalformed, src[6])
	case headerShortPayload:
		alg := Algorithm(src[1])
		return fmt.Errorf("%w: %d bytes is shorter than the %d-byte minimum of an %s ciphertext",
			ErrMalformed, len(src), alg.Overhead(), alg)
	default:
		return nil
	}
}

// ParseHeader reads the public header of a ciphertext so the caller can
// pick the data key version to decrypt it with. It also checks that the
// ciphertext is at least as long as its algorithm requires. It does not
// authenticate anything: a header that parses can still fail Decrypt.
// Errors wrap ErrMalformed.
func ParseHeader(ciphertext []byte) (Header, error) {
	h, p := parseHeader(ciphertext)
	if p != headerOK {
		return Header{}, headerError(p, ciphertext)
	}
	return h, nil
}

// IsCiphertext reports whether b looks like a docs/ciphertext.md ciphertext: known
// format version, algorithm and type code, and long enough for its
// algorithm. It is a cheap plausibility check (no allocation, no
// cryptography): a value that passes may still fail to decrypt, and random
// bytes pass with small but non-zero probability.
func IsCiphertext(b []byte) bool {
	_, p := parseHeader(b)
	return p == headerOK
}
