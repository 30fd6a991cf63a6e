package sqlplan

import (
	"fmt"

	"github.com/dbproxy/dbproxy/rules"
	"github.com/dbproxy/dbproxy/value"
)

// Role is what the wire layer does with one bind parameter (PostgreSQL $n,
// MySQL ?). The zero value is invalid: a role nobody set fails closed.
type Role uint8

const (
	RoleInvalid Role = 0
	// RolePlain: not bound for an encrypted column; forward as the client
	// sent it, with the client's type.
	RolePlain Role = 1
	// RoleStore: a value written to Column. Decode it (Column.Type, in the
	// client's format), canonicalise, encrypt with the primary key version
	// and send the ciphertext as binary (NULL stays NULL). PostgreSQL
	// declares the parameter bytea upstream.
	RoleStore Role = 2
	// RoleMatch: a scalar compared with Column. Send its ciphertexts under
	// every live key version: PostgreSQL binds one bytea[] (or Param.Slots
	// elements), MySQL fills the MatchSlots placeholders the planner wrote
	// for it. A NULL stays NULL.
	RoleMatch Role = 3
	// RoleMatchArray (PostgreSQL only): an array of Column.Type compared
	// with = ANY / <> ALL. Send one bytea[] holding the ciphertexts of every
	// non-NULL element under every live key version (NULL elements stay
	// NULL elements).
	RoleMatchArray Role = 4
)

var roleNames = [...]string{"invalid", "plain", "store", "match", "match-array"}

func (r Role) String() string {
	if int(r) < len(roleNames) {
		return roleNames[r]
	}
	return fmt.Sprintf("Role(%d)", uint8(r))
}

// Param is the role of one bind parameter.
type Param struct {
	Role Role
	// Column is the encrypted column the parameter is bound for; nil for
	// RolePlain.
	Column *rules.ColumnRule
	// Slots (PostgreSQL) is set by the wire layer on the Params it hands
	// to pgsql.Prepared.Add for a protocol-level statement prepared with
	// pgsql.Env.Slots: an EXECUTE of it must bind exactly that many
	// ciphertexts. Plans never set it.
	Slots int
}

// Encrypted reports whether the parameter is bound for an encrypted column.
func (p Param) Encrypted() bool { return p.Role >= RoleStore && p.Role <= RoleMatchArray }

// ClientType is the plaintext type the client binds for the parameter
// (for RoleMatchArray: the element type of the array it sends).
// TypeUnknown for RolePlain.
func (p Param) ClientType() value.Type {
	if p.Column == nil || !p.Encrypted() {
		return value.TypeUnknown
	}
	return p.Column.Type
}

// ClientArray reports whether the client sends an array of ClientType
// (RoleMatchArray).
func (p Param) ClientArray() bool { return p.Role == RoleMatchArray }

// Literal is a constant from the SQL text as the server reads it: string
// contents with quotes and escapes resolved, numbers and booleans as
// written (-5, 1.50, true; MySQL hex and bit literals as raw bytes).
// Canonicalise Text with the column's type before encrypting it.
type Literal struct {
	Text string
	Null bool
	// Pos is 1 + the byte offset of the constant in the SQL the plan was
	// made for (at the sign of a folded -5), or 0 when unknown. The
	// PostgreSQL planner ties cached plan templates to constants by it;
	// the MySQL planner leaves it 0.
	Pos int
}

// KeylessWrite is a value written to the encrypted column Column that the
// proxy does not encrypt: NULL or DEFAULT (From nil), or the ciphertext of
// column From, under the same key, mode and type, copied as it is. No key
// is used for it, so the wire layers check such writes against the
// session's access policy themselves (fieldcrypt.Cipher.CheckKeyless).
type KeylessWrite struct {
	Column, From *rules.ColumnRule
}
