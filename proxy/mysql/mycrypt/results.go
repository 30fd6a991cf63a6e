package mycrypt

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"
	"time"

	gomysql "github.com/go-mysql-org/go-mysql/mysql"

	"github.com/dbproxy/dbproxy/fieldcrypt"
	"github.com/dbproxy/dbproxy/proxy/mysql"
	"github.com/dbproxy/dbproxy/rules"
	"github.com/dbproxy/dbproxy/value"
)

// Collation ids of the column definitions of plaintext types.
const (
	charsetBinary  = 63 // binary
	charsetUTF8MB4 = 45 // utf8mb4_general_ci: known to MySQL and MariaDB
)

// plainDef is the column definition of a plaintext type.
type plainDef struct {
	typ      byte
	charset  uint16
	length   uint32
	decimals byte
	numeric  bool
}

// plainDefs are the column definitions of the plaintext types, by type;
// textDef stands for text, json and any type not listed (read-only).
var (
	plainDefs = [...]plainDef{
		value.TypeSmallint:    {gomysql.MYSQL_TYPE_SHORT, charsetBinary, 6, 0, true},
		value.TypeInt:         {gomysql.MYSQL_TYPE_LONG, charsetBinary, 11, 0, true},
		value.TypeBigint:      {gomysql.MYSQL_TYPE_LONGLONG, charsetBinary, 20, 0, true},
		value.TypeReal:        {gomysql.MYSQL_TYPE_FLOAT, charsetBinary, 12, 31, true},
		value.TypeDouble:      {gomysql.MYSQL_TYPE_DOUBLE, charsetBinary, 22, 31, true},
		value.TypeNumeric:     {gomysql.MYSQL_TYPE_NEWDECIMAL, charsetBinary, 67, 30, true},
		value.TypeBoolean:     {gomysql.MYSQL_TYPE_TINY, charsetBinary, 1, 0, true},
		value.TypeDate:        {gomysql.MYSQL_TYPE_DATE, charsetBinary, 10, 0, false},
		value.TypeTimestamp:   {gomysql.MYSQL_TYPE_DATETIME, charsetBinary, 26, 6, false},
		value.TypeTimestamptz: {gomysql.MYSQL_TYPE_DATETIME, charsetBinary, 26, 6, false},
		value.TypeBytes:       {gomysql.MYSQL_TYPE_BLOB, charsetBinary, 65535, 0, false},
		value.TypeUUID:        {gomysql.MYSQL_TYPE_VAR_STRING, charsetUTF8MB4, 36 * 4, 0, false},
	}
	textDef = plainDef{gomysql.MYSQL_TYPE_VAR_STRING, charsetUTF8MB4, 65535 * 4, 0, false}
)

func defFor(t value.Type) plainDef {
	if int(t) < len(plainDefs) && plainDefs[t].length != 0 {
		return plainDefs[t]
	}
	return textDef
}

// Length-encoded integer prefixes.
const (
	lenencNull = 0xfb // NULL in a text row
	lenenc2    = 0xfc // 2-byte integer follows
	lenenc3    = 0xfd // 3-byte integer follows
	lenenc8    = 0xfe // 8-byte integer follows
)

// readLenenc reads one length-encoded string at b[p:].
func readLenenc(b []byte, p int) (val []byte, next int, null bool, err error) {
	if p >= len(b) {
		return nil, 0, false, fmt.Errorf("truncated packet")
	}
	if b[p] == lenencNull {
		return nil, p + 1, true, nil
	}
	n, k := lenencInt(b[p:])
	if k == 0 || uint64(len(b)-p-k) < n {
		return nil, 0, false, fmt.Errorf("truncated packet")
	}
	start := p + k
	return b[start : start+int(n)], start + int(n), false, nil
}

// lenencInt decodes a length-encoded integer; k is 0 if b is truncated or
// starts with a byte that is not a length (0xfb, 0xff).
func lenencInt(b []byte) (n uint64, k int) {
	if len(b) == 0 {
		return 0, 0
	}
	switch c := b[0]; {
	case c < lenencNull:
		return uint64(c), 1
	case c == lenenc2:
		if len(b) < 3 {
			return 0, 0
		}
		return uint64(b[1]) | uint64(b[2])<<8, 3
	case c == lenenc3:
		if len(b) < 4 {
			return 0, 0
		}
		return uint64(b[1]) | uint64(b[2])<<8 | uint64(b[3])<<16, 4
	case c == lenenc8:
		if len(b) < 9 {
			return 0, 0
		}
		return binary.LittleEndian.Uint64(b[1:]), 9
	}
	return 0, 0
}

