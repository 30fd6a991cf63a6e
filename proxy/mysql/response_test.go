package mysql_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"testing"

	"github.com/dbproxy/dbproxy/proxy/mysql"
	"github.com/dbproxy/dbproxy/proxy/relay/relaytest"
	gomysql "github.com/go-mysql-org/go-mysql/mysql"
)

// Response packets (payloads) for the state machine tests.
var (
	okPkt       = []byte{0x00, 0, 0, 0x02, 0x00, 0, 0}                           // status AUTOCOMMIT
	okMore      = []byte{0x00, 0, 0, 0x0a, 0x00, 0, 0}                           // + MORE_RESULTS
	okInTrans   = []byte{0x00, 1, 0, 0x03, 0x00, 0, 0}                           // IN_TRANS
	errPkt      = append([]byte{0xff, 0x7a, 0x04, '#'}, "42S02no such table"...) // 1146
	eofPkt      = []byte{0xfe, 0, 0, 0x02, 0x00}
	eofMore     = []byte{0xfe, 0, 0, 0x0a, 0x00}
	eofCursor   = []byte{0xfe, 0, 0, 0x42, 0x00}
	okEOF       = []byte{0xfe, 0, 0, 0x02, 0x00, 0, 0} // OK with 0xfe header (CLIENT_DEPRECATE_EOF)
	okEOFMore   = []byte{0xfe, 0, 0, 0x0a, 0x00, 0, 0}
	okEOFCursor = []byte{0xfe, 0, 0, 0x42, 0x00, 0, 0}
	colDef      = append([]byte{3, 'd', 'e', 'f'}, make([]byte, 20)...)
	textRow     = []byte{1, 'x', 0xfb}
	binRow      = []byte{0x00, 0x00, 1, 0, 0, 0}
	infileReq   = append([]byte{0xfb}, "/tmp/file"...)
	prepareOK   = func(cols, params byte) []byte { return []byte{0x00, 7, 0, 0, 0, cols, 0, params, 0, 0, 0, 0} }
	authSwitch  = append([]byte{0xfe}, "client_ed25519\x00nonce-nonce-nonce-nonce-nonce-32b"...)
	colCount    = func(n byte) []byte { return []byte{n} }
	statsString = []byte("Uptime: 5  Threads: 1")
	kOK         = mysql.KindOK
	kERR        = mysql.KindERR
	kEOF        = mysql.KindEOF
	kCount      = mysql.KindColumnCount
	kCol        = mysql.KindColumnDef
	kParam      = mysql.KindParamDef
	kText       = mysql.KindTextRow
	kBin        = mysql.KindBinaryRow
	kPrep       = mysql.KindPrepareOK
	kInfile     = mysql.KindInfileRequest
	kOther      = mysql.KindOther
	allKinds    mysql.KindSet
	cursorExec  = []byte{gomysql.COM_STMT_EXECUTE, 7, 0, 0, 0, gomysql.CURSOR_TYPE_READ_ONLY}
	plainExec   = []byte{gomysql.COM_STMT_EXECUTE, 7, 0, 0, 0, 0}
	queryCmd    = []byte{gomysql.COM_QUERY, 'x'}
	fetchCmd    = []byte{gomysql.COM_STMT_FETCH, 7, 0, 0, 0}
	hugeTextRow = append([]byte{0xfe, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0}, make([]byte, maxPayload)...)
)

func init() {
	for kind := mysql.KindOK; kind <= mysql.KindOther; kind++ {
		allKinds.Add(kind)
	}
}

