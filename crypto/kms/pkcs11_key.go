package kms

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/miekg/pkcs11"
)

// token is a logged-in token of a loaded module.
type token struct {
	mod  *module
	slot uint
	pool *sessionPool
}

// openToken loads opts.Module, finds the token labelled opts.TokenLabel
// and logs in with opts.PIN. The caller releases t.mod (and closes
// t.pool) when done.
func openToken(ctx context.Context, opts PKCS11Options) (*token, error) {
	switch {
	case opts.Module == "":
		return nil, errors.New("pkcs11 master key: module is required")
	case opts.TokenLabel == "":
		return nil, errors.New("pkcs11 master key: token_label is required")
	case opts.KeyLabel == "":
		return nil, errors.New("pkcs11 master key: key_label is required")
	case opts.PIN == "":
		return nil, errors.New("pkcs11 master key: the PIN is empty (pin_env names an unset or empty variable, or pin_file is empty)")
	}
	mod, err := loadModule(opts.Module)
	if err != nil {
		return nil, err
	}
	slot, err := mod.findSlot(opts.TokenLabel)
	if err != nil {
		mod.release()
		return nil, err
	}
	n := opts.Sessions
	if n <= 0 {
		n = defaultPKCS11Sessions
	}
	pool := newSessionPool(mod, slot, opts.PIN, n)
	err = pool.withSession(ctx, pool.login)
	if err != nil {
		pool.close()
		mod.release()
		if errors.Is(err, pkcs11.Error(pkcs11.CKR_PIN_INCORRECT)) || errors.Is(err, pkcs11.Error(pkcs11.CKR_PIN_LEN_RANGE)) {
			return nil, fmt.Errorf("pkcs11 token %q: wrong PIN (pin_env or pin_file): %w", opts.TokenLabel, err)
		}
		if errors.Is(err, pkcs11.Error(pkcs11.CKR_PIN_LOCKED)) {
			return nil, fmt.Errorf("pkcs11 token %q: the user PIN is locked (too many wrong PINs): %w", opts.TokenLabel, err)
		}
		return nil, fmt.Errorf("pkcs11 token %q: login: %w", opts.TokenLabel, classifyP11(err, false))
	}
	return &token{mod: mod, slot: slot, pool: pool}, nil
}

func keyTemplate(label string) []*pkcs11.Attribute {
	return []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_SECRET_KEY),
		pkcs11.NewAttribute(pkcs11.CKA_LABEL, label),
	}
}

// errKeyMissing marks a token without the configured key.
var errKeyMissing = errors.New("key not found")

// findKey returns the one secret key labelled opts.KeyLabel.
func findKey(c *pkcs11.Ctx, s pkcs11.SessionHandle, opts PKCS11Options) (pkcs11.ObjectHandle, error) {
	if err := c.FindObjectsInit(s, keyTemplate(opts.KeyLabel)); err != nil {
		return 0, fmt.Errorf("find key %q: %w", opts.KeyLabel, err)
	}
	found, _, err := c.FindObjects(s, 2)
	if ferr := c.FindObjectsFinal(s); err == nil {
		err = ferr
	}
	switch {
	case err != nil:
		return 0, fmt.Errorf("find key %q: %w", opts.KeyLabel, err)
	case len(found) == 0:
		return 0, fmt.Errorf("%w: no secret key labelled %q (key_label) in token %q; dbproxy keys init creates it", errKeyMissing, opts.KeyLabel, opts.TokenLabel)
	case len(found) > 1:
		return 0, fmt.Errorf("more than one secret key labelled %q (key_label) in token %q; labels must be unique", opts.KeyLabel, opts.TokenLabel)
	}
	return found[0], nil
}

