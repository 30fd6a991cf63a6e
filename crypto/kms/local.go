package kms

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"sync"
)

const (
	// LocalKeySize is the size of a local master key: AES-256.
	LocalKeySize = 32

	localWrapVersion = 0x01
	localNonceSize   = 12
	localTagSize     = 16
	localWrapAD      = "dbproxy/local-wrap/v1\x00"
	localIDPrefix    = "dbproxy master key id"

	// maxLocalKeyFile bounds how much of a key file is read: base64 of 32
	// bytes plus generous whitespace.
	maxLocalKeyFile = 4096
)

// Local is a master key held in process, loaded from a key file. The key
// bytes live only in memory and are zeroed by [Local.Close].
//
// Wrapped layout (AES-256-GCM under the master key):
//
//	0x01 || nonce (12) || ciphertext || tag (16)
//
// with associated data
//
//	"dbproxy/local-wrap/v1" 0x00 || name || 0x00 || decimal version
type Local struct {
	id string

	mu  sync.RWMutex
	key []byte // nil after Close
}

var _ MasterKey = (*Local)(nil)

// CreateLocalKeyFile writes a new master key (base64 of 32 random bytes and
// a newline) to path with mode 0600. It never overwrites: if path already
// exists it returns created=false and leaves the file alone. The file
// appears atomically (written to a temporary file in the same directory,
// synced, then hard-linked into place), so a crash never leaves a partial
// key file behind.
func CreateLocalKeyFile(path string) (created bool, err error) {
	if _, err := os.Lstat(path); err == nil {
		return false, nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return false, fmt.Errorf("create master key file %q: %w", path, err)
	}

	key := make([]byte, LocalKeySize)
	defer clear(key)
	if _, err := rand.Read(key); err != nil {
		return false, fmt.Errorf("create master key file %q: %w", path, err)
	}
	text := make([]byte, base64.StdEncoding.EncodedLen(len(key)), base64.StdEncoding.EncodedLen(len(key))+1)
	defer clear(text)
	base64.StdEncoding.Encode(text, key)
	text = append(text, '\n')

	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return false, fmt.Errorf("create master key file %q: %w", path, err)
	}
	tmpName := tmp.Name()
	defer os.Remove(tmpName) // after the link, only the temporary name goes
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return false, fmt.Errorf("create master key file %q: %w", path, err)
	}
	if _, err := tmp.Write(text); err != nil {
		tmp.Close()
		return false, fmt.Errorf("create master key file %q: %w", path, err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return false, fmt.Errorf("create master key file %q: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return false, fmt.Errorf("create master key file %q: %w", path, err)
	}
	// link(2) fails with EEXIST instead of replacing: never overwrite a key
	// that a racing process created in the meantime.
	if err := os.Link(tmpName, path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return false, nil
		}
		return false, fmt.Errorf("create master key file %q: %w", path, err)
	}
	if err := syncDir(dir); err != nil {
		return true, fmt.Errorf("create master key file %q: %w", path, err)
	}
	return true, nil
}

// LoadLocal reads a master key file written by [CreateLocalKeyFile] (or by
// hand: base64 of exactly 32 bytes, surrounding whitespace ignored). Like
// ssh with private keys, it refuses a file that grants any permission to
// group or others.
func LoadLocal(path string) (*Local, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("load master key file: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("load master key file: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("load master key file %q: not a regular file", path)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("load master key file %q: permissions %#o are too open; it must not be accessible by group or others (chmod 600)", path, perm)
	}
	raw, err := io.ReadAll(io.LimitReader(f, maxLocalKeyFile+1))
	defer clear(raw)
	if err != nil {
		return nil, fmt.Errorf("load master key file %q: %w", path, err)
	}
	if len(raw) > maxLocalKeyFile {
		return nil, fmt.Errorf("load master key file %q: file too large for a master key", path)
	}
	text := bytes.TrimSpace(raw)
	key := make([]byte, base64.StdEncoding.DecodedLen(len(text)))
	n, err := base64.StdEncoding.Decode(key, text)
	if err != nil {
		clear(key)
		// The decoder error gives only an offset, never the data.
		return nil, fmt.Errorf("load master key file %q: not base64: %w", path, err)
	}
	if n != LocalKeySize {
		clear(key)
		return nil, fmt.Errorf("load master key file %q: key is %d bytes, want %d", path, n, LocalKeySize)
	}
	return newLocal(key[:LocalKeySize:LocalKeySize]), nil
}

