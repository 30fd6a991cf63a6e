package keystore

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/dbproxy/dbproxy/crypto"
)

// Store is where wrapped data keys live.
type Store interface {
	// List returns all records, sorted by name then version.
	List(ctx context.Context) ([]Record, error)
	// Get returns all versions of one key, ascending; an empty slice if
	// there are none.
	Get(ctx context.Context, name string) ([]Record, error)
	// Create inserts r if no record (r.Name, r.Version) exists. Otherwise
	// it returns an error wrapping ErrExists and leaves the store
	// unchanged. It is atomic across processes.
	Create(ctx context.Context, r Record) error
	// Replace swaps the wrapped bytes and master key id of an existing
	// (name, version) (master-key rewrap); nothing else changes. A missing
	// record is an error wrapping ErrNotFound.
	Replace(ctx context.Context, name string, version uint32, masterKeyID string, wrapped []byte) error
	// Close releases the store's resources.
	Close() error
}

var (
	// ErrExists means a record with that (name, version) already exists.
	ErrExists = errors.New("data key version already exists")
	// ErrNotFound means no record with that (name, version) exists.
	ErrNotFound = errors.New("data key version not found")
	// ErrClosed is returned by a store used after Close.
	ErrClosed = errors.New("keystore closed")
)

// Limits every store enforces, so that all of them accept the same records
// (the database columns are sized from these).
const (
	MaxNameLen        = 255  // bytes of UTF-8
	MaxMasterKeyIDLen = 2048 // a KMS key ARN is well under this
	MaxWrappedLen     = 4096 // a KMS ciphertext blob of a 64-byte key is ~200
)

// checkRecord validates r and returns it normalized: CreatedAt in UTC
// truncated to microseconds, Wrapped copied.
func checkRecord(r Record) (Record, error) {
	if err := checkName(r.Name); err != nil {
		return Record{}, err
	}
	if r.Version == 0 {
		return Record{}, fmt.Errorf("data key %q: version 0 is invalid (versions start at 1)", r.Name)
	}
	if _, err := r.Algorithm.MarshalText(); err != nil || r.Algorithm == crypto.AlgorithmUnknown {
		return Record{}, fmt.Errorf("data key %q v%d: invalid algorithm %d", r.Name, r.Version, byte(r.Algorithm))
	}
	if r.CreatedAt.IsZero() {
		return Record{}, fmt.Errorf("data key %q v%d: created-at is not set", r.Name, r.Version)
	}
	if err := checkWrap(r.MasterKeyID, r.Wrapped); err != nil {
		return Record{}, fmt.Errorf("data key %q v%d: %w", r.Name, r.Version, err)
	}
	r.CreatedAt = r.CreatedAt.UTC().Truncate(time.Microsecond)
	r.Wrapped = bytes.Clone(r.Wrapped)
	return r, nil
}

func checkName(name string) error {
	switch {
	case name == "":
		return errors.New("data key name is empty")
	case len(name) > MaxNameLen:
		return fmt.Errorf("data key name %.40q...: longer than %d bytes", name, MaxNameLen)
	case !utf8.ValidString(name):
		return fmt.Errorf("data key name %q: not valid UTF-8", name)
	case strings.IndexFunc(name, isControl) >= 0:
		return fmt.Errorf("data key name %q: contains a control character", name)
	}
	return nil
}

func isControl(r rune) bool { return r < 0x20 || r == 0x7f }

func checkWrap(masterKeyID string, wrapped []byte) error {
	switch {
	case masterKeyID == "":
		return errors.New("master key id is empty")
	case len(masterKeyID) > MaxMasterKeyIDLen:
		return fmt.Errorf("master key id longer than %d bytes", MaxMasterKeyIDLen)
	case !utf8.ValidString(masterKeyID) || strings.IndexFunc(masterKeyID, isControl) >= 0:
		return errors.New("master key id is not printable UTF-8")
	case len(wrapped) == 0:
		return errors.New("wrapped key is empty")
	case len(wrapped) > MaxWrappedLen:
		return fmt.Errorf("wrapped key is %d bytes, more than %d", len(wrapped), MaxWrappedLen)
	}
	return nil
}

func compareRecords(a, b Record) int {
	return cmp.Or(strings.Compare(a.Name, b.Name), cmp.Compare(a.Version, b.Version))
}

func sortRecords(recs []Record) { slices.SortFunc(recs, compareRecords) }

// filterName returns the records of one key, in a new non-nil slice.
func filterName(recs []Record, name string) []Record {
	out := []Record{}
	for _, r := range recs {
		if r.Name == name {
			out = append(out, r)
		}
	}
	return out
}
