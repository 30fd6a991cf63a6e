package pgcrypt

import (
	"bytes"
	"encoding/binary"
	"time"

	"github.com/dbproxy/dbproxy/proxy/postgres"
	"github.com/dbproxy/dbproxy/proxy/postgres/pgsql"
	"github.com/dbproxy/dbproxy/rules"
	"github.com/dbproxy/dbproxy/value"
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

// bind encrypts the parameters bound for encrypted columns.
func (s *session) bind(body []byte, w *postgres.Writer) error {
	portal, rest, ok := bytes.Cut(body, []byte{0})
	var stmtName []byte
	if ok {
		stmtName, rest, ok = bytes.Cut(rest, []byte{0})
	}
	if !ok || len(rest) < 2 {
		return errBadBind
	}
	st := s.stmts[string(stmtName)]
	if st == nil {
		s.refuseBatch(errorResponse("26000", "dbproxy: statement refused: Bind of a statement not prepared through this proxy"))
		return nil
	}
	if st.plan != nil {
		// Its text values are in client_encoding, its results go back in
		// it, and a re-prepare sends its text again.
		if e, _ := s.lexRefusal(); e != nil && e != errSCSOff {
			s.refuseBatch(e)
			return nil
		}
	}
	if st.searchPath != "" {
		if err := s.ensureSearchPath(w); err != nil {
			return err
		}
	}
	if st.searchPath != "" && !s.searchPath.known {
		s.refuseBatch(errSearchPathUnknown)
		return nil
	}
	if st.searchPath == "" && st.plan == nil {
		if d := s.db.planner.Derived(); d != st.derived {
			// The relations derived from encrypted tables changed since
			// the Parse: a name in the statement may now denote one.
			if !s.db.planner.Skips(st.text) {
				s.refuseBatch(errPreparedBeforeDerived)
				return nil
			}
			st.derived = d
		}
	}
	if st.searchPath != "" && st.searchPath != s.searchPath.current {
		// Planned again and sent again: its text must be read as the
		// server will read it now.
		if e, _ := s.lexRefusal(); e != nil && e != errSCSOff {
			s.refuseBatch(e)
			return nil
		}
		if err := s.replan(stmtName, st, w); err != nil {
			s.refuseBatch(refusalResponse(err))
			return nil
		}
	}
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
	valStart := pos
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
	valEnd := pos
	if len(rest) < pos+2 {
		return errBadBind
	}
	nr := int(binary.BigEndian.Uint16(rest[pos:]))
	pos += 2
	if len(rest) != pos+2*nr {
		return errBadBind
	}
	var rformats []int16
	switch {
	case nr == 0:
	case nr == 1 && rest[pos] == 0 && rest[pos+1] == 0:
		rformats = resultFormatsText
	case nr == 1 && rest[pos] == 0 && rest[pos+1] == 1:
		rformats = resultFormatsBinary
	default:
		rformats = make([]int16, nr)
		for i := range rformats {
			rformats[i] = int16(binary.BigEndian.Uint16(rest[pos:]))
			pos += 2
		}
	}
	p := s.newPortal(portalInfo{stmt: st, formats: rformats})
	if len(portal) == 0 {
		s.unnamed = p
	} else {
		if s.portals == nil {
			s.portals = map[string]*portalInfo{}
		}
		s.portals[string(portal)] = p
	}
	encrypted := false
	if st.plan != nil {
		for _, prm := range st.plan.Params {
			if prm.Encrypted() {
				encrypted = true
			}
		}
	}
	if !encrypted {
		s.push(s.newEvent(event{kind: 'B', portal: p}))
		w.Forward('B', body)
		return nil
	}
	p.matches = s.newMatchSet()
	s.mu.Lock()
	zone := s.zone
	s.mu.Unlock()
	// The ciphertexts of RoleMatch parameters first: if a rotation added
	// key versions since the statement was prepared, it is prepared again
	// with room for them before this Bind goes out.
	matches := s.frontBufs.matchCiphertexts[:0]
	grow := false
	for i, v := range vals {
		if i >= len(st.slots) || st.slots[i] == 0 || v.off < 0 {
			continue
		}
		prm := st.plan.Params[i]
		canon, err := s.bindCanon(s.frontBufs.canonical[:0], prm.Column, rest[v.off:v.off+v.n], formatOf(pformats, i), zone)
		if err != nil {
			s.refuseBatch(errorResponse(pgsql.StateInvalidText,
				"dbproxy: statement refused: column "+prm.Column.String()+": parameter $"+itoa(i+1)+" is not a valid "+prm.Column.Type.String()+" value"))
			return nil
		}
		s.frontBufs.canonical = canon
		cts, err := s.ic.opts.Encryptor.EncryptForMatch(s.ctx, prm.Column, canon)
		if err != nil {
			s.refuseBatch(refusalResponse(err))
			return nil
		}
		p.matches.RecordMatch(prm.Column, canon, cts)
		for len(matches) <= i {
			matches = append(matches, nil)
		}
		matches[i] = cts
		grow = grow || len(cts) > st.slots[i]
	}
	s.frontBufs.matchCiphertexts = matches
	if grow {
		slots, err := s.matchSlots(st.plan, matches)
		if err == nil {
			err = s.reprepare(stmtName, st, slots, w)
		}
		if err != nil {
			s.refuseBatch(refusalResponse(err))
			return nil
		}
	}
	out := append(s.frontBufs.message[:0], 'B', 0, 0, 0, 0)
	out = append(out, body[:len(portal)+1+len(stmtName)+1]...)
	out = binary.BigEndian.AppendUint16(out, uint16(np))
	for i := 0; i < np; i++ {
		f := formatOf(pformats, i)
		if i < len(st.plan.Params) && st.plan.Params[i].Encrypted() {
			f = 1
		}
		out = binary.BigEndian.AppendUint16(out, uint16(f))
	}
	out = binary.BigEndian.AppendUint16(out, uint16(np))
	_ = valStart
	_ = valEnd
	for i, v := range vals {
		if i >= len(st.plan.Params) || !st.plan.Params[i].Encrypted() || v.off < 0 {
			out = binary.BigEndian.AppendUint32(out, uint32(int32(v.n)))
			if v.n > 0 {
				out = append(out, rest[v.off:v.off+v.n]...)
			}
			continue
		}
		prm := st.plan.Params[i]
		col := prm.Column
		src := rest[v.off : v.off+v.n]
		if prm.Role == pgsql.RoleMatchArray {
			var err error
			out, err = s.bindMatchArray(out, col, src, formatOf(pformats, i), zone, p.matches)
			if err != nil {
				s.refuseBatch(errorResponse(pgsql.StateInvalidText,
					"dbproxy: statement refused: column "+col.String()+": parameter $"+itoa(i+1)+" is not a valid array of "+col.Type.String()))
				return nil
			}
			continue
		}
		if prm.Role == pgsql.RoleMatch && i < len(matches) && matches[i] != nil {
			out = appendMatchArray(out, matches[i], st.slots[i])
			continue
		}
		canon, err := s.bindCanon(s.frontBufs.canonical[:0], col, src, formatOf(pformats, i), zone)
		if err != nil {
			s.refuseBatch(errorResponse(pgsql.StateInvalidText,
				"dbproxy: statement refused: column "+col.String()+": parameter $"+itoa(i+1)+" is not a valid "+col.Type.String()+" value"))
			return nil
		}
		s.frontBufs.canonical = canon
		switch prm.Role {
		case pgsql.RoleStore:
			ct, err := s.ic.opts.Encryptor.AppendStore(s.ctx, s.frontBufs.ciphertext[:0], col, canon)
			if err != nil {
				s.refuseBatch(refusalResponse(err))
				return nil
			}
			s.frontBufs.ciphertext = ct
			out = binary.BigEndian.AppendUint32(out, uint32(len(ct)))
			out = append(out, ct...)
		case pgsql.RoleMatch:
			cts, err := s.ic.opts.Encryptor.EncryptForMatch(s.ctx, col, canon)
			if err != nil {
				s.refuseBatch(refusalResponse(err))
				return nil
			}
			p.matches.RecordMatch(col, canon, cts)
			out = appendMatchArray(out, cts, len(cts))
		default:
			s.refuseBatch(errorResponse(pgsql.StateFeatureNotSupported,
				"dbproxy: statement refused: column "+col.String()+": parameter role not supported"))
			return nil
		}
	}
	out = binary.BigEndian.AppendUint16(out, uint16(nr))
	for _, f := range rformats {
		out = binary.BigEndian.AppendUint16(out, uint16(f))
	}
	binary.BigEndian.PutUint32(out[1:5], uint32(len(out)-1))
	s.push(s.newEvent(event{kind: 'B', portal: p}))
	_, _ = w.Write(out)
	s.keep(out)
	return nil
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
