package pgsql

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/dbproxy/dbproxy/rules"
	"github.com/dbproxy/dbproxy/sqlplan"
	"github.com/dbproxy/dbproxy/value"
)

// Env is what Rewrite needs from the session.
type Env struct {
	Encrypter sqlplan.Encrypter
	// Zone is the session's TimeZone, for timestamptz literals without an
	// explicit offset; nil means UTC.
	Zone *time.Location
	// Prepared holds the session's prepared statements, for EXECUTE. It is
	// only read: Rewrite sees PREPARE and DEALLOCATE earlier in the same
	// string on its own; Commit them as they complete.
	Prepared *Prepared
	// Slots, indexed by parameter number - 1, gives RoleMatch parameters a
	// fixed number of ciphertext slots k > 0: the comparison is rendered
	// `col IN (($n::bytea[])[1], …, ($n::bytea[])[k])` instead of `col =
	// ANY($n::bytea[])`, and the wire layer binds exactly k elements; for
	// k = 1 (one live key version, the usual case) it is `col =
	// $n::bytea`, and the wire layer declares $n bytea and binds the one
	// ciphertext (see SlotOID). PostgreSQL's generic plan estimates `= ANY`
	// of a parameter array at 10 rows, enough to choose a sequential scan
	// on small tables, and so plans it anew for every execution; the IN
	// list is estimated at k and looked up in the index, like a plaintext
	// `col = $n`; a plain bytea parameter also spares the server
	// receiving and subscripting an array per lookup.
	Slots []int
	// Matches, if set, is told every set of ciphertexts Rewrite renders
	// for a comparison with a deterministic column (a Match literal, an
	// EXECUTE argument bound for a RoleMatch or RoleMatchArray parameter),
	// so that a wire layer can recognise them in the results (see
	// MatchRecorder).
	Matches sqlplan.MatchRecorder
	// Scratch, if set, holds the buffers Rewrite uses (and grows) for
	// canonical plaintexts and ciphertexts; a caller that keeps it across
	// calls spares allocations per literal. Its contents are meaningless
	// afterwards.
	Scratch *Scratch
}

// Scratch is the reusable memory of Rewrite (Env.Scratch). The zero value
// is ready to use. Not safe for concurrent use.
type Scratch struct {
	canon []byte
	ct    []byte
	cts   [][]byte
}

// keep takes the buffers of r back, unless one grew past maxScratch.
func (sc *Scratch) keep(r *rewriter) {
	clear(r.cts[:cap(r.cts)])
	if cap(r.canon) <= maxScratch {
		sc.canon = r.canon[:0]
	}
	if cap(r.ct) <= maxScratch {
		sc.ct = r.ct[:0]
	}
	if cap(r.cts) <= maxScratch/64 {
		sc.cts = r.cts[:0]
	}
}

// Rewrite appends to dst the SQL to send upstream for sql, which must be
// the string p was planned for: every Edit applied, every EXECUTE argument
// bound for an encrypted parameter replaced. Ciphertexts are rendered as
// '\x…'::bytea, which requires standard_conforming_strings = on (the wire
// layer must not use plans otherwise). Literals are canonicalised with
// value.AppendCanonicalTextInZone.
//
// Errors: a *Refusal for a literal that is not a valid value of its
// column's type, or an EXECUTE that cannot be encoded; otherwise an
// Encrypter error. Nothing of sql may be sent after an error.
func (p *Plan) Rewrite(ctx context.Context, dst []byte, sql string, env Env) ([]byte, error) {
	r := rewriter{ctx: ctx, env: env}
	if sc := env.Scratch; sc != nil {
		r.canon, r.ct, r.cts = sc.canon[:0], sc.ct[:0], sc.cts[:0]
		defer sc.keep(&r)
	}
	pos := 0
	var pending map[string]*PreparedStatement // PREPAREd earlier in this string; nil value = deallocated
	var clearedAll bool
	for i := range p.Statements {
		st := &p.Statements[i]
		edits := st.Edits
		if st.Kind == KindExecute && st.Execute != nil {
			ps, ok := pending[st.Execute.Name]
			if !ok && !clearedAll {
				ps, ok = env.Prepared.Lookup(st.Execute.Name)
			}
			if !ok || ps == nil {
				return nil, refuse(nil, sqlplan.StateUndefinedPStatement,
					"prepared statement %q is not known to the proxy, so its arguments cannot be checked", st.Execute.Name)
			}
			var err error
			if edits, err = executeEdits(st, ps); err != nil {
				return nil, err
			}
		}
		for _, e := range edits {
			if e.Start < pos || e.End > len(sql) || e.Start > e.End {
				return nil, fmt.Errorf("%w: edit %d..%d out of order for a %d-byte statement (plan used with another SQL string?)", errSpan, e.Start, e.End, len(sql))
			}
			dst = append(dst, sql[pos:e.Start]...)
			var err error
			if dst, err = r.render(dst, &e); err != nil {
				return nil, err
			}
			pos = e.End
		}
		switch st.Kind {
		case KindPrepare:
			if pending == nil {
				pending = map[string]*PreparedStatement{}
			}
			pending[st.Prepare.Name] = st.Prepare
		case KindDeallocate:
			if st.DeallocateAll {
				pending, clearedAll = map[string]*PreparedStatement{}, true
			} else {
				if pending == nil {
					pending = map[string]*PreparedStatement{}
				}
				pending[st.Deallocate] = nil
			}
		}
	}
	return append(dst, sql[pos:]...), nil
}

