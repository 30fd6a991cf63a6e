package mycrypt

import (
	gomysql "github.com/go-mysql-org/go-mysql/mysql"

	"github.com/dbproxy/dbproxy/fieldcrypt"
	"github.com/dbproxy/dbproxy/proxy/mysql"
	"github.com/dbproxy/dbproxy/rules"
	"github.com/dbproxy/dbproxy/value"
)

// What the session's access policy shows of a result cell whose Decision
// is not decrypt: the masked text (mask of a text column), NULL (null,
// and mask of a column that is not text), the stored bytes (ciphertext,
// described as the server describes them: rewriteColumnDef). A result
// with a column the session may not read is refused at its first row, or
// at its end when it has none (unreadable): an ERR in place of a column
// definition is not something clients expect.

// unreadable is the refusal of a result of st that has a column the
// session may not read (deny, write_only); nil if it may read them all.
func (s *session) unreadable(st *exState) error {
	c := s.cipher.Load()
	for i := range st.cols {
		if rule := st.cols[i].rule; rule != nil {
			if _, err := c.ReadDecision(s.ctx, rule); err != nil {
				return keyError("", err)
			}
		}
	}
	return nil
}

// checkReadable is unreadable, once per result set: the session's cipher,
// and so its decisions, do not change within a response.
func (s *session) checkReadable(st *exState) error {
	if st.readable {
		return nil
	}
	if err := s.unreadable(st); err != nil {
		return err
	}
	st.readable = true
	return nil
}

// resultEnd handles an EOF of st: the one after column definitions goes
// through; a result set's terminator is refused if the result has a
// column the session may not read.
func (s *session) resultEnd(st *exState, payload []byte, w *mysql.Writer) error {
	if st.defsEOF {
		st.defsEOF = false
	} else if st.anyEnc {
		if err := s.checkReadable(st); err != nil {
			return err
		}
	}
	w.Packet(payload)
	return nil
}

// maskedText returns the masked plaintext of ct, a text cell of rule, in
// s.resText.
func (s *session) maskedText(st *exState, rule *rules.ColumnRule, ct []byte, d fieldcrypt.Decision) ([]byte, error) {
	canon, err := s.decrypt(st, s.resMask[:0], rule, ct)
	s.resMask = reusable(canon[:0])
	if err != nil {
		return nil, s.decryptErr(rule, err)
	}
	s.resText = d.Mask.Append(s.resText[:0], canon)
	return s.resText, nil
}

// policyTextCell appends the text-protocol cell (raw: as the server sent
// it, ct: its value) of rule under d.
func (s *session) policyTextCell(st *exState, out, raw []byte, rule *rules.ColumnRule, ct []byte, d fieldcrypt.Decision) ([]byte, error) {
	switch {
	case d.Action == fieldcrypt.ActionCiphertext:
		return append(out, raw...), nil
	case d.Action == fieldcrypt.ActionNull, d.Action == fieldcrypt.ActionMask && rule.Type != value.TypeText:
		return append(out, lenencNull), nil
	case d.Action == fieldcrypt.ActionMask:
		txt, err := s.maskedText(st, rule, ct, d)
		if err != nil {
			return out, err
		}
		out = gomysql.AppendLengthEncodedInteger(out, uint64(len(txt)))
		return append(out, txt...), nil
	}
	_, err := s.cipher.Load().ReadDecision(s.ctx, rule)
	return out, keyError("", err)
}

// policyBinaryCell appends the binary-protocol cell (cell: as the server
// sent it, ct: its value) of rule under d; null means it is NULL instead
// (nothing appended: the caller sets its bit in the NULL bitmap).
func (s *session) policyBinaryCell(st *exState, out, cell []byte, rule *rules.ColumnRule, ct []byte, d fieldcrypt.Decision) ([]byte, bool, error) {
	switch {
	case d.Action == fieldcrypt.ActionCiphertext:
		return append(out, cell...), false, nil
	case d.Action == fieldcrypt.ActionNull, d.Action == fieldcrypt.ActionMask && rule.Type != value.TypeText:
		return out, true, nil
	case d.Action == fieldcrypt.ActionMask:
		txt, err := s.maskedText(st, rule, ct, d)
		if err != nil {
			return out, false, err
		}
		out = gomysql.AppendLengthEncodedInteger(out, uint64(len(txt)))
		return append(out, txt...), false, nil
	}
	_, err := s.cipher.Load().ReadDecision(s.ctx, rule)
	return out, false, keyError("", err)
}

// setBinaryNull marks column i NULL in a binary row's NULL bitmap.
func setBinaryNull(bitmap []byte, i int) {
	i += binaryRowNullOffset
	bitmap[i/8] |= 1 << (i % 8)
}
