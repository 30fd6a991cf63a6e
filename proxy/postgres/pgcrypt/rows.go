package pgcrypt

import (
	"bytes"
	"encoding/hex"
	"errors"
	"log/slog"
	"slices"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/dbproxy/dbproxy/fieldcrypt"
	"github.com/dbproxy/dbproxy/proxy/postgres"
	"github.com/dbproxy/dbproxy/proxy/postgres/pgmsg"
	"github.com/dbproxy/dbproxy/rules"
	"github.com/dbproxy/dbproxy/sqlplan"
	"github.com/dbproxy/dbproxy/value"
)

// plaintextOID maps a plaintext type to its PostgreSQL type OID, size and
// array type OID.
var plaintextOID = [...]struct {
	oid   uint32
	size  int16
	array uint32
}{
	1: {25, -1, 1009}, 2: {21, 2, 1005}, 3: {23, 4, 1007}, 4: {20, 8, 1016}, 5: {700, 4, 1021}, 6: {701, 8, 1022},
	7: {1700, -1, 1231}, 8: {16, 1, 1000}, 9: {1082, 4, 1182}, 10: {1114, 8, 1115}, 11: {1184, 8, 1185},
	12: {2950, 16, 2951}, 13: {17, -1, 1001}, 14: {114, -1, 199},
}

// oidBytea is the type OID of bytea, the type encrypted columns have in the
// database.
const oidBytea = 17

func knownType(t value.Type) bool { return int(t) < len(plaintextOID) && plaintextOID[t].oid != 0 }

// describeRows handles the RowDescription answering a Describe.
func (s *session) describeRows(ev *event, body []byte, w *postgres.Writer) error {
	rd, errResp, err := s.rowDescription(&ev.stmt.rd, body, false)
	if err != nil {
		return err
	}
	var cols []*rules.ColumnRule
	if errResp == nil {
		cols = rd.cols
	}
	if ev.kind == pgmsg.TypeDescribe {
		ev.stmt.described, ev.stmt.cols, ev.stmt.poison, ev.stmt.noData = true, cols, errResp, false
	} else if ev.portal != nil {
		ev.portal.described, ev.portal.cols, ev.portal.poison = true, cols, errResp
	}
	if ev.hidden {
		return nil
	}
	if errResp != nil {
		return s.fail(errResp, w)
	}
	if cols == nil {
		w.Forward(pgmsg.TypeRowDescription, body)
		return nil
	}
	_, _ = w.Write(rd.out)
	return nil
}

// rowDescription maps a RowDescription to column rules and, if it has
// encrypted columns, rewrites it, reusing c when the server sent the same
// bytes under the same catalog generation. A non-nil ErrorResponse means
// the result must not reach the client; the returned rowDesc is then
// meaningless.
func (s *session) rowDescription(c *rowDesc, body []byte, simple bool) (*rowDesc, *pgproto3.ErrorResponse, error) {
	gen := s.db.catalog.gen.Load()
	if c.body != nil && c.gen == gen && c.simple == simple && bytes.Equal(c.body, body) {
		return c, nil, nil
	}
	rd, err := pgmsg.ParseRowDescription(body)
	if err != nil {
		return nil, nil, err
	}
	cols, errResp, cacheable := s.resultColumns(rd, simple)
	if errResp != nil {
		return nil, errResp, nil
	}
	out := c.out[:0]
	if cols != nil {
		out = appendRowDescription(out, rd, cols, s.cipher)
	}
	*c = rowDesc{gen: gen, simple: simple, cols: cols, out: out}
	if cacheable && len(body) <= 1<<16 {
		c.body = append(c.body[:0], body...)
	}
	if cap(c.out) > 1<<20 {
		// Do not keep a huge buffer around; this result is used once.
		tmp := *c
		*c = rowDesc{}
		return &tmp, nil, nil
	}
	return c, nil, nil
}

// resultColumns maps the fields of a RowDescription to column rules. A
// non-nil ErrorResponse means the result must not reach the client.
// cacheable is false if the answer may change without a catalog purge (a
// relation the catalog cannot see yet).
func (s *session) resultColumns(rd pgmsg.RowDescription, simple bool) (cols []*rules.ColumnRule, errResp *pgproto3.ErrorResponse, cacheable bool) {
	cacheable = true
	var f pgmsg.Field
	for it, i := rd.Fields(), 0; it.Next(&f); i++ {
		if f.TableOID == 0 {
			continue
		}
		ti, err := s.db.catalog.Table(s.ctx, f.TableOID)
		if err != nil {
			s.log.Warn("catalog lookup failed", slog.Any("error", err))
			return nil, errorResponse("XX000", "dbproxy: cannot resolve the columns of a result: catalog lookup failed"), false
		}
		if !ti.found {
			if f.DataTypeOID == oidBytea {
				return nil, errorResponse(sqlplan.StateFeatureNotSupported,
					"dbproxy: result refused: a bytea column comes from a table the proxy cannot see yet (created in this transaction?)"), false
			}
			cacheable = false
			continue
		}
		col := ti.cols[int16(f.TableAttributeNumber)]
		if col == nil {
			if ti.encView && f.DataTypeOID == oidBytea {
				return nil, errorResponse(sqlplan.StateFeatureNotSupported,
					"dbproxy: result refused: a bytea column of a view over an encrypted table may carry ciphertext; select from the table instead"), false
			}
			continue
		}
		if simple && f.Format != pgmsg.FormatText {
			return nil, errorResponse(sqlplan.StateFeatureNotSupported,
				"dbproxy: result refused: column "+col.String()+" is encrypted and binary cursors are not supported"), false
		}
		if !knownType(col.Type) {
			return nil, errorResponse("XX000", "dbproxy: result refused: column "+col.String()+" has an unknown type"), false
		}
		if _, err := s.cipher.ReadDecision(s.ctx, col); err != nil {
			return nil, deniedResponse(err), false
		}
		if cols == nil {
			cols = make([]*rules.ColumnRule, rd.Len())
		}
		cols[i] = col
	}
	return cols, nil, cacheable
}

