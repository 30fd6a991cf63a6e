package pgcrypt

import (
	"bytes"
	"encoding/binary"
	"time"

	"github.com/dbproxy/dbproxy/proxy/postgres"
	"github.com/dbproxy/dbproxy/rules"
	"github.com/dbproxy/dbproxy/sqlplan"
	"github.com/dbproxy/dbproxy/sqlplan/pgsql"
	"github.com/dbproxy/dbproxy/value"
	"github.com/jackc/pgx/v5/pgproto3"
)

// formatOf returns the format code of item i of n given a format list.
func formatOf(formats []int16, i int) int16 {
	switch len(formats) {
	case 0:
		return 0
	case 1:
		return formats[0]
	}
	if i < len(formats) {
		return formats[i]
	}
	return 0
}

var errBadBind = &postgres.Error{Code: "08P01", Message: "invalid Bind message"}

// bindMsg is a decoded Bind message; its slices point into the message or
// into the session's frontend scratch buffers.
type bindMsg struct {
	body          []byte // the whole message body
	portal, stmt  []byte // names
	rest          []byte // what follows the names; values index into it
	paramFormats  []int16
	values        []span
	resultFormats []int16
}

// bind encrypts the parameters bound for encrypted columns: decode, check
// the statement (planning it again if the search_path changed), encrypt
// the lookups first (preparing the statement again if a key rotation needs
// more slots), then re-encode the Bind with ciphertexts.
func (s *session) bind(body []byte, w *postgres.Writer) error {
	m := bindMsg{body: body}
	var ok bool
	m.portal, m.rest, ok = bytes.Cut(body, []byte{0})
	if ok {
		m.stmt, m.rest, ok = bytes.Cut(m.rest, []byte{0})
	}
	if !ok || len(m.rest) < 2 {
		return errBadBind
	}
	st := s.stmts[string(m.stmt)]
	if st == nil {
		s.refuseBatch(errorResponse("26000", "dbproxy: statement refused: Bind of a statement not prepared through this proxy"))
		return nil
	}
	if refusal, err := s.bindCheck(m.stmt, st, w); err != nil || refusal != nil {
		if refusal != nil {
			s.refuseBatch(refusal)
		}
		return err
	}
	if err := s.decodeBind(&m); err != nil {
		return err
	}
	p := s.newPortal(portalInfo{stmt: st, formats: m.resultFormats})
	if len(m.portal) == 0 {
		s.unnamed = p
	} else {
		if s.portals == nil {
			s.portals = map[string]*portalInfo{}
		}
		s.portals[string(m.portal)] = p
	}
	if !hasEncryptedParam(st.plan) {
		s.push(s.newEvent(event{kind: 'B', portal: p}))
		w.Forward('B', body)
		return nil
	}
	p.matches = s.newMatchSet()
	s.mu.Lock()
	zone := s.zone
	s.mu.Unlock()
	out, refusal := s.encryptBind(&m, st, p, zone, w)
	if refusal != nil {
		s.refuseBatch(refusal)
		return nil
	}
	s.push(s.newEvent(event{kind: 'B', portal: p}))
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

// decodeBind decodes the parameter formats, values and result formats of
// m.rest, reusing the session's scratch buffers.
func (s *session) decodeBind(m *bindMsg) error {
	rest := m.rest
	nf := int(binary.BigEndian.Uint16(rest))
	pos := 2
	if len(rest) < pos+2*nf+2 {
		return errBadBind
	}
	pformats := s.frontBufs.paramFormats[:0]
	if cap(pformats) < nf {
		pformats = make([]int16, nf)
	}
	pformats = pformats[:nf]
	s.frontBufs.paramFormats = pformats
	for i := range pformats {
		pformats[i] = int16(binary.BigEndian.Uint16(rest[pos:]))
		pos += 2
	}
	np := int(binary.BigEndian.Uint16(rest[pos:]))
	pos += 2
	vals := s.frontBufs.paramValues[:0]
	if cap(vals) < np {
		vals = make([]span, np)
	}
	vals = vals[:np]
	s.frontBufs.paramValues = vals
	for i := range vals {
		if len(rest) < pos+4 {
			return errBadBind
		}
		l := int(int32(binary.BigEndian.Uint32(rest[pos:])))
		pos += 4
		if l < 0 {
			vals[i] = span{-1, -1}
			continue
		}
		if len(rest) < pos+l {
			return errBadBind
		}
		vals[i] = span{pos, l}
		pos += l
	}
	m.paramFormats, m.values = pformats, vals
	return decodeResultFormats(m, pos)
}

// decodeResultFormats decodes the result format codes of m.rest at pos,
// sharing the common lists.
func decodeResultFormats(m *bindMsg, pos int) error {
	rest := m.rest
	if len(rest) < pos+2 {
		return errBadBind
	}
	nr := int(binary.BigEndian.Uint16(rest[pos:]))
	pos += 2
	if len(rest) != pos+2*nr {
		return errBadBind
	}
	switch {
	case nr == 0:
	case nr == 1 && rest[pos] == 0 && rest[pos+1] == 0:
		m.resultFormats = resultFormatsText
	case nr == 1 && rest[pos] == 0 && rest[pos+1] == 1:
		m.resultFormats = resultFormatsBinary
	default:
		m.resultFormats = make([]int16, nr)
		for i := range m.resultFormats {
			m.resultFormats[i] = int16(binary.BigEndian.Uint16(rest[pos:]))
			pos += 2
		}
	}
	return nil
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

// paramValue returns the bytes of parameter value v of m.
func (m *bindMsg) paramValue(v span) []byte { return m.rest[v.off : v.off+v.n] }

// invalidParam refuses parameter i (0-based) of col as not a valid what.
func invalidParam(col *rules.ColumnRule, i int, what string) *pgproto3.ErrorResponse {
	return errorResponse(sqlplan.StateInvalidText,
		"dbproxy: statement refused: column "+col.String()+": parameter $"+itoa(i+1)+" is not a valid "+what)
}

// encryptBind returns the Bind to send upstream for m, bound to portal p
// of statement st, with the parameters of encrypted columns encrypted. A
// non-nil ErrorResponse refuses the batch.
func (s *session) encryptBind(m *bindMsg, st *stmtInfo, p *portalInfo, zone *time.Location,
	w *postgres.Writer) ([]byte, *pgproto3.ErrorResponse) {
	// The ciphertexts of RoleMatch parameters first: if a rotation added
	// key versions since the statement was prepared, it is prepared again
	// with room for them before this Bind goes out.
	matches, grow, refusal := s.encryptMatches(m, st, p.matches, zone)
	if refusal != nil {
		return nil, refusal
	}
	if grow {
		slots, err := s.matchSlots(st.plan, matches)
		if err == nil {
			err = s.reprepare(m.stmt, st, slots, w)
		}
		if err != nil {
			return nil, refusalResponse(err)
		}
	}
	out := append(s.frontBufs.message[:0], 'B', 0, 0, 0, 0)
	out = append(out, m.body[:len(m.portal)+1+len(m.stmt)+1]...)
	np := len(m.values)
	out = binary.BigEndian.AppendUint16(out, uint16(np))
	for i := 0; i < np; i++ {
		f := formatOf(m.paramFormats, i)
		if i < len(st.plan.Params) && st.plan.Params[i].Encrypted() {
			f = 1
		}
		out = binary.BigEndian.AppendUint16(out, uint16(f))
	}
	out = binary.BigEndian.AppendUint16(out, uint16(np))
	for i, v := range m.values {
		if i >= len(st.plan.Params) || !st.plan.Params[i].Encrypted() || v.off < 0 {
			out = binary.BigEndian.AppendUint32(out, uint32(int32(v.n)))
			if v.n > 0 {
				out = append(out, m.paramValue(v)...)
			}
			continue
		}
		var cts [][]byte
		if i < len(matches) {
			cts = matches[i]
		}
		if out, refusal = s.appendEncryptedParam(out, m, st, i, cts, p.matches, zone); refusal != nil {
			return nil, refusal
		}
	}
	out = binary.BigEndian.AppendUint16(out, uint16(len(m.resultFormats)))
	for _, f := range m.resultFormats {
		out = binary.BigEndian.AppendUint16(out, uint16(f))
	}
	binary.BigEndian.PutUint32(out[1:5], uint32(len(out)-1))
	return out, nil
}

// encryptMatches encrypts the values of the RoleMatch parameters st was
// prepared with slots for, records them in rec and returns them per
// parameter; grow: one has more ciphertexts than its slots.
func (s *session) encryptMatches(m *bindMsg, st *stmtInfo, rec *rules.Matches, zone *time.Location) (
	matches [][][]byte, grow bool, refusal *pgproto3.ErrorResponse) {
	matches = s.frontBufs.matchCiphertexts[:0]
	for i, v := range m.values {
		if i >= len(st.slots) || st.slots[i] == 0 || v.off < 0 {
			continue
		}
		prm := st.plan.Params[i]
		canon, err := s.bindCanon(s.frontBufs.canonical[:0], prm.Column, m.paramValue(v), formatOf(m.paramFormats, i), zone)
		if err != nil {
			return nil, false, invalidParam(prm.Column, i, prm.Column.Type.String()+" value")
		}
		s.frontBufs.canonical = canon
		cts, err := s.ic.opts.Encryptor.EncryptForMatch(s.ctx, prm.Column, canon)
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
// parameter i of m, bound for an encrypted column and not NULL; cts are
// its ciphertexts if encryptMatches made them already.
func (s *session) appendEncryptedParam(out []byte, m *bindMsg, st *stmtInfo, i int, cts [][]byte,
	rec *rules.Matches, zone *time.Location) ([]byte, *pgproto3.ErrorResponse) {
	prm := st.plan.Params[i]
	col := prm.Column
	src := m.paramValue(m.values[i])
	format := formatOf(m.paramFormats, i)
	if prm.Role == sqlplan.RoleMatchArray {
		out, err := s.bindMatchArray(out, col, src, format, zone, rec)
		if err != nil {
			return out, invalidParam(col, i, "array of "+col.Type.String())
		}
		return out, nil
	}
	if prm.Role == sqlplan.RoleMatch && cts != nil {
		return appendMatchArray(out, cts, st.slots[i]), nil
	}
	canon, err := s.bindCanon(s.frontBufs.canonical[:0], col, src, format, zone)
	if err != nil {
		return out, invalidParam(col, i, col.Type.String()+" value")
	}
	s.frontBufs.canonical = canon
	switch prm.Role {
	case sqlplan.RoleStore:
		ct, err := s.ic.opts.Encryptor.AppendStore(s.ctx, s.frontBufs.ciphertext[:0], col, canon)
		if err != nil {
			return out, refusalResponse(err)
		}
		s.frontBufs.ciphertext = ct
		out = binary.BigEndian.AppendUint32(out, uint32(len(ct)))
		return append(out, ct...), nil
	case sqlplan.RoleMatch:
		cts, err := s.ic.opts.Encryptor.EncryptForMatch(s.ctx, col, canon)
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

func itoa(v int) string { return string(appendInt(nil, v)) }

// bindCanon appends the canonical encoding of a Bind parameter value for
// col, sent in format f (0 text, 1 binary).
func (s *session) bindCanon(dst []byte, col *rules.ColumnRule, src []byte, f int16, zone *time.Location) ([]byte, error) {
	if f == 1 {
		return appendCanonicalFromBinary(dst, col.Type, src)
	}
	return value.AppendCanonicalTextInZone(dst, col.Type, src, zone)
}

// appendMatchArray appends a Bind parameter (length included) holding the
// binary bytea[] of cts, padded to n elements by repeating the first (a
// statement prepared with n slots reads exactly n; repeating a ciphertext
// changes no comparison, where a NULL would break NOT IN).
func appendMatchArray(out []byte, cts [][]byte, n int) []byte {
	lenAt := len(out)
	out = append(out, 0, 0, 0, 0)
	out = binary.BigEndian.AppendUint32(out, 1)  // ndim
	out = binary.BigEndian.AppendUint32(out, 0)  // no NULLs
	out = binary.BigEndian.AppendUint32(out, 17) // bytea
	out = binary.BigEndian.AppendUint32(out, uint32(n))
	out = binary.BigEndian.AppendUint32(out, 1) // lower bound
	for i := 0; i < n; i++ {
		ct := cts[0]
		if i < len(cts) {
			ct = cts[i]
		}
		out = binary.BigEndian.AppendUint32(out, uint32(len(ct)))
		out = append(out, ct...)
	}
	binary.BigEndian.PutUint32(out[lenAt:], uint32(len(out)-lenAt-4))
	return out
}

// bindMatchArray appends (with its length) a binary bytea[] holding the
// ciphertexts of every element of the client's array under every live
// version of col's key, and records them in rec.
func (s *session) bindMatchArray(out []byte, col *rules.ColumnRule, src []byte, format int16, zone *time.Location,
	rec *rules.Matches) ([]byte, error) {
	lenAt := len(out)
	out = append(out, 0, 0, 0, 0)
	hdr := len(out)
	out = binary.BigEndian.AppendUint32(out, 1)  // ndim
	out = binary.BigEndian.AppendUint32(out, 0)  // no NULLs
	out = binary.BigEndian.AppendUint32(out, 17) // bytea
	countAt := len(out)
	out = binary.BigEndian.AppendUint32(out, 0)
	out = binary.BigEndian.AppendUint32(out, 1) // lower bound
	count := 0
	err := arrayElems(src, format, func(elem []byte, bin bool) error {
		var canon []byte
		var err error
		if bin {
			canon, err = appendCanonicalFromBinary(s.frontBufs.canonical[:0], col.Type, elem)
		} else {
			canon, err = value.AppendCanonicalTextInZone(s.frontBufs.canonical[:0], col.Type, elem, zone)
		}
		if err != nil {
			return err
		}
		s.frontBufs.canonical = canon
		cts, err := s.ic.opts.Encryptor.EncryptForMatch(s.ctx, col, canon)
		if err != nil {
			return err
		}
		rec.RecordMatch(col, canon, cts)
		for _, ct := range cts {
			out = binary.BigEndian.AppendUint32(out, uint32(len(ct)))
			out = append(out, ct...)
			count++
		}
		return nil
	})
	if err != nil {
		return out, err
	}
	if count == 0 { // an empty array has no dimensions
		out = out[:hdr]
		out = binary.BigEndian.AppendUint32(out, 0)
		out = binary.BigEndian.AppendUint32(out, 0)
		out = binary.BigEndian.AppendUint32(out, 17)
	} else {
		binary.BigEndian.PutUint32(out[countAt:], uint32(count))
	}
	binary.BigEndian.PutUint32(out[lenAt:], uint32(len(out)-lenAt-4))
	return out, nil
}