// chooseMechanism returns opts.Mechanism if the token offers it, else
// CKM_AES_KEY_WRAP_KWP if the token offers it for wrap and unwrap, else
// CKM_AES_GCM if it offers that for encrypt and decrypt.
func chooseMechanism(c *pkcs11.Ctx, slot uint, opts PKCS11Options) (uint, error) {
	offers := func(mech, flags uint) bool {
		info, err := c.GetMechanismInfo(slot, []*pkcs11.Mechanism{pkcs11.NewMechanism(mech, nil)})
		return err == nil && info.Flags&flags == flags
	}
	const wrapFlags, encFlags = pkcs11.CKF_WRAP | pkcs11.CKF_UNWRAP, pkcs11.CKF_ENCRYPT | pkcs11.CKF_DECRYPT
	switch opts.Mechanism {
	case 0:
		if offers(CKMAESKeyWrapKWP, wrapFlags) {
			return CKMAESKeyWrapKWP, nil
		}
		if offers(CKMAESGCM, encFlags) {
			return CKMAESGCM, nil
		}
		return 0, fmt.Errorf("mechanism unsupported: token %q offers neither CKM_AES_KEY_WRAP_KWP (wrap, unwrap) nor CKM_AES_GCM (encrypt, decrypt)", opts.TokenLabel)
	case CKMAESKeyWrapKWP, CKMAESKeyWrapPad:
		if offers(opts.Mechanism, wrapFlags) {
			return opts.Mechanism, nil
		}
	case CKMAESGCM:
		if offers(opts.Mechanism, encFlags) {
			return opts.Mechanism, nil
		}
	default:
		return 0, fmt.Errorf("mechanism %#x is not a wrapping mechanism this provider uses", opts.Mechanism)
	}
	return 0, fmt.Errorf("mechanism unsupported: token %q does not offer mechanism %#x", opts.TokenLabel, opts.Mechanism)
}

// checkKey refuses a key that is not AES, whose value could leave the
// token, or that may not be used with mech.
func checkKey(c *pkcs11.Ctx, s pkcs11.SessionHandle, h pkcs11.ObjectHandle, mech uint, opts PKCS11Options) error {
	a, err := keyAttributes(c, s, h)
	if err != nil {
		return err
	}
	name := fmt.Sprintf("key %q (key_label) in token %q", opts.KeyLabel, opts.TokenLabel)
	switch {
	case a.KeyType != pkcs11.CKK_AES:
		return fmt.Errorf("%s is not an AES key (CKA_KEY_TYPE %#x)", name, a.KeyType)
	case !a.Sensitive || a.Extractable:
		return fmt.Errorf("%s can leave the token (CKA_SENSITIVE %v, CKA_EXTRACTABLE %v); use a key with CKA_SENSITIVE true and CKA_EXTRACTABLE false", name, a.Sensitive, a.Extractable)
	case mech == CKMAESGCM && (!a.Encrypt || !a.Decrypt):
		return fmt.Errorf("%s may not encrypt and decrypt (CKA_ENCRYPT %v, CKA_DECRYPT %v), which CKM_AES_GCM needs", name, a.Encrypt, a.Decrypt)
	case mech != CKMAESGCM && (!a.Wrap || !a.Unwrap):
		return fmt.Errorf("%s may not wrap and unwrap (CKA_WRAP %v, CKA_UNWRAP %v), which mechanism %#x needs", name, a.Wrap, a.Unwrap, mech)
	}
	return nil
}

// p11KeyAttributes are the attributes of a token key that decide how it
// may be used.
type p11KeyAttributes struct {
	KeyType                              uint
	Token, Sensitive, Extractable        bool
	Encrypt, Decrypt, Wrap, Unwrap, Priv bool
}

