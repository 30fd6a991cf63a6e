package keystore_test

import (
	"context"
	"errors"
	"testing"

	"github.com/dbproxy/dbproxy/crypto/keystore"
)

// testDelete: Delete removes one version, is seen by another handle, and
// a missing version is ErrNotFound.
func testDelete(t *testing.T, newBacking backing) {
	ctx := context.Background()
	open := newBacking(t)
	s := openCleanup(t, open)
	for _, r := range []keystore.Record{rec("k", 1, "w1"), rec("k", 2, "w2"), rec("other", 1, "o1")} {
		if err := s.Create(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	del, ok := s.(keystore.Deleter)
	if !ok {
		t.Fatalf("%T does not implement Deleter", s)
	}
	if err := del.Delete(ctx, "k", 1); err != nil {
		t.Fatal(err)
	}
	if err := del.Delete(ctx, "k", 1); !errors.Is(err, keystore.ErrNotFound) {
		t.Fatalf("second Delete: %v, want ErrNotFound", err)
	}
	other := openCleanup(t, open)
	got, err := other.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	checkRecords(t, "List after Delete", got, []keystore.Record{normalized(rec("k", 2, "w2")), normalized(rec("other", 1, "o1"))})
}

func TestFileDelete(t *testing.T) { testDelete(t, fileBacking) }
