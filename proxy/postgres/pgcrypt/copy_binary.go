package pgcrypt

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/dbproxy/dbproxy/proxy/postgres"
	"github.com/dbproxy/dbproxy/proxy/postgres/pgmsg"
	"github.com/dbproxy/dbproxy/rules"
	"github.com/dbproxy/dbproxy/sqlplan/pgsql"
)

// A binary COPY stream (pgmsg.ParseCopyHeader, pgmsg.CopyTupleLen) carries
// field values in the binary send format of each column's type. For an
// encrypted column the client sends (COPY FROM) and expects (COPY TO) the
// plaintext type's format, since the proxy describes the column with its
// plaintext type; the server stores and sends bytea, whose binary format is
// the raw ciphertext.

// binCopy walks a binary COPY stream that arrives in arbitrary pieces.
type binCopy struct {
	fields  []pgsql.CopyField
	pending []byte
	stage   uint8 // binHeader, binTuples, binDone
}

const (
	binHeader = iota
	binTuples
	binDone
)

// fieldFunc converts the value v (not NULL) of an encrypted field,
// appending the converted value with its int32 length to out.
type fieldFunc func(out []byte, f *pgsql.CopyField, v []byte) ([]byte, error)

// convert appends to out what of b.pending plus data is complete (the
// header, whole tuples, the trailer), with encrypted fields converted by
// conv, and keeps the incomplete rest for the next call.
func (b *binCopy) convert(data, out []byte, conv fieldFunc) ([]byte, error) {
	buf := data
	if len(b.pending) > 0 {
		b.pending = append(b.pending, data...)
		buf = b.pending
	}
	n, out, err := b.walk(buf, out, conv)
	if err != nil {
		return out, err
	}
	b.pending = append(b.pending[:0], buf[n:]...)
	return out, nil
}

// finish reports whether the stream ended cleanly: after the trailer (or
// with nothing at all, which the server rejects with its own error), and
// with nothing incomplete left.
func (b *binCopy) finish() error {
	if len(b.pending) > 0 {
		return errors.New("the binary COPY data ends inside a tuple")
	}
	return nil
}

// walk consumes the complete parts at the start of buf; it returns how many
// bytes it consumed.
func (b *binCopy) walk(buf, out []byte, conv fieldFunc) (int, []byte, error) {
	pos := 0
	for pos < len(buf) {
		switch b.stage {
		case binHeader:
			size, flags, err := pgmsg.ParseCopyHeader(buf[pos:])
			if err == pgmsg.ErrIncomplete {
				return pos, out, nil
			}
			if err != nil {
				return pos, out, err
			}
			if flags&pgmsg.CopyFlagOIDs != 0 {
				return pos, out, errors.New("binary COPY with row OIDs is not supported")
			}
			out = append(out, buf[pos:pos+size]...)
			pos += size
			b.stage = binTuples
		case binTuples:
			n, o, err := b.tuple(buf[pos:], out, conv)
			if err != nil || n == 0 {
				return pos, o, err
			}
			out = o
			pos += n
		default: // after the trailer: the server decides what that means
			out = append(out, buf[pos:]...)
			return len(buf), out, nil
		}
	}
	return pos, out, nil
}

// tuple converts one whole tuple (or the trailer) at the start of t; it
// returns 0 consumed bytes when t does not hold all of it yet.
func (b *binCopy) tuple(t, out []byte, conv fieldFunc) (int, []byte, error) {
	count, ok := pgmsg.CopyTupleLen(t)
	if !ok {
		return 0, out, nil
	}
	if count == pgmsg.CopyTrailer {
		b.stage = binDone
		return 2, append(out, t[:2]...), nil
	}
	if count != len(b.fields) {
		return 0, out, fmt.Errorf("a tuple has %d fields, the COPY has %d columns", count, len(b.fields))
	}
	// Find the end first: nothing is emitted for an incomplete tuple.
	size, err := pgmsg.ScanValues(t[2:], count)
	if err == pgmsg.ErrIncomplete {
		return 0, out, nil
	}
	if err != nil {
		return 0, out, errors.New("invalid field length in a binary COPY tuple")
	}
	mark := len(out)
	out = pgmsg.AppendCopyTupleLen(out, count)
	for v := pgmsg.NewValues(t[2:2+size], count); v.Next(); {
		f := &b.fields[v.Index()]
		switch {
		case v.Null():
			out = pgmsg.AppendNull(out)
		case f.Column == nil:
			out = pgmsg.AppendValue(out, v.Bytes())
		default:
			if out, err = conv(out, f, v.Bytes()); err != nil {
				return 0, out[:mark], err
			}
		}
	}
	return 2 + size, out, nil
}

// copyBinaryData encrypts the complete tuples of a binary COPY FROM
// CopyData message.
func (s *session) copyBinaryData(body []byte, w *postgres.Writer) error {
	c := s.copy
	if c.failed {
		return nil
	}
	out, err := c.bin.convert(body, pgmsg.Begin(c.out[:0], pgmsg.TypeCopyData), s.encryptBinaryField)
	if err != nil {
		return s.copyFail(err.Error(), w)
	}
	c.out = sendMessage(w, out)
	return nil
}

// encryptBinaryField appends the ciphertext of v, a value of f's column
// type in binary format, as a bytea field.
func (s *session) encryptBinaryField(out []byte, f *pgsql.CopyField, v []byte) ([]byte, error) {
	col := f.Column
	canon, err := appendCanonicalFromBinary(s.copy.canon[:0], col.Type, v)
	ct, err := s.sealCopyValue(col, canon, err, "binary ")
	if err != nil {
		return out, err
	}
	return pgmsg.AppendValue(out, ct), nil
}

// copyBinaryOut decrypts the encrypted fields of a binary COPY TO CopyData
// message (the server sends the header with the first tuple, then a
// message per tuple, then the trailer).
func (s *session) copyBinaryOut(cp *pgsql.Copy, body []byte, w *postgres.Writer) error {
	if s.result.binaryCopyOut == nil {
		s.result.binaryCopyOut = &binCopy{fields: cp.Fields}
	}
	s.lock()
	zone := s.zone
	s.mu.Unlock()
	out := pgmsg.Begin(s.backBufs.message[:0], pgmsg.TypeCopyData)
	var failed *rules.ColumnRule
	out, err := s.result.binaryCopyOut.convert(body, out, func(out []byte, f *pgsql.CopyField, v []byte) ([]byte, error) {
		return s.decryptBinaryField(out, f.Column, v, zone, &failed)
	})
	if err != nil {
		s.result.binaryCopyOut = nil
		if failed != nil {
			s.log.Warn("decrypt failed", slog.String("column", failed.String()), slog.Any("error", err))
			return s.fail(decryptFailure(failed, err), w)
		}
		return s.fail(errorResponse("XX000", "dbproxy: result refused: "+err.Error()), w)
	}
	s.backBufs.message = sendMessage(w, out)
	return nil
}

// decryptBinaryField appends what the session's policy shows of ct (the
// plaintext in col's binary format: readCell), with its int32 length; *failed names the column on error.
func (s *session) decryptBinaryField(out []byte, col *rules.ColumnRule, ct []byte, zone *time.Location, failed **rules.ColumnRule) ([]byte, error) {
	lenAt := len(out)
	out, null, err := s.readCell(pgmsg.OpenValue(out), col, ct, pgmsg.FormatBinary, zone)
	if err != nil {
		*failed = col
		return out[:lenAt], err
	}
	if null {
		return pgmsg.AppendNull(out[:lenAt]), nil
	}
	return pgmsg.CloseValue(out, lenAt), nil
}
