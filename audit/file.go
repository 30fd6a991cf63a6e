package audit

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"time"
)

// tailWindow is how much of a file's end is read to find its last line
// when the state file does not describe it.
const tailWindow = 64 << 10

// state is the content of the chain state file FILE.chain: the end of
// the chain and the audit file it was written to (identity and size).
type state struct {
	Seq  uint64 `json:"seq"`
	MAC  string `json:"mac"`
	Dev  uint64 `json:"dev"`
	Ino  uint64 `json:"ino"`
	Size int64  `json:"size"`
}

// fileID identifies a file across renames (device and inode).
type fileID struct{ dev, ino uint64 }

// appender appends sealed events to one audit file path under the lock
// of its state file.
type appender struct {
	path  string
	lock  *os.File // FILE.chain
	f     *os.File // the file now at path (nil until the first append)
	fid   fileID
	dirty bool // written since the last sync
}

func openAppender(path string) (*appender, error) {
	lock, err := os.OpenFile(path+".chain", os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("audit chain state file: %w", err)
	}
	a := &appender{path: path, lock: lock}
	if err := a.reopen(); err != nil {
		lock.Close()
		return nil, err
	}
	return a, nil
}

// reopen opens the file now at path, creating it if it is missing.
func (a *appender) reopen() error {
	if a.f != nil {
		a.syncFile()
		a.f.Close()
		a.f = nil
	}
	f, err := os.OpenFile(a.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("audit file: %w", err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return fmt.Errorf("audit file: %w", err)
	}
	a.f, a.fid = f, idOf(fi)
	return nil
}

// append seals events after the chain's end and appends them in one
// write. A file renamed away or truncated since the last append (log
// rotation) gets a chain_start event first.
func (a *appender) append(s *sealer, events []Event, buf []byte) ([]byte, error) {
	if err := lockFile(a.lock); err != nil {
		return buf, fmt.Errorf("lock audit chain state file: %w", err)
	}
	defer unlockFile(a.lock)
	if fi, err := os.Stat(a.path); err != nil || idOf(fi) != a.fid {
		if err := a.reopen(); err != nil {
			return buf, err
		}
	}
	fi, err := a.f.Stat()
	if err != nil {
		return buf, fmt.Errorf("audit file: %w", err)
	}
	c, start, prefix, err := a.resume(fi.Size())
	if err != nil {
		return buf, err
	}
	buf = append(buf[:0], prefix...)
	if start != nil {
		if buf, err = s.seal(buf, &c, start); err != nil {
			return buf, err
		}
	}
	for i := range events {
		if buf, err = s.seal(buf, &c, &events[i]); err != nil {
			return buf, err
		}
	}
	if _, err := a.f.Write(buf); err != nil {
		return buf, fmt.Errorf("write audit file: %w", err)
	}
	a.dirty = true
	return buf, a.saveState(c, fi.Size()+int64(len(buf)))
}

// resume finds where the chain continues in the open file of the given
// size: from the state file when it describes this file, else from the
// file's last line. start is the chain_start event the file needs first
// (new chain, rotated or truncated file); prefix is a newline when the
// file ends in a partial line.
func (a *appender) resume(size int64) (c chain, start *Event, prefix []byte, err error) {
	st, ok := a.readState()
	switch {
	case size > 0 && (!ok || st.Dev != a.fid.dev || st.Ino != a.fid.ino || size > st.Size):
		// Not written through this state file (or its writer died
		// before recording it): continue from the file's last line.
		return a.tail(size)
	case !ok:
		return c, &Event{Time: time.Now().UTC(), Type: TypeChainStart, Reason: "new", File: a.path}, nil, nil
	}
	c.seq = st.Seq
	if _, err := hex.Decode(c.mac[:], []byte(st.MAC)); err != nil || len(st.MAC) != 2*MACSize {
		return c, nil, nil, fmt.Errorf("audit chain state file %s.chain: bad mac", a.path)
	}
	reason := ""
	switch {
	case st.Dev != a.fid.dev || st.Ino != a.fid.ino:
		reason = "rotated" // renamed away; this is a new file
	case size < st.Size:
		reason = "truncated" // copytruncate
	default:
		return c, nil, nil, nil
	}
	return c, &Event{Time: time.Now().UTC(), Type: TypeChainStart, Reason: reason, File: a.path, PrevSeq: c.seq, PrevMAC: st.MAC}, nil, nil
}

// tail reads the chain's end from the last complete line of the file.
func (a *appender) tail(size int64) (c chain, start *Event, prefix []byte, err error) {
	f, err := os.Open(a.path)
	if err != nil {
		return c, nil, nil, fmt.Errorf("audit file: %w", err)
	}
	defer f.Close()
	off := max(size-tailWindow, 0)
	b := make([]byte, size-off)
	if _, err := f.ReadAt(b, off); err != nil && !errors.Is(err, io.EOF) {
		return c, nil, nil, fmt.Errorf("read audit file: %w", err)
	}
	if b[len(b)-1] != '\n' {
		prefix = []byte{'\n'} // a partial last line (verify reports it)
		b = b[:bytes.LastIndexByte(b, '\n')+1]
	}
	b = bytes.TrimSuffix(b, []byte{'\n'})
	l, err := parseLine(b[bytes.LastIndexByte(b, '\n')+1:])
	if err != nil {
		return c, nil, nil, fmt.Errorf("continue the chain of %s: last line: %w", a.path, err)
	}
	c.seq, c.mac = l.ev.Seq, l.mac
	return c, nil, prefix, nil
}

func (a *appender) readState() (state, bool) {
	var st state
	b, err := io.ReadAll(io.NewSectionReader(a.lock, 0, 4096))
	if err != nil || len(b) == 0 || json.Unmarshal(b, &st) != nil || st.Seq == 0 {
		return st, false
	}
	return st, true
}

func (a *appender) saveState(c chain, size int64) error {
	b, _ := json.Marshal(state{Seq: c.seq, MAC: hex.EncodeToString(c.mac[:]), Dev: a.fid.dev, Ino: a.fid.ino, Size: size})
	b = append(b, '\n')
	if _, err := a.lock.WriteAt(b, 0); err != nil {
		return fmt.Errorf("write audit chain state file: %w", err)
	}
	if err := a.lock.Truncate(int64(len(b))); err != nil {
		return fmt.Errorf("write audit chain state file: %w", err)
	}
	return nil
}

// syncFile fsyncs what was written since the last sync.
func (a *appender) syncFile() error {
	if a.f == nil || !a.dirty {
		return nil
	}
	a.dirty = false
	if err := a.f.Sync(); err != nil && !errors.Is(err, fs.ErrClosed) {
		return fmt.Errorf("sync audit file: %w", err)
	}
	return nil
}

func (a *appender) close() error {
	err := a.syncFile()
	if a.f != nil {
		a.f.Close()
	}
	a.lock.Close()
	return err
}
