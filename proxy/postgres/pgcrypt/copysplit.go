package pgcrypt

import (
	"errors"

	"github.com/dbproxy/dbproxy/sqlplan/pgsql"
)

// COPY … FROM STDIN in text and csv format arrives as a byte stream that
// CopyData messages cut anywhere; the server splits it into lines with
// rules of its own (copyfromparse.c, CopyReadLineText), and the proxy must
// find exactly the same lines, or a row it did not see as one would reach
// the server unencrypted. The rules:
//
//   - The terminator of the first line (\n, \r or \r\n; the header line
//     counts) is the terminator of every line; another one later is an
//     error for the server ("literal carriage return found in data"), so a
//     CopyFail for the proxy.
//   - text: a backslash takes the next byte with it, whatever it is (a
//     backslash before a line ending is data). csv: a line ending inside
//     quotes is data; inside quotes the ESCAPE byte (when it differs from
//     QUOTE) protects the next QUOTE.
//   - \. followed by the line terminator ends the data; the server ignores
//     what follows. text: anywhere a backslash is not escaped (PostgreSQL
//     17 and earlier read the bytes before it on the line as a last row,
//     18 rejects it); \. followed by anything else is an error. csv: only
//     at the start of a line, and only up to PostgreSQL 17 (18 reads it as
//     data): the proxy ends the data there and forwards neither the line
//     nor anything after it — data after it fails the COPY — and a csv line
//     starting with \. that is not exactly the marker fails the COPY, since
//     the server versions split what follows differently.
//
// copySplitter scans each byte once: a line cut by a message boundary is
// kept whole by the caller, and the scan resumes where it stopped (at most
// the 3 bytes that need a look ahead are looked at again).

// eolType is the line terminator of a COPY, fixed by its first line.
type eolType uint8

const (
	eolUnknown eolType = iota
	eolNL
	eolCR
	eolCRNL
)

// lineKind says what copySplitter.next found.
type lineKind uint8

const (
	lineMore lineKind = iota // the line goes on past the data given
	lineRow                  // a line: content, then its terminator
	lineEnd                  // the end-of-data marker \. (text: after content)
)

// copyLine is a line found at the start of the data given to next.
type copyLine struct {
	kind    lineKind
	end     int // length of the line, terminator or marker included
	content int // length of its content: data[:content]
}

// copySplitter splits COPY text and csv data into lines as the server does.
// The zero value is not ready: use newCopySplitter.
type copySplitter struct {
	csv   bool
	quote byte
	esc   byte // 0 when it equals quote (the server then ignores it)
	eol   eolType

	// Where the scan of the current line stopped, and the csv quoting
	// state there.
	pos        int
	inQuote    bool
	lastWasEsc bool
}

func newCopySplitter(csv bool, quote, esc byte) copySplitter {
	if esc == quote {
		esc = 0
	}
	return copySplitter{csv: csv, quote: quote, esc: esc}
}

// Framing errors: the server would reject the data at this point.
var (
	errCopyCR          = errors.New("a carriage return in the data that is not the line ending of the first line")
	errCopyNL          = errors.New("a newline in the data that is not the line ending of the first line")
	errCopyMarker      = errors.New(`the end-of-data marker \. is not followed by the line ending of the first line`)
	errCopyCSVMarker   = errors.New(`a csv line starting with \. that is not the end-of-data marker alone on its line (PostgreSQL versions read it differently)`)
	errCopyAfterMarker = errors.New(`data after the csv end-of-data marker \. (PostgreSQL 18 would load it, earlier versions ignore it)`)
)

