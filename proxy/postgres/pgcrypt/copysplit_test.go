package pgcrypt

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"
)

// splitRec is one line the splitter found.
type splitRec struct {
	end     bool // the end-of-data marker
	content string
	term    string // the terminator or marker
}

// splitAll feeds data to a fresh copyIn in chunks of the given sizes
// (cycled; none: all at once) and then ends it as copyDone does.
func splitAll(csv bool, quote, esc byte, limit int, data []byte, chunks []int) ([]splitRec, error) {
	c := &copyIn{split: newCopySplitter(csv, quote, esc), limit: limit}
	var recs []splitRec
	fn := func(line []byte, ln copyLine) error {
		recs = append(recs, splitRec{end: ln.kind == lineEnd, content: string(line[:ln.content]), term: string(line[ln.content:ln.end])})
		return nil
	}
	for k := 0; len(data) > 0; k++ {
		n := len(data)
		if len(chunks) > 0 {
			n = min(max(chunks[k%len(chunks)], 1), len(data))
		}
		if c.ended {
			if c.csvEnd {
				return recs, errCopyAfterMarker
			}
			break
		}
		if err := c.feed(data[:n], false, fn); err != nil {
			return recs, err
		}
		data = data[n:]
	}
	if !c.ended && len(c.pending) > 0 {
		if err := c.feed(nil, true, fn); err != nil {
			return recs, err
		}
	}
	return recs, nil
}

func rows(lines ...string) []splitRec {
	var out []splitRec
	for _, l := range lines {
		end := strings.HasPrefix(l, "END:")
		l = strings.TrimPrefix(l, "END:")
		content, term, _ := strings.Cut(l, "|")
		out = append(out, splitRec{end: end, content: content, term: term})
	}
	return out
}

