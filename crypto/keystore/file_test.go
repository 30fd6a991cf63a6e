package keystore_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/dbproxy/dbproxy/crypto/keystore"
)

func fileBacking(t *testing.T) func() keystore.Store {
	path := filepath.Join(t.TempDir(), "keys.json")
	return func() keystore.Store {
		s, err := keystore.OpenFile(path)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
}

// openFile opens the file keystore at path; it is closed when the test
// ends, and an error closing it fails the test.
func openFile(t *testing.T, path string) keystore.Store {
	t.Helper()
	s, err := keystore.OpenFile(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("close %s: %v", path, err)
		}
	})
	return s
}

func TestFileConformance(t *testing.T) { testConformance(t, fileBacking) }

func TestFileFormat(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "keys.json")
	s := openFile(t, path)
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("OpenFile created the file (stat: %v)", err)
	}
	r := rec("public.users.email", 2, "\x00\x01wrapped")
	if err := s.Create(ctx, r); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Format int              `json:"format"`
		Keys   []map[string]any `json:"keys"`
	}
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatalf("file is not JSON: %v\n%s", err, raw)
	}
	if doc.Format != 1 || len(doc.Keys) != 1 {
		t.Fatalf("format %d with %d keys, want 1 with 1:\n%s", doc.Format, len(doc.Keys), raw)
	}
	want := map[string]any{
		"name":          "public.users.email",
		"version":       float64(2),
		"algorithm":     "AES-256-GCM",
		"created_at":    "2025-03-04T06:06:07.123456Z",
		"master_key_id": "local:0011223344556677",
		"wrapped":       "AAF3cmFwcGVk", // base64 of "\x00\x01wrapped"
	}
	for k, v := range want {
		if doc.Keys[0][k] != v {
			t.Errorf("key field %q = %#v, want %#v", k, doc.Keys[0][k], v)
		}
	}
	if len(doc.Keys[0]) != len(want) {
		t.Errorf("key has fields %v, want exactly %d", doc.Keys[0], len(want))
	}
	if !bytes.HasSuffix(raw, []byte("}\n")) {
		t.Error("file does not end with a newline")
	}
}