// next finds the line at the start of data, continuing the scan where the
// previous call on the same line stopped: data must start with the same
// bytes as then. final says no data follows data. After lineRow or lineEnd
// the next call starts a new line.
func (sp *copySplitter) next(data []byte, final bool) (copyLine, error) {
	i := sp.pos
	for i < len(data) {
		c := data[i]
		if sp.csv {
			// Look ahead before the quoting state changes, as the server.
			if (c == '\\' || c == '\r') && i+1 >= len(data) && !final {
				return sp.more(i), nil
			}
			if sp.inQuote && c == sp.esc {
				sp.lastWasEsc = !sp.lastWasEsc
			}
			if c == sp.quote && !sp.lastWasEsc {
				sp.inQuote = !sp.inQuote
			}
			if c != sp.esc {
				sp.lastWasEsc = false
			}
		}
		switch {
		case c == '\r' && !sp.inQuote:
			switch sp.eol {
			case eolUnknown, eolCRNL:
				if i+1 >= len(data) && !final {
					return sp.more(i), nil
				}
				if i+1 < len(data) && data[i+1] == '\n' {
					sp.eol = eolCRNL
					return sp.line(lineRow, i+2, i), nil
				}
				if sp.eol == eolCRNL {
					return copyLine{}, errCopyCR
				}
				sp.eol = eolCR
			case eolNL:
				return copyLine{}, errCopyCR
			}
			return sp.line(lineRow, i+1, i), nil
		case c == '\n' && !sp.inQuote:
			if sp.eol == eolCR || sp.eol == eolCRNL {
				return copyLine{}, errCopyNL
			}
			sp.eol = eolNL
			return sp.line(lineRow, i+1, i), nil
		case c == '\\' && (!sp.csv || i == 0):
			if i+1 >= len(data) {
				if !final {
					return sp.more(i), nil
				}
				i++ // a backslash at the very end is data
				continue
			}
			if data[i+1] == '.' {
				return sp.marker(data, i, final)
			}
			if !sp.csv {
				i += 2 // the escaped byte is data, whatever it is
				continue
			}
		}
		i++
	}
	if !final {
		return sp.more(i), nil
	}
	return sp.line(lineRow, len(data), len(data)), nil
}

// marker handles \. at data[i].
func (sp *copySplitter) marker(data []byte, i int, final bool) (copyLine, error) {
	bad := errCopyMarker
	if sp.csv {
		bad = errCopyCSVMarker
	}
	j := i + 2
	want := 1
	if sp.eol == eolCRNL {
		want = 2
	}
	if len(data) < j+want {
		if !final {
			return sp.more(i), nil
		}
		return copyLine{}, bad
	}
	switch sp.eol {
	case eolNL:
		if data[j] == '\n' {
			return sp.line(lineEnd, j+1, i), nil
		}
	case eolCR:
		if data[j] == '\r' {
			return sp.line(lineEnd, j+1, i), nil
		}
	case eolCRNL:
		if data[j] == '\r' && data[j+1] == '\n' {
			return sp.line(lineEnd, j+2, i), nil
		}
	case eolUnknown:
		switch data[j] {
		case '\n':
			return sp.line(lineEnd, j+1, i), nil
		case '\r':
			// The server ignores what follows; a \n here is part of
			// the marker's line ending.
			if j+1 >= len(data) && !final {
				return sp.more(i), nil
			}
			if j+1 < len(data) && data[j+1] == '\n' {
				return sp.line(lineEnd, j+2, i), nil
			}
			return sp.line(lineEnd, j+1, i), nil
		}
	}
	return copyLine{}, bad
}

// more records where the scan of the current line stopped.
func (sp *copySplitter) more(pos int) copyLine {
	sp.pos = pos
	return copyLine{kind: lineMore}
}

// line ends the current line.
func (sp *copySplitter) line(kind lineKind, end, content int) copyLine {
	sp.pos, sp.inQuote, sp.lastWasEsc = 0, false, false
	return copyLine{kind: kind, end: end, content: content}
}

// copyBytesOK reports whether the one-byte DELIMITER, QUOTE and ESCAPE of a
// csv COPY can be split by copySplitter: the server looks ahead past a
// backslash after changing its quoting state, which a backslash QUOTE
// would make depend on where its read buffer ends.
func copyBytesOK(cp *pgsql.Copy) bool {
	for _, b := range []byte{cp.Delimiter[0], cp.Quote[0], cp.Escape[0]} {
		if b == '\r' || b == '\n' {
			return false
		}
	}
	return cp.Quote[0] != '\\'
}
