package audit_test

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dbproxy/dbproxy/audit"
	"github.com/dbproxy/dbproxy/crypto"
)

var testKey = bytes.Repeat([]byte{7}, audit.MACSize)

func keys(v uint32) ([]byte, error) {
	if v != 1 {
		return nil, fmt.Errorf("no version %d", v)
	}
	return testKey, nil
}

// openLog opens a Log on path, closed when the test ends.
func openLog(t *testing.T, path string) *audit.Log {
	t.Helper()
	l, err := audit.Open(audit.Options{Path: path, Key: testKey, KeyVersion: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

// writeLog writes n key_admin events through a Log and closes it.
func writeLog(t *testing.T, path string, n int) {
	t.Helper()
	l := openLog(t, path)
	for i := range n {
		l.Emit(audit.KeyAdmin("rotate", fmt.Sprintf("k%d", i), uint32(i+1), nil))
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
}

func readLines(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.SplitAfter(string(b), "\n")[:strings.Count(string(b), "\n")]
}

func writeLines(t *testing.T, path string, lines []string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(strings.Join(lines, "")), 0o600); err != nil {
		t.Fatal(err)
	}
}

// wantBad checks that Verify fails naming file:line, with why containing
// want.
func wantBad(t *testing.T, files []string, file string, line int, want string) {
	t.Helper()
	_, err := audit.Verify(files, keys)
	var bad *audit.BadLineError
	if !errors.As(err, &bad) {
		t.Fatalf("Verify = %v, want a bad line", err)
	}
	if bad.File != file || bad.Line != line || !strings.Contains(bad.Why, want) {
		t.Fatalf("Verify: %v; want %s:%d: ...%s...", bad, file, line, want)
	}
}

func TestVerifyIntact(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	writeLog(t, path, 10)
	writeLog(t, path, 3) // a second process continues the chain
	if err := audit.Append(path, testKey, 1, audit.KeyAdmin("init", "", 0, nil)); err != nil {
		t.Fatal(err)
	}
	sum, err := audit.Verify([]string{path}, keys)
	if err != nil {
		t.Fatal(err)
	}
	// chain_start + 10 + 3 + 1
	if sum.Events != 15 || sum.LastSeq != 15 || sum.FirstSeq != 1 || sum.Continues {
		t.Fatalf("summary %+v", sum)
	}
	lines := readLines(t, path)
	if !strings.Contains(lines[0], `"type":"chain_start"`) || !strings.Contains(lines[0], `"reason":"new"`) {
		t.Errorf("first line %s", lines[0])
	}
}

func TestVerifyCatchesTampering(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "audit.jsonl")
	writeLog(t, path, 6) // lines 1 (chain_start) .. 7
	orig := readLines(t, path)
	tests := []struct {
		name string
		edit func([]string) []string
		line int
		why  string
	}{
		{"edit a field", func(l []string) []string {
			l[3] = strings.Replace(l[3], `"key":"k2"`, `"key":"k9"`, 1)
			return l
		}, 4, "bad mac"},
		{"edit the mac", func(l []string) []string {
			i := strings.Index(l[2], `"mac":"`) + 7
			c := byte('0')
			if l[2][i] == '0' {
				c = '1'
			}
			l[2] = l[2][:i] + string(c) + l[2][i+1:]
			return l
		}, 3, "bad mac"},
		{"delete a line", func(l []string) []string { return append(l[:4], l[5:]...) }, 5, "sequence gap"},
		{"delete the first line", func(l []string) []string { return l[1:] }, 1, "not a chain_start"},
		{"swap two lines", func(l []string) []string { l[2], l[3] = l[3], l[2]; return l }, 3, "reordered"},
		{"repeat a line", func(l []string) []string { return append(l[:4], l[3:]...) }, 5, "repeated"},
		{"truncate the last line", func(l []string) []string {
			l[6] = l[6][:len(l[6])/2]
			return l
		}, 7, "truncated line"},
		{"garbage line", func(l []string) []string { l[1] = "{}\n"; return l }, 2, "malformed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			writeLines(t, path, tt.edit(append([]string(nil), orig...)))
			wantBad(t, []string{path}, path, tt.line, tt.why)
		})
	}
}

func TestRotation(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "audit.jsonl")
	rotated := filepath.Join(dir, "audit.jsonl.1")
	writeLog(t, path, 3)
	if err := os.Rename(path, rotated); err != nil { // logrotate create mode
		t.Fatal(err)
	}
	writeLog(t, path, 2)
	lines := readLines(t, path)
	if !strings.Contains(lines[0], `"reason":"rotated"`) || !strings.Contains(lines[0], `"prev_seq":4`) {
		t.Fatalf("first line of the new file: %s", lines[0])
	}
	sum, err := audit.Verify([]string{rotated, path}, keys)
	if err != nil || sum.Files != 2 || sum.Events != 7 {
		t.Fatalf("Verify = %+v, %v", sum, err)
	}
	// The new file alone verifies as a continuation.
	if sum, err := audit.Verify([]string{path}, keys); err != nil || !sum.Continues || sum.FirstSeq != 5 {
		t.Fatalf("Verify(new file) = %+v, %v", sum, err)
	}
	// Out of order, or with the first file missing a line at its end.
	wantBad(t, []string{path, rotated}, rotated, 1, "files spliced or missing")
	old := readLines(t, rotated)
	writeLines(t, rotated, old[:len(old)-1])
	wantBad(t, []string{rotated, path}, path, 1, "files spliced or missing")
	writeLines(t, rotated, old)

	// A splice: the new file's chain_start grafted onto another chain.
	other := filepath.Join(dir, "other.jsonl")
	writeLog(t, other, 3)
	wantBad(t, []string{other, path}, path, 1, "files spliced or missing")
}