// TestResponseStateMachine relays scripted responses and checks the kind
// of every packet, where each response ends (Exchange.Last on its last
// packet only), and that the bytes come out unchanged.
func TestResponseStateMachine(t *testing.T) {
	type pkt struct {
		p    []byte
		kind mysql.Kind
	}
	cases := []struct {
		name         string
		cmd          []byte
		deprecateEOF bool
		pkts         []pkt
	}{
		{"query-ok", queryCmd, true, []pkt{{okPkt, kOK}}},
		{"query-err", queryCmd, true, []pkt{{errPkt, kERR}}},
		{"query-resultset-deprecate-eof", queryCmd, true, []pkt{
			{colCount(2), kCount}, {colDef, kCol}, {colDef, kCol}, {textRow, kText}, {textRow, kText}, {okEOF, kEOF}}},
		{"query-resultset-eof", queryCmd, false, []pkt{
			{colCount(1), kCount}, {colDef, kCol}, {eofPkt, kEOF}, {textRow, kText}, {eofPkt, kEOF}}},
		{"query-empty-resultset", queryCmd, false, []pkt{
			{colCount(1), kCount}, {colDef, kCol}, {eofPkt, kEOF}, {eofPkt, kEOF}}},
		{"query-error-mid-rows", queryCmd, true, []pkt{
			{colCount(1), kCount}, {colDef, kCol}, {textRow, kText}, {errPkt, kERR}}},
		{"query-huge-row-starting-0xfe", queryCmd, true, []pkt{
			{colCount(1), kCount}, {colDef, kCol}, {hugeTextRow, kText}, {okEOF, kEOF}}},
		{"multi-results-deprecate-eof", queryCmd, true, []pkt{
			{okMore, kOK}, {colCount(1), kCount}, {colDef, kCol}, {textRow, kText}, {okEOFMore, kEOF},
			{colCount(1), kCount}, {colDef, kCol}, {okEOFMore, kEOF}, {okPkt, kOK}}},
		{"multi-results-eof", queryCmd, false, []pkt{
			{colCount(1), kCount}, {colDef, kCol}, {eofPkt, kEOF}, {textRow, kText}, {eofMore, kEOF},
			{okMore, kOK}, {errPkt, kERR}}},
		{"local-infile", queryCmd, true, []pkt{{infileReq, kInfile}, {okPkt, kOK}}},
		{"local-infile-then-more", queryCmd, true, []pkt{{infileReq, kInfile}, {okMore, kOK}, {okPkt, kOK}}},
		{"execute-binary", plainExec, true, []pkt{
			{colCount(2), kCount}, {colDef, kCol}, {colDef, kCol}, {binRow, kBin}, {okEOF, kEOF}}},
		{"execute-binary-eof", plainExec, false, []pkt{
			{colCount(1), kCount}, {colDef, kCol}, {eofPkt, kEOF}, {binRow, kBin}, {binRow, kBin}, {eofPkt, kEOF}}},
		{"execute-ok", plainExec, true, []pkt{{okInTrans, kOK}}},
		{"execute-cursor-eof", cursorExec, false, []pkt{{colCount(1), kCount}, {colDef, kCol}, {eofCursor, kEOF}}},
		{"execute-cursor-deprecate-eof", cursorExec, true, []pkt{{colCount(1), kCount}, {colDef, kCol}, {okEOFCursor, kEOF}}},
		{"fetch", fetchCmd, true, []pkt{{binRow, kBin}, {binRow, kBin}, {okEOFCursor, kEOF}}},
		{"fetch-eof", fetchCmd, false, []pkt{{binRow, kBin}, {eofPkt, kEOF}}},
		{"prepare-eof", []byte{gomysql.COM_STMT_PREPARE}, false, []pkt{
			{prepareOK(2, 1), kPrep}, {colDef, kParam}, {eofPkt, kEOF}, {colDef, kCol}, {colDef, kCol}, {eofPkt, kEOF}}},
		{"prepare-deprecate-eof", []byte{gomysql.COM_STMT_PREPARE}, true, []pkt{
			{prepareOK(1, 2), kPrep}, {colDef, kParam}, {colDef, kParam}, {colDef, kCol}}},
		{"prepare-no-columns", []byte{gomysql.COM_STMT_PREPARE}, false, []pkt{{prepareOK(0, 1), kPrep}, {colDef, kParam}, {eofPkt, kEOF}}},
		{"prepare-nothing", []byte{gomysql.COM_STMT_PREPARE}, false, []pkt{{prepareOK(0, 0), kPrep}}},
		{"prepare-error", []byte{gomysql.COM_STMT_PREPARE}, false, []pkt{{errPkt, kERR}}},
		{"field-list", []byte{gomysql.COM_FIELD_LIST}, false, []pkt{{colDef, kCol}, {colDef, kCol}, {eofPkt, kEOF}}},
		{"statistics", []byte{gomysql.COM_STATISTICS}, false, []pkt{{statsString, kOther}}},
		{"ping", []byte{gomysql.COM_PING}, true, []pkt{{okPkt, kOK}}},
		{"set-option-eof", []byte{gomysql.COM_SET_OPTION}, false, []pkt{{eofPkt, kEOF}}},
		{"change-user", []byte{gomysql.COM_CHANGE_USER}, true, []pkt{{authSwitch, kOther}, {okPkt, kOK}}},
		{"change-user-denied", []byte{gomysql.COM_CHANGE_USER}, true, []pkt{{authSwitch, kOther}, {errPkt, kERR}}},
		{"process-info", []byte{gomysql.COM_PROCESS_INFO}, false, []pkt{{colCount(1), kCount}, {colDef, kCol}, {eofPkt, kEOF}, {textRow, kText}, {eofPkt, kEOF}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			// The response, then a PING's OK: the state machine must end the
			// response exactly at its last packet.
			var in []byte
			seq := uint8(1)
			for _, p := range tc.pkts {
				before := len(in)
				in = mysql.AppendPacket(in, seq, p.p)
				seq += uint8((len(in) - before - len(p.p)) / 4)
			}
			in = mysql.AppendPacket(in, 1, okPkt)
			var got []string
			hooks := &mysql.SessionHooks{Results: allKinds, Result: func(x *mysql.Exchange, kind mysql.Kind, p []byte, w *mysql.Writer) error {
				last := ""
				if x.Last {
					last = " (last)"
				}
				got = append(got, fmt.Sprintf("%x:%s%s", x.Command, kind, last))
				w.Packet(p)
				return nil
			}}
			for _, hooked := range []bool{false, true} {
				got = got[:0]
				var h *mysql.SessionHooks
				if hooked {
					h = hooks
				}
				var out bytes.Buffer
				src := relaytest.NewChunkReader(in, 3, 4, 1<<20)
				done, err := mysql.RelayResponses(src, &out, [][]byte{tc.cmd, {gomysql.COM_PING}}, h, tc.deprecateEOF)
				if !errors.Is(err, io.EOF) || done != 2 {
					t.Fatalf("hooked=%v: relay ended with %v after %d responses, want EOF after 2", hooked, err, done)
				}
				if !bytes.Equal(out.Bytes(), in) {
					t.Fatalf("hooked=%v: output differs from input", hooked)
				}
			}
			var want []string
			for i, p := range tc.pkts {
				if p.kind == kInfile || p.kind == kOther {
					continue // classified, but never handed to hooks
				}
				last := ""
				if i == len(tc.pkts)-1 {
					last = " (last)"
				}
				want = append(want, fmt.Sprintf("%x:%s%s", tc.cmd[0], p.kind, last))
			}
			want = append(want, fmt.Sprintf("%x:%s (last)", gomysql.COM_PING, kOK))
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("kinds\n got %v\nwant %v", got, want)
			}
		})
	}
}

