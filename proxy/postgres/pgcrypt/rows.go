package pgcrypt

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"log/slog"
	"slices"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/dbproxy/dbproxy/proxy/postgres"
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
	if ev.kind == 'D' {
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
		w.Forward('T', body)
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
	cols, errResp, cacheable, err := s.resultColumns(body, simple)
	if err != nil || errResp != nil {
		return nil, errResp, err
	}
	out := c.out[:0]
	if cols != nil {
		if out, err = s.appendRowDescription(out, body, cols); err != nil {
			return nil, nil, err
		}
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
func (s *session) resultColumns(body []byte, simple bool) (cols []*rules.ColumnRule, errResp *pgproto3.ErrorResponse, cacheable bool, err error) {
	var rd pgproto3.RowDescription
	if err := rd.Decode(body); err != nil {
		return nil, nil, false, err
	}
	cacheable = true
	for i := range rd.Fields {
		f := &rd.Fields[i]
		if f.TableOID == 0 {
			continue
		}
		ti, err := s.db.catalog.Table(s.ctx, f.TableOID)
		if err != nil {
			s.log.Warn("catalog lookup failed", slog.Any("error", err))
			return nil, errorResponse("XX000", "dbproxy: cannot resolve the columns of a result: catalog lookup failed"), false, nil
		}
		if !ti.found {
			if f.DataTypeOID == 17 {
				return nil, errorResponse(sqlplan.StateFeatureNotSupported,
					"dbproxy: result refused: a bytea column comes from a table the proxy cannot see yet (created in this transaction?)"), false, nil
			}
			cacheable = false
			continue
		}
		col := ti.cols[int16(f.TableAttributeNumber)]
		if col == nil {
			if ti.encView && f.DataTypeOID == 17 {
				return nil, errorResponse(sqlplan.StateFeatureNotSupported,
					"dbproxy: result refused: a bytea column of a view over an encrypted table may carry ciphertext; select from the table instead"), false, nil
			}
			continue
		}
		if simple && f.Format != 0 {
			return nil, errorResponse(sqlplan.StateFeatureNotSupported,
				"dbproxy: result refused: column "+col.String()+" is encrypted and binary cursors are not supported"), false, nil
		}
		if !knownType(col.Type) {
			return nil, errorResponse("XX000", "dbproxy: result refused: column "+col.String()+" has an unknown type"), false, nil
		}
		if cols == nil {
			cols = make([]*rules.ColumnRule, len(rd.Fields))
		}
		cols[i] = col
	}
	return cols, nil, cacheable, nil
}

var errBadRowDescription = errors.New("invalid RowDescription")

// appendRowDescription appends the RowDescription body (a message the
// server sent) with the plaintext type of each encrypted column, as a
// whole message.
func (s *session) appendRowDescription(dst, body []byte, cols []*rules.ColumnRule) ([]byte, error) {
	if len(body) < 2 {
		return dst, errBadRowDescription
	}
	start := len(dst)
	dst = append(dst, 'T', 0, 0, 0, 0)
	dst = append(dst, body...)
	msg := dst[start+5:]
	n := int(binary.BigEndian.Uint16(msg))
	pos := 2
	for i := 0; i < n; i++ {
		name := bytes.IndexByte(msg[pos:], 0)
		if name < 0 || pos+name+1+18 > len(msg) {
			return dst[:start], errBadRowDescription
		}
		pos += name + 1
		// table OID (4), attnum (2), type OID (4), size (2), modifier (4), format (2)
		if i < len(cols) && cols[i] != nil {
			t := cols[i].Type
			binary.BigEndian.PutUint32(msg[pos+6:], plaintextOID[t].oid)
			binary.BigEndian.PutUint16(msg[pos+10:], uint16(plaintextOID[t].size))
			binary.BigEndian.PutUint32(msg[pos+12:], 0xffffffff)
		}
		pos += 18
	}
	if pos != len(msg) {
		return dst[:start], errBadRowDescription
	}
	binary.BigEndian.PutUint32(dst[start+1:], uint32(len(dst)-start-1))
	return dst, nil
}

func (s *session) dataRow(body []byte, w *postgres.Writer) error {
	if len(body) < 2 {
		return errors.New("short DataRow")
	}
	n := int(binary.BigEndian.Uint16(body))
	if n != len(s.result.cols) {
		return s.fail(errorResponse("XX000", "dbproxy: result refused: DataRow does not match its RowDescription"), w)
	}
	s.mu.Lock()
	zone := s.zone
	s.mu.Unlock()
	out := append(s.backBufs.message[:0], 'D', 0, 0, 0, 0)
	out = append(out, body[:2]...)
	pos := 2
	for i := 0; i < n; i++ {
		if pos+4 > len(body) {
			return errors.New("short DataRow")
		}
		l := int32(binary.BigEndian.Uint32(body[pos:]))
		pos += 4
		if l < 0 {
			out = append(out, 0xff, 0xff, 0xff, 0xff)
			continue
		}
		if pos+int(l) > len(body) {
			return errors.New("short DataRow")
		}
		cell := body[pos : pos+int(l)]
		pos += int(l)
		col := s.result.cols[i]
		if col == nil {
			out = binary.BigEndian.AppendUint32(out, uint32(l))
			out = append(out, cell...)
			continue
		}
		lenAt := len(out)
		out = append(out, 0, 0, 0, 0)
		var err error
		out, err = s.decryptCell(out, col, cell, formatOf(s.result.formats, i), zone)
		if err != nil {
			s.log.Warn("decrypt failed", slog.String("column", col.String()), slog.Any("error", err))
			return s.fail(errorResponse("XX001", "dbproxy: a value of column "+col.String()+" cannot be decrypted: "+err.Error()), w)
		}
		binary.BigEndian.PutUint32(out[lenAt:], uint32(len(out)-lenAt-4))
	}
	s.backBufs.message = sendMessage(w, out)
	return nil
}

var errNotHexBytea = errors.New("stored value is not a bytea in hex output format")

// decryptCell appends the plaintext of a bytea cell (text or binary format)
// in the same format.
func (s *session) decryptCell(dst []byte, col *rules.ColumnRule, cell []byte, format int16, zone *time.Location) ([]byte, error) {
	ct := cell
	if format == 0 {
		if len(cell) < 2 || cell[0] != '\\' || cell[1] != 'x' || len(cell)%2 != 0 {
			return dst, errNotHexBytea
		}
		hexs := cell[2:]
		n := len(hexs) / 2
		buf := slices.Grow(s.backBufs.ciphertext[:0], n)[:n]
		if _, err := hex.Decode(buf, hexs); err != nil {
			return dst, errNotHexBytea
		}
		s.backBufs.ciphertext = reusable(buf)
		ct = buf
	}
	canon, ok := s.result.matches.Lookup(col, ct)
	if !ok {
		var err error
		if canon, err = s.ic.opts.Encryptor.AppendDecrypt(s.ctx, s.backBufs.canonical[:0], col, ct); err != nil {
			return dst, err
		}
		s.backBufs.canonical = reusable(canon)
	}
	if format == 1 {
		return appendBinary(dst, col.Type, canon)
	}
	return appendText(dst, col, canon, zone)
}

func unhex(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10, true
	case c >= 'A' && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}
