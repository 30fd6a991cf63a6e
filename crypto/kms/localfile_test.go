package kms_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dbproxy/dbproxy/crypto/kms"
)

// TestLocalFile: every operation reads the file again, so a removed file
// fails (naming it), a restored one works, and a file holding another key
// is refused.
func TestLocalFile(t *testing.T) {
	ctx := context.Background()
	if _, err := kms.OpenLocalFile(filepath.Join(t.TempDir(), "nope.key")); !errors.Is(err, os.ErrNotExist) || !strings.Contains(err.Error(), "nope.key") {
		t.Fatalf("OpenLocalFile of a missing file = %v; want ErrNotExist naming it", err)
	}
	path := newLocalKeyFile(t)
	lf := openLocalFile(t, path)
	l := loadLocal(t, path)
	if lf.ID() != l.ID() {
		t.Fatalf("ID = %s, want %s", lf.ID(), l.ID())
	}
	ref := kms.KeyRef{Name: "a", Version: 1}
	pt, wrapped, err := lf.GenerateDataKey(ctx, ref, 32)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := l.Unwrap(ctx, ref, wrapped); err != nil || !bytes.Equal(got, pt) {
		t.Fatalf("Local.Unwrap of a LocalFile wrapping = %v", err)
	}

	saved := readFile(t, path)
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if _, err := lf.Unwrap(ctx, ref, wrapped); !errors.Is(err, os.ErrNotExist) || !strings.Contains(err.Error(), path) {
		t.Fatalf("Unwrap without the file = %v; want ErrNotExist naming %s", err, path)
	}
	if _, err := lf.Wrap(ctx, ref, pt); err == nil {
		t.Fatal("Wrap without the file succeeded")
	}
	if err := os.WriteFile(path, saved, 0o600); err != nil {
		t.Fatal(err)
	}
	if got, err := lf.Unwrap(ctx, ref, wrapped); err != nil || !bytes.Equal(got, pt) {
		t.Fatalf("Unwrap with the file restored = %v", err)
	}

	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if _, err := kms.CreateLocalKeyFile(path); err != nil {
		t.Fatal(err)
	}
	if _, err := lf.Unwrap(ctx, ref, wrapped); !errors.Is(err, kms.ErrDenied) || !strings.Contains(err.Error(), "now holds master key") {
		t.Fatalf("Unwrap with another key in the file = %v; want ErrDenied saying so", err)
	}
}
