package fieldcrypt

import (
	"context"
	"strconv"
	"unicode/utf8"

	"github.com/dbproxy/dbproxy/proxy"
	"github.com/dbproxy/dbproxy/rules"
)

// Action is what a session may do with the values of an encrypted column.
// The zero value, ActionDecrypt, is the behaviour without a policy.
type Action uint8

const (
	// ActionDecrypt: results carry the plaintext; the session may store
	// and look up values.
	ActionDecrypt Action = iota
	// ActionMask: results carry the plaintext masked (Decision.Mask).
	ActionMask
	// ActionCiphertext: results carry the stored ciphertext, typed as the
	// database stores it (bytea, VARBINARY/BLOB).
	ActionCiphertext
	// ActionNull: results carry NULL.
	ActionNull
	// ActionDeny: any statement reading, storing or looking up a value of
	// the column is refused.
	ActionDeny
	// ActionWriteOnly: the session may store values; reading them is
	// refused as for ActionDeny.
	ActionWriteOnly
)

var actionNames = [...]string{"decrypt", "mask", "ciphertext", "null", "deny", "write_only"}

func (a Action) String() string {
	if int(a) < len(actionNames) {
		return actionNames[a]
	}
	return "invalid"
}

// ParseAction returns the Action named s (as String spells it).
func ParseAction(s string) (Action, bool) {
	for i, n := range actionNames {
		if n == s {
			return Action(i), true
		}
	}
	return 0, false
}

// Mask says how ActionMask shows a text value: the first KeepFirst and
// the last KeepLast characters as they are, every other character as Char.
// A value no longer than KeepFirst+KeepLast is masked whole.
type Mask struct {
	KeepFirst, KeepLast int
	Char                rune // '*' when 0
}

// Append appends v (UTF-8 text; a byte that is not UTF-8 counts as one
// character) masked by m to dst.
func (m Mask) Append(dst, v []byte) []byte {
	char := m.Char
	if char == 0 {
		char = '*'
	}
	n := utf8.RuneCount(v)
	keepAll := n > m.KeepFirst+m.KeepLast
	for i := 0; len(v) > 0; i++ {
		_, size := utf8.DecodeRune(v)
		if keepAll && (i < m.KeepFirst || i >= n-m.KeepLast) {
			dst = append(dst, v[:size]...)
		} else {
			dst = utf8.AppendRune(dst, char)
		}
		v = v[size:]
	}
	return dst
}

// Decision is what a session may do with one encrypted column.
type Decision struct {
	Action Action
	// Mask applies to ActionMask.
	Mask Mask
	// Lookup lets a session whose Action does not read the plaintext
	// compare values with the column (WHERE col = …).
	Lookup bool
	// Rule names the policy rule that decided, for refusals; "" when
	// there is no policy.
	Rule string
}

// Allows reports whether the decision allows op on the column.
//
//   - OpEncrypt (store): ActionDecrypt and ActionWriteOnly.
//   - OpMatch (lookup): ActionDecrypt, or any other action but
//     ActionDeny with Lookup set.
//   - OpDecrypt (read): ActionDecrypt and ActionMask (which masks the
//     plaintext). ActionCiphertext and ActionNull need no key.
func (d Decision) Allows(op Op) bool {
	switch op {
	case OpEncrypt:
		return d.Action == ActionDecrypt || d.Action == ActionWriteOnly
	case OpMatch:
		return d.Action == ActionDecrypt || (d.Lookup && d.Action != ActionDeny)
	case OpDecrypt:
		return d.Action == ActionDecrypt || d.Action == ActionMask
	}
	return false
}

// Readable reports whether a result may carry the column at all (every
// action but ActionDeny and ActionWriteOnly).
func (d Decision) Readable() bool {
	return d.Action != ActionDeny && d.Action != ActionWriteOnly
}

// Policy is a per-user access policy: it binds each session's Principal
// to the Decisions of its columns.
type Policy interface {
	// For returns the Decider of the sessions of who. It is called once
	// per session (and per change of user).
	For(who proxy.Principal) Decider
}

// Decider decides, for one session, what it may do with each encrypted
// column. Decide is called for every value, from the session's goroutines
// (two at once for PostgreSQL): it must be safe for concurrent use, fast,
// and allocate nothing once it has seen a column.
type Decider interface {
	Decide(col *rules.ColumnRule) Decision
}

// PolicyError is the reason a Decision refused an operation.
type PolicyError struct {
	Decision Decision
}

func (e *PolicyError) Error() string {
	d := e.Decision
	msg := "denied by " + d.Rule + " (action " + d.Action.String()
	if d.Action != ActionDeny && d.Action != ActionDecrypt {
		msg += ", lookup " + strconv.FormatBool(d.Lookup)
	}
	return msg + ")"
}

// Decision returns what the session may do with col: ActionDecrypt
// without a Policy (or a Cipher).
func (c *Cipher) Decision(col *rules.ColumnRule) Decision {
	if c == nil || c.decider == nil {
		return Decision{}
	}
	return c.decider.Decide(col)
}

// ReadDecision returns the Decision for a result column col. A column the
// session may not read (ActionDeny, ActionWriteOnly) is a *RefusedError
// (OpDecrypt), reported to the Monitor: the statement must be refused.
func (c *Cipher) ReadDecision(ctx context.Context, col *rules.ColumnRule) (Decision, error) {
	d := c.Decision(col)
	if d.Readable() {
		return d, nil
	}
	return d, c.refuse(ctx, OpDecrypt, col, -1, &PolicyError{Decision: d})
}

// policyCheck returns the refusal of op on col by the session's Decider;
// nil if it allows it or there is none.
func (c *Cipher) policyCheck(op Op, col *rules.ColumnRule) error {
	if c.decider == nil {
		return nil
	}
	if d := c.decider.Decide(col); !d.Allows(op) {
		return &PolicyError{Decision: d}
	}
	return nil
}

// CheckKeyless checks a value written to the encrypted column col that
// uses no key, so that no Encrypt reaches the policy: NULL or DEFAULT
// (from nil), or the ciphertext of the column from, under the same key,
// copied as it is (INSERT … SELECT, UPDATE … SET col = other). Such a
// write needs the permission to store into col, and a copy the
// permission to read from in plaintext (ActionDecrypt): otherwise a copy
// would move a value the session may not see into a column where it may,
// or change a column it may not write. A refusal is a *RefusedError
// (OpEncrypt, naming col — or OpDecrypt naming from), reported to the
// Monitor. Without a policy it returns nil at once.
func (c *Cipher) CheckKeyless(ctx context.Context, col, from *rules.ColumnRule) error {
	if c == nil || c.decider == nil {
		return nil
	}
	op, on := OpEncrypt, col
	d := c.decider.Decide(col)
	if d.Allows(OpEncrypt) && from != nil {
		if src := c.decider.Decide(from); src.Action != ActionDecrypt {
			op, on, d = OpDecrypt, from, src
		} else {
			return nil
		}
	} else if d.Allows(OpEncrypt) {
		return nil
	}
	return c.refuse(ctx, op, on, -1, &PolicyError{Decision: d})
}
