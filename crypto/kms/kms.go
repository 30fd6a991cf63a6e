package kms

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"strconv"
)

// KeyRef names the data key version being wrapped. It is bound as
// associated data (local) or EncryptionContext (AWS KMS) to the wrapped
// bytes, so it must be the same on wrap and unwrap.
type KeyRef struct {
	Name    string
	Version uint32
}

// String formats the reference for error messages: `"users.email" v3`.
func (r KeyRef) String() string {
	return strconv.Quote(r.Name) + " v" + strconv.FormatUint(uint64(r.Version), 10)
}

// MasterKey wraps and unwraps data keys. Implementations are safe for
// concurrent use.
type MasterKey interface {
	// ID is a stable identifier of this master key; it is stored next to
	// each wrapped key (keystore.Record.MasterKeyID). It is not secret.
	ID() string
	// GenerateDataKey returns a fresh random data key of size bytes and the
	// same key wrapped for ref. The caller owns plaintext and should zero it
	// when done.
	GenerateDataKey(ctx context.Context, ref KeyRef, size int) (plaintext, wrapped []byte, err error)
	// Unwrap returns the data key inside wrapped, which must have been
	// wrapped for the same ref by this master key.
	Unwrap(ctx context.Context, ref KeyRef, wrapped []byte) ([]byte, error)
	// Wrap wraps an existing data key for ref (used to rewrap keys under a
	// new master key).
	Wrap(ctx context.Context, ref KeyRef, plaintext []byte) ([]byte, error)
}

var (
	// ErrUnreachable means the provider could not be reached (network
	// error, timeout). Nothing was decided; retrying later may succeed.
	ErrUnreachable = errors.New("master key provider unreachable")
	// ErrDenied means the provider answered and refused the request
	// (access denied, key disabled or not found, invalid request).
	ErrDenied = errors.New("master key provider refused the request")
	// ErrUnwrap means the wrapped bytes do not authenticate under this
	// master key for this key reference (wrong master key, wrong name or
	// version, corrupted bytes). It never says which.
	ErrUnwrap = errors.New("wrapped data key does not authenticate")
	// ErrClosed is returned by a master key used after Close.
	ErrClosed = errors.New("master key closed")
)

// maxDataKeySize bounds the data key sizes this package generates or wraps
// (AWS KMS GenerateDataKey accepts at most 1024 bytes).
const maxDataKeySize = 1024

// generateWith returns size random bytes and their wrapping by wrap, for
// master keys that wrap in process or in a token (not AWS KMS, which
// generates data keys itself). id names the master key in errors.
func generateWith(ref KeyRef, size int, id string, wrap func([]byte) ([]byte, error)) (plaintext, wrapped []byte, err error) {
	if size <= 0 || size > maxDataKeySize {
		return nil, nil, fmt.Errorf("generate data key %s with master key %s: invalid size %d", ref, id, size)
	}
	plaintext = make([]byte, size)
	if _, err := rand.Read(plaintext); err != nil {
		return nil, nil, fmt.Errorf("generate data key %s with master key %s: %w", ref, id, err)
	}
	wrapped, err = wrap(plaintext)
	if err != nil {
		clear(plaintext)
		return nil, nil, fmt.Errorf("generate data key %s: %w", ref, err)
	}
	return plaintext, wrapped, nil
}

// wrapWith checks the size of plaintext and wraps it with wrap.
func wrapWith(ref KeyRef, plaintext []byte, id string, wrap func([]byte) ([]byte, error)) ([]byte, error) {
	if len(plaintext) == 0 || len(plaintext) > maxDataKeySize {
		return nil, fmt.Errorf("wrap data key %s with master key %s: invalid size %d", ref, id, len(plaintext))
	}
	wrapped, err := wrap(plaintext)
	if err != nil {
		return nil, fmt.Errorf("wrap data key %s: %w", ref, err)
	}
	return wrapped, nil
}
