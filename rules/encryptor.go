package rules

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/dbproxy/dbproxy/crypto"
	"github.com/dbproxy/dbproxy/crypto/keys"
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

// liveAppender is implemented by a Keys that can append the live versions
// of a key to a caller's slice (*crypto/keys.Manager does). The Encryptor
// then reuses pooled slices instead of allocating one per call to Live.
type liveAppender interface {
	// AppendLive is Live appending the keys to dst; nil on error.
	AppendLive(ctx context.Context, dst []*crypto.Key, name string) ([]*crypto.Key, error)
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
//
// With a *keys.Manager, it keeps each column's key lookups (the live
// versions, the primary one, the versions it decrypted last) as
// keys.Snapshots in the ColumnRule, and uses them again while they are
// current: a value then costs no lookup of the key's name. The keys are
// the ones the Manager would return (a rotation becomes visible as soon),
// and a key destroyed meanwhile fails with crypto.ErrKeyDestroyed, on
// which the Encryptor asks once more, as it does with any Keys.
type Encryptor struct {
	keys Keys
	mgr  *keys.Manager // keys, if it is one; else nil
	live liveAppender  // keys, if it implements liveAppender; else nil
	// keyBufs pools the *[]*crypto.Key slices that live appends to.
	keyBufs sync.Pool
}

// keySnaps is a column's cached key lookups (see Encryptor).
type keySnaps struct {
	live, primary atomic.Pointer[keys.Snapshot]
	// version[v%len] is the lookup of version v: rows written before
	// and after a rotation each find theirs.
	version [4]atomic.Pointer[keys.Snapshot]
}

// current returns the snapshot in p if it was taken from e.mgr (for
// version v, if v is not nil) and is current, else nil.
func (e *Encryptor) current(p *atomic.Pointer[keys.Snapshot], v *uint32) *keys.Snapshot {
	if s := p.Load(); s != nil && s.Of(e.mgr) && (v == nil || s.Version() == *v) && s.Current() {
		return s
	}
	return nil
}

// NewEncryptor returns an Encryptor that gets its data keys from ks. If
// ks is a *keys.Manager, it caches lookups per column (see Encryptor). If
// ks has a method AppendLive(ctx, dst []*crypto.Key, name string)
// ([]*crypto.Key, error), as *crypto/keys.Manager does, the Encryptor uses
// it instead of Live and allocates no list of keys per call.
func NewEncryptor(ks Keys) *Encryptor {
	e := &Encryptor{keys: ks}
	e.mgr, _ = ks.(*keys.Manager)
	e.live, _ = ks.(liveAppender)
	return e
}

// liveKeys returns the live versions of col's data key, newest first,
// which the caller must not modify. When pooled is not nil, ks is borrowed
// from e.keyBufs: the caller must hand it back with putKeys once it no
// longer uses ks.
func (e *Encryptor) liveKeys(ctx context.Context, col *ColumnRule) (ks []*crypto.Key, pooled *[]*crypto.Key, err error) {
	name := col.Key
	if e.mgr != nil && col.snaps != nil {
		s := e.current(&col.snaps.live, nil)
		if s == nil {
			if s, err = e.mgr.LiveSnapshot(ctx, name); err != nil {
				return nil, nil, err
			}
			col.snaps.live.Store(s)
		}
		return s.Keys(), nil, nil
	}
	if e.live == nil {
		ks, err = e.keys.Live(ctx, name)
		return ks, nil, err
	}
	pooled, _ = e.keyBufs.Get().(*[]*crypto.Key)
	if pooled == nil {
		pooled = new([]*crypto.Key)
	}
	ks, err = e.live.AppendLive(ctx, (*pooled)[:0], name)
	if err != nil {
		e.keyBufs.Put(pooled)
		return nil, nil, err
	}
	*pooled = ks
	return ks, pooled, nil
}

// putKeys returns a slice borrowed by liveKeys to the pool, dropping its
// references to keys so that the pool does not keep them alive.
func (e *Encryptor) putKeys(pooled *[]*crypto.Key) {
	if pooled == nil {
		return
	}
	clear(*pooled)
	*pooled = (*pooled)[:0]
	e.keyBufs.Put(pooled)
}

// EncryptForStore returns the ciphertext of canon, the canonical encoding of
// a value of col.Type, under the primary version of col's data key: what an
// INSERT, UPDATE or COPY writes.
func (e *Encryptor) EncryptForStore(ctx context.Context, col *ColumnRule, canon []byte) ([]byte, error) {
	return e.AppendStore(ctx, nil, col, canon)
}

// AppendStore is EncryptForStore appending the ciphertext to dst. When dst
// has room for len(canon)+col.Mode.Algorithm().Overhead() more bytes, the
// ciphertext fits without growing dst (crypto.Key.Encrypt itself
// allocates nothing, except XAES-256-GCM for values over 512 bytes or
// without AES-NI).
func (e *Encryptor) AppendStore(ctx context.Context, dst []byte, col *ColumnRule, canon []byte) ([]byte, error) {
	if err := value.Validate(col.Type, canon); err != nil {
		return nil, fmt.Errorf("encrypt value for column %s: %w", col, err)
	}
	for attempt := 0; ; attempt++ {
		k, err := e.primary(ctx, col)
		if err != nil {
			return nil, fmt.Errorf("encrypt value for column %s: data key %q: %w", col, col.Key, err)
		}
		if !col.Mode.Accepts(k.Algorithm()) {
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

// primary returns the primary version of col's data key.
func (e *Encryptor) primary(ctx context.Context, col *ColumnRule) (*crypto.Key, error) {
	if e.mgr != nil && col.snaps != nil {
		if s := e.current(&col.snaps.primary, nil); s != nil {
			return s.Keys()[0], nil
		}
		s, err := e.mgr.PrimarySnapshot(ctx, col.Key)
		if err != nil {
			return nil, err
		}
		if s != nil {
			col.snaps.primary.Store(s)
			return s.Keys()[0], nil
		}
	}
	return e.keys.Primary(ctx, col.Key)
}

// decrypt decrypts ct, whose header names key version v of col's data
// key, appending the plaintext to dst (Keys.Decrypt).
func (e *Encryptor) decrypt(ctx context.Context, col *ColumnRule, v uint32, dst, ct []byte) ([]byte, value.Type, error) {
	if e.mgr == nil || col.snaps == nil {
		return e.keys.Decrypt(ctx, col.Key, dst, ct)
	}
	p := &col.snaps.version[v%uint32(len(col.snaps.version))]
	for attempt := 0; ; attempt++ {
		s := e.current(p, &v)
		if s == nil {
			var err error
			if s, err = e.mgr.VersionSnapshot(ctx, col.Key, v); err != nil {
				return nil, value.TypeUnknown, err
			}
			if s == nil {
				return e.keys.Decrypt(ctx, col.Key, dst, ct)
			}
			p.Store(s)
		}
		pt, t, err := s.Keys()[0].Decrypt(dst, ct)
		if errors.Is(err, crypto.ErrKeyDestroyed) && attempt == 0 {
			continue
		}
		if err != nil {
			return nil, value.TypeUnknown, err // names the key and version
		}
		return pt, t, nil
	}
}

// LiveVersions returns how many live versions col's data key has: the
// number of ciphertexts EncryptForMatch returns for col right now. It
// changes when a `keys rotate` becomes visible (within the key cache's TTL).
func (e *Encryptor) LiveVersions(ctx context.Context, col *ColumnRule) (int, error) {
	keys, pooled, err := e.liveKeys(ctx, col)
	if err != nil {
		return 0, fmt.Errorf("column %s: data key %q: %w", col, col.Key, err)
	}
	n := len(keys)
	e.putKeys(pooled)
	if n == 0 {
		return 0, fmt.Errorf("column %s: data key %q has no versions", col, col.Key)
	}
	return n, nil
}

// EncryptForMatch returns the ciphertexts of canon under every live version
// of col's data key, newest first: a lookup must match any of them, so that
// rows written before a `keys rotate` are still found. col must be
// deterministic (ErrRandomizedMatch otherwise). The ciphertexts share one
// backing array.
func (e *Encryptor) EncryptForMatch(ctx context.Context, col *ColumnRule, canon []byte) ([][]byte, error) {
	_, cts, err := e.AppendMatch(ctx, nil, nil, col, canon)
	return cts, err
}

// AppendMatch is EncryptForMatch appending the ciphertexts, newest first,
// to buf and a slice of each (capacity limited to its length) to cts, and
// returning both. A caller that reuses buf and cts, with room for every
// ciphertext (LiveVersions times len(canon)+crypto.AlgorithmAESSIV.Overhead()
// bytes), allocates nothing here (the AES-SIV implementation still does).
// The ciphertexts are valid until buf is overwritten; buf must not overlap
// canon. On error it returns nil, nil.
func (e *Encryptor) AppendMatch(ctx context.Context, buf []byte, cts [][]byte, col *ColumnRule, canon []byte) ([]byte, [][]byte, error) {
	if !col.Deterministic {
		return nil, nil, fmt.Errorf("match value for column %s: %w", col, ErrRandomizedMatch)
	}
	if err := value.Validate(col.Type, canon); err != nil {
		return nil, nil, fmt.Errorf("match value for column %s: %w", col, err)
	}
	for attempt := 0; ; attempt++ {
		keys, pooled, err := e.liveKeys(ctx, col)
		if err != nil {
			return nil, nil, fmt.Errorf("match value for column %s: data key %q: %w", col, col.Key, err)
		}
		outBuf, outCts, err := e.appendMatch(buf, cts, col, canon, keys)
		e.putKeys(pooled)
		if errors.Is(err, crypto.ErrKeyDestroyed) && attempt == 0 {
			continue
		}
		if err != nil {
			return nil, nil, err
		}
		return outBuf, outCts, nil
	}
}

// appendMatch is one attempt of AppendMatch with the given live keys. Its
// error wraps crypto.ErrKeyDestroyed if a key was destroyed meanwhile.
func (e *Encryptor) appendMatch(buf []byte, cts [][]byte, col *ColumnRule, canon []byte, keys []*crypto.Key) ([]byte, [][]byte, error) {
	if len(keys) == 0 {
		return nil, nil, fmt.Errorf("match value for column %s: data key %q has no versions", col, col.Key)
	}
	// One backing array for all the ciphertexts.
	buf = slices.Grow(buf, len(keys)*(crypto.AlgorithmAESSIV.Overhead()+len(canon)))
	cts = slices.Grow(cts, len(keys))
	for _, k := range keys {
		if k.Algorithm() != crypto.AlgorithmAESSIV {
			return nil, nil, fmt.Errorf("match value for column %s: data key %q version %d is %s but the column is deterministic: %w",
				col, col.Key, k.Version(), k.Algorithm(), ErrAlgorithm)
		}
		start := len(buf)
		next, err := k.Encrypt(buf, canon, col.Type)
		if err != nil {
			return nil, nil, fmt.Errorf("match value for column %s: %w", col, err)
		}
		buf = next
		cts = append(cts, buf[start:len(buf):len(buf)])
	}
	return buf, cts, nil
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
	if !col.Mode.Accepts(h.Algorithm) {
		return nil, fmt.Errorf("decrypt value of column %s: ciphertext is %s but the column is %s: %w",
			col, h.Algorithm, col.Mode, ErrAlgorithm)
	}
	if h.Type != col.Type {
		return nil, fmt.Errorf("decrypt value of column %s: ciphertext holds %s, the column %s: %w",
			col, h.Type, col.Type, ErrWrongType)
	}
	n := len(dst)
	out, t, err := e.decrypt(ctx, col, h.KeyVersion, dst, ct)
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
