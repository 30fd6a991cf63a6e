package kms

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"

	"github.com/miekg/pkcs11"
)

// A PKCS#11 module is process-wide state: C_Initialize and C_Finalize act
// on the whole library, and login state is shared by every session of the
// process on a token. modules counts the users of each loaded library, so
// that two master keys on one module (current and previous) share one
// initialisation, and the last Close finalises and unloads it. This
// mirrors the library's own global state; nothing else is kept here.
var modules = struct {
	sync.Mutex
	m map[string]*module
}{m: map[string]*module{}}

type module struct {
	path string // as configured, for messages
	key  string // the library file, symlinks resolved
	ctx  *pkcs11.Ctx
	refs int
}

// loadModule loads and initialises the PKCS#11 library at path, or takes
// another reference to it when it is already loaded.
func loadModule(path string) (*module, error) {
	// Two paths to one library (a symlink) load it once: key by the file.
	key := path
	if real, err := filepath.EvalSymlinks(path); err == nil {
		key = real
	}
	modules.Lock()
	defer modules.Unlock()
	if m := modules.m[key]; m != nil {
		m.refs++
		return m, nil
	}
	ctx := pkcs11.New(path)
	if ctx == nil {
		return nil, fmt.Errorf("pkcs11 module %q cannot be loaded (check module: the path of the vendor's PKCS#11 library, e.g. /usr/lib/softhsm/libsofthsm2.so)", path)
	}
	if err := ctx.Initialize(); err != nil && !errors.Is(err, pkcs11.Error(pkcs11.CKR_CRYPTOKI_ALREADY_INITIALIZED)) {
		ctx.Destroy()
		return nil, fmt.Errorf("pkcs11 module %q: C_Initialize: %w", path, err)
	}
	m := &module{path: path, key: key, ctx: ctx, refs: 1}
	modules.m[key] = m
	return m, nil
}

// release drops one reference; the last finalises and unloads the library.
func (m *module) release() {
	modules.Lock()
	defer modules.Unlock()
	m.refs--
	if m.refs > 0 {
		return
	}
	delete(modules.m, m.key)
	_ = m.ctx.Finalize()
	m.ctx.Destroy()
}

// findSlot returns the slot holding the token labelled label.
func (m *module) findSlot(label string) (uint, error) {
	slots, err := m.ctx.GetSlotList(true)
	if err != nil {
		return 0, fmt.Errorf("pkcs11 module %q: list slots: %w", m.path, err)
	}
	var labels []string
	for _, s := range slots {
		ti, err := m.ctx.GetTokenInfo(s)
		if err != nil {
			continue
		}
		if ti.Label == label {
			return s, nil
		}
		if ti.Label != "" {
			labels = append(labels, fmt.Sprintf("%q", ti.Label))
		}
	}
	return 0, fmt.Errorf("pkcs11 module %q: no token labelled %q (token_label); tokens present: %v", m.path, label, labels)
}

// sessionPool hands out the PKCS#11 sessions of one token. A session
// must not be used by two goroutines at once, so each operation takes one
// session from the pool for its duration. At most max sessions are open;
// an operation that finds none idle waits for one (or for ctx). A session
// that failed with a session or device error is closed instead of being
// returned.
type sessionPool struct {
	mod  *module
	slot uint
	pin  string // to log in again after the token logged the process out

	sem  chan struct{} // one token per open-or-opening session
	idle chan pkcs11.SessionHandle

	loginMu sync.Mutex
}

func newSessionPool(mod *module, slot uint, pin string, max int) *sessionPool {
	return &sessionPool{mod: mod, slot: slot, pin: pin, sem: make(chan struct{}, max), idle: make(chan pkcs11.SessionHandle, max)}
}