// keyAttributes reads the usage attributes of key h.
func keyAttributes(c *pkcs11.Ctx, s pkcs11.SessionHandle, h pkcs11.ObjectHandle) (p11KeyAttributes, error) {
	types := []uint{pkcs11.CKA_KEY_TYPE, pkcs11.CKA_TOKEN, pkcs11.CKA_SENSITIVE, pkcs11.CKA_EXTRACTABLE,
		pkcs11.CKA_ENCRYPT, pkcs11.CKA_DECRYPT, pkcs11.CKA_WRAP, pkcs11.CKA_UNWRAP, pkcs11.CKA_PRIVATE}
	tmpl := make([]*pkcs11.Attribute, len(types))
	for i, t := range types {
		tmpl[i] = pkcs11.NewAttribute(t, nil)
	}
	attrs, err := c.GetAttributeValue(s, h, tmpl)
	if err != nil {
		return p11KeyAttributes{}, fmt.Errorf("read key attributes: %w", err)
	}
	var a p11KeyAttributes
	flags := map[uint]*bool{pkcs11.CKA_TOKEN: &a.Token, pkcs11.CKA_SENSITIVE: &a.Sensitive, pkcs11.CKA_EXTRACTABLE: &a.Extractable,
		pkcs11.CKA_ENCRYPT: &a.Encrypt, pkcs11.CKA_DECRYPT: &a.Decrypt, pkcs11.CKA_WRAP: &a.Wrap, pkcs11.CKA_UNWRAP: &a.Unwrap,
		pkcs11.CKA_PRIVATE: &a.Priv}
	for _, at := range attrs {
		if f := flags[at.Type]; f != nil {
			*f = slices.ContainsFunc(at.Value, func(b byte) bool { return b != 0 })
		} else if at.Type == pkcs11.CKA_KEY_TYPE {
			for i := len(at.Value) - 1; i >= 0; i-- { // CK_ULONG, little endian on the supported platforms
				a.KeyType = a.KeyType<<8 | uint(at.Value[i])
			}
		}
	}
	return a, nil
}

// CreatePKCS11Key creates the master key in the token when no key labelled
// opts.KeyLabel exists: a 256-bit AES token object (CKA_TOKEN), private,
// sensitive and non-extractable, allowed to encrypt, decrypt, wrap and
// unwrap. It never replaces an existing key and returns created=false
// then. When the token refuses to generate it, the error says which
// attributes to give a key created by other means.
func CreatePKCS11Key(ctx context.Context, opts PKCS11Options) (created bool, err error) {
	t, err := openToken(ctx, opts)
	if err != nil {
		return false, err
	}
	defer t.mod.release()
	defer t.pool.close()
	err = t.pool.withSession(ctx, func(s pkcs11.SessionHandle) error {
		_, err := findKey(t.mod.ctx, s, opts)
		if !errors.Is(err, errKeyMissing) {
			return err
		}
		_, err = t.mod.ctx.GenerateKey(s, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_AES_KEY_GEN, nil)}, []*pkcs11.Attribute{
			pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_SECRET_KEY),
			pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_AES),
			pkcs11.NewAttribute(pkcs11.CKA_VALUE_LEN, 32),
			pkcs11.NewAttribute(pkcs11.CKA_LABEL, opts.KeyLabel),
			pkcs11.NewAttribute(pkcs11.CKA_TOKEN, true),
			pkcs11.NewAttribute(pkcs11.CKA_PRIVATE, true),
			pkcs11.NewAttribute(pkcs11.CKA_SENSITIVE, true),
			pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, false),
			pkcs11.NewAttribute(pkcs11.CKA_ENCRYPT, true),
			pkcs11.NewAttribute(pkcs11.CKA_DECRYPT, true),
			pkcs11.NewAttribute(pkcs11.CKA_WRAP, true),
			pkcs11.NewAttribute(pkcs11.CKA_UNWRAP, true),
		})
		if err != nil {
			return fmt.Errorf("the token refused to generate key %q: %w; create it with the token's own tool as a 256-bit AES token object labelled %q with CKA_SENSITIVE true, CKA_EXTRACTABLE false, CKA_ENCRYPT, CKA_DECRYPT, CKA_WRAP and CKA_UNWRAP true (see docs/hsm.md)",
				opts.KeyLabel, err, opts.KeyLabel)
		}
		created = true
		return nil
	})
	if err != nil {
		return false, fmt.Errorf("pkcs11 master key %s: %w", PKCS11KeyID(opts.TokenLabel, opts.KeyLabel), err)
	}
	return created, nil
}
