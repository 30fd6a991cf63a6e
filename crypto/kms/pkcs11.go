package kms

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"sync"

	"github.com/miekg/pkcs11"
)

const (
	p11WrapKeyWrap = 0x02 // 0x02 || mechanism (uint32 BE) || C_WrapKey output
	p11WrapGCM     = 0x03 // 0x03 || IV (12) || C_Encrypt output (ciphertext || tag)

	p11GCMIVSize   = 12
	p11GCMTagBits  = 128
	p11BindingSize = 16
	p11WrapAD      = "dbproxy/pkcs11-wrap/v1\x00"
	// defaultPKCS11Sessions bounds the sessions a master key opens.
	defaultPKCS11Sessions = 4
)

// PKCS11 is a master key held in a PKCS#11 token (an HSM, AWS CloudHSM,
// SoftHSM2): a non-extractable AES key found by its label. Data keys are
// wrapped inside the token; the master key never leaves it.
//
// PKCS#11 sessions are not safe for concurrent use, so each operation
// takes a session from a small pool (PKCS11Options.Sessions) and returns
// it after; operations beyond that wait for a free session (or for their
// context). The process logs in once, when the key is opened.
//
// Wrapped layouts, chosen by the mechanism and recorded in the first byte
// so that unwrap uses the same one:
//
//	0x02 || mechanism (uint32 big endian) || C_WrapKey(binding || size (uint16 big endian) || data key)
//	0x03 || IV (12) || C_Encrypt(CKM_AES_GCM, IV, AAD) = ciphertext || tag (16)
//
// with AAD = "dbproxy/pkcs11-wrap/v1" 0x00 || name || 0x00 || decimal
// version, and binding = the first 16 bytes of SHA-256(AAD): key wrapping
// has no associated data, so the reference is wrapped with the key and
// checked on unwrap.
type PKCS11 struct {
	id   string
	mech uint

	mu     sync.RWMutex // held for reading by operations, for writing by Close
	mod    *module
	pool   *sessionPool
	closed bool
	find   PKCS11Options // the labels, to find the key again (PIN cleared)

	keyMu sync.Mutex
	key   pkcs11.ObjectHandle
}

var _ MasterKey = (*PKCS11)(nil)

// OpenPKCS11 loads the module, finds the token, logs in, finds the key and
// checks that it is a sensitive, non-extractable AES key allowed to wrap
// (or encrypt) with the chosen mechanism, then wraps and unwraps a
// throwaway key (see selfTest). Errors name the setting at fault (module,
// token_label, PIN, key_label, mechanism), never the PIN.
func OpenPKCS11(ctx context.Context, opts PKCS11Options) (*PKCS11, error) {
	t, err := openToken(ctx, opts)
	if err != nil {
		return nil, err
	}
	find := opts
	find.PIN = ""
	k := &PKCS11{id: PKCS11KeyID(opts.TokenLabel, opts.KeyLabel), mod: t.mod, pool: t.pool, find: find}
	err = t.pool.withSession(ctx, func(s pkcs11.SessionHandle) error {
		h, err := findKey(t.mod.ctx, s, opts)
		if err != nil {
			return err
		}
		k.key = h
		k.mech, err = chooseMechanism(t.mod.ctx, t.slot, opts)
		if err != nil {
			return err
		}
		return checkKey(t.mod.ctx, s, h, k.mech, opts)
	})
	if err == nil {
		err = k.selfTest(ctx, opts.Mechanism == 0)
	}
	if err != nil {
		k.Close()
		return nil, fmt.Errorf("pkcs11 master key %s: %w", k.id, err)
	}
	return k, nil
}

