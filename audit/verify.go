package audit

import (
	"bufio"
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
)

// maxLine bounds one audit line (a session summary of many columns is the
// longest).
const maxLine = 16 << 20

// KeyFunc returns the audit MAC key of a version of KeyName.
type KeyFunc func(version uint32) ([]byte, error)

// Summary is what Verify found in a chain that verified.
type Summary struct {
	Files, Events int
	FirstSeq      uint64 // the first event's sequence number
	LastSeq       uint64
	LastMAC       string
	// Continues is true when the first file starts with a chain_start
	// that continues an earlier file not given.
	Continues bool
	Dropped   uint64 // the sum of the dropped events' counts
}

// BadLineError is the first line of a chain that does not verify.
type BadLineError struct {
	File string
	Line int
	Why  string
}

func (e *BadLineError) Error() string { return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Why) }

// verifier carries a chain across lines and files.
type verifier struct {
	keys    KeyFunc
	macs    map[uint32]hash.Hash
	started bool
	c       chain
	sum     Summary
}

// Verify checks the chain of the audit files given in order (rotated
// files first): every mac, that sequence numbers follow each other, and
// that each file after the first starts with a chain_start continuing
// the one before. A failure is a *BadLineError naming the first bad line;
// an error reading a file or getting a key is returned as is.
func Verify(files []string, keys KeyFunc) (Summary, error) {
	v := &verifier{keys: keys, macs: map[uint32]hash.Hash{}}
	for _, name := range files {
		if err := v.file(name); err != nil {
			return v.sum, err
		}
		v.sum.Files++
	}
	v.sum.LastSeq, v.sum.LastMAC = v.c.seq, hex.EncodeToString(v.c.mac[:])
	return v.sum, nil
}

func (v *verifier) file(name string) error {
	f, err := os.Open(name)
	if err != nil {
		return err
	}
	defer f.Close()
	r := bufio.NewReaderSize(f, 64<<10)
	var next []byte // a line read ahead (to tell a reorder from a gap)
	for n := 1; ; n++ {
		b := next
		if b == nil {
			if b, err = readLine(r); err == io.EOF {
				return nil
			}
		}
		next = nil
		bad := func(format string, args ...any) error {
			return &BadLineError{File: name, Line: n, Why: fmt.Sprintf(format, args...)}
		}
		if err != nil {
			if errors.Is(err, errTruncated) {
				return bad("truncated line (no newline at its end)")
			}
			return fmt.Errorf("%s:%d: %w", name, n, err)
		}
		l, perr := parseLine(b)
		if perr != nil {
			return bad("%v", perr)
		}
		if why := v.start(&l.ev, n == 1 && v.started); why != "" {
			return bad("%s", why)
		}
		if l.ev.Seq != v.c.seq+1 {
			next, _ = readLine(r)
			return bad("%s", v.seqProblem(l.ev.Seq, next))
		}
		if why := v.check(&l); why != "" {
			return bad("%s", why)
		}
	}
}

// readLine reads one line without its newline; a last line without one is
// errTruncated.
func readLine(r *bufio.Reader) ([]byte, error) {
	b, err := r.ReadSlice('\n')
	if err == bufio.ErrBufferFull {
		var long []byte
		long = append(long, b...)
		for err == bufio.ErrBufferFull && len(long) < maxLine {
			b, err = r.ReadSlice('\n')
			long = append(long, b...)
		}
		b = long
	}
	switch {
	case err == io.EOF && len(b) == 0:
		return nil, io.EOF
	case err == io.EOF || err == bufio.ErrBufferFull:
		return nil, errTruncated
	case err != nil:
		return nil, err
	}
	return bytes.Clone(b[:len(b)-1]), nil
}

var errTruncated = errors.New("truncated line")

// seqProblem says why seq does not follow the chain; next is the line
// after it (nil at the end).
func (v *verifier) seqProblem(seq uint64, next []byte) string {
	want := v.c.seq + 1
	if seq > want {
		if nl, err := parseLine(next); next != nil && err == nil && nl.ev.Seq < seq {
			return fmt.Sprintf("lines reordered: sequence %d comes before %d", seq, nl.ev.Seq)
		}
		return fmt.Sprintf("sequence gap: %d follows %d (lines deleted)", seq, v.c.seq)
	}
	return fmt.Sprintf("lines reordered or repeated: sequence %d follows %d", seq, v.c.seq)
}

// start checks where the chain starts or continues: the first line of
// the first file must be a chain_start (which sets the chain's start),
// and every chain_start after it (fileStart: the first line of a later
// file must be one) must continue the chain so far. It returns why ev is
// bad ("": good).
func (v *verifier) start(ev *Event, fileStart bool) string {
	isStart := ev.Type == TypeChainStart
	switch {
	case fileStart && !isStart:
		return fmt.Sprintf("file does not start with a chain_start event (got %s): not the continuation of the file before", ev.Type)
	case isStart && v.started && (ev.PrevSeq != v.c.seq || ev.PrevMAC != hex.EncodeToString(v.c.mac[:])):
		return fmt.Sprintf("chain_start continues sequence %d, but the chain so far ends at %d with another mac (files spliced or missing)", ev.PrevSeq, v.c.seq)
	case !v.started && !isStart:
		return fmt.Sprintf("the first line is a %s event, not a chain_start (lines deleted from the head of the chain?)", ev.Type)
	case !v.started:
		// The first file: a new chain, or one continuing files not given.
		if ev.Seq != ev.PrevSeq+1 {
			return fmt.Sprintf("chain_start sequence %d does not follow its prev_seq %d", ev.Seq, ev.PrevSeq)
		}
		if ev.PrevSeq > 0 {
			if _, err := hex.Decode(v.c.mac[:], []byte(ev.PrevMAC)); err != nil || len(ev.PrevMAC) != 2*MACSize {
				return "chain_start has a malformed prev_mac"
			}
			v.sum.Continues = true
		}
		v.c.seq = ev.PrevSeq
		v.started, v.sum.FirstSeq = true, ev.Seq
	}
	return ""
}

// check verifies l's mac against the chain and advances it. It returns
// why l is bad ("": good).
func (v *verifier) check(l *line) string {
	ev := &l.ev
	h, err := v.mac(ev.KeyVersion)
	if err != nil {
		return fmt.Sprintf("no audit key version %d: %v", ev.KeyVersion, err)
	}
	if !hmac.Equal(lineMAC(h, v.c.mac[:], l.body), l.mac[:]) {
		return "bad mac: the line was edited, or the line before it deleted or replaced"
	}
	v.c.seq, v.c.mac = ev.Seq, l.mac
	v.sum.Events++
	if ev.Type == TypeDropped {
		v.sum.Dropped += ev.Count
	}
	return ""
}

// mac returns the HMAC of audit key version kv.
func (v *verifier) mac(kv uint32) (hash.Hash, error) {
	if h, ok := v.macs[kv]; ok {
		return h, nil
	}
	key, err := v.keys(kv)
	if err != nil {
		return nil, err
	}
	h := hmac.New(sha256.New, key)
	v.macs[kv] = h
	return h, nil
}
