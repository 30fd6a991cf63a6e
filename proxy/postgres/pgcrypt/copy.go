package pgcrypt

import (
	"errors"
	"slices"
	"time"

	"github.com/dbproxy/dbproxy/proxy/postgres"
	"github.com/dbproxy/dbproxy/proxy/postgres/pgmsg"
	"github.com/dbproxy/dbproxy/rules"
	"github.com/dbproxy/dbproxy/sqlplan/pgsql"
	"github.com/dbproxy/dbproxy/value"
)

// copyIn is the state of a COPY … FROM STDIN into a table with encrypted
// columns (frontend goroutine only). CopyData splits rows arbitrarily, so
// an incomplete line is kept until the rest arrives (copysplit.go), up to
// limit bytes.
type copyIn struct {
	cp      *pgsql.Copy
	bin     *binCopy // binary format; nil for text and csv
	split   copySplitter
	pending []byte // the start of a line whose end has not arrived
	limit   int    // the longest line kept, in bytes
	header  bool   // the header line is still to come
	ended   bool   // the \. end marker was seen
	csvEnd  bool   // it was a csv marker: no data may follow
	failed  bool   // CopyFail was sent; drop the rest
	out     []byte
	field   []byte
	canon   []byte
	ct      []byte
}

// DefaultCopyBuffer is the default of Options.CopyBuffer.
const DefaultCopyBuffer = 16 << 20

func newCopyIn(cp *pgsql.Copy, limit int) *copyIn {
	if limit <= 0 {
		limit = DefaultCopyBuffer
	}
	c := &copyIn{cp: cp, header: cp.Header, limit: limit}
	if cp.Format == pgsql.CopyBinary {
		c.bin = &binCopy{fields: cp.Fields}
	} else {
		var quote, esc byte
		if cp.Format == pgsql.CopyCSV {
			quote, esc = cp.Quote[0], cp.Escape[0]
		}
		c.split = newCopySplitter(cp.Format == pgsql.CopyCSV, quote, esc)
	}
	return c
}

var errCopyRow = errors.New("malformed COPY row")

// copyFail replaces the COPY with a CopyFail naming the column.
func (s *session) copyFail(msg string, w *postgres.Writer) error {
	s.copy.failed = true
	s.copy.pending, s.copy.out = nil, nil
	body := append([]byte("dbproxy: COPY refused: "+msg), 0)
	w.Forward(pgmsg.TypeCopyFail, body)
	return nil
}

// copyData encrypts the complete rows of a CopyData message.
func (s *session) copyData(body []byte, w *postgres.Writer) error {
	c := s.copy
	if c.failed {
		return nil
	}
	if c.ended {
		if c.csvEnd && len(body) > 0 {
			return s.copyFail(errCopyAfterMarker.Error(), w)
		}
		return nil // the server ignores what follows \.
	}
	out, err := s.copyRows(pgmsg.Begin(c.out[:0], pgmsg.TypeCopyData), body, false)
	if err != nil {
		return s.copyFail(err.Error(), w)
	}
	c.out = sendMessage(w, out)
	return nil
}

// copyDone flushes a last row without a line ending and ends the COPY.
func (s *session) copyDone(typ byte, body []byte, w *postgres.Writer) error {
	c := s.copy
	defer func() { s.copy = nil }()
	if c.failed {
		return nil // CopyFail was sent in its place
	}
	if typ == pgmsg.TypeCopyDone && c.bin != nil {
		if err := c.bin.finish(); err != nil {
			return s.copyFail(err.Error(), w)
		}
	}
	if typ == pgmsg.TypeCopyDone && c.bin == nil && !c.ended && len(c.pending) > 0 {
		out, err := s.copyRows(pgmsg.Begin(c.out[:0], pgmsg.TypeCopyData), nil, true)
		if err != nil {
			return s.copyFail(err.Error(), w)
		}
		sendMessage(w, out)
	}
	w.Forward(typ, body)
	return nil
}

// copyLimitError is the refusal of a line longer than the COPY buffer.
func copyLimitError(limit int) error {
	return errors.New("a row longer than " + itoa(limit) + " bytes, the proxy's COPY buffer (limits.copy_buffer)")
}

// copyRows converts the complete lines of data, appended to what is pending
// (all of it when final), appending them to out.
func (s *session) copyRows(out, data []byte, final bool) ([]byte, error) {
	err := s.copy.feed(data, final, func(data []byte, ln copyLine) error {
		var err error
		out, err = s.copyLine(out, data, ln)
		return err
	})
	return out, err
}

