package pgcrypt

import (
	"encoding/binary"
	"errors"
	"time"

	"github.com/dbproxy/dbproxy/proxy/postgres"
	"github.com/dbproxy/dbproxy/proxy/postgres/pgmsg"
	"github.com/dbproxy/dbproxy/rules"
	"github.com/dbproxy/dbproxy/sqlplan"
	"github.com/dbproxy/dbproxy/sqlplan/pgsql"
	"github.com/dbproxy/dbproxy/value"
	"github.com/jackc/pgx/v5/pgproto3"
)

var errBadBind = &postgres.Error{Code: "08P01", Message: "invalid Bind message"}

// bind encrypts the parameters bound for encrypted columns: decode, check
// the statement (planning it again if the search_path changed), encrypt
// the lookups first (preparing the statement again if a key rotation needs
// more slots), then re-encode the Bind with ciphertexts.
func (s *session) bind(body []byte, w *postgres.Writer) error {
	m, err := pgmsg.ParseBind(body)
	if err != nil {
		return errBadBind
	}
	st := s.stmts[string(m.Statement)]
	if st == nil {
		s.refuseBatch(errorResponse("26000", "dbproxy: statement refused: Bind of a statement not prepared through this proxy"), w)
		return nil
	}
	if refusal, err := s.bindCheck(m.Statement, st, w); err != nil || refusal != nil {
		if refusal != nil {
			s.refuseBatch(refusal, w)
		}
		return err
	}
	p := s.newPortal(portalInfo{stmt: st, formats: resultFormats(m.ResultFormats)})
	if len(m.Portal) == 0 {
		s.unnamed = p
	} else {
		if s.portals == nil {
			s.portals = map[string]*portalInfo{}
		}
		s.portals[string(m.Portal)] = p
	}
	if !hasEncryptedParam(st.plan) {
		s.statement(st.plan != nil)
		s.push(s.newEvent(event{kind: pgmsg.TypeBind, portal: p}))
		w.Forward(pgmsg.TypeBind, body)
		return nil
	}
	if bindsLookup(st.plan) { // an INSERT's Bind, say, has nothing to record
		p.matches = s.newMatchSet()
	}
	s.lock()
	zone := s.zone
	s.mu.Unlock()
	out, refusal := s.encryptBind(&m, st, p, zone, w)
	if refusal != nil {
		s.refuseBatch(refusal, w)
		return nil
	}
	s.statement(true)
	s.push(s.newEvent(event{kind: pgmsg.TypeBind, portal: p}))
	_, _ = w.Write(out)
	s.keep(out)
	return nil
}

// bindCheck checks that statement st (named name) can be bound now: the
// lexing settings, the search_path it was planned under (planning it
// again if that changed) and, for a statement the pre-filter skipped, the
// relations derived from encrypted tables. A non-nil ErrorResponse refuses
// the batch.
func (s *session) bindCheck(name []byte, st *stmtInfo, w *postgres.Writer) (*pgproto3.ErrorResponse, error) {
	if st.plan != nil {
		// Its text values are in client_encoding, its results go back in
		// it, and a re-prepare sends its text again.
		if e, _ := s.lexRefusal(); e != nil && e != errSCSOff {
			return e, nil
		}
	}
	if st.searchPath != "" {
		if err := s.ensureSearchPath(w); err != nil {
			return nil, err
		}
		if !s.searchPath.known {
			return errSearchPathUnknown, nil
		}
	}
	if st.searchPath == "" && st.plan == nil {
		if d := s.db.planner.Derived(); d != st.derived {
			// The relations derived from encrypted tables changed since
			// the Parse: a name in the statement may now denote one.
			if !s.db.planner.Skips(st.text) {
				return errPreparedBeforeDerived, nil
			}
			st.derived = d
		}
	}
	if st.searchPath != "" && st.searchPath != s.searchPath.current {
		// Planned again and sent again: its text must be read as the
		// server will read it now.
		if e, _ := s.lexRefusal(); e != nil && e != errSCSOff {
			return e, nil
		}
		if err := s.replan(name, st, w); err != nil {
			return refusalResponse(err), nil
		}
	}
	return nil, nil
}