// maxScratch is the largest Env.Scratch buffer handed back.
const maxScratch = 64 << 10

// editArg is the synthetic edit kind of an EXECUTE argument.
const editArg EditKind = 100

// executeEdits turns the arguments of an EXECUTE that are bound for
// encrypted parameters into edits.
func executeEdits(st *Statement, ps *PreparedStatement) ([]Edit, error) {
	edits := slices.Clone(st.Edits)
	for i, arg := range st.Execute.Args {
		if i >= len(ps.Params) || !ps.Params[i].Encrypted() {
			continue
		}
		prm := ps.Params[i]
		col := prm.Column
		switch arg.Kind {
		case ArgNull:
			continue
		case ArgLiteral:
			if prm.Role == sqlplan.RoleMatchArray {
				return nil, unsupported(col, "EXECUTE %s: argument %d must be ARRAY[…] of constants (it is compared with = ANY)", st.Execute.Name, i+1)
			}
			if arg.Cast != "" && !slices.Contains(castTypes[col.Type], arg.Cast) {
				return nil, unsupported(col, "EXECUTE %s: argument %d is cast to %s, which could change the value", st.Execute.Name, i+1, arg.Cast)
			}
		case ArgArray:
			if prm.Role != sqlplan.RoleMatchArray {
				return nil, unsupported(col, "EXECUTE %s: argument %d is an array, but the parameter takes one value", st.Execute.Name, i+1)
			}
		default:
			return nil, unsupported(col, "EXECUTE %s: argument %d is bound for an encrypted column and must be a constant", st.Execute.Name, i+1)
		}
		edits = append(edits, Edit{Start: arg.Start, End: arg.End, Kind: editArg, Column: col, Literal: arg.Literal,
			argRole: prm.Role, argElems: arg.Elems, argSlots: prm.Slots})
	}
	slices.SortFunc(edits, func(x, y Edit) int { return x.Start - y.Start })
	for i := 1; i < len(edits); i++ {
		if edits[i-1].End > edits[i].Start {
			return nil, fmt.Errorf("%w: overlapping EXECUTE edits", errSpan)
		}
	}
	return edits, nil
}

// rewriter renders edits.
type rewriter struct {
	ctx   context.Context
	env   Env
	canon []byte
	ct    []byte   // scratch for ciphertexts (rendered at once)
	cts   [][]byte // scratch for the ciphertexts of one comparison
}

func (r *rewriter) render(dst []byte, e *Edit) ([]byte, error) {
	switch e.Kind {
	case EditText:
		return append(dst, e.Text...), nil
	case EditStore:
		return r.store(dst, e.Column, e.Literal)
	case EditMatch:
		return r.match(dst, e.Column, e.Match)
	case editArg:
		switch e.argRole {
		case sqlplan.RoleStore:
			return r.store(dst, e.Column, e.Literal)
		case sqlplan.RoleMatch:
			return r.array(dst, e.Column, []sqlplan.Literal{e.Literal}, e.argSlots)
		case sqlplan.RoleMatchArray:
			return r.array(dst, e.Column, e.argElems, 0)
		}
	}
	return nil, fmt.Errorf("%w: edit of kind %d", errSpan, e.Kind)
}

