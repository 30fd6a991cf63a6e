package pgsql

import (
	"fmt"

	"github.com/dbproxy/dbproxy/rules"
	"github.com/dbproxy/dbproxy/sqlplan"
)

// PostgreSQL type OIDs the wire layer puts in Parse for encrypted
// parameters.
const (
	OIDBytea      uint32 = 17
	OIDByteaArray uint32 = 1001
)

// UpstreamOID is the type to declare in the Parse sent upstream for a
// parameter: bytea for RoleStore, bytea[] for the match roles, 0 (keep the
// client's) for RolePlain.
func UpstreamOID(p sqlplan.Param) uint32 {
	switch p.Role {
	case sqlplan.RoleStore:
		return OIDBytea
	case sqlplan.RoleMatch, sqlplan.RoleMatchArray:
		return OIDByteaArray
	default:
		return 0
	}
}

// SlotOID is the type to declare upstream for a parameter with k match
// slots (Env.Slots): bytea for one, bytea[] for more; UpstreamOID(p) for
// none.
func SlotOID(p sqlplan.Param, k int) uint32 {
	if p.Role == sqlplan.RoleMatch && k == 1 {
		return OIDBytea
	}
	return UpstreamOID(p)
}

// Plan is what the wire layer does with one SQL string (a simple Query, or
// the query of a Parse message). Plans are cached and shared between
// sessions: treat every field as read-only.
type Plan struct {
	// Statements holds one entry per statement of the string, in order
	// (empty statements, as in ";;", have none, exactly as the server sends
	// no CommandComplete for them). For a Parse message there is at most one.
	Statements []Statement
	// Params are the roles of the parameters $1…$n of the string (the
	// extended protocol). Params[i] is $i+1. Its length is the highest
	// parameter number referenced in the text; parameters the client
	// declares beyond it are plain. Roles are never RoleInvalid.
	Params []sqlplan.Param
	// Keyless are the writes to encrypted columns that use no key (NULL,
	// DEFAULT, a copy between columns under the same key): the session
	// checks them against its access policy before the string goes out.
	Keyless []sqlplan.KeylessWrite

	pass bool
	// shared is the cached plan this one was instantiated from (nil: this
	// plan is not a copy).
	shared *Plan
}

// Shared returns a plan that has the same statements as p (their kinds,
// Copy, Prepare, Execute names, Deallocate) and the same Params, and
// stays valid when the memory of a plan from PlanReusing is reused: p
// itself, or the cached plan p was instantiated from, whose offsets and
// Literals belong to another SQL text. Keep it to act on the statements'
// completions; never Rewrite with it.
func (p *Plan) Shared() *Plan {
	if p.shared != nil {
		return p.shared
	}
	return p
}

// Passthrough reports whether the SQL can be forwarded byte for byte and
// the rest of the plan ignored: it cannot touch an encrypted table, has no
// encrypted parameter, and needs no session bookkeeping (PREPARE, EXECUTE,
// DEALLOCATE).
func (p *Plan) Passthrough() bool { return p.pass }

// HasEdits reports whether Rewrite changes the SQL text.
func (p *Plan) HasEdits() bool {
	for i := range p.Statements {
		st := &p.Statements[i]
		if len(st.Edits) > 0 || (st.Kind == KindExecute && st.Execute != nil && len(st.Execute.Args) > 0) {
			return true
		}
	}
	return false
}

// RecordsMatches reports whether Rewrite can tell Env.Matches anything:
// the plan compares a deterministic column with constants (an EditMatch)
// or EXECUTEs a prepared statement with arguments. When it does not, a
// wire layer need not set Matches up at all.
func (p *Plan) RecordsMatches() bool {
	for i := range p.Statements {
		st := &p.Statements[i]
		if st.Kind == KindExecute && st.Execute != nil && len(st.Execute.Args) > 0 {
			return true
		}
		for j := range st.Edits {
			if st.Edits[j].Kind == EditMatch {
				return true
			}
		}
	}
	return false
}

// StmtKind says what the wire layer does with a statement besides applying
// its edits.
type StmtKind uint8

const (
	KindInvalid StmtKind = 0
	// KindPass: nothing to do; the statement touches no encrypted column
	// (possibly an encrypted table, as in TRUNCATE or CREATE INDEX).
	KindPass StmtKind = 1
	// KindQuery: SELECT, INSERT, UPDATE, DELETE, VALUES, EXPLAIN, DECLARE
	// CURSOR, CREATE TABLE AS: apply Edits; results are decrypted from
	// RowDescription's table OID and attribute numbers (the planner has
	// refused every result column that would carry ciphertext without
	// them).
	KindQuery StmtKind = 2
	// KindCopyFrom: COPY … FROM STDIN into a table with encrypted columns:
	// Copy says which fields of each row to encrypt.
	KindCopyFrom StmtKind = 3
	// KindCopyTo: COPY … TO STDOUT from a table or query with encrypted
	// columns: Copy says which fields to decrypt (COPY has no
	// RowDescription).
	KindCopyTo StmtKind = 4
	// KindPrepare: PREPARE name AS …; Prepare describes the statement.
	// Apply Edits; on its CommandComplete call Prepared.Commit.
	KindPrepare StmtKind = 5
	// KindExecute: EXECUTE name(args); Rewrite encodes the arguments from
	// the session's Prepared map.
	KindExecute StmtKind = 6
	// KindDeallocate: DEALLOCATE name | ALL, or DISCARD ALL; on its
	// CommandComplete call Prepared.Commit.
	KindDeallocate StmtKind = 7
)

var kindNames = [...]string{"invalid", "pass", "query", "copy-from", "copy-to", "prepare", "execute", "deallocate"}

func (k StmtKind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return fmt.Sprintf("StmtKind(%d)", uint8(k))
}