// resultFormats returns the result format codes of a Bind, kept by its
// portal past the message (the common lists are shared).
func resultFormats(f pgmsg.Formats) []int16 {
	switch {
	case f.Len() == 0:
		return nil
	case f.Len() == 1 && f.At(0) == pgmsg.FormatText:
		return resultFormatsText
	case f.Len() == 1 && f.At(0) == pgmsg.FormatBinary:
		return resultFormatsBinary
	}
	return f.AppendInt16s(make([]int16, 0, f.Len()))
}

// hasEncryptedParam reports whether plan (nil: passthrough) has a
// parameter bound for an encrypted column.
func hasEncryptedParam(plan *pgsql.Plan) bool {
	if plan == nil {
		return false
	}
	for _, prm := range plan.Params {
		if prm.Encrypted() {
			return true
		}
	}
	return false
}

// bindsLookup reports whether plan has a parameter compared with a
// deterministic column, whose ciphertexts the portal's match set records.
func bindsLookup(plan *pgsql.Plan) bool {
	for _, prm := range plan.Params {
		if prm.Role == sqlplan.RoleMatch || prm.Role == sqlplan.RoleMatchArray {
			return true
		}
	}
	return false
}

// invalidParam refuses parameter i (0-based) of col as not a valid what.
func invalidParam(col *rules.ColumnRule, i int, what string) *pgproto3.ErrorResponse {
	return errorResponse(sqlplan.StateInvalidText,
		"dbproxy: statement refused: column "+col.String()+": parameter $"+itoa(i+1)+" is not a valid "+what)
}

// encryptBind returns the Bind to send upstream for m, bound to portal p
// of statement st, with the parameters of encrypted columns encrypted. A
// non-nil ErrorResponse refuses the batch.
func (s *session) encryptBind(m *pgmsg.Bind, st *stmtInfo, p *portalInfo, zone *time.Location,
	w *postgres.Writer) ([]byte, *pgproto3.ErrorResponse) {
	// The ciphertexts of RoleMatch parameters first: if a rotation added
	// key versions since the statement was prepared, it is prepared again
	// with room for them before this Bind goes out.
	s.resetMatchScratch()
	matches, grow, refusal := s.encryptMatches(m, st, p.matches, zone)
	if refusal != nil {
		return nil, refusal
	}
	if grow {
		slots, err := s.matchSlots(st.plan, matches)
		if err == nil {
			err = s.reprepare(m.Statement, st, slots, w)
		}
		if err != nil {
			return nil, refusalResponse(err)
		}
	}
	encrypted := func(i int) bool { return i < len(st.plan.Params) && st.plan.Params[i].Encrypted() }
	out := pgmsg.AppendBindStart(s.frontBufs.message[:0], m.Portal, m.Statement)
	np := m.NumParams()
	out = pgmsg.AppendCount(out, np)
	for i := range np {
		f := m.ParamFormats.For(i)
		if encrypted(i) {
			f = pgmsg.FormatBinary
		}
		out = pgmsg.AppendInt16(out, f)
	}
	out = pgmsg.AppendCount(out, np)
	for v := m.Params(); v.Next(); {
		i := v.Index()
		switch {
		case v.Null():
			out = pgmsg.AppendNull(out)
		case !encrypted(i):
			out = pgmsg.AppendValue(out, v.Bytes())
		default:
			var cts [][]byte
			if i < len(matches) {
				cts = matches[i]
			}
			if out, refusal = s.appendEncryptedParam(out, m, st, i, v.Bytes(), cts, p.matches, zone); refusal != nil {
				return nil, refusal
			}
		}
	}
	out = pgmsg.AppendFormats(out, m.ResultFormats)
	return pgmsg.End(out, 0), nil
}