// canonical canonicalises a literal for col.
func (r *rewriter) canonical(col *rules.ColumnRule, lit sqlplan.Literal) ([]byte, error) {
	c, err := value.AppendCanonicalTextInZone(r.canon[:0], col.Type, []byte(lit.Text), r.env.Zone)
	if err != nil {
		return nil, valueRefusal(col, err)
	}
	r.canon = c
	return c, nil
}

func (r *rewriter) encrypter() (sqlplan.Encrypter, error) {
	if r.env.Encrypter == nil {
		return nil, errors.New("pgsql: Rewrite needs an Encrypter")
	}
	return r.env.Encrypter, nil
}

// store renders '\x…'::bytea (or NULL).
func (r *rewriter) store(dst []byte, col *rules.ColumnRule, lit sqlplan.Literal) ([]byte, error) {
	if lit.Null {
		return append(dst, "NULL"...), nil
	}
	enc, err := r.encrypter()
	if err != nil {
		return nil, err
	}
	canon, err := r.canonical(col, lit)
	if err != nil {
		return nil, err
	}
	ct, err := enc.AppendStore(r.ctx, r.ct[:0], col, canon)
	r.ct = ct
	if err != nil {
		return nil, err
	}
	return appendBytea(dst, ct), nil
}

// matchCiphertexts returns the ciphertexts of every literal under every
// live key version. They live in r's scratch until the next edit.
func (r *rewriter) matchCiphertexts(col *rules.ColumnRule, lits []sqlplan.Literal) ([][]byte, int, error) {
	if len(lits) == 0 {
		return nil, 0, nil
	}
	enc, err := r.encrypter()
	if err != nil {
		return nil, 0, err
	}
	buf, out := r.ct[:0], r.cts[:0]
	nulls := 0
	for _, lit := range lits {
		if lit.Null {
			nulls++
			continue
		}
		canon, err := r.canonical(col, lit)
		if err != nil {
			return nil, 0, err
		}
		n := len(out)
		// A grown buf leaves the earlier ciphertexts in the old array,
		// where out still finds them.
		buf, out, err = enc.AppendMatch(r.ctx, buf, out, col, canon)
		if err != nil {
			return nil, 0, err
		}
		if r.env.Matches != nil {
			r.env.Matches.RecordMatch(col, canon, out[n:])
		}
	}
	r.ct, r.cts = buf, out
	return out, nulls, nil
}

// match renders a Match (see its doc).
func (r *rewriter) match(dst []byte, col *rules.ColumnRule, m *Match) ([]byte, error) {
	cts, _, err := r.matchCiphertexts(col, m.Literals)
	if err != nil {
		return nil, err
	}
	join := " OR "
	if m.Negated {
		join = " AND "
	}
	dst = append(dst, '(')
	parts := 0
	if len(cts) > 0 || m.Null {
		dst = append(dst, m.Column...)
		if m.Negated {
			dst = append(dst, " NOT IN ("...)
		} else {
			dst = append(dst, " IN ("...)
		}
		for i, ct := range cts {
			if i > 0 {
				dst = append(dst, ", "...)
			}
			dst = appendBytea(dst, ct)
		}
		if m.Null {
			if len(cts) > 0 {
				dst = append(dst, ", "...)
			}
			dst = append(dst, "NULL"...)
		}
		dst = append(dst, ')')
		parts++
	}
	for _, n := range m.Params {
		if parts > 0 {
			dst = append(dst, join...)
		}
		dst = append(dst, m.Column...)
		if k := r.slots(n); k > 0 {
			dst = appendSlots(dst, n, k, m.Negated)
			parts++
			continue
		}
		if m.Negated {
			dst = append(dst, " <> ALL($"...)
		} else {
			dst = append(dst, " = ANY($"...)
		}
		dst = strconv.AppendInt(dst, int64(n), 10)
		dst = append(dst, "::bytea[])"...)
		parts++
	}
	if parts == 0 {
		return nil, fmt.Errorf("%w: empty match", errSpan)
	}
	return append(dst, ')'), nil
}

// slots returns the number of slots of parameter n (1-based), 0 for none.
func (r *rewriter) slots(n int) int {
	if n < 1 || n > len(r.env.Slots) {
		return 0
	}
	return r.env.Slots[n-1]
}