// feed hands the complete lines of data, appended to what is pending (all
// of it when final), to fn: ln found at the start of line. The incomplete
// last line is kept in c.pending; a line longer than c.limit is an error.
// After the end-of-data marker the rest of data is ignored (text) or an
// error (csv).
func (c *copyIn) feed(data []byte, final bool, fn func(line []byte, ln copyLine) error) error {
	found := func(line []byte, ln copyLine) error {
		if ln.end > c.limit {
			return copyLimitError(c.limit)
		}
		if err := fn(line, ln); err != nil {
			return err
		}
		if ln.kind == lineEnd {
			c.ended, c.csvEnd = true, c.split.csv
		}
		return nil
	}
	if len(c.pending) > 0 {
		// Continue the pending line with as much of data as the limit
		// allows (one byte more tells that it is exceeded).
		old := len(c.pending)
		take := min(len(data), max(c.limit+1-old, 0))
		if need := old + take; need > cap(c.pending) {
			// Double (append grows large slices by a quarter, which
			// copies a long line many times over).
			c.pending = slices.Grow(c.pending, min(max(need, 2*cap(c.pending)), c.limit+1)-old)
		}
		c.pending = append(c.pending, data[:take]...)
		ln, err := c.split.next(c.pending, final && take == len(data))
		if err != nil {
			return err
		}
		if ln.kind == lineMore {
			if len(c.pending) > c.limit {
				return copyLimitError(c.limit)
			}
			return nil
		}
		if err := found(c.pending, ln); err != nil {
			return err
		}
		data = data[ln.end-old:]
		c.pending = c.pending[:0]
	}
	for !c.ended && len(data) > 0 {
		// A line ends within limit bytes, or the COPY fails: no need to
		// scan further (one byte more: a look ahead, or the excess).
		view := data[:min(len(data), c.limit+1)]
		ln, err := c.split.next(view, final && len(view) == len(data))
		if err != nil {
			return err
		}
		if ln.kind == lineMore {
			if len(data) > c.limit {
				return copyLimitError(c.limit)
			}
			c.pending = append(c.pending[:0], data...)
			return nil
		}
		if err := found(data, ln); err != nil {
			return err
		}
		data = data[ln.end:]
	}
	if c.csvEnd && len(data) > 0 {
		return errCopyAfterMarker
	}
	return nil
}

// copyLine converts the line ln found at the start of data.
func (s *session) copyLine(out, data []byte, ln copyLine) ([]byte, error) {
	c := s.copy
	line, content := data[:ln.end], data[:ln.content]
	if ln.kind == lineEnd {
		if c.cp.Format == pgsql.CopyCSV {
			return out, nil // not forwarded: PostgreSQL 18 would read it as data
		}
		if !c.header && len(content) > 0 {
			// PostgreSQL 17 and earlier: the bytes before \. are a last
			// row; 18 rejects them.
			var err error
			if out, err = s.copyRow(out, content, nil); err != nil {
				return out, err
			}
			return append(out, line[ln.content:]...), nil
		}
		return append(out, line...), nil
	}
	if c.header {
		c.header = false
		return append(out, line...), nil
	}
	if ln.end == 0 {
		return out, nil // no data at all
	}
	return s.copyRow(out, content, line[ln.content:])
}

// copyRow converts one row (without its line ending, which is appended
// unchanged).
func (s *session) copyRow(out, row, ending []byte) ([]byte, error) {
	c := s.copy
	cp := c.cp
	delim := cp.Delimiter[0]
	s.lock()
	zone := s.zone
	s.mu.Unlock()
	fields := 0
	pos := 0
	for {
		start := pos
		end, err := fieldEnd(row, pos, cp)
		if err != nil {
			return out, err
		}
		raw := row[start:end]
		if fields >= len(cp.Fields) {
			return out, errors.New("a row has more fields than columns")
		}
		f := &cp.Fields[fields]
		if fields > 0 {
			out = append(out, delim)
		}
		if f.Column == nil {
			out = append(out, raw...)
		} else {
			out, err = s.copyEncryptField(out, f, raw, zone)
			if err != nil {
				return out, err
			}
		}
		fields++
		if end >= len(row) {
			break
		}
		pos = end + 1
	}
	if fields != len(cp.Fields) {
		return out, errors.New("a row has fewer fields than columns")
	}
	return append(out, ending...), nil
}

// fieldEnd returns the index of the delimiter ending the field at pos (or
// len(row)).
func fieldEnd(row []byte, pos int, cp *pgsql.Copy) (int, error) {
	delim := cp.Delimiter[0]
	if cp.Format != pgsql.CopyCSV {
		for i := pos; i < len(row); i++ {
			if row[i] == '\\' {
				i++
				continue
			}
			if row[i] == delim {
				return i, nil
			}
		}
		return len(row), nil
	}
	quote, esc := cp.Quote[0], cp.Escape[0]
	inQuote := false
	for i := pos; i < len(row); i++ {
		b := row[i]
		switch {
		case inQuote && b == esc && i+1 < len(row) && (row[i+1] == quote || row[i+1] == esc) && !(esc == quote && b == quote && row[i+1] != quote):
			i++
		case b == quote:
			inQuote = !inQuote
		case b == delim && !inQuote:
			return i, nil
		}
	}
	if inQuote {
		return 0, errCopyRow
	}
	return len(row), nil
}