// encryptMatches encrypts the values of the RoleMatch parameters st was
// prepared with slots for, records them in rec and returns them per
// parameter; grow: one has more ciphertexts than its slots.
func (s *session) encryptMatches(m *pgmsg.Bind, st *stmtInfo, rec *rules.Matches, zone *time.Location) (
	matches [][][]byte, grow bool, refusal *pgproto3.ErrorResponse) {
	matches = s.frontBufs.matchCiphertexts[:0]
	if len(st.slots) == 0 {
		return matches, false, nil // no lookup slots: nothing to walk
	}
	for v := m.Params(); v.Next(); {
		i := v.Index()
		if i >= len(st.slots) || st.slots[i] == 0 || v.Null() {
			continue
		}
		prm := st.plan.Params[i]
		canon, err := s.bindCanon(s.frontBufs.canonical[:0], prm.Column, v.Bytes(), m.ParamFormats.For(i), zone)
		if err != nil {
			return nil, false, invalidParam(prm.Column, i, prm.Column.Type.String()+" value")
		}
		s.frontBufs.canonical = canon
		cts, err := s.encryptMatch(prm.Column, canon)
		if err != nil {
			return nil, false, refusalResponse(err)
		}
		rec.RecordMatch(prm.Column, canon, cts)
		for len(matches) <= i {
			matches = append(matches, nil)
		}
		matches[i] = cts
		grow = grow || len(cts) > st.slots[i]
	}
	s.frontBufs.matchCiphertexts = matches
	return matches, grow, nil
}

// appendEncryptedParam appends (with its length) the upstream value of
// parameter i of m, src, bound for an encrypted column and not NULL; cts
// are its ciphertexts if encryptMatches made them already.
func (s *session) appendEncryptedParam(out []byte, m *pgmsg.Bind, st *stmtInfo, i int, src []byte, cts [][]byte,
	rec *rules.Matches, zone *time.Location) ([]byte, *pgproto3.ErrorResponse) {
	prm := st.plan.Params[i]
	col := prm.Column
	format := m.ParamFormats.For(i)
	if prm.Role == sqlplan.RoleMatchArray {
		out, err := s.bindMatchArray(out, col, src, format, zone, rec)
		if denied := deniedResponse(err); denied != nil {
			return out, denied
		}
		if errors.Is(err, errBadElement) {
			return out, invalidParam(col, i, "array of "+col.Type.String())
		}
		if err != nil {
			return out, refusalResponse(err) // a key failure, not the client's value
		}
		return out, nil
	}
	if prm.Role == sqlplan.RoleMatch && cts != nil {
		return appendMatchSlots(out, cts, st.slots[i]), nil
	}
	canon, err := s.bindCanon(s.frontBufs.canonical[:0], col, src, format, zone)
	if err != nil {
		return out, invalidParam(col, i, col.Type.String()+" value")
	}
	s.frontBufs.canonical = canon
	switch prm.Role {
	case sqlplan.RoleStore:
		ct, err := s.cipher.AppendStore(s.ctx, s.frontBufs.ciphertext[:0], col, canon)
		if err != nil {
			return out, refusalResponse(err)
		}
		s.frontBufs.ciphertext = ct
		return pgmsg.AppendValue(out, ct), nil
	case sqlplan.RoleMatch:
		cts, err := s.encryptMatch(col, canon)
		if err != nil {
			return out, refusalResponse(err)
		}
		rec.RecordMatch(col, canon, cts)
		return appendMatchArray(out, cts, len(cts)), nil
	default:
		return out, errorResponse(sqlplan.StateFeatureNotSupported,
			"dbproxy: statement refused: column "+col.String()+": parameter role not supported")
	}
}

// encryptMatch returns the ciphertexts of canon under every live version
// of col's key, newest first, in the Bind's scratch: valid until the next
// resetMatchScratch.
func (s *session) encryptMatch(col *rules.ColumnRule, canon []byte) ([][]byte, error) {
	fb := &s.frontBufs
	n := len(fb.matchList)
	// A grown matchBuf leaves the earlier ciphertexts in the old array,
	// where the slices already handed out still find them.
	buf, list, err := s.cipher.AppendMatch(s.ctx, fb.matchBuf, fb.matchList, col, canon)
	if err != nil {
		return nil, err
	}
	fb.matchBuf, fb.matchList = buf, list
	return list[n:len(list):len(list)], nil
}

// resetMatchScratch empties the scratch of encryptMatch for a new Bind.
func (s *session) resetMatchScratch() {
	fb := &s.frontBufs
	clear(fb.matchList)
	fb.matchBuf, fb.matchList = reusable(fb.matchBuf)[:0], fb.matchList[:0]
	if cap(fb.matchList) > maxKeptBuffer/64 {
		fb.matchList = nil
	}
}