// selfTest wraps and unwraps a throwaway key, so that a token that offers
// the mechanism but refuses what it needs (importing or reading a session
// key, for key wrapping) fails at open, not at every statement. When the
// mechanism was chosen automatically, a failed key wrapping falls back to
// CKM_AES_GCM if the token and key allow it.
func (k *PKCS11) selfTest(ctx context.Context, auto bool) error {
	err := k.roundTrip(ctx)
	if err == nil {
		return nil
	}
	first := fmt.Errorf("self-test of mechanism %#x: %w", k.mech, err)
	if !auto || k.mech == CKMAESGCM {
		return first
	}
	gcm := k.find
	gcm.Mechanism = CKMAESGCM
	if _, err = chooseMechanism(k.mod.ctx, k.pool.slot, gcm); err == nil {
		err = k.pool.withSession(ctx, func(s pkcs11.SessionHandle) error {
			return checkKey(k.mod.ctx, s, k.key, CKMAESGCM, gcm)
		})
	}
	if err == nil {
		k.mech = CKMAESGCM
		err = k.roundTrip(ctx)
	}
	if err != nil {
		return fmt.Errorf("%w; CKM_AES_GCM instead: %w", first, err)
	}
	return nil
}

func (k *PKCS11) roundTrip(ctx context.Context) error {
	ref := KeyRef{Name: "dbproxy self-test"}
	pt, wrapped, err := k.GenerateDataKey(ctx, ref, 32)
	if err != nil {
		return err
	}
	defer clear(pt)
	got, err := k.Unwrap(ctx, ref, wrapped)
	if err != nil {
		return err
	}
	defer clear(got)
	if !bytes.Equal(got, pt) {
		return errors.New("the key unwrapped differs from the key wrapped")
	}
	return nil
}

// ID returns "pkcs11:<token label>/<key label>".
func (k *PKCS11) ID() string { return k.id }

// String returns the id.
func (k *PKCS11) String() string { return k.id }

// Mechanism returns the wrapping mechanism new wraps use.
func (k *PKCS11) Mechanism() uint { return k.mech }

// Close returns the sessions and releases the module (the last user of a
// module finalises it). Later calls fail with [ErrClosed]. Idempotent.
func (k *PKCS11) Close() error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.closed {
		return nil
	}
	k.closed = true
	k.pool.close()
	k.mod.release()
	return nil
}

// GenerateDataKey returns size random bytes (from crypto/rand) and their
// wrapping for ref inside the token.
func (k *PKCS11) GenerateDataKey(ctx context.Context, ref KeyRef, size int) (plaintext, wrapped []byte, err error) {
	return generateWith(ref, size, k.id, func(pt []byte) ([]byte, error) { return k.wrap(ctx, ref, pt) })
}

// Wrap wraps plaintext for ref inside the token.
func (k *PKCS11) Wrap(ctx context.Context, ref KeyRef, plaintext []byte) ([]byte, error) {
	return wrapWith(ref, plaintext, k.id, func(pt []byte) ([]byte, error) { return k.wrap(ctx, ref, pt) })
}