// copyEncryptField appends the ciphertext field for raw, the field as it
// appeared in the client's data.
func (s *session) copyEncryptField(out []byte, f *pgsql.CopyField, raw []byte, zone *time.Location) ([]byte, error) {
	c := s.copy
	cp := c.cp
	col := f.Column
	if cp.Default != "" && string(raw) == cp.Default {
		return out, errors.New("column " + col.String() + ": DEFAULT marker for an encrypted column")
	}
	var val []byte
	isNull := false
	if cp.Format == pgsql.CopyCSV {
		quoted := len(raw) > 0 && raw[0] == cp.Quote[0]
		val = unquoteCSV(c.field[:0], raw, cp)
		c.field = val
		switch {
		case !quoted && string(raw) == cp.Null && !f.ForceNotNull:
			isNull = true
		case quoted && f.ForceNull && string(val) == cp.Null:
			isNull = true
		}
	} else {
		if string(raw) == cp.Null {
			isNull = true
		} else {
			var err error
			val, err = unescapeText(c.field[:0], raw)
			if err != nil {
				return out, errors.New("column " + col.String() + ": " + err.Error())
			}
			c.field = val
		}
	}
	if isNull {
		return append(out, raw...), nil // NULL stays NULL
	}
	canon, err := value.AppendCanonicalTextInZone(c.canon[:0], col.Type, val, zone)
	ct, err := s.sealCopyValue(col, canon, err, "")
	if err != nil {
		return out, err
	}
	if cp.Format == pgsql.CopyText {
		out = append(out, '\\') // the backslash of \x, escaped
	}
	out = append(out, '\\', 'x')
	return appendHex(out, ct), nil
}

// sealCopyValue returns the ciphertext of canon, the canonical form of a
// col value the caller parsed from the COPY data; parseErr is the parse's
// error, reported as not a valid <form> value. canon and the ciphertext are
// kept as the COPY's reusable buffers.
func (s *session) sealCopyValue(col *rules.ColumnRule, canon []byte, parseErr error, form string) ([]byte, error) {
	if parseErr != nil {
		return nil, errors.New("column " + col.String() + ": not a valid " + form + col.Type.String() + " value")
	}
	c := s.copy
	c.canon = canon
	ct, err := s.cipher.AppendStore(s.ctx, c.ct[:0], col, canon)
	if err != nil {
		return nil, copyEncryptError(col, err)
	}
	c.ct = ct
	return ct, nil
}

func appendHex(dst, b []byte) []byte {
	const digits = "0123456789abcdef"
	for _, x := range b {
		dst = append(dst, digits[x>>4], digits[x&15])
	}
	return dst
}

// unquoteCSV appends the value of a CSV field.
func unquoteCSV(dst, raw []byte, cp *pgsql.Copy) []byte {
	quote, esc := cp.Quote[0], cp.Escape[0]
	inQuote := false
	for i := 0; i < len(raw); i++ {
		b := raw[i]
		switch {
		case inQuote && b == esc && i+1 < len(raw) && (raw[i+1] == quote || raw[i+1] == esc) && !(esc == quote && raw[i+1] != quote):
			dst = append(dst, raw[i+1])
			i++
		case b == quote:
			inQuote = !inQuote
		default:
			dst = append(dst, b)
		}
	}
	return dst
}

// unescapeText appends the value of a text-format COPY field.
func unescapeText(dst, raw []byte) ([]byte, error) {
	for i := 0; i < len(raw); i++ {
		b := raw[i]
		if b != '\\' {
			dst = append(dst, b)
			continue
		}
		i++
		if i >= len(raw) {
			return dst, errors.New("field ends with a backslash")
		}
		switch c := raw[i]; {
		case copyTextUnescapes[c] != 0:
			dst = append(dst, copyTextUnescapes[c])
		case c == 'x':
			v, n := 0, 0
			for n < 2 && i+1 < len(raw) {
				d := hexDigit(raw[i+1])
				if d < 0 {
					break
				}
				v = v*16 + d
				i++
				n++
			}
			if n == 0 {
				dst = append(dst, 'x')
			} else {
				dst = append(dst, byte(v))
			}
		case c >= '0' && c <= '7':
			v := int(c - '0')
			for n := 1; n < 3 && i+1 < len(raw) && raw[i+1] >= '0' && raw[i+1] <= '7'; n++ {
				v = v*8 + int(raw[i+1]-'0')
				i++
			}
			dst = append(dst, byte(v))
		default:
			dst = append(dst, c)
		}
	}
	return dst, nil
}