func itoa(v int) string { return string(appendInt(nil, v)) }

// bindCanon appends the canonical encoding of a Bind parameter value for
// col, sent in format f (0 text, 1 binary).
func (s *session) bindCanon(dst []byte, col *rules.ColumnRule, src []byte, f int16, zone *time.Location) ([]byte, error) {
	if f == pgmsg.FormatBinary {
		return appendCanonicalFromBinary(dst, col.Type, src)
	}
	return value.AppendCanonicalTextInZone(dst, col.Type, src, zone)
}

// appendMatchSlots appends the Bind parameter of a match parameter
// prepared with n slots: a bytea, the ciphertext itself, for one slot
// (slotTypes declared it so); the bytea[] of cts padded to n for more.
func appendMatchSlots(out []byte, cts [][]byte, n int) []byte {
	if n == 1 {
		return pgmsg.AppendValue(out, cts[0])
	}
	return appendMatchArray(out, cts, n)
}

// appendMatchArray appends a Bind parameter (length included) holding the
// binary bytea[] of cts, padded to n elements by repeating the first (a
// statement prepared with n slots reads exactly n; repeating a ciphertext
// changes no comparison, where a NULL would break NOT IN).
func appendMatchArray(out []byte, cts [][]byte, n int) []byte {
	lenAt := len(out)
	out = appendByteaArrayHeader(pgmsg.OpenValue(out), n)
	for i := range n {
		ct := cts[0]
		if i < len(cts) {
			ct = cts[i]
		}
		out = pgmsg.AppendValue(out, ct)
	}
	return pgmsg.CloseValue(out, lenAt)
}

// appendByteaArrayHeader appends the header of a one-dimensional binary
// bytea[] of n elements without NULLs (none when n is 0: an empty array
// has no dimensions).
func appendByteaArrayHeader(out []byte, n int) []byte {
	ndim := uint32(1)
	if n == 0 {
		ndim = 0
	}
	out = binary.BigEndian.AppendUint32(out, ndim)
	out = binary.BigEndian.AppendUint32(out, 0) // no NULLs
	out = binary.BigEndian.AppendUint32(out, oidBytea)
	if n == 0 {
		return out
	}
	out = binary.BigEndian.AppendUint32(out, uint32(n))
	return binary.BigEndian.AppendUint32(out, 1) // lower bound
}

// bindMatchArray appends (with its length) a binary bytea[] holding the
// ciphertexts of every element of the client's array under every live
// version of col's key, and records them in rec.
func (s *session) bindMatchArray(out []byte, col *rules.ColumnRule, src []byte, format int16, zone *time.Location,
	rec *rules.Matches) ([]byte, error) {
	lenAt := len(out)
	out = appendByteaArrayHeader(pgmsg.OpenValue(out), 1) // the count is set below
	countAt := len(out) - 8
	count := 0
	keyErr := error(nil)
	err := arrayElems(src, format, func(elem []byte, bin bool) error {
		canon, err := s.bindCanon(s.frontBufs.canonical[:0], col, elem, formatOfElem(bin), zone)
		if err != nil {
			return errBadElement
		}
		s.frontBufs.canonical = canon
		cts, err := s.encryptMatch(col, canon)
		if err != nil {
			keyErr = err
			return err
		}
		rec.RecordMatch(col, canon, cts)
		for _, ct := range cts {
			out = pgmsg.AppendValue(out, ct)
			count++
		}
		return nil
	})
	switch {
	case keyErr != nil:
		return out, keyErr
	case err != nil:
		return out, errBadElement // the array itself is malformed
	}
	if count == 0 {
		out = appendByteaArrayHeader(out[:lenAt+4], 0)
	} else {
		binary.BigEndian.PutUint32(out[countAt:], uint32(count))
	}
	return pgmsg.CloseValue(out, lenAt), nil
}

// errBadElement: the client's array, or one of its elements, is not a
// valid value of the column's type.
var errBadElement = errors.New("invalid array element")

// formatOfElem is the format code of an array element decoded from a
// binary (true) or text array.
func formatOfElem(bin bool) int16 {
	if bin {
		return pgmsg.FormatBinary
	}
	return pgmsg.FormatText
}
