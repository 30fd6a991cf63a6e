package fieldcrypt

import (
	"context"

	"github.com/dbproxy/dbproxy/crypto"
	"github.com/dbproxy/dbproxy/proxy"
	"github.com/dbproxy/dbproxy/rules"
)

// Options are the optional decorators of a Cipher. The zero value has
// none.
type Options struct {
	// Guard, if set, is consulted before each use of a column's key.
	Guard Guard
	// Monitor, if set, is told of each use of a column's key.
	Monitor Monitor
	// Policy, if set, decides per session what it may do with each
	// column: refusals are checked before the Guard, and the layers ask
	// Decision or ReadDecision how to present a result column.
	Policy Policy
}

// Cipher is the field cipher of one session: it encrypts, looks up and
// decrypts values of encrypted columns with the shared Encryptor, on
// behalf of one Principal, through the Guard and Monitor it was built
// with. It is immutable and safe for concurrent use (a PostgreSQL session
// encrypts on one goroutine and decrypts on another).
type Cipher struct {
	enc     *rules.Encryptor
	who     proxy.Principal
	guard   Guard
	monitor Monitor
	policy  Policy
	decider Decider // policy bound to who; nil without a policy
}

// New returns the Cipher of the session of who, over enc (which must not be
// nil).
func New(enc *rules.Encryptor, who proxy.Principal, opts Options) *Cipher {
	if enc == nil {
		panic("fieldcrypt: New without an Encryptor")
	}
	c := &Cipher{enc: enc, who: who, guard: opts.Guard, monitor: opts.Monitor, policy: opts.Policy}
	if c.policy != nil {
		c.decider = c.policy.For(who)
	}
	return c
}

// For returns a Cipher with c's Encryptor and decorators on behalf of who:
// for a session whose user changed (MySQL's COM_CHANGE_USER).
func (c *Cipher) For(who proxy.Principal) *Cipher {
	return New(c.enc, who, Options{Guard: c.guard, Monitor: c.monitor, Policy: c.policy})
}

// Principal returns who the Cipher acts for.
func (c *Cipher) Principal() proxy.Principal { return c.who }

// decorated reports whether a Guard, a Monitor or a Policy is set.
func (c *Cipher) decorated() bool { return c.guard != nil || c.monitor != nil || c.decider != nil }

// EncryptForStore is rules.Encryptor.EncryptForStore (OpEncrypt).
func (c *Cipher) EncryptForStore(ctx context.Context, col *rules.ColumnRule, canon []byte) ([]byte, error) {
	return c.AppendStore(ctx, nil, col, canon)
}

// AppendStore is rules.Encryptor.AppendStore (OpEncrypt).
func (c *Cipher) AppendStore(ctx context.Context, dst []byte, col *rules.ColumnRule, canon []byte) ([]byte, error) {
	if !c.decorated() {
		return c.enc.AppendStore(ctx, dst, col, canon)
	}
	if err := c.check(ctx, OpEncrypt, col, len(canon)); err != nil {
		return nil, err
	}
	n := len(dst)
	out, err := c.enc.AppendStore(ctx, dst, col, canon)
	if c.monitor != nil {
		u := c.use(OpEncrypt, col, len(canon), err)
		if err == nil {
			u.KeyVersion, u.Versions = keyVersion(out[n:]), 1
		}
		c.monitor.KeyUsed(ctx, u)
	}
	return out, err
}

// LiveVersions is rules.Encryptor.LiveVersions. It uses no key on a value:
// neither the Guard nor the Monitor hears of it.
func (c *Cipher) LiveVersions(ctx context.Context, col *rules.ColumnRule) (int, error) {
	return c.enc.LiveVersions(ctx, col)
}

// EncryptForMatch is rules.Encryptor.EncryptForMatch (OpMatch).
func (c *Cipher) EncryptForMatch(ctx context.Context, col *rules.ColumnRule, canon []byte) ([][]byte, error) {
	_, cts, err := c.AppendMatch(ctx, nil, nil, col, canon)
	return cts, err
}

// AppendMatch is rules.Encryptor.AppendMatch (OpMatch).
func (c *Cipher) AppendMatch(ctx context.Context, buf []byte, cts [][]byte, col *rules.ColumnRule, canon []byte) ([]byte, [][]byte, error) {
	if !c.decorated() {
		return c.enc.AppendMatch(ctx, buf, cts, col, canon)
	}
	if err := c.check(ctx, OpMatch, col, len(canon)); err != nil {
		return nil, nil, err
	}
	n := len(cts)
	outBuf, outCts, err := c.enc.AppendMatch(ctx, buf, cts, col, canon)
	if c.monitor != nil {
		u := c.use(OpMatch, col, len(canon), err)
		if err == nil && len(outCts) > n {
			u.KeyVersion, u.Versions = keyVersion(outCts[n]), len(outCts)-n
		}
		c.monitor.KeyUsed(ctx, u)
	}
	return outBuf, outCts, err
}

// Decrypt is rules.Encryptor.Decrypt (OpDecrypt).
func (c *Cipher) Decrypt(ctx context.Context, col *rules.ColumnRule, ct []byte) ([]byte, error) {
	return c.AppendDecrypt(ctx, nil, col, ct)
}

// AppendDecrypt is rules.Encryptor.AppendDecrypt (OpDecrypt).
func (c *Cipher) AppendDecrypt(ctx context.Context, dst []byte, col *rules.ColumnRule, ct []byte) ([]byte, error) {
	if !c.decorated() {
		return c.enc.AppendDecrypt(ctx, dst, col, ct)
	}
	if err := c.check(ctx, OpDecrypt, col, -1); err != nil {
		return nil, err
	}
	n := len(dst)
	out, err := c.enc.AppendDecrypt(ctx, dst, col, ct)
	if c.monitor != nil {
		u := c.use(OpDecrypt, col, len(out)-n, err)
		u.KeyVersion = keyVersion(ct)
		if err == nil {
			u.Versions = 1
		} else {
			u.Bytes = -1
		}
		c.monitor.KeyUsed(ctx, u)
	}
	return out, err
}

// check asks the Policy, then the Guard, about op on col; a refusal is reported to the
// Monitor (with plaintext byte count n, -1 when unknown) and returned as a
// *RefusedError.
func (c *Cipher) check(ctx context.Context, op Op, col *rules.ColumnRule, n int) error {
	err := c.policyCheck(op, col)
	if err == nil && c.guard != nil {
		err = c.guard.Check(ctx, Access{Principal: c.who, Op: op, Column: col})
	}
	if err == nil {
		return nil
	}
	return c.refuse(ctx, op, col, n, err)
}

// refuse returns the *RefusedError of op on col for err, after reporting
// it to the Monitor (n: the plaintext byte count, -1 when there is none).
func (c *Cipher) refuse(ctx context.Context, op Op, col *rules.ColumnRule, n int, err error) *RefusedError {
	refused := &RefusedError{Op: op, Column: col, Err: err}
	if c.monitor != nil {
		c.monitor.KeyUsed(ctx, c.use(op, col, n, refused))
	}
	return refused
}

// use is the report of op on col by c's Principal.
func (c *Cipher) use(op Op, col *rules.ColumnRule, n int, err error) Use {
	return Use{Access: Access{Principal: c.who, Op: op, Column: col}, Bytes: n, Err: err}
}

// keyVersion is the key version in ct's header; 0 if it has none.
func keyVersion(ct []byte) uint32 {
	h, err := crypto.ParseHeader(ct)
	if err != nil {
		return 0
	}
	return h.KeyVersion
}
