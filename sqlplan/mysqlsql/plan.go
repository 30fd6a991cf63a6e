package mysqlsql

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/dbproxy/dbproxy/rules"
	"github.com/dbproxy/dbproxy/sqlplan"
	"github.com/dbproxy/dbproxy/value"
)

// MatchSlots is the number of placeholders a `?` compared with an encrypted
// column becomes (col IN (?, ?, ?, ?)): the wire layer binds one ciphertext
// per live key version, newest first, and repeats the last to fill the
// slots. A key with more live versions than this is refused at execution.
// The fixed count keeps a prepared statement valid across key rotations;
// the repeated ciphertexts cost nothing measurable: MariaDB folds an IN
// list of equal values into one index lookup (EXPLAIN shows ref access on
// the column's index, as for `=`).
const MatchSlots = 4

// UnknownDatabase is the database to pass to [Planner.Plan] while the
// session's current database is not known (a USE or COM_INIT_DB in flight,
// after COM_CHANGE_USER): unqualified names of configured tables are then
// refused rather than guessed.
const UnknownDatabase = "\x00unknown"

// SlotKind says what replaces one slot of a rewritten statement.
type SlotKind uint8

const (
	SlotInvalid SlotKind = 0
	// SlotStore: the ciphertext of Literal for Column, primary key version:
	// X'…' (NULL stays NULL).
	SlotStore SlotKind = 1
	// SlotMatch: the ciphertexts of Literal under every live key version,
	// comma-separated, inside an IN list the planner wrote.
	SlotMatch SlotKind = 2
	// SlotParam: client placeholder Param; rendered as `?`, or MatchSlots
	// placeholders for RoleMatch.
	SlotParam SlotKind = 3
)

// Slot is one hole in a rewritten statement.
type Slot struct {
	Kind    SlotKind
	Column  *rules.ColumnRule
	Literal sqlplan.Literal
	Param   int // client parameter index (SlotParam)
}

// ServerParam maps one placeholder of the rewritten statement back to the
// client's: Client is the client parameter index, Version the key version
// index (newest first) for RoleMatch, 0 otherwise.
type ServerParam struct {
	Client  int
	Version int
}

// Plan is what the wire layer does with one SQL string. Plans are cached
// and shared between sessions: treat every field as read-only.
type Plan struct {
	// Passthrough: forward the string as the client sent it. No placeholder
	// has a role other than RolePlain and no slot exists.
	Passthrough bool
	// Unparsed: a Passthrough string that was not parsed (it cannot touch
	// an encrypted table), so Params is empty whatever its placeholders.
	Unparsed bool
	// Segments and Slots: the rewritten text is Segments[0] Slot[0]
	// Segments[1] … Slot[n-1] Segments[n]. Empty when Passthrough.
	Segments []string
	Slots    []Slot
	// Params are the roles of the client placeholders, in text order.
	Params []sqlplan.Param
	// Keyless are the writes to encrypted columns that use no key (NULL,
	// a copy between columns under the same key): the session checks them
	// against its access policy before the string goes out.
	Keyless []sqlplan.KeylessWrite
	// ServerParams lists the placeholders of the rewritten statement in
	// order (nil when Passthrough: they are the client's).
	ServerParams []ServerParam
	// Use is the current database after the string, if it contains USE.
	Use    string
	HasUse bool
	// Statements is the number of statements in the string.
	Statements int
	// Encrypted reports that the string touches an encrypted table: its
	// results must be checked for encrypted columns.
	Encrypted bool
	// DDL reports that the string holds a statement that may change a
	// table's columns (CREATE/ALTER/DROP/RENAME TABLE, CREATE/DROP
	// DATABASE): call [Planner.Purge] when it has completed.
	DDL bool
	// Session, if set, is what the string does to the session's sql_mode
	// and client character set (lexstate.go): apply it when the string
	// has succeeded.
	Session *SessionChange
}

// HasEncryptedParams reports whether some placeholder is not plain.
func (p *Plan) HasEncryptedParams() bool {
	for _, pr := range p.Params {
		if pr.Role != sqlplan.RolePlain {
			return true
		}
	}
	return false
}