// Statement is the plan of one statement of the SQL string.
type Statement struct {
	// Start and End are the statement's byte range in the SQL string
	// (without the separating semicolon).
	Start, End int
	Kind       StmtKind
	// Edits are the text replacements, sorted by Start, not overlapping,
	// with absolute offsets into the whole SQL string, all within
	// [Start, End).
	Edits []Edit
	// Copy is set for KindCopyFrom and KindCopyTo.
	Copy *Copy
	// Prepare is set for KindPrepare.
	Prepare *PreparedStatement
	// Execute is set for KindExecute.
	Execute *Execute
	// Deallocate names the statement a KindDeallocate drops; DeallocateAll
	// is set for DEALLOCATE ALL and DISCARD ALL.
	Deallocate    string
	DeallocateAll bool
}

// EditKind says how an Edit's replacement text is produced.
type EditKind uint8

const (
	EditInvalid EditKind = 0
	// EditText: replace with Text (parameter casts such as $1::bytea,
	// PREPARE parameter types, column lists pinned into INSERT and COPY).
	EditText EditKind = 1
	// EditStore: replace the literal with the ciphertext of Literal for
	// Column under the primary key version: '\x…'::bytea (NULL stays NULL).
	EditStore EditKind = 2
	// EditMatch: replace a whole comparison with a predicate that matches
	// every live key version: see Match.
	EditMatch EditKind = 3
)

// Edit replaces bytes [Start, End) of the SQL.
type Edit struct {
	Start, End int
	Kind       EditKind
	// Text is the replacement of an EditText.
	Text string
	// Column is the encrypted column of an EditStore or EditMatch.
	Column *rules.ColumnRule
	// Literal is the value of an EditStore.
	Literal sqlplan.Literal
	// Match is the comparison of an EditMatch.
	Match *Match

	// EXECUTE arguments (made by Rewrite only).
	argRole  sqlplan.Role
	argSlots int
	argElems []sqlplan.Literal
}

// Match is a comparison of an encrypted deterministic column with
// constants and/or parameters. Its replacement text is
//
//	(col IN (ct, ct, …[, NULL]) OR col = ANY($n::bytea[]) OR …)
//
// or, when Negated,
//
//	(col NOT IN (ct, ct, …[, NULL]) AND col <> ALL($n::bytea[]) AND …)
//
// where col is Column (copied from the statement), the cts are the
// ciphertexts of every Literal under every live key version (newest first),
// and each $n is a parameter bound as a bytea[] of ciphertexts (RoleMatch or
// RoleMatchArray). With one literal and one key version this is simply
// (col IN (ct)), i.e. col = ct.
type Match struct {
	Column   string
	Negated  bool
	Literals []sqlplan.Literal
	Params   []int
	// Null: the list held a NULL, which is kept (x IN (…, NULL) is never
	// false, x NOT IN (…, NULL) never true, exactly as before rewriting).
	Null bool
}

// PreparedStatement describes an SQL-level prepared statement.
type PreparedStatement struct {
	Name string
	// Params are the roles of the statement's parameters, as in Plan.Params.
	Params []sqlplan.Param
}

// Execute is an EXECUTE statement: Rewrite replaces each argument bound for
// an encrypted parameter of the prepared statement.
type Execute struct {
	Name string
	Args []Arg
}

// ArgKind classifies an EXECUTE argument.
type ArgKind uint8

const (
	ArgInvalid ArgKind = 0
	ArgLiteral ArgKind = 1 // a constant, possibly cast
	ArgNull    ArgKind = 2 // NULL, possibly cast
	ArgArray   ArgKind = 3 // ARRAY[…] of constants and NULLs
	ArgParam   ArgKind = 4 // $n
	ArgOther   ArgKind = 5 // any other expression: refused for an encrypted parameter
)

// Arg is one EXECUTE argument at bytes [Start, End) of the SQL.
type Arg struct {
	Start, End int
	Kind       ArgKind
	Literal    sqlplan.Literal   // ArgLiteral
	Elems      []sqlplan.Literal // ArgArray (Null set for NULL elements)
	Param      int               // ArgParam
	// Cast is the lower-case name of the type an ArgLiteral is cast to
	// (pg_catalog names, e.g. "int4"), or "".
	Cast string
}

// CopyFormat is the data format of a COPY.
type CopyFormat uint8

const (
	CopyInvalid CopyFormat = 0
	CopyText    CopyFormat = 1
	CopyCSV     CopyFormat = 2
	CopyBinary  CopyFormat = 3
)

func (f CopyFormat) String() string {
	switch f {
	case CopyText:
		return "text"
	case CopyCSV:
		return "csv"
	case CopyBinary:
		return "binary"
	}
	return fmt.Sprintf("CopyFormat(%d)", uint8(f))
}

// Copy is the plan of a COPY to or from the client.
type Copy struct {
	// Fields has one entry per field of each COPY row, in order.
	Fields []CopyField
	Format CopyFormat
	// Options with PostgreSQL's defaults filled in for the format: text:
	// Delimiter "\t", Null `\N`; csv: Delimiter ",", Null "", Quote `"`,
	// Escape = Quote. Default is the DEFAULT marker (COPY FROM, "" = none).
	Delimiter, Null, Quote, Escape, Default string
	// Header: the first line is a header (text and csv), passed through.
	Header bool
}

// CopyField is one field of a COPY row.
type CopyField struct {
	// Name is the column name (COPY of a table) or the output name
	// (COPY (query)).
	Name string
	// Column is the encrypted column the field holds, or nil (plaintext).
	Column *rules.ColumnRule
	// CSV options for this field: FORCE_NULL and FORCE_NOT_NULL (FROM),
	// FORCE_QUOTE (TO).
	ForceNull, ForceNotNull, ForceQuote bool
}