func TestCopySplit(t *testing.T) {
	const big = 1 << 20
	tests := []struct {
		name       string
		csv        bool
		quote, esc byte
		data       string
		want       []splitRec
		err        error
	}{
		{name: "LF", data: "a\tb\nc\td\n", want: rows("a\tb|\n", "c\td|\n")},
		{name: "CR", data: "a\tb\rc\td\r", want: rows("a\tb|\r", "c\td|\r")},
		{name: "CRLF", data: "a\r\nb\r\n", want: rows("a|\r\n", "b|\r\n")},
		{name: "csv CR", csv: true, data: "ssn,note\rsecret,n\r", want: rows("ssn,note|\r", "secret,n|\r")},
		{name: "csv CRLF", csv: true, data: "h\r\nx,y\r\n", want: rows("h|\r\n", "x,y|\r\n")},
		{name: "last line without ending", data: "a\nb", want: rows("a|\n", "b|")},
		{name: "CR at the very end", data: "a\r", want: rows("a|\r")},
		{name: "empty", data: "", want: nil},
		{name: "empty lines", data: "\n\n", want: rows("|\n", "|\n")},
		{name: "LF then CR", data: "a\nb\r\n", err: errCopyCR},
		{name: "CRLF then LF", data: "a\r\nb\n", err: errCopyNL},
		{name: "CR then LF", data: "a\rb\n", err: errCopyNL},
		{name: "CRLF then CR", data: "a\r\nb\rc", err: errCopyCR},
		{name: "csv LF then CR", csv: true, data: "a\nb\rc\n", err: errCopyCR},
		{name: "text escaped LF", data: "a\\\nb\n", want: rows("a\\\nb|\n")},
		{name: "text escaped CR", data: "a\\\rb\r", want: rows("a\\\rb|\r")},
		{name: "text escaped backslash", data: "a\\\\\nb\n", want: rows("a\\\\|\n", "b|\n")},
		{name: "text backslash at the end", data: "a\\", want: rows("a\\|")},
		{name: "csv quoted LF", csv: true, data: "\"a\nb\",c\nd\n", want: rows("\"a\nb\",c|\n", "d|\n")},
		{name: "csv quoted CR", csv: true, data: "x\r\"a\rb\"\r", want: rows("x|\r", "\"a\rb\"|\r")},
		{name: "csv doubled quote", csv: true, data: "\"a\"\"\nb\"\n", want: rows("\"a\"\"\nb\"|\n")},
		{name: "csv escape", csv: true, quote: '"', esc: '\\', data: "\"a\\\"\nb\",c\n", want: rows("\"a\\\"\nb\",c|\n")},
		{name: "csv escaped escape", csv: true, quote: '"', esc: '\\', data: "\"a\\\\\"\nb\n", want: rows("\"a\\\\\"|\n", "b|\n")},
		{name: "csv backslash is data", csv: true, data: "a\\\nb\n", want: rows("a\\|\n", "b|\n")},
		{name: "csv unterminated quote", csv: true, data: "\"a\nb", want: rows("\"a\nb|")},
		{name: "text marker", data: "a\n\\.\nignored\n", want: rows("a|\n", "END:|\\.\n")},
		{name: "text marker mid-line", data: "a\tb\\.\nignored", want: rows("END:a\tb|\\.\n")},
		{name: "text marker CR", data: "a\r\\.\r", want: rows("a|\r", "END:|\\.\r")},
		{name: "text marker CRLF", data: "a\r\n\\.\r\n", want: rows("a|\r\n", "END:|\\.\r\n")},
		{name: "text marker first", data: "\\.\r\nx", want: rows("END:|\\.\r\n")},
		{name: "text marker LF after CRLF", data: "a\r\n\\.\n", err: errCopyMarker},
		{name: "text marker CR after LF", data: "a\n\\.\r", err: errCopyMarker},
		{name: "text marker corrupt", data: "a\n\\.x\n", err: errCopyMarker},
		{name: "text marker at the end", data: "a\n\\.", err: errCopyMarker},
		{name: "text escaped marker", data: "a\\\\.\n", want: rows("a\\\\.|\n")},
		{name: "csv marker", csv: true, data: "a\n\\.\n", want: rows("a|\n", "END:|\\.\n")},
		{name: "csv marker CRLF", csv: true, data: "a\r\n\\.\r\n", want: rows("a|\r\n", "END:|\\.\r\n")},
		{name: "csv marker first CRLF", csv: true, data: "\\.\r\n", want: rows("END:|\\.\r\n")},
		{name: "csv data after marker", csv: true, data: "a\n\\.\nb\n", err: errCopyAfterMarker},
		{name: "csv marker with more", csv: true, data: "a\n\\.x\n", err: errCopyCSVMarker},
		{name: "csv marker quote", csv: true, data: "a\n\\.\"\nb\"\n", err: errCopyCSVMarker},
		{name: "csv marker at the end", csv: true, data: "a\n\\.", err: errCopyCSVMarker},
		{name: "csv marker wrong ending", csv: true, data: "a\n\\.\r\n", err: errCopyCSVMarker},
		{name: "csv backslash-dot mid-line", csv: true, data: "a,\\.\n", want: rows("a,\\.|\n")},
		{name: "csv backslash-dot in quotes", csv: true, data: "\"a\n\\.\n\"\n", want: rows("\"a\n\\.\n\"|\n")},
	}
	for _, tt := range tests {
		quote, esc := tt.quote, tt.esc
		if tt.csv && quote == 0 {
			quote, esc = '"', '"'
		}
		for _, chunks := range [][]int{nil, {1}, {2}, {3}, {5, 1}} {
			t.Run(fmt.Sprintf("%s/%v", tt.name, chunks), func(t *testing.T) {
				got, err := splitAll(tt.csv, quote, esc, big, []byte(tt.data), chunks)
				if !errors.Is(err, tt.err) {
					t.Fatalf("error %v, want %v", err, tt.err)
				}
				if tt.err == nil && fmt.Sprint(got) != fmt.Sprint(tt.want) {
					t.Fatalf("lines %#v\nwant %#v", got, tt.want)
				}
			})
		}
	}
}