func (k *PKCS11) wrap(ctx context.Context, ref KeyRef, plaintext []byte) ([]byte, error) {
	k.mu.RLock()
	defer k.mu.RUnlock()
	if k.closed {
		return nil, fmt.Errorf("master key %s: %w", k.id, ErrClosed)
	}
	ad := p11AD(ref)
	var out []byte
	err := k.do(ctx, func(s pkcs11.SessionHandle, key pkcs11.ObjectHandle) error {
		var err error
		if k.mech == CKMAESGCM {
			out, err = gcmEncrypt(k.mod.ctx, s, key, ad, plaintext)
		} else {
			out, err = keyWrap(k.mod.ctx, s, key, k.mech, ad, plaintext)
		}
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("master key %s: %w", k.id, classifyP11(err, false))
	}
	return out, nil
}

// Unwrap returns the data key in wrapped, using the mechanism recorded in
// it. Bytes that do not authenticate are [ErrUnwrap].
func (k *PKCS11) Unwrap(ctx context.Context, ref KeyRef, wrapped []byte) ([]byte, error) {
	k.mu.RLock()
	defer k.mu.RUnlock()
	if k.closed {
		return nil, fmt.Errorf("unwrap data key %s with master key %s: %w", ref, k.id, ErrClosed)
	}
	ad := p11AD(ref)
	var pt []byte
	err := k.do(ctx, func(s pkcs11.SessionHandle, key pkcs11.ObjectHandle) error {
		var err error
		switch {
		case len(wrapped) > 1+p11GCMIVSize+p11GCMTagBits/8 && wrapped[0] == p11WrapGCM:
			pt, err = gcmDecrypt(k.mod.ctx, s, key, ad, wrapped[1:])
		case len(wrapped) > 5 && wrapped[0] == p11WrapKeyWrap:
			pt, err = keyUnwrap(k.mod.ctx, s, key, ad, wrapped[1:])
		default:
			err = ErrUnwrap
		}
		return authFailure(k.mod.ctx, s, err)
	})
	if errors.Is(err, ErrUnwrap) {
		return nil, fmt.Errorf("unwrap data key %s with master key %s: %w", ref, k.id, ErrUnwrap)
	}
	if err != nil {
		return nil, fmt.Errorf("unwrap data key %s with master key %s: %w", ref, k.id, classifyP11(err, true))
	}
	if len(pt) == 0 || len(pt) > maxDataKeySize {
		clear(pt)
		return nil, fmt.Errorf("unwrap data key %s with master key %s: %w", ref, k.id, ErrUnwrap)
	}
	return pt, nil
}

// do runs fn on a pooled session with the key's handle. When the token
// says the process is logged out, or no longer knows the handle (private
// objects vanish on logout), it logs in again, finds and checks the key
// again and runs fn once more.
func (k *PKCS11) do(ctx context.Context, fn func(pkcs11.SessionHandle, pkcs11.ObjectHandle) error) error {
	return k.pool.withSession(ctx, func(s pkcs11.SessionHandle) error {
		k.keyMu.Lock()
		key := k.key
		k.keyMu.Unlock()
		err := fn(s, key)
		if !loggedOut(err) {
			return err
		}
		if lerr := k.pool.login(s); lerr != nil {
			return err
		}
		h, ferr := findKey(k.mod.ctx, s, k.find)
		if ferr != nil {
			return ferr
		}
		// A key found again by its label may be another one (replaced on
		// the token meanwhile): it must pass the same checks.
		if cerr := checkKey(k.mod.ctx, s, h, k.mech, k.find); cerr != nil {
			return cerr
		}
		k.keyMu.Lock()
		k.key = h
		k.keyMu.Unlock()
		return fn(s, h)
	})
}

func loggedOut(err error) bool {
	for _, code := range []uint{pkcs11.CKR_USER_NOT_LOGGED_IN, pkcs11.CKR_KEY_HANDLE_INVALID, pkcs11.CKR_OBJECT_HANDLE_INVALID} {
		if errors.Is(err, pkcs11.Error(code)) {
			return true
		}
	}
	return false
}

// authFailure turns the vague CKR_GENERAL_ERROR and CKR_FUNCTION_FAILED
// of a failed decrypt or unwrap into ErrUnwrap when the session still
// answers: tokens such as SoftHSM2 report a GCM tag or key wrap integrity
// check that fails with those codes. A token that no longer answers keeps
// the code (unreachable).
func authFailure(c *pkcs11.Ctx, s pkcs11.SessionHandle, err error) error {
	if !errors.Is(err, pkcs11.Error(pkcs11.CKR_GENERAL_ERROR)) && !errors.Is(err, pkcs11.Error(pkcs11.CKR_FUNCTION_FAILED)) {
		return err
	}
	if _, serr := c.GetSessionInfo(s); serr != nil {
		return err
	}
	return fmt.Errorf("%w (%w)", ErrUnwrap, err)
}

func gcmEncrypt(c *pkcs11.Ctx, s pkcs11.SessionHandle, key pkcs11.ObjectHandle, ad, plaintext []byte) ([]byte, error) {
	iv := make([]byte, p11GCMIVSize)
	if _, err := rand.Read(iv); err != nil {
		return nil, err
	}
	params := pkcs11.NewGCMParams(iv, ad, p11GCMTagBits)
	defer params.Free()
	if err := c.EncryptInit(s, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_AES_GCM, params)}, key); err != nil {
		return nil, err
	}
	ct, err := c.Encrypt(s, plaintext)
	if err != nil {
		return nil, err
	}
	// A token that generates the IV itself (AWS CloudHSM) writes it back
	// into the parameters.
	if got := params.IV(); len(got) == p11GCMIVSize {
		iv = got
	}
	out := make([]byte, 0, 1+p11GCMIVSize+len(ct))
	out = append(out, p11WrapGCM)
	out = append(out, iv...)
	return append(out, ct...), nil
}