// get returns an idle session, or opens one when fewer than max are open.
func (p *sessionPool) get(ctx context.Context) (pkcs11.SessionHandle, error) {
	select {
	case s := <-p.idle:
		return s, nil
	default:
	}
	select {
	case s := <-p.idle:
		return s, nil
	case p.sem <- struct{}{}:
		s, err := p.mod.ctx.OpenSession(p.slot, pkcs11.CKF_SERIAL_SESSION|pkcs11.CKF_RW_SESSION)
		if err != nil {
			<-p.sem
			return 0, fmt.Errorf("open session: %w", err)
		}
		return s, nil
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}

// put returns s to the pool, or closes it when err says it is unusable.
func (p *sessionPool) put(s pkcs11.SessionHandle, err error) {
	if sessionBroken(err) {
		_ = p.mod.ctx.CloseSession(s)
		<-p.sem
		return
	}
	p.idle <- s
}

// login logs the process in to the token with the user PIN. Login state
// is per token and process, shared by all sessions: a token already
// logged in is fine.
func (p *sessionPool) login(s pkcs11.SessionHandle) error {
	p.loginMu.Lock()
	defer p.loginMu.Unlock()
	err := p.mod.ctx.Login(s, pkcs11.CKU_USER, p.pin)
	if err == nil || errors.Is(err, pkcs11.Error(pkcs11.CKR_USER_ALREADY_LOGGED_IN)) {
		return nil
	}
	return err
}

// close closes the idle sessions. Sessions in use are closed by put.
func (p *sessionPool) close() {
	for {
		select {
		case s := <-p.idle:
			_ = p.mod.ctx.CloseSession(s)
			<-p.sem
		default:
			return
		}
	}
}

// withSession runs fn on a pooled session.
func (p *sessionPool) withSession(ctx context.Context, fn func(pkcs11.SessionHandle) error) error {
	s, err := p.get(ctx)
	if err != nil {
		return err
	}
	err = fn(s)
	p.put(s, err)
	return err
}

func sessionBroken(err error) bool {
	var e pkcs11.Error
	if !errors.As(err, &e) {
		return false
	}
	switch e {
	case pkcs11.CKR_SESSION_CLOSED, pkcs11.CKR_SESSION_HANDLE_INVALID, pkcs11.CKR_DEVICE_REMOVED,
		pkcs11.CKR_TOKEN_NOT_PRESENT, pkcs11.CKR_DEVICE_ERROR, pkcs11.CKR_CRYPTOKI_NOT_INITIALIZED:
		return true
	}
	return false
}

// classifyP11 tags a PKCS#11 error with ErrUnreachable, ErrUnwrap (only
// when unwrapping) or ErrDenied, keeping the CKR_ code in the chain.
func classifyP11(err error, unwrapping bool) error {
	var e pkcs11.Error
	if !errors.As(err, &e) {
		switch {
		case errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded):
			return fmt.Errorf("%w: waiting for a PKCS#11 session: %w", ErrUnreachable, err)
		case errors.Is(err, errKeyMissing):
			return fmt.Errorf("%w: %w", ErrDenied, err)
		}
		return err
	}
	switch e {
	case pkcs11.CKR_DEVICE_ERROR, pkcs11.CKR_DEVICE_MEMORY, pkcs11.CKR_DEVICE_REMOVED, pkcs11.CKR_TOKEN_NOT_PRESENT,
		pkcs11.CKR_TOKEN_NOT_RECOGNIZED, pkcs11.CKR_SESSION_CLOSED, pkcs11.CKR_SESSION_HANDLE_INVALID,
		pkcs11.CKR_SESSION_COUNT, pkcs11.CKR_FUNCTION_FAILED, pkcs11.CKR_GENERAL_ERROR, pkcs11.CKR_HOST_MEMORY,
		pkcs11.CKR_CRYPTOKI_NOT_INITIALIZED:
		return fmt.Errorf("%w: %w", ErrUnreachable, err)
	case pkcs11.CKR_ENCRYPTED_DATA_INVALID, pkcs11.CKR_ENCRYPTED_DATA_LEN_RANGE, pkcs11.CKR_WRAPPED_KEY_INVALID,
		pkcs11.CKR_WRAPPED_KEY_LEN_RANGE, ckrAEADDecryptFailed:
		if unwrapping {
			return fmt.Errorf("%w: %w", ErrUnwrap, err)
		}
	}
	return fmt.Errorf("%w: %w", ErrDenied, err)
}

// ckrAEADDecryptFailed is PKCS#11 3.0's CKR_AEAD_DECRYPT_FAILED (a GCM tag
// that does not verify), which the 2.40 headers of the binding lack.
const ckrAEADDecryptFailed = pkcs11.Error(0x35)