func TestCopySplitLimit(t *testing.T) {
	const limit = 10
	for _, tt := range []struct {
		data string
		ok   bool
	}{
		{"123456789\n", true},   // 10 bytes with its ending
		{"1234567890\n", false}, // 11
		{"12345678901", false},  // no ending, past the limit
		{"123456789", true},
		{"12345\n12345678\n", true},
	} {
		for _, chunks := range [][]int{nil, {1}, {4}} {
			_, err := splitAll(false, 0, 0, limit, []byte(tt.data), chunks)
			if tt.ok != (err == nil) {
				t.Errorf("%q in chunks %v: error %v, want ok %v", tt.data, chunks, err, tt.ok)
			}
			if err != nil && !strings.Contains(err.Error(), "10 bytes") {
				t.Errorf("%q: error %v does not name the limit", tt.data, err)
			}
		}
	}
}

// FuzzCopySplit: however the data is cut into CopyData messages, the
// splitter finds the same lines (or the same error), the lines put back
// together are the data they came from, and every terminator but the last
// line's is the first line's.
func FuzzCopySplit(f *testing.F) {
	f.Add([]byte("a\tb\nc\\\nd\n\\.\n"), false, uint8(0), uint8(1))
	f.Add([]byte("ssn,note\rsecret,n\r"), true, uint8(0), uint8(3))
	f.Add([]byte("\"a\r\nb\",c\r\n\\.\r\n"), true, uint8(1), uint8(2))
	f.Add([]byte("x\r\\.\r"), false, uint8(0), uint8(7))
	f.Fuzz(func(t *testing.T, data []byte, csv bool, opts uint8, seed uint8) {
		quote, esc := byte('"'), byte('"')
		switch opts % 4 {
		case 1:
			esc = '\\'
		case 2:
			quote, esc = '\'', '\''
		case 3:
			quote, esc = '"', '!'
		}
		whole, errWhole := splitAll(csv, quote, esc, 1<<20, data, nil)
		chunks := []int{int(seed%7) + 1, int(seed/7%5) + 1, int(seed/35) + 1}
		cut, errCut := splitAll(csv, quote, esc, 1<<20, data, chunks)
		if (errWhole == nil) != (errCut == nil) || (errWhole != nil && errWhole.Error() != errCut.Error()) {
			t.Fatalf("error whole %v, in chunks %v: %v", errWhole, chunks, errCut)
		}
		if fmt.Sprint(whole) != fmt.Sprint(cut) {
			t.Fatalf("lines whole %#v\nin chunks %v %#v", whole, chunks, cut)
		}
		var joined bytes.Buffer
		term := ""
		for i, r := range whole {
			joined.WriteString(r.content + r.term)
			if r.end || i == len(whole)-1 {
				continue
			}
			if term == "" {
				term = r.term
			}
			if r.term != term || (term != "\n" && term != "\r" && term != "\r\n") {
				t.Fatalf("line %d ends with %q, the first with %q", i, r.term, term)
			}
		}
		if !bytes.HasPrefix(data, joined.Bytes()) {
			t.Fatalf("lines %#v are not the start of the data %q", whole, data)
		}
		if errWhole == nil && (len(whole) == 0 || !whole[len(whole)-1].end) && joined.Len() != len(data) {
			t.Fatalf("lines %#v do not cover the data %q", whole, data)
		}
	})
}

// BenchmarkCopyNoNewline feeds a line with no ending in 64 KiB CopyData
// messages: the time per byte stays flat as the line grows (each byte is
// scanned once).
func BenchmarkCopyNoNewline(b *testing.B) {
	for _, size := range []int{1 << 20, 4 << 20, 16 << 20} {
		for _, csv := range []bool{false, true} {
			b.Run(fmt.Sprintf("%dMiB/csv=%v", size>>20, csv), func(b *testing.B) {
				chunk := bytes.Repeat([]byte("abcdefg,"), 8<<10)
				b.SetBytes(int64(size))
				b.ReportAllocs()
				for b.Loop() {
					c := &copyIn{split: newCopySplitter(csv, '"', '"'), limit: size + 1}
					for n := 0; n < size; n += len(chunk) {
						if err := c.feed(chunk, false, nil); err != nil {
							b.Fatal(err)
						}
					}
				}
			})
		}
	}
}
