package fieldcrypt_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/dbproxy/dbproxy/fieldcrypt"
	"github.com/dbproxy/dbproxy/proxy"
	"github.com/dbproxy/dbproxy/rules"
)

// fixedPolicy decides by column name, the same for every principal; it
// records who it was bound to.
type fixedPolicy struct {
	byColumn map[string]fieldcrypt.Decision
	bound    []string
}

func (p *fixedPolicy) For(who proxy.Principal) fieldcrypt.Decider {
	p.bound = append(p.bound, who.User)
	return p
}

func (p *fixedPolicy) Decide(col *rules.ColumnRule) fieldcrypt.Decision {
	return p.byColumn[col.Column]
}

func TestPolicyRefusals(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	ct, err := f.enc.EncryptForStore(ctx, f.rnd, []byte("123-45-6789"))
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		d                       fieldcrypt.Decision
		encrypt, match, decrypt bool // allowed
		readable                bool
	}{
		{fieldcrypt.Decision{Action: fieldcrypt.ActionDecrypt}, true, true, true, true},
		{fieldcrypt.Decision{Action: fieldcrypt.ActionMask}, false, false, true, true},
		{fieldcrypt.Decision{Action: fieldcrypt.ActionMask, Lookup: true}, false, true, true, true},
		{fieldcrypt.Decision{Action: fieldcrypt.ActionCiphertext}, false, false, false, true},
		{fieldcrypt.Decision{Action: fieldcrypt.ActionNull, Lookup: true}, false, true, false, true},
		{fieldcrypt.Decision{Action: fieldcrypt.ActionDeny}, false, false, false, false},
		{fieldcrypt.Decision{Action: fieldcrypt.ActionDeny, Lookup: true}, false, false, false, false},
		{fieldcrypt.Decision{Action: fieldcrypt.ActionWriteOnly}, true, false, false, false},
		{fieldcrypt.Decision{Action: fieldcrypt.ActionWriteOnly, Lookup: true}, true, true, false, false},
	}
	for _, c := range cases {
		c.d.Rule = "access.rules[7]"
		rec := &recorder{}
		pol := &fixedPolicy{byColumn: map[string]fieldcrypt.Decision{"ssn": c.d, "email": c.d}}
		ci := fieldcrypt.New(f.enc, f.who, fieldcrypt.Options{Policy: pol, Monitor: rec})
		name := c.d.Action.String()
		_, encErr := ci.EncryptForStore(ctx, f.rnd, []byte("x"))
		_, matchErr := ci.EncryptForMatch(ctx, f.det, []byte("x"))
		_, decErr := ci.Decrypt(ctx, f.rnd, ct)
		_, readErr := ci.ReadDecision(ctx, f.rnd)
		for _, op := range []struct {
			what    string
			err     error
			allowed bool
		}{{"encrypt", encErr, c.encrypt}, {"match", matchErr, c.match}, {"decrypt", decErr, c.decrypt}, {"read", readErr, c.readable}} {
			var r *fieldcrypt.RefusedError
			switch {
			case op.allowed && op.err != nil:
				t.Errorf("%s lookup %v: %s refused: %v", name, c.d.Lookup, op.what, op.err)
			case !op.allowed && !errors.As(op.err, &r):
				t.Errorf("%s lookup %v: %s not refused: %v", name, c.d.Lookup, op.what, op.err)
			case !op.allowed && !strings.Contains(op.err.Error(), "access.rules[7] (action "+name):
				t.Errorf("%s: refusal %q does not name the rule and action", name, op.err)
			}
		}
		for _, u := range rec.uses {
			if u.Err != nil && u.KeyVersion != 0 {
				t.Errorf("%s: a refused use reported key version %d", name, u.KeyVersion)
			}
		}
	}
}

// TestPolicyFollowsUser: For binds the policy to the new principal.
func TestPolicyFollowsUser(t *testing.T) {
	f := newFixture(t)
	pol := &fixedPolicy{}
	c := fieldcrypt.New(f.enc, f.who, fieldcrypt.Options{Policy: pol})
	other := f.who
	other.User = "bob"
	c.For(other)
	if strings.Join(pol.bound, ",") != "alice,bob" {
		t.Errorf("policy bound to %v", pol.bound)
	}
	if d := (*fieldcrypt.Cipher)(nil).Decision(f.rnd); d.Action != fieldcrypt.ActionDecrypt {
		t.Errorf("no cipher decides %v", d.Action)
	}
}

// TestPolicyAllocs: an allowed decryption through a policy allocates no
// more than without one.
func TestPolicyAllocs(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	ct, _ := f.enc.EncryptForStore(ctx, f.rnd, []byte("alice@example.com"))
	pol := &fixedPolicy{byColumn: map[string]fieldcrypt.Decision{"ssn": {Action: fieldcrypt.ActionMask}}}
	c := fieldcrypt.New(f.enc, f.who, fieldcrypt.Options{Policy: pol})
	dst := make([]byte, 0, 256)
	base := testing.AllocsPerRun(200, func() { _, _ = f.enc.AppendDecrypt(ctx, dst, f.rnd, ct) })
	got := testing.AllocsPerRun(200, func() { _, _ = c.AppendDecrypt(ctx, dst, f.rnd, ct) })
	if got > base {
		t.Errorf("AppendDecrypt under a policy: %.1f allocations, %.1f without", got, base)
	}
}
