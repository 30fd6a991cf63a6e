package pgcrypt

import (
	"time"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/dbproxy/dbproxy/fieldcrypt"
	"github.com/dbproxy/dbproxy/rules"
	"github.com/dbproxy/dbproxy/sqlplan/pgsql"
	"github.com/dbproxy/dbproxy/value"
)

// readCell appends what the session's access policy shows of a bytea cell
// of col (text or binary format) in the same format: the plaintext
// (decrypt), the masked text (mask; a column that is not text is NULL),
// the cell as stored (ciphertext) or nothing with null set (null, and
// mask of a column that is not text). A column the session may not read
// (deny, write_only) is a *fieldcrypt.RefusedError; the result's
// description was refused before any row, so this is a second line.
func (s *session) readCell(dst []byte, col *rules.ColumnRule, cell []byte, format int16, zone *time.Location) (out []byte, null bool, err error) {
	d := s.cipher.Decision(col)
	switch d.Action {
	case fieldcrypt.ActionDecrypt:
		out, err = s.decryptCell(dst, col, cell, format, zone)
		return out, false, err
	case fieldcrypt.ActionCiphertext:
		return append(dst, cell...), false, nil
	case fieldcrypt.ActionMask:
		if col.Type != value.TypeText {
			return dst, true, nil
		}
		canon, err := s.plainCell(col, cell, format)
		if err != nil {
			return dst, false, err
		}
		return d.Mask.Append(dst, canon), false, nil
	case fieldcrypt.ActionNull:
		return dst, true, nil
	}
	_, err = s.cipher.ReadDecision(s.ctx, col)
	return dst, false, err
}

// copyOutRefusal is the error refusing a COPY TO that carries a column
// the session may not read; nil if it may read them all.
func (s *session) copyOutRefusal(cp *pgsql.Copy) *pgproto3.ErrorResponse {
	for i := range cp.Fields {
		if col := cp.Fields[i].Column; col != nil {
			if _, err := s.cipher.ReadDecision(s.ctx, col); err != nil {
				return deniedResponse(err)
			}
		}
	}
	return nil
}