func (s *session) columnDef(x *mysql.Exchange, st *exState, payload []byte, w *mysql.Writer) error {
	ps := st.stmt
	if x.Column == 0 || len(st.cols) != x.Columns {
		st.cols, st.shared, st.anyEnc, st.readable = nil, false, false, false
		if ps != nil {
			s.lock()
			cols := ps.cols
			s.mu.Unlock()
			if len(cols) == x.Columns {
				st.cols, st.shared = cols, true
			}
		}
		if st.cols == nil {
			st.cols = make([]column, x.Columns)
		}
		if ps != nil && len(ps.defs) != x.Columns {
			ps.defs = make([]colDef, x.Columns)
		}
	}
	var c column
	var out []byte
	var def *colDef
	if ps != nil && x.Column < len(ps.defs) {
		def = &ps.defs[x.Column]
	}
	if def != nil && def.raw != nil && bytes.Equal(def.raw, payload) {
		c, out = def.col, def.out
	} else {
		var err error
		if c, out, err = s.rewriteColumnDef(payload); err != nil {
			return err
		}
		if def != nil {
			*def = colDef{raw: append([]byte(nil), payload...), out: out, col: c}
		}
	}
	if x.Column < len(st.cols) && st.cols[x.Column] != c {
		if st.shared {
			st.cols, st.shared = slices.Clone(st.cols), false
		}
		st.cols[x.Column] = c
	}
	if c.rule != nil {
		st.anyEnc = true
	}
	if x.Column == x.Columns-1 {
		st.defsEOF = !x.DeprecateEOF
	}
	if x.Column == x.Columns-1 && ps != nil {
		s.lock()
		ps.cols = st.cols
		s.mu.Unlock()
		st.shared = true // published: never written again
	}
	if out == nil {
		w.Packet(payload)
	} else {
		w.Packet(out)
	}
	return nil
}

// rewriteColumnDef returns what a column definition says about its column
// and the definition to send the client instead (nil: payload unchanged).
// The extended metadata of a rewritten column describes its plaintext
// type: format "json" for json, nothing otherwise (the server's describes
// the VARBINARY/BLOB that holds the ciphertext).
func (s *session) rewriteColumnDef(payload []byte) (column, []byte, error) {
	d, err := parseColumnDef(payload, s.extMeta)
	if err != nil {
		return column{}, nil, failed("malformed column definition", err)
	}
	var rule *rules.ColumnRule
	if len(d.orgTable) > 0 && len(d.orgName) > 0 {
		rule = s.ic.rules.Column(string(d.schema), "", string(d.orgTable), string(d.orgName))
	}
	c := column{rule: rule, typ: d.typ()}
	if rule == nil {
		return c, nil, nil
	}
	// A column the session may not read is described as usual: the
	// refusal replaces the result's first row or its end (unreadable),
	// where clients read an ERR.
	if s.cipher.Load().Decision(rule).Action == fieldcrypt.ActionCiphertext {
		return c, nil, nil // the stored VARBINARY/BLOB, as the server describes it
	}
	p := defFor(rule.Type)
	a := d.attrs()
	a.charset, a.length, a.typ, a.decimals = p.charset, p.length, p.typ, p.decimals
	a.flags &^= gomysql.BINARY_FLAG | gomysql.BLOB_FLAG | gomysql.UNSIGNED_FLAG | gomysql.ZEROFILL_FLAG | gomysql.NUM_FLAG
	if p.numeric {
		a.flags |= gomysql.NUM_FLAG | gomysql.BINARY_FLAG
	}
	if p.typ == gomysql.MYSQL_TYPE_BLOB {
		a.flags |= gomysql.BLOB_FLAG | gomysql.BINARY_FLAG
	}
	out := d.appendWith(make([]byte, 0, len(payload)+8), extendedMetadata(rule.Type), a)
	return c, out, nil
}

// extendedMetadata is the content of MariaDB's extended metadata field for
// a plaintext type: format "json" for json, empty otherwise.
func extendedMetadata(t value.Type) string {
	if t != value.TypeJSON {
		return ""
	}
	// MARIADB_FIELD_ATTR_FORMAT_NAME (1), lenenc "json"
	return "\x01\x04json"
}

func (s *session) decryptErr(rule *rules.ColumnRule, err error) error {
	s.log.Warn("decryption failed", "column", rule.String(), "err", err)
	return keyError("cannot decrypt a value of column "+rule.String(), err)
}

// decrypt appends the canonical plaintext of ct, a cell of column rule,
// to dst. A deterministic cell that is one of the ciphertexts this
// exchange's lookup bound is not decrypted again.
func (s *session) decrypt(st *exState, dst []byte, rule *rules.ColumnRule, ct []byte) ([]byte, error) {
	if canon, ok := st.matches.Lookup(rule, ct); ok {
		return append(dst, canon...), nil
	}
	return s.cipher.Load().AppendDecrypt(s.ctx, dst, rule, ct)
}