func TestCopyTruncate(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "audit.jsonl")
	openLog(t, path) // serve, running while a keys command and logrotate act
	if err := audit.Append(path, testKey, 1, audit.KeyAdmin("rotate", "a", 2, nil)); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(path)
	copied := filepath.Join(dir, "audit.jsonl.1")
	writeLines(t, copied, []string{string(b)})
	if err := os.Truncate(path, 0); err != nil {
		t.Fatal(err)
	}
	if err := audit.Append(path, testKey, 1, audit.KeyAdmin("rewrap", "", 0, nil)); err != nil {
		t.Fatal(err)
	}
	lines := readLines(t, path)
	if len(lines) != 2 || !strings.Contains(lines[0], `"reason":"truncated"`) {
		t.Fatalf("after copytruncate: %q", lines)
	}
	if _, err := audit.Verify([]string{copied, path}, keys); err != nil {
		t.Fatal(err)
	}
}

func TestDroppedEventKeepsTheChain(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	l, err := audit.Open(audit.Options{Path: path, Key: testKey, KeyVersion: 1, Buffer: 1})
	if err != nil {
		t.Fatal(err)
	}
	for range 1000 {
		l.Emit(audit.KeyAdmin("rotate", "k", 1, nil))
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l.Emit(audit.KeyAdmin("rotate", "late", 1, nil)) // after Close: dropped, no panic
	sum, err := audit.Verify([]string{path}, keys)
	if err != nil {
		t.Fatal(err)
	}
	if written := uint64(sum.Events-1) - countType(t, path, "dropped"); written+sum.Dropped != 1000 {
		t.Fatalf("%d written + %d dropped != 1000 (summary %+v)", written, sum.Dropped, sum)
	}
}

func countType(t *testing.T, path, typ string) uint64 {
	var n uint64
	for _, l := range readLines(t, path) {
		if strings.Contains(l, `"type":"`+typ+`"`) {
			n++
		}
	}
	return n
}

func TestMACKey(t *testing.T) {
	mat, err := crypto.NewRandomKeyMaterial(crypto.AlgorithmAESSIV)
	if err != nil {
		t.Fatal(err)
	}
	k1, _ := crypto.NewKey(audit.KeyName, 1, crypto.AlgorithmAESSIV, mat)
	k2, _ := crypto.NewKey(audit.KeyName, 1, crypto.AlgorithmAESSIV, mat)
	a, err := audit.MACKey(k1)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := audit.MACKey(k2)
	if !bytes.Equal(a, b) || len(a) != audit.MACSize || bytes.Contains(a, mat[:16]) {
		t.Fatalf("MACKey not a stable derivation")
	}
	gcm, _ := crypto.NewRandomKeyMaterial(crypto.AlgorithmXAESGCM)
	kx, _ := crypto.NewKey(audit.KeyName, 1, crypto.AlgorithmXAESGCM, gcm)
	if _, err := audit.MACKey(kx); err == nil {
		t.Fatal("MACKey accepted a randomized key")
	}
}

// waitLines waits until path has n lines (the Log writes asynchronously).
func waitLines(t *testing.T, path string, n int) {
	t.Helper()
	for range 400 {
		if b, err := os.ReadFile(path); err == nil && strings.Count(string(b), "\n") >= n {
			return
		}
		time.Sleep(10 * time.Millisecond) // waiting for the writer, not asserting a duration
	}
	t.Fatalf("%s never reached %d lines", path, n)
}

// TestRotationUnderARunningLog: a file renamed away while a Log writes it
// (logrotate without copytruncate) is noticed at the next batch, without
// a signal, and the chain continues in the new file.
func TestRotationUnderARunningLog(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "audit.jsonl")
	l := openLog(t, path)
	for range 3 {
		l.Emit(audit.KeyAdmin("rotate", "a", 1, nil))
	}
	waitLines(t, path, 4)
	rotated := path + ".1"
	if err := os.Rename(path, rotated); err != nil {
		t.Fatal(err)
	}
	l.Emit(audit.KeyAdmin("rotate", "b", 1, nil))
	waitLines(t, path, 2)
	if err := audit.Append(path, testKey, 1, audit.KeyAdmin("rewrap", "", 0, nil)); err != nil {
		t.Fatal(err)
	}
	l.Emit(audit.KeyAdmin("rotate", "c", 1, nil))
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if n := len(readLines(t, rotated)); n != 4 {
		t.Errorf("rotated file has %d lines, want 4", n)
	}
	sum, err := audit.Verify([]string{rotated, path}, keys)
	if err != nil || sum.Events != 8 || sum.LastSeq != 8 {
		t.Fatalf("Verify = %+v, %v", sum, err)
	}
}

// TestResumeFromTheFile: without its state file (lost, or its writer died
// before updating it) a writer continues the chain from the file's last
// line; a partial last line stays for verify to report.
func TestResumeFromTheFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	writeLog(t, path, 2)
	if err := os.Remove(path + ".chain"); err != nil {
		t.Fatal(err)
	}
	writeLog(t, path, 2)
	if sum, err := audit.Verify([]string{path}, keys); err != nil || sum.Events != 5 {
		t.Fatalf("Verify = %+v, %v", sum, err)
	}
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString(`{"seq":6,"ts":"2026`) // a writer died mid-line
	f.Close()
	if err := audit.Append(path, testKey, 1, audit.KeyAdmin("init", "", 0, nil)); err != nil {
		t.Fatal(err)
	}
	wantBad(t, []string{path}, path, 6, "malformed line")
	if lines := readLines(t, path); len(lines) != 7 || !strings.Contains(lines[6], `"seq":6,`) {
		t.Fatalf("lines after the partial one: %q", lines[5:])
	}
}
