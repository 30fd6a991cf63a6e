package kms_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dbproxy/dbproxy/crypto/kms"
)

// newLocalKeyFile creates a fresh local master key file in a temporary
// directory and returns its path.
func newLocalKeyFile(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "master.key")
	created, err := kms.CreateLocalKeyFile(path)
	if err != nil || !created {
		t.Fatalf("CreateLocalKeyFile = %v, %v; want true, nil", created, err)
	}
	return path
}

// readFile returns the content of the file at path.
func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	return noErr(t, b, err)
}

// writeKeyFile writes content to master.key in a fresh directory, gives it
// mode (after writing, so the umask does not narrow it) and returns its
// path.
func writeKeyFile(t *testing.T, content string, mode os.FileMode) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "master.key")
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
	return path
}

// noErr fails the test on err, and else returns v.
func noErr[T any](t *testing.T, v T, err error) T {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// loadLocal loads the local master key file at path, closed when the test
// ends.
func loadLocal(t *testing.T, path string) *kms.Local {
	t.Helper()
	l, err := kms.LoadLocal(path)
	return closedAtEnd(t, l, err)
}

// loadLocalFails checks that LoadLocal refuses the file at path with an
// error that names it and contains want.
func loadLocalFails(t *testing.T, path, want string) {
	t.Helper()
	l, err := kms.LoadLocal(path)
	switch {
	case err == nil:
		l.Close()
		t.Fatal("LoadLocal accepted the file")
	case !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), path):
		t.Errorf("error %q does not mention %q and the path", err, want)
	}
}

// newLocal returns a local master key over key, closed when the test ends.
func newLocal(t *testing.T, key []byte) *kms.Local {
	t.Helper()
	l, err := kms.NewLocal(key)
	return closedAtEnd(t, l, err)
}

// closedAtEnd fails the test on err, and else returns l, closed when the
// test ends.
func closedAtEnd(t *testing.T, l *kms.Local, err error) *kms.Local {
	t.Helper()
	l = noErr(t, l, err)
	t.Cleanup(func() { l.Close() })
	return l
}

// mustUnwrapTo fails the test unless m unwraps wrapped, the data key ref,
// to want.
func mustUnwrapTo(t *testing.T, m kms.MasterKey, ref kms.KeyRef, wrapped, want []byte) {
	t.Helper()
	got, err := m.Unwrap(context.Background(), ref, wrapped)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("Unwrap returned a different key: %x, want %x", got, want)
	}
}
