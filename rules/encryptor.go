package rules

import (
	"context"
	"errors"
	"fmt"

	"github.com/dbproxy/dbproxy/crypto"
	"github.com/dbproxy/dbproxy/value"
)

// Keys is what the Encryptor needs from the key manager;
// *crypto/keys.Manager satisfies it. Keys it returns may be destroyed by
// the cache at any time (crypto.ErrKeyDestroyed): the Encryptor then asks
// once more.
type Keys interface {
	// Primary returns the newest version of data key name.
	Primary(ctx context.Context, name string) (*crypto.Key, error)
	// Live returns every version of data key name, newest first.
	Live(ctx context.Context, name string) ([]*crypto.Key, error)
	// Decrypt decrypts ct, a ciphertext of data key name, appending the
	// plaintext to dst, and returns it with the type from the header.
	Decrypt(ctx context.Context, name string, dst, ct []byte) ([]byte, value.Type, error)
}

// Errors wrapped by the Encryptor. None of them carries a value.
var (
	// ErrRandomizedMatch: EncryptForMatch on a randomized column, whose
	// ciphertexts cannot be compared.
	ErrRandomizedMatch = errors.New("column is randomized: its values cannot be compared")
	// ErrAlgorithm: a data key or ciphertext uses another algorithm than
	// the column's mode requires (for example a deterministic column whose
	// key is AES-256-GCM: lookups would silently find nothing).
	ErrAlgorithm = errors.New("algorithm does not match the column's mode")
	// ErrWrongType: a ciphertext's plaintext type code is not the column's
	// type (a ciphertext copied from another column).
	ErrWrongType = errors.New("ciphertext holds another plaintext type than the column")
)

// Encryptor encrypts canonical plaintexts for columns and decrypts their
// ciphertexts. It is safe for concurrent use.
type Encryptor struct {
	keys Keys
}

// NewEncryptor returns an Encryptor that gets its data keys from keys.
func NewEncryptor(keys Keys) *Encryptor { return &Encryptor{keys: keys} }

// EncryptForStore returns the ciphertext of canon, the canonical encoding of
// a value of col.Type, under the primary version of col's data key: what an
// INSERT, UPDATE or COPY writes.
func (e *Encryptor) EncryptForStore(ctx context.Context, col *ColumnRule, canon []byte) ([]byte, error) {
	return e.AppendStore(ctx, nil, col, canon)
}

// AppendStore is EncryptForStore appending the ciphertext to dst. When dst
// has room for len(canon)+col.Mode.Algorithm().Overhead() more bytes, a
// randomized column allocates nothing.
func (e *Encryptor) AppendStore(ctx context.Context, dst []byte, col *ColumnRule, canon []byte) ([]byte, error) {
	if err := value.Validate(col.Type, canon); err != nil {
		return nil, fmt.Errorf("encrypt value for column %s: %w", col, err)
	}
	want := col.Mode.Algorithm()
	for attempt := 0; ; attempt++ {
		k, err := e.keys.Primary(ctx, col.Key)
		if err != nil {
			return nil, fmt.Errorf("encrypt value for column %s: data key %q: %w", col, col.Key, err)
		}
		if k.Algorithm() != want {
			return nil, fmt.Errorf("encrypt value for column %s: data key %q version %d is %s but the column is %s: %w",
				col, col.Key, k.Version(), k.Algorithm(), col.Mode, ErrAlgorithm)
		}
		out, err := k.Encrypt(dst, canon, col.Type)
		if errors.Is(err, crypto.ErrKeyDestroyed) && attempt == 0 {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("encrypt value for column %s: %w", col, err)
		}
		return out, nil
	}
}

// LiveVersions returns how many live versions col's data key has: the
// number of ciphertexts EncryptForMatch returns for col right now. It
// changes when a `keys rotate` becomes visible (within the key cache's TTL).
func (e *Encryptor) LiveVersions(ctx context.Context, col *ColumnRule) (int, error) {
	keys, err := e.keys.Live(ctx, col.Key)
	if err != nil {
		return 0, fmt.Errorf("column %s: data key %q: %w", col, col.Key, err)
	}
	if len(keys) == 0 {
		return 0, fmt.Errorf("column %s: data key %q has no versions", col, col.Key)
	}
	return len(keys), nil
}