// row forwards a text or binary protocol row (kind), its encrypted cells
// decrypted.
func (s *session) row(st *exState, kind mysql.Kind, payload []byte, w *mysql.Writer) error {
	if !st.anyEnc {
		w.Packet(payload)
		return nil
	}
	if err := s.checkReadable(st); err != nil {
		return err
	}
	if kind == mysql.KindTextRow {
		return s.textRow(st, payload, w)
	}
	return s.binaryRow(st, payload, w)
}

func (s *session) textRow(st *exState, payload []byte, w *mysql.Writer) error {
	out := w.Begin()
	canon := s.resCanon[:0]
	defer func() { s.resCanon, s.resText = reusable(canon[:0]), reusable(s.resText[:0]) }()
	p := 0
	for i := range st.cols {
		v, next, null, err := readLenenc(payload, p)
		if err != nil {
			return failed("malformed row", err)
		}
		raw := payload[p:next]
		p = next
		rule := st.cols[i].rule
		if rule == nil || null {
			out = append(out, raw...)
			continue
		}
		if d := s.cipher.Load().Decision(rule); d.Action != fieldcrypt.ActionDecrypt {
			if out, err = s.policyTextCell(st, out, raw, rule, v, d); err != nil {
				return err
			}
			continue
		}
		canon, err = s.decrypt(st, canon[:0], rule, v)
		if err != nil {
			return s.decryptErr(rule, err)
		}
		loc, err := s.zoneFor(rule)
		if err != nil {
			return failed("cannot show a value of column "+rule.String(), err)
		}
		s.resText, err = value.AppendMySQLTextInZone(s.resText[:0], rule.Type, canon, loc)
		if err != nil {
			return s.decryptErr(rule, err)
		}
		out = gomysql.AppendLengthEncodedInteger(out, uint64(len(s.resText)))
		out = append(out, s.resText...)
	}
	if p != len(payload) {
		return failed("malformed row", nil)
	}
	w.End(out)
	return nil
}

// binLen returns the length of a binary-protocol value of column type typ
// at b[p:].
func binLen(typ byte, b []byte, p int) (int, error) {
	switch typ {
	case gomysql.MYSQL_TYPE_NULL:
		return 0, nil
	case gomysql.MYSQL_TYPE_TINY:
		return 1, nil
	case gomysql.MYSQL_TYPE_SHORT, gomysql.MYSQL_TYPE_YEAR:
		return 2, nil
	case gomysql.MYSQL_TYPE_LONG, gomysql.MYSQL_TYPE_INT24, gomysql.MYSQL_TYPE_FLOAT:
		return 4, nil
	case gomysql.MYSQL_TYPE_LONGLONG, gomysql.MYSQL_TYPE_DOUBLE:
		return 8, nil
	case gomysql.MYSQL_TYPE_DATE, gomysql.MYSQL_TYPE_DATETIME, gomysql.MYSQL_TYPE_TIMESTAMP,
		gomysql.MYSQL_TYPE_TIME, gomysql.MYSQL_TYPE_NEWDATE:
		if p >= len(b) {
			return 0, fmt.Errorf("truncated row")
		}
		return 1 + int(b[p]), nil
	}
	_, next, _, err := readLenenc(b, p)
	if err != nil {
		return 0, err
	}
	return next - p, nil
}

// binaryCell returns the value (length prefix included, if any) of a
// non-NULL column of type typ at payload[p:] in a binary protocol row, and
// the offset after it.
func binaryCell(typ byte, payload []byte, p int) (cell []byte, next int, err error) {
	k, err := binLen(typ, payload, p)
	if err != nil {
		return nil, 0, err
	}
	if k > len(payload)-p {
		return nil, 0, errTruncatedRow
	}
	return payload[p : p+k], p + k, nil
}

var errTruncatedRow = errors.New("truncated row")

func (s *session) binaryRow(st *exState, payload []byte, w *mysql.Writer) error {
	row, ok := parseBinaryRow(payload, len(st.cols))
	if !ok {
		return failed("malformed row", nil)
	}
	out := w.Begin()
	nulls := len(out) + 1 // the NULL bitmap in out
	out = append(out, payload[:row.values]...)
	p := row.values
	canon := s.resCanon[:0]
	defer func() { s.resCanon, s.resText = reusable(canon[:0]), reusable(s.resText[:0]) }()
	for i, c := range st.cols {
		if row.null(i) {
			continue
		}
		cell, next, err := binaryCell(c.typ, payload, p)
		if err != nil {
			return failed("malformed row", err)
		}
		p = next
		if c.rule == nil {
			out = append(out, cell...)
			continue
		}
		ct, _, _, err := readLenenc(cell, 0)
		if err != nil {
			return failed("malformed row", err)
		}
		if d := s.cipher.Load().Decision(c.rule); d.Action != fieldcrypt.ActionDecrypt {
			var null bool
			if out, null, err = s.policyBinaryCell(st, out, cell, c.rule, ct, d); err != nil {
				return err
			}
			if null {
				setBinaryNull(out[nulls:], i)
			}
			continue
		}
		canon, err = s.decrypt(st, canon[:0], c.rule, ct)
		if err != nil {
			return s.decryptErr(c.rule, err)
		}
		loc, zerr := s.zoneFor(c.rule)
		if zerr != nil {
			return failed("cannot show a value of column "+c.rule.String(), zerr)
		}
		out, s.resText, err = appendBinary(out, s.resText[:0], c.rule.Type, canon, loc)
		if err != nil {
			return s.decryptErr(c.rule, err)
		}
	}
	if p != len(payload) {
		return failed("malformed row", nil)
	}
	w.End(out)
	return nil
}