// NewLocal returns a master key over a copy of key, which must be 32 bytes.
// It is meant for tests and for callers that keep the key elsewhere;
// production code uses [LoadLocal].
func NewLocal(key []byte) (*Local, error) {
	if len(key) != LocalKeySize {
		return nil, fmt.Errorf("local master key is %d bytes, want %d", len(key), LocalKeySize)
	}
	return newLocal(bytes.Clone(key)), nil
}

// newLocal takes ownership of key.
func newLocal(key []byte) *Local {
	h := sha256.New()
	h.Write([]byte(localIDPrefix))
	h.Write(key)
	sum := h.Sum(nil)
	return &Local{id: "local:" + hex.EncodeToString(sum[:8]), key: key}
}

// ID returns "local:" and the hex of the first 8 bytes of
// SHA-256("dbproxy master key id" || key). It identifies the key without
// revealing it, and stays valid after Close.
func (l *Local) ID() string { return l.id }

// String returns the id, so a Local printed by mistake shows no key bytes.
func (l *Local) String() string { return l.id }

// Close zeroes the key bytes. Later calls fail with [ErrClosed]. Close is
// idempotent and always returns nil.
func (l *Local) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	clear(l.key)
	l.key = nil
	return nil
}

// GenerateDataKey returns size random bytes and their wrapping for ref.
func (l *Local) GenerateDataKey(ctx context.Context, ref KeyRef, size int) (plaintext, wrapped []byte, err error) {
	return generateWith(ref, size, l.id, func(pt []byte) ([]byte, error) { return l.wrap(ref, pt) })
}

// Wrap wraps plaintext for ref. ctx is unused: wrapping is local.
func (l *Local) Wrap(ctx context.Context, ref KeyRef, plaintext []byte) ([]byte, error) {
	return wrapWith(ref, plaintext, l.id, func(pt []byte) ([]byte, error) { return l.wrap(ref, pt) })
}

// Unwrap returns the data key in wrapped. Any authentication failure is
// reported as [ErrUnwrap], without saying why.
func (l *Local) Unwrap(ctx context.Context, ref KeyRef, wrapped []byte) ([]byte, error) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	if l.key == nil {
		return nil, fmt.Errorf("unwrap data key %s with master key %s: %w", ref, l.id, ErrClosed)
	}
	if len(wrapped) < 1+localNonceSize+localTagSize || wrapped[0] != localWrapVersion {
		return nil, fmt.Errorf("unwrap data key %s with master key %s: %w", ref, l.id, ErrUnwrap)
	}
	aead, err := l.aead()
	if err != nil {
		return nil, fmt.Errorf("unwrap data key %s with master key %s: %w", ref, l.id, err)
	}
	nonce := wrapped[1 : 1+localNonceSize]
	plaintext, err := aead.Open(nil, nonce, wrapped[1+localNonceSize:], localAD(ref))
	if err != nil {
		return nil, fmt.Errorf("unwrap data key %s with master key %s: %w", ref, l.id, ErrUnwrap)
	}
	return plaintext, nil
}

func (l *Local) wrap(ref KeyRef, plaintext []byte) ([]byte, error) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	if l.key == nil {
		return nil, fmt.Errorf("master key %s: %w", l.id, ErrClosed)
	}
	aead, err := l.aead()
	if err != nil {
		return nil, fmt.Errorf("master key %s: %w", l.id, err)
	}
	out := make([]byte, 1+localNonceSize, 1+localNonceSize+len(plaintext)+localTagSize)
	out[0] = localWrapVersion
	if _, err := rand.Read(out[1:]); err != nil {
		return nil, fmt.Errorf("master key %s: %w", l.id, err)
	}
	return aead.Seal(out, out[1:], plaintext, localAD(ref)), nil
}

// aead builds the cipher per call, so the expanded key schedule does not
// outlive the operation. Callers hold l.mu.
func (l *Local) aead() (cipher.AEAD, error) {
	block, err := aes.NewCipher(l.key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

func localAD(ref KeyRef) []byte { return wrapAD(localWrapAD, ref) }

// wrapAD is prefix || name || 0x00 || decimal version: the associated data
// that binds a wrapped data key to its reference.
func wrapAD(prefix string, ref KeyRef) []byte {
	ad := make([]byte, 0, len(prefix)+len(ref.Name)+1+10)
	ad = append(ad, prefix...)
	ad = append(ad, ref.Name...)
	ad = append(ad, 0)
	return strconv.AppendUint(ad, uint64(ref.Version), 10)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