func TestFileMode(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name     string
		existing string // the file's content before OpenFile, written 0644; "" for no file
	}{
		{"new file", ""},
		{"existing 0644 file is rewritten 0600", `{"format": 1, "keys": []}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "keys.json")
			if tt.existing != "" {
				if err := os.WriteFile(path, []byte(tt.existing), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			s := openFile(t, path)
			if err := s.Create(ctx, rec("k", 1, "w")); err != nil {
				t.Fatal(err)
			}
			assertMode(t, path, 0o600)
			assertMode(t, path+".lock", 0o600)
		})
	}
}

func assertMode(t *testing.T, path string, want os.FileMode) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := fi.Mode().Perm(); got != want {
		t.Errorf("%s: mode %#o, want %#o", filepath.Base(path), got, want)
	}
}

// TestFileNoOpWrite checks that changes that change nothing leave the file
// alone: same bytes, same inode (every real write renames a new file in),
// same mtime.
func TestFileNoOpWrite(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "keys.json")
	s := openFile(t, path)
	r := rec("k", 1, "w")
	if err := s.Create(ctx, r); err != nil {
		t.Fatal(err)
	}
	snapshot := func() (os.FileInfo, []byte) {
		t.Helper()
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		return fi, b
	}
	fi1, b1 := snapshot()

	if err := s.Create(ctx, r); !errors.Is(err, keystore.ErrExists) {
		t.Fatalf("second Create = %v, want ErrExists", err)
	}
	s2 := openFile(t, path) // as a second `keys init` would
	if err := s2.Create(ctx, r); !errors.Is(err, keystore.ErrExists) {
		t.Fatalf("Create from a second handle = %v, want ErrExists", err)
	}
	if err := s.Replace(ctx, r.Name, r.Version, r.MasterKeyID, r.Wrapped); err != nil {
		t.Fatalf("no-op Replace: %v", err)
	}
	fi2, b2 := snapshot()
	if !bytes.Equal(b1, b2) {
		t.Error("file bytes changed")
	}
	if !os.SameFile(fi1, fi2) {
		t.Error("file was replaced (new inode)")
	}
	if !fi1.ModTime().Equal(fi2.ModTime()) {
		t.Errorf("mtime changed from %v to %v", fi1.ModTime(), fi2.ModTime())
	}

	// And a real change is a new file: the checks above can fail.
	if err := s.Replace(ctx, r.Name, r.Version, r.MasterKeyID, []byte("new")); err != nil {
		t.Fatal(err)
	}
	fi3, b3 := snapshot()
	if os.SameFile(fi1, fi3) || bytes.Equal(b1, b3) {
		t.Error("a real Replace did not write a new file")
	}
	entries, err := os.ReadDir(filepath.Dir(path))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if strings.Join(names, ",") != "keys.json,keys.json.lock" {
		t.Errorf("directory holds %v, want only keys.json and its lock (temporary file left behind?)", names)
	}
}

func TestOpenFileRejects(t *testing.T) {
	valid := `{"format":1,"keys":[{"name":"k","version":1,"algorithm":"AES-256-GCM","created_at":"2025-01-01T00:00:00Z","master_key_id":"m","wrapped":"AQ=="}]}`
	tests := []struct {
		name    string
		content string
		mode    os.FileMode
		want    string
	}{
		{"world writable", valid, 0o666, "0666"},
		{"not json", "not json", 0o600, "parse"},
		{"trailing data", valid + "{}", 0o600, "after the JSON"},
		{"format 2", `{"format":2,"keys":[]}`, 0o600, "format 2"},
		{"no format", `{"keys":[]}`, 0o600, "format 0"},
		{"unknown field", `{"format":1,"keys":[],"extra":1}`, 0o600, "extra"},
		{"bad algorithm", strings.Replace(valid, "AES-256-GCM", "ROT13", 1), 0o600, "ROT13"},
		{"version 0", strings.Replace(valid, `"version":1`, `"version":0`, 1), 0o600, "version 0"},
		{"empty wrapped", strings.Replace(valid, `"AQ=="`, `""`, 1), 0o600, "wrapped"},
		{"duplicate", strings.Replace(valid, "}]}", "},"+valid[strings.Index(valid, "[")+1:], 1), 0o600, "twice"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "keys.json")
			if err := os.WriteFile(path, []byte(tt.content), 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(path, tt.mode); err != nil {
				t.Fatal(err)
			}
			s, err := keystore.OpenFile(path)
			if err == nil {
				s.Close()
				t.Fatal("OpenFile accepted the file")
			}
			if !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), path) {
				t.Errorf("error %q does not mention %q and the path", err, tt.want)
			}
		})
	}
	t.Run("valid", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "keys.json")
		if err := os.WriteFile(path, []byte(valid), 0o640); err != nil {
			t.Fatal(err)
		}
		s := openFile(t, path)
		got, err := s.Get(context.Background(), "k")
		if err != nil || len(got) != 1 || !bytes.Equal(got[0].Wrapped, []byte{1}) {
			t.Errorf("Get = %v, %v", got, err)
		}
	})
	t.Run("missing directory", func(t *testing.T) {
		if _, err := keystore.OpenFile(filepath.Join(t.TempDir(), "nope", "keys.json")); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("OpenFile = %v, want ErrNotExist", err)
		}
	})
}

func TestFileClosed(t *testing.T) {
	ctx := context.Background()
	s, err := keystore.OpenFile(filepath.Join(t.TempDir(), "keys.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Create(ctx, rec("k", 1, "w")); !errors.Is(err, keystore.ErrClosed) {
		t.Errorf("Create after Close = %v, want ErrClosed", err)
	}
	if _, err := s.List(ctx); !errors.Is(err, keystore.ErrClosed) {
		t.Errorf("List after Close = %v, want ErrClosed", err)
	}
}

// Cross-process race: the test binary re-executes itself as children that
// all Create the same (name, version), plus one record of their own.
const childEnv = "DBPROXY_KEYSTORE_TEST_CHILD"

func TestFileCrossProcess(t *testing.T) {
	if spec := os.Getenv(childEnv); spec != "" {
		runChild(t, spec)
		return
	}
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "keys.json")
	const n = 6
	type proc struct {
		cmd   *exec.Cmd
		stdin *os.File
		out   bytes.Buffer
	}
	procs := make([]*proc, n)
	for i := range procs {
		p := &proc{cmd: exec.Command(os.Args[0], "-test.run=^TestFileCrossProcess$", "-test.count=1")}
		p.cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%d:%s", childEnv, i, path))
		r, w, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		p.cmd.Stdin, p.stdin = r, w
		p.cmd.Stdout, p.cmd.Stderr = &p.out, &p.out
		if err := p.cmd.Start(); err != nil {
			t.Fatal(err)
		}
		r.Close()
		procs[i] = p
	}
	// Release them together: each child blocks reading stdin until here.
	for _, p := range procs {
		p.stdin.Write([]byte("go\n"))
		p.stdin.Close()
	}
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i, p := range procs {
		wg.Go(func() { errs[i] = p.cmd.Wait() })
	}
	wg.Wait()

	winner := -1
	for i, p := range procs {
		if errs[i] != nil {
			t.Fatalf("child %d: %v\n%s", i, errs[i], p.out.String())
		}
		switch {
		case strings.Contains(p.out.String(), "RESULT created\n"):
			if winner >= 0 {
				t.Errorf("children %d and %d both created the key", winner, i)
			}
			winner = i
		case strings.Contains(p.out.String(), "RESULT exists\n"):
		default:
			t.Fatalf("child %d printed no result:\n%s", i, p.out.String())
		}
	}
	if winner < 0 {
		t.Fatal("no child created the key")
	}

	s := openFile(t, path)
	want := []keystore.Record{}
	for i := range n {
		want = append(want, normalized(rec("own"+strconv.Itoa(i), 1, "own")))
	}
	want = append(want, normalized(rec("shared", 1, "child"+strconv.Itoa(winner))))
	list, err := s.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	checkRecords(t, "List after the race", list, want)
}

func runChild(t *testing.T, spec string) {
	idx, path, ok := strings.Cut(spec, ":")
	if !ok {
		t.Fatalf("bad %s %q", childEnv, spec)
	}
	ctx := context.Background()
	s := openFile(t, path)
	if _, err := bufio.NewReader(os.Stdin).ReadString('\n'); err != nil {
		t.Fatalf("wait for start: %v", err)
	}
	err := s.Create(ctx, rec("shared", 1, "child"+idx))
	switch {
	case err == nil:
		fmt.Println("RESULT created")
	case errors.Is(err, keystore.ErrExists):
		fmt.Println("RESULT exists")
	default:
		t.Fatal(err)
	}
	if err := s.Create(ctx, rec("own"+idx, 1, "own")); err != nil {
		t.Fatal(err)
	}
}