// appendRowDescription appends rd (a message the server sent) as a whole
// message, with the plaintext type of each encrypted column (bytea, as
// stored, for a column c presents as ciphertext).
func appendRowDescription(dst []byte, rd pgmsg.RowDescription, cols []*rules.ColumnRule, c *fieldcrypt.Cipher) []byte {
	start := len(dst)
	dst = pgmsg.AppendRowDescriptionStart(dst, rd.Len())
	var f pgmsg.Field
	for it, i := rd.Fields(), 0; it.Next(&f); i++ {
		if i < len(cols) && cols[i] != nil && c.Decision(cols[i]).Action != fieldcrypt.ActionCiphertext {
			t := cols[i].Type
			f.DataTypeOID, f.DataTypeSize, f.TypeModifier = plaintextOID[t].oid, plaintextOID[t].size, -1
		}
		dst = pgmsg.AppendField(dst, &f)
	}
	return pgmsg.End(dst, start)
}

// formatOf returns the format code of result column i given the format
// codes of its Bind (see pgmsg.Formats.For).
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

func (s *session) dataRow(body []byte, w *postgres.Writer) error {
	row, err := pgmsg.ParseDataRow(body)
	if err != nil {
		return err
	}
	if row.Len() != len(s.result.cols) {
		return s.fail(errorResponse("XX000", "dbproxy: result refused: DataRow does not match its RowDescription"), w)
	}
	s.lock()
	zone := s.zone
	s.mu.Unlock()
	out := pgmsg.AppendDataRowStart(s.backBufs.message[:0], row.Len())
	for v := row.Values(); v.Next(); {
		i := v.Index()
		col := s.result.cols[i]
		switch {
		case v.Null():
			out = pgmsg.AppendNull(out)
		case col == nil:
			out = pgmsg.AppendValue(out, v.Bytes())
		default:
			lenAt := len(out)
			var null bool
			out, null, err = s.readCell(pgmsg.OpenValue(out), col, v.Bytes(), formatOf(s.result.formats, i), zone)
			if err != nil {
				if deniedResponse(err) == nil {
					s.log.Warn("decrypt failed", slog.String("column", col.String()), slog.Any("error", err))
				}
				return s.fail(decryptFailure(col, err), w)
			}
			if null {
				out = pgmsg.AppendNull(out[:lenAt])
			} else {
				out = pgmsg.CloseValue(out, lenAt)
			}
		}
	}
	s.backBufs.message = sendMessage(w, out)
	return nil
}

var errNotHexBytea = errors.New("stored value is not a bytea in hex output format")

// decryptCell appends the plaintext of a bytea cell (text or binary format)
// in the same format.
func (s *session) decryptCell(dst []byte, col *rules.ColumnRule, cell []byte, format int16, zone *time.Location) ([]byte, error) {
	canon, err := s.plainCell(col, cell, format)
	if err != nil {
		return dst, err
	}
	if format == pgmsg.FormatBinary {
		return appendBinary(dst, col.Type, canon)
	}
	return appendText(dst, col, canon, zone)
}

// plainCell returns the canonical plaintext of a bytea cell (text or
// binary format), valid until the next cell.
func (s *session) plainCell(col *rules.ColumnRule, cell []byte, format int16) ([]byte, error) {
	ct := cell
	if format == pgmsg.FormatText {
		if len(cell) < 2 || cell[0] != '\\' || cell[1] != 'x' || len(cell)%2 != 0 {
			return nil, errNotHexBytea
		}
		hexs := cell[2:]
		n := len(hexs) / 2
		buf := slices.Grow(s.backBufs.ciphertext[:0], n)[:n]
		if _, err := hex.Decode(buf, hexs); err != nil {
			return nil, errNotHexBytea
		}
		s.backBufs.ciphertext = reusable(buf)
		ct = buf
	}
	canon, ok := s.result.matches.Lookup(col, ct)
	if !ok {
		var err error
		if canon, err = s.cipher.AppendDecrypt(s.ctx, s.backBufs.canonical[:0], col, ct); err != nil {
			return nil, err
		}
		s.backBufs.canonical = reusable(canon)
	}
	return canon, nil
}

// hexDigit returns the value of the hex digit c (either case), or -1.
func hexDigit(c byte) int {
	if c >= '0' && c <= '9' {
		return int(c - '0')
	}
	if lower := c | 0x20; lower >= 'a' && lower <= 'f' {
		return int(lower-'a') + 10
	}
	return -1
}