// appendSlots renders the comparison (after the column) of parameter n
// with k slots; see Env.Slots.
func appendSlots(dst []byte, n, k int, negated bool) []byte {
	slot := func(dst []byte, i int) []byte {
		dst = append(dst, "(($"...)
		dst = strconv.AppendInt(dst, int64(n), 10)
		dst = append(dst, "::bytea[])["...)
		dst = strconv.AppendInt(dst, int64(i), 10)
		return append(dst, "])"...)
	}
	if k == 1 {
		if negated {
			dst = append(dst, " <> $"...)
		} else {
			dst = append(dst, " = $"...)
		}
		dst = strconv.AppendInt(dst, int64(n), 10)
		return append(dst, "::bytea"...)
	}
	if negated {
		dst = append(dst, " NOT IN ("...)
	} else {
		dst = append(dst, " IN ("...)
	}
	for i := 1; i <= k; i++ {
		if i > 1 {
			dst = append(dst, ", "...)
		}
		dst = slot(dst, i)
	}
	return append(dst, ')')
}

// array renders ARRAY[ct, …]::bytea[] for an EXECUTE argument bound to a
// match parameter; NULL elements stay NULL. slots > 0 (a RoleMatch
// parameter of a statement prepared with Env.Slots) pads the array to
// exactly that many elements, and refuses an argument with more
// ciphertexts (a key rotated since the statement was prepared: it could
// not find the rows of every live version); one slot is a bytea
// parameter, and gets the ciphertext itself (or NULL).
func (r *rewriter) array(dst []byte, col *rules.ColumnRule, lits []sqlplan.Literal, slots int) ([]byte, error) {
	cts, nulls, err := r.matchCiphertexts(col, lits)
	if err != nil {
		return nil, err
	}
	if slots > 0 && len(cts) > 0 {
		if len(cts) > slots {
			return nil, refuse(col, sqlplan.StateFeatureNotSupported,
				"the key of this column was rotated after the statement was prepared; prepare it again (or use Bind, which does)")
		}
		for len(cts) < slots {
			cts = append(cts, cts[0])
		}
	}
	if slots == 1 {
		if len(cts) == 0 {
			return append(dst, "NULL::bytea"...), nil
		}
		return appendBytea(dst, cts[0]), nil
	}
	dst = append(dst, "ARRAY["...)
	n := 0
	for _, ct := range cts {
		if n > 0 {
			dst = append(dst, ", "...)
		}
		dst = appendBytea(dst, ct)
		n++
	}
	for range nulls {
		if n > 0 {
			dst = append(dst, ", "...)
		}
		dst = append(dst, "NULL"...)
		n++
	}
	return append(dst, "]::bytea[]"...), nil
}

// appendBytea renders a bytea constant: '\x0102…'::bytea.
func appendBytea(dst, b []byte) []byte {
	dst = append(dst, `'\x`...)
	dst = hex.AppendEncode(dst, b)
	return append(dst, `'::bytea`...)
}

// Prepared holds one session's prepared statements: those made with SQL
// PREPARE (Commit them as they complete) and, because PostgreSQL keeps
// protocol-level named statements in the same namespace (EXECUTE can run a
// statement made by a Parse message), those the wire layer registers with
// Add. The zero value is ready to use. Not safe for concurrent use: it
// belongs to one session.
type Prepared struct {
	m map[string]*PreparedStatement
}

// Commit records the effect of a statement that completed successfully
// (call it on the statement's CommandComplete): a PREPARE adds, a
// DEALLOCATE or DISCARD ALL removes. Other statements are ignored.
func (s *Prepared) Commit(st *Statement) {
	switch st.Kind {
	case KindPrepare:
		s.Add(st.Prepare.Name, st.Prepare.Params)
	case KindDeallocate:
		if st.DeallocateAll {
			s.Reset()
		} else {
			s.Remove(st.Deallocate)
		}
	}
}

// Add records statement name with the given parameter roles.
func (s *Prepared) Add(name string, params []sqlplan.Param) {
	if s.m == nil {
		s.m = map[string]*PreparedStatement{}
	}
	s.m[name] = &PreparedStatement{Name: name, Params: params}
}

// Remove forgets statement name.
func (s *Prepared) Remove(name string) { delete(s.m, name) }

// Reset forgets every statement.
func (s *Prepared) Reset() { clear(s.m) }

// Lookup returns statement name.
func (s *Prepared) Lookup(name string) (*PreparedStatement, bool) {
	if s == nil {
		return nil, false
	}
	ps, ok := s.m[name]
	return ps, ok
}