// TestResponseMalformed: responses that do not fit the protocol end the
// relay with a protocol error.
func TestResponseMalformed(t *testing.T) {
	for name, tc := range map[string]struct {
		cmd  []byte
		pkts [][]byte
	}{
		"empty-packet":         {queryCmd, [][]byte{{}}},
		"bad-column-count":     {queryCmd, [][]byte{{0xfc, 1}}},
		"missing-eof":          {queryCmd, [][]byte{colCount(1), colDef, textRow}},
		"short-prepare-ok":     {[]byte{gomysql.COM_STMT_PREPARE}, [][]byte{{0x00, 1, 2}}},
		"infile-not-for-query": {plainExec, [][]byte{infileReq}},
	} {
		t.Run(name, func(t *testing.T) {
			var in []byte
			for i, p := range tc.pkts {
				in = mysql.AppendPacket(in, uint8(i+1), p)
			}
			_, err := mysql.RelayResponses(bytes.NewReader(in), io.Discard, [][]byte{tc.cmd}, nil, false)
			if !mysql.IsMalformed(err) {
				t.Fatalf("relay: %v, want a protocol error", err)
			}
		})
	}
}

// TestResponseHookRewrites: a result hook that rewrites rows, drops one and
// replaces the response with an error has its output renumbered.
func TestResponseHookRewrites(t *testing.T) {
	var in []byte
	for i, p := range [][]byte{colCount(1), colDef, textRow, textRow, textRow, okEOF} {
		in = mysql.AppendPacket(in, uint8(i+1), p)
	}
	in = mysql.AppendPacket(in, 1, okPkt) // the PING after it
	row := 0
	hooks := &mysql.SessionHooks{Results: allKinds, Result: func(x *mysql.Exchange, kind mysql.Kind, p []byte, w *mysql.Writer) error {
		if kind == kText {
			row++
			switch row {
			case 1:
				w.Packet([]byte{3, 'a', 'b', 'c'}) // rewritten
			case 2: // dropped
			case 3:
				w.Packet(p)
				w.Packet(p) // duplicated
			}
			return nil
		}
		w.Packet(p)
		return nil
	}}
	var out bytes.Buffer
	done, err := mysql.RelayResponses(bytes.NewReader(in), &out, [][]byte{queryCmd, {gomysql.COM_PING}}, hooks, true)
	if !errors.Is(err, io.EOF) || done != 2 {
		t.Fatalf("relay: %v, %d responses", err, done)
	}
	got := readAll(t, out.Bytes(), 1, 6)
	want := [][]byte{colCount(1), colDef, {3, 'a', 'b', 'c'}, textRow, textRow, okEOF}
	for i := range want {
		if !bytes.Equal(got[i], want[i]) {
			t.Fatalf("packet %d: %x, want %x", i, got[i], want[i])
		}
	}

	// A non-fatal error replaces the rest of the response.
	hooks.Result = func(x *mysql.Exchange, kind mysql.Kind, p []byte, w *mysql.Writer) error {
		if kind == kText {
			return &mysql.Error{Code: 3000, Message: "value does not decrypt"}
		}
		w.Packet(p)
		return nil
	}
	out.Reset()
	done, err = mysql.RelayResponses(bytes.NewReader(in), &out, [][]byte{queryCmd, {gomysql.COM_PING}}, hooks, true)
	if !errors.Is(err, io.EOF) || done != 2 {
		t.Fatalf("relay: %v, %d responses", err, done)
	}
	got = readAll(t, out.Bytes(), 1, 3)
	if got[2][0] != 0xff || string(got[2][9:]) != "value does not decrypt" {
		t.Fatalf("error packet %q", got[2])
	}
	rest := out.Bytes()
	for range 3 {
		rest = rest[framedLen(rest):]
	}
	if !bytes.Equal(rest, mysql.AppendPacket(nil, 1, okPkt)) {
		t.Fatalf("after the error: %x", rest)
	}

	// Any other error ends the session.
	hooks.Result = func(*mysql.Exchange, mysql.Kind, []byte, *mysql.Writer) error { return errors.New("boom") }
	_, err = mysql.RelayResponses(bytes.NewReader(in), io.Discard, [][]byte{queryCmd}, hooks, true)
	if !mysql.IsHookError(err) {
		t.Fatalf("relay: %v, want a hook error", err)
	}
}