// copyOutRow decrypts the encrypted fields of one COPY TO row (a whole
// CopyData message from the server).
func (s *session) copyOutRow(cp *pgsql.Copy, body []byte, w *postgres.Writer) error {
	if s.result.copyOutHeader {
		s.result.copyOutHeader = false
		w.Forward(pgmsg.TypeCopyData, body)
		return nil
	}
	if len(body) == 0 || body[len(body)-1] != '\n' {
		return s.fail(errorResponse("XX000", "dbproxy: result refused: a COPY row split across messages"), w)
	}
	row := body[:len(body)-1]
	s.lock()
	zone := s.zone
	s.mu.Unlock()
	out := pgmsg.Begin(s.backBufs.message[:0], pgmsg.TypeCopyData)
	delim := cp.Delimiter[0]
	pos, n := 0, 0
	for {
		end, err := fieldEnd(row, pos, cp)
		if err != nil || n >= len(cp.Fields) {
			return s.fail(errorResponse("XX000", "dbproxy: result refused: a COPY row does not match its columns"), w)
		}
		raw := row[pos:end]
		if n > 0 {
			out = append(out, delim)
		}
		if col := cp.Fields[n].Column; col == nil {
			out = append(out, raw...)
		} else if out, err = s.copyDecryptField(out, cp, &cp.Fields[n], col, raw, zone); err != nil {
			return s.fail(decryptFailure(col, err), w)
		}
		n++
		if end >= len(row) {
			break
		}
		pos = end + 1
	}
	if n != len(cp.Fields) {
		return s.fail(errorResponse("XX000", "dbproxy: result refused: a COPY row does not match its columns"), w)
	}
	out = append(out, '\n')
	s.backBufs.message = sendMessage(w, out)
	return nil
}

func (s *session) copyDecryptField(out []byte, cp *pgsql.Copy, f *pgsql.CopyField, col *rules.ColumnRule, raw []byte, zone *time.Location) ([]byte, error) {
	var cell []byte
	if cp.Format == pgsql.CopyCSV {
		if len(raw) == 0 || string(raw) == cp.Null { // NULL (unquoted)
			return append(out, raw...), nil
		}
		cell = unquoteCSV(s.backBufs.field[:0], raw, cp)
	} else {
		if string(raw) == cp.Null {
			return append(out, raw...), nil
		}
		var err error
		if cell, err = unescapeText(s.backBufs.field[:0], raw); err != nil {
			return out, err
		}
	}
	s.backBufs.field = reusable(cell)
	plain, null, err := s.readCell(nil, col, cell, 0, zone)
	if err != nil {
		return out, err
	}
	if null {
		return append(out, cp.Null...), nil
	}
	if cp.Format == pgsql.CopyCSV {
		return appendCSV(out, plain, cp, f.ForceQuote), nil
	}
	return appendCopyText(out, plain, cp.Delimiter[0]), nil
}

// copyTextEscapes maps each byte the text COPY format writes as a backslash
// escape to the letter after the backslash; copyTextUnescapes is the
// reverse for the letters (read-only).
var (
	copyTextEscapes   = [256]byte{'\\': '\\', '\n': 'n', '\r': 'r', '\t': 't', '\b': 'b', '\f': 'f', '\v': 'v'}
	copyTextUnescapes = [256]byte{'n': '\n', 'r': '\r', 't': '\t', 'b': '\b', 'f': '\f', 'v': '\v'}
)

func appendCopyText(dst, v []byte, delim byte) []byte {
	for _, b := range v {
		if e := copyTextEscapes[b]; e != 0 {
			dst = append(dst, '\\', e)
			continue
		}
		if b == delim {
			dst = append(dst, '\\')
		}
		dst = append(dst, b)
	}
	return dst
}

func appendCSV(dst, v []byte, cp *pgsql.Copy, force bool) []byte {
	quote, esc, delim := cp.Quote[0], cp.Escape[0], cp.Delimiter[0]
	need := force || len(v) == 0 || string(v) == cp.Null || string(v) == `\.`
	for _, b := range v {
		if b == delim || b == quote || b == '\n' || b == '\r' || b == esc {
			need = true
		}
	}
	if !need {
		return append(dst, v...)
	}
	dst = append(dst, quote)
	for _, b := range v {
		if b == quote || b == esc {
			dst = append(dst, esc)
		}
		dst = append(dst, b)
	}
	return append(dst, quote)
}