// EncryptForMatch returns the ciphertexts of canon under every live version
// of col's data key, newest first: a lookup must match any of them, so that
// rows written before a `keys rotate` are still found. col must be
// deterministic (ErrRandomizedMatch otherwise). The ciphertexts share one
// backing array.
func (e *Encryptor) EncryptForMatch(ctx context.Context, col *ColumnRule, canon []byte) ([][]byte, error) {
	if !col.Deterministic {
		return nil, fmt.Errorf("match value for column %s: %w", col, ErrRandomizedMatch)
	}
	if err := value.Validate(col.Type, canon); err != nil {
		return nil, fmt.Errorf("match value for column %s: %w", col, err)
	}
	for attempt := 0; ; attempt++ {
		keys, err := e.keys.Live(ctx, col.Key)
		if err != nil {
			return nil, fmt.Errorf("match value for column %s: data key %q: %w", col, col.Key, err)
		}
		if len(keys) == 0 {
			return nil, fmt.Errorf("match value for column %s: data key %q has no versions", col, col.Key)
		}
		size := crypto.AlgorithmAESSIV.Overhead() + len(canon)
		buf := make([]byte, 0, len(keys)*size)
		out := make([][]byte, 0, len(keys))
		destroyed := false
		for _, k := range keys {
			if k.Algorithm() != crypto.AlgorithmAESSIV {
				return nil, fmt.Errorf("match value for column %s: data key %q version %d is %s but the column is deterministic: %w",
					col, col.Key, k.Version(), k.Algorithm(), ErrAlgorithm)
			}
			start := len(buf)
			buf, err = k.Encrypt(buf, canon, col.Type)
			if errors.Is(err, crypto.ErrKeyDestroyed) && attempt == 0 {
				destroyed = true
				break
			}
			if err != nil {
				return nil, fmt.Errorf("match value for column %s: %w", col, err)
			}
			out = append(out, buf[start:len(buf):len(buf)])
		}
		if destroyed {
			continue
		}
		return out, nil
	}
}

// Decrypt returns the canonical plaintext of ct, a ciphertext read from
// column col. Besides authenticating it, it checks that the ciphertext's
// algorithm matches col's mode, that its type code is col.Type, and that
// the plaintext is a well-formed canonical encoding of that type, so it
// never returns garbage. Errors name the column, never the value.
func (e *Encryptor) Decrypt(ctx context.Context, col *ColumnRule, ct []byte) ([]byte, error) {
	return e.AppendDecrypt(ctx, nil, col, ct)
}

// AppendDecrypt is Decrypt appending the plaintext to dst.
func (e *Encryptor) AppendDecrypt(ctx context.Context, dst []byte, col *ColumnRule, ct []byte) ([]byte, error) {
	h, err := crypto.ParseHeader(ct)
	if err != nil {
		return nil, fmt.Errorf("decrypt value of column %s: %w", col, err)
	}
	if h.Algorithm != col.Mode.Algorithm() {
		return nil, fmt.Errorf("decrypt value of column %s: ciphertext is %s but the column is %s: %w",
			col, h.Algorithm, col.Mode, ErrAlgorithm)
	}
	if h.Type != col.Type {
		return nil, fmt.Errorf("decrypt value of column %s: ciphertext holds %s, the column %s: %w",
			col, h.Type, col.Type, ErrWrongType)
	}
	n := len(dst)
	out, t, err := e.keys.Decrypt(ctx, col.Key, dst, ct)
	if err != nil {
		return nil, fmt.Errorf("decrypt value of column %s: %w", col, err)
	}
	if t != col.Type || len(out) < n {
		return nil, fmt.Errorf("decrypt value of column %s: %w", col, ErrWrongType)
	}
	if err := value.Validate(col.Type, out[n:]); err != nil {
		return nil, fmt.Errorf("decrypt value of column %s: %w", col, err)
	}
	return out, nil
}