func gcmDecrypt(c *pkcs11.Ctx, s pkcs11.SessionHandle, key pkcs11.ObjectHandle, ad, body []byte) ([]byte, error) {
	params := pkcs11.NewGCMParams(body[:p11GCMIVSize], ad, p11GCMTagBits)
	defer params.Free()
	if err := c.DecryptInit(s, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_AES_GCM, params)}, key); err != nil {
		return nil, err
	}
	return c.Decrypt(s, body[p11GCMIVSize:])
}

// keyWrap imports binding || plaintext as a session secret key object,
// wraps it with the master key and destroys it.
func keyWrap(c *pkcs11.Ctx, s pkcs11.SessionHandle, key pkcs11.ObjectHandle, mech uint, ad, plaintext []byte) ([]byte, error) {
	value := binary.BigEndian.AppendUint16(binding(ad), uint16(len(plaintext)))
	value = append(value, plaintext...)
	defer clear(value)
	obj, err := c.CreateObject(s, dataKeyObject(pkcs11.NewAttribute(pkcs11.CKA_VALUE, value)))
	if err != nil {
		return nil, err
	}
	defer c.DestroyObject(s, obj)
	w, err := c.WrapKey(s, []*pkcs11.Mechanism{pkcs11.NewMechanism(mech, nil)}, key, obj)
	if err != nil {
		return nil, err
	}
	out := make([]byte, 5, 5+len(w))
	out[0] = p11WrapKeyWrap
	binary.BigEndian.PutUint32(out[1:], uint32(mech))
	return append(out, w...), nil
}

// keyUnwrap unwraps body into a session object, reads its value, destroys
// it, and checks the binding to ad.
func keyUnwrap(c *pkcs11.Ctx, s pkcs11.SessionHandle, key pkcs11.ObjectHandle, ad, body []byte) ([]byte, error) {
	mech := uint(binary.BigEndian.Uint32(body))
	if mech != CKMAESKeyWrapKWP && mech != CKMAESKeyWrapPad {
		return nil, ErrUnwrap
	}
	obj, err := c.UnwrapKey(s, []*pkcs11.Mechanism{pkcs11.NewMechanism(mech, nil)}, key, body[4:], dataKeyObject())
	if err != nil {
		return nil, err
	}
	defer c.DestroyObject(s, obj)
	attrs, err := c.GetAttributeValue(s, obj, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_VALUE, nil)})
	if err != nil {
		return nil, err
	}
	value := attrs[0].Value
	defer clear(value)
	if len(value) <= p11BindingSize+2 || subtle.ConstantTimeCompare(value[:p11BindingSize], binding(ad)) != 1 {
		return nil, ErrUnwrap
	}
	// Some tokens return the padding of the wrapped value (SoftHSM2 with
	// CKM_AES_KEY_WRAP_PAD): the recorded length says where the key ends.
	n := int(binary.BigEndian.Uint16(value[p11BindingSize:]))
	rest := value[p11BindingSize+2:]
	if n > len(rest) || slices.ContainsFunc(rest[n:], func(b byte) bool { return b != 0 }) {
		return nil, ErrUnwrap
	}
	return bytes.Clone(rest[:n]), nil
}

// dataKeyObject is the template of the session object that holds a data
// key (with its binding) while it is wrapped or unwrapped: readable, so
// that its value can be returned, and destroyed at once after.
func dataKeyObject(extra ...*pkcs11.Attribute) []*pkcs11.Attribute {
	return append([]*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_SECRET_KEY),
		pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_GENERIC_SECRET),
		pkcs11.NewAttribute(pkcs11.CKA_TOKEN, false),
		pkcs11.NewAttribute(pkcs11.CKA_SENSITIVE, false),
		pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, true),
	}, extra...)
}

func binding(ad []byte) []byte {
	sum := sha256.Sum256(ad)
	return sum[:p11BindingSize:p11BindingSize]
}

func p11AD(ref KeyRef) []byte { return wrapAD(p11WrapAD, ref) }