// ErrTooManyVersions: a key has more live versions than MatchSlots.
var ErrTooManyVersions = errors.New("data key has more live versions than a placeholder can match")

// Rewrite appends the rewritten SQL to dst, encrypting the slot literals.
// loc is the session time zone for timestamptz literals (nil = UTC). Errors
// name columns, never values.
func (p *Plan) Rewrite(ctx context.Context, enc sqlplan.Encrypter, loc *time.Location, dst []byte) ([]byte, error) {
	return p.RewriteRecording(ctx, enc, loc, dst, nil, nil)
}

// Scratch is the memory RewriteRecording reuses from one call to the
// next: canonical plaintexts and ciphertexts. The zero value is ready to
// use. Not safe for concurrent use.
type Scratch struct {
	canon, ct []byte
	cts       [][]byte
}

// maxScratch is the largest Scratch buffer kept for the next call.
const maxScratch = 64 << 10

// RewriteRecording is Rewrite, reporting the lookups it renders to rec
// (nil: none), so that the wire layer can recognise result cells that are
// those ciphertexts without decrypting them, and working in sc (nil: fresh
// buffers).
func (p *Plan) RewriteRecording(ctx context.Context, enc sqlplan.Encrypter, loc *time.Location, dst []byte,
	rec sqlplan.MatchRecorder, sc *Scratch) ([]byte, error) {
	var canon, ct []byte
	var cts [][]byte
	if sc != nil {
		canon, ct, cts = sc.canon[:0], sc.ct[:0], sc.cts[:0]
		defer func() {
			clear(cts)
			if cap(canon) <= maxScratch && cap(ct) <= maxScratch {
				sc.canon, sc.ct, sc.cts = canon[:0], ct[:0], cts[:0]
			}
		}()
	}
	for i, seg := range p.Segments {
		dst = append(dst, seg...)
		if i >= len(p.Slots) {
			break
		}
		s := &p.Slots[i]
		switch s.Kind {
		case SlotParam:
			if p.Params[s.Param].Role == sqlplan.RoleMatch {
				for j := 0; j < MatchSlots; j++ {
					if j > 0 {
						dst = append(dst, ", "...)
					}
					dst = append(dst, '?')
				}
			} else {
				dst = append(dst, '?')
			}
		case SlotStore, SlotMatch:
			if s.Literal.Null {
				dst = append(dst, "NULL"...)
				continue
			}
			var err error
			canon, err = value.AppendCanonicalMySQLText(canon[:0], s.Column.Type, []byte(s.Literal.Text), loc)
			if err != nil {
				return nil, &sqlplan.Refusal{SQLState: sqlplan.ValueErrorState(err), Column: s.Column.String(), Reason: fmt.Sprintf("literal is not a valid %s: %v", s.Column.Type, errKind(err))}
			}
			if s.Kind == SlotStore {
				ct, err = enc.AppendStore(ctx, ct[:0], s.Column, canon)
				if err != nil {
					return nil, fmt.Errorf("encrypt literal: %w", err)
				}
				dst = appendHex(dst, ct)
				continue
			}
			ct, cts, err = enc.AppendMatch(ctx, ct[:0], cts[:0], s.Column, canon)
			if err != nil {
				return nil, fmt.Errorf("encrypt literal: %w", err)
			}
			if rec != nil {
				rec.RecordMatch(s.Column, canon, cts)
			}
			for j, ct := range cts {
				if j > 0 {
					dst = append(dst, ", "...)
				}
				dst = appendHex(dst, ct)
			}
		default:
			return nil, fmt.Errorf("slot %d has invalid kind %d", i, s.Kind)
		}
	}
	return dst, nil
}

func appendHex(dst, b []byte) []byte {
	dst = append(dst, "X'"...)
	dst = hex.AppendEncode(dst, b)
	return append(dst, '\'')
}

// errKind strips a value error down to its sentinel so that no value can
// slip into a message.
func errKind(err error) error {
	for _, k := range []error{value.ErrSyntax, value.ErrRange, value.ErrUnsupported, value.ErrCorrupt} {
		if errors.Is(err, k) {
			return k
		}
	}
	return errors.New("invalid value")
}