// appendBinary appends the binary-protocol encoding of canon for the
// column type defFor(t) announced; scratch is a buffer for the text form,
// returned for reuse.
func appendBinary(dst, scratch []byte, t value.Type, canon []byte, loc *time.Location) ([]byte, []byte, error) {
	switch t {
	case value.TypeSmallint:
		if len(canon) != 2 {
			return dst, scratch, fmt.Errorf("bad smallint")
		}
		return binary.LittleEndian.AppendUint16(dst, binary.BigEndian.Uint16(canon)), scratch, nil
	case value.TypeInt, value.TypeReal:
		if len(canon) != 4 {
			return dst, scratch, fmt.Errorf("bad %s", t)
		}
		return binary.LittleEndian.AppendUint32(dst, binary.BigEndian.Uint32(canon)), scratch, nil
	case value.TypeBigint, value.TypeDouble:
		if len(canon) != 8 {
			return dst, scratch, fmt.Errorf("bad %s", t)
		}
		return binary.LittleEndian.AppendUint64(dst, binary.BigEndian.Uint64(canon)), scratch, nil
	case value.TypeBoolean:
		if len(canon) != 1 {
			return dst, scratch, fmt.Errorf("bad boolean")
		}
		return append(dst, canon[0]), scratch, nil
	case value.TypeDate:
		if len(canon) != 4 {
			return dst, scratch, fmt.Errorf("bad date")
		}
		days := int32(binary.BigEndian.Uint32(canon))
		if days == math.MaxInt32 || days == math.MinInt32 {
			return dst, scratch, fmt.Errorf("infinite date has no MySQL form")
		}
		tm := time.Unix(int64(days)*86400, 0).UTC()
		if tm.Year() < 0 || tm.Year() > 9999 {
			return dst, scratch, fmt.Errorf("date out of MySQL range")
		}
		dst = append(dst, 4)
		dst = binary.LittleEndian.AppendUint16(dst, uint16(tm.Year()))
		return append(dst, byte(tm.Month()), byte(tm.Day())), scratch, nil
	case value.TypeTimestamp, value.TypeTimestamptz:
		if len(canon) != 8 {
			return dst, scratch, fmt.Errorf("bad timestamp")
		}
		us := int64(binary.BigEndian.Uint64(canon))
		if us == math.MaxInt64 || us == math.MinInt64 {
			return dst, scratch, fmt.Errorf("infinite timestamp has no MySQL form")
		}
		tm := time.UnixMicro(us).UTC()
		if t == value.TypeTimestamptz && loc != nil {
			tm = tm.In(loc) // the wall time in the session time_zone
		}
		if tm.Year() < 0 || tm.Year() > 9999 {
			return dst, scratch, fmt.Errorf("timestamp out of MySQL range")
		}
		dst = append(dst, 11)
		dst = binary.LittleEndian.AppendUint16(dst, uint16(tm.Year()))
		dst = append(dst, byte(tm.Month()), byte(tm.Day()), byte(tm.Hour()), byte(tm.Minute()), byte(tm.Second()))
		return binary.LittleEndian.AppendUint32(dst, uint32(tm.Nanosecond()/1000)), scratch, nil
	case value.TypeBytes:
		dst = gomysql.AppendLengthEncodedInteger(dst, uint64(len(canon)))
		return append(dst, canon...), scratch, nil
	}
	txt, err := value.AppendMySQLTextInZone(scratch, t, canon, loc)
	if err != nil {
		return dst, txt, err
	}
	dst = gomysql.AppendLengthEncodedInteger(dst, uint64(len(txt)))
	return append(dst, txt...), txt, nil
}

// maxKeptScratch is the capacity above which a row scratch buffer is
// dropped after the row instead of kept for the next: a session that once
// read a 16 MB value must not hold 16 MB for the rest of its life.
const maxKeptScratch = 1 << 20

// reusable returns buf for reuse, or nil once it grew past maxKeptScratch.
func reusable(buf []byte) []byte {
	if cap(buf) > maxKeptScratch {
		return nil
	}
	return buf
}
