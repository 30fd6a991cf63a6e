package keystore_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dbproxy/dbproxy/crypto"
	"github.com/dbproxy/dbproxy/crypto/keystore"
)

// backing creates a fresh, empty store location (file path, table) and
// returns a function that opens a Store on it; each call opens a new
// handle on the same data.
type backing func(t *testing.T) (open func() keystore.Store)

func openCleanup(t *testing.T, open func() keystore.Store) keystore.Store {
	t.Helper()
	s := open()
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

var baseTime = time.Date(2025, 3, 4, 5, 6, 7, 123456789, time.FixedZone("X", 3600))

func rec(name string, version uint32, wrapped string) keystore.Record {
	return keystore.Record{
		Name:        name,
		Version:     version,
		Algorithm:   crypto.AlgorithmAESGCM,
		CreatedAt:   baseTime.Add(time.Duration(version) * time.Hour),
		MasterKeyID: "local:0011223344556677",
		Wrapped:     []byte(wrapped),
	}
}

// normalized is what every store must return for r.
func normalized(r keystore.Record) keystore.Record {
	r.CreatedAt = r.CreatedAt.UTC().Truncate(time.Microsecond)
	return r
}

func recordEqual(a, b keystore.Record) bool {
	return a.Name == b.Name && a.Version == b.Version && a.Algorithm == b.Algorithm &&
		a.CreatedAt.Equal(b.CreatedAt) && a.CreatedAt.Location() == time.UTC && b.CreatedAt.Location() == time.UTC &&
		a.MasterKeyID == b.MasterKeyID && bytes.Equal(a.Wrapped, b.Wrapped)
}

func checkRecords(t *testing.T, what string, got, want []keystore.Record) {
	t.Helper()
	if got == nil {
		t.Errorf("%s returned a nil slice", what)
	}
	if !slices.EqualFunc(got, want, recordEqual) {
		t.Errorf("%s:\n got  %s\n want %s", what, fmtRecords(got), fmtRecords(want))
	}
}

func fmtRecords(recs []keystore.Record) string {
	var b strings.Builder
	for _, r := range recs {
		fmt.Fprintf(&b, "{%q v%d %v %s %s %q} ", r.Name, r.Version, r.Algorithm, r.CreatedAt.Format(time.RFC3339Nano), r.MasterKeyID, r.Wrapped)
	}
	return "[" + b.String() + "]"
}

// testConformance runs the behaviour every Store must share.
func testConformance(t *testing.T, newBacking backing) {
	ctx := context.Background()

	t.Run("empty", func(t *testing.T) {
		s := openCleanup(t, newBacking(t))
		list, err := s.List(ctx)
		if err != nil {
			t.Fatal(err)
		}
		checkRecords(t, "List", list, []keystore.Record{})
		got, err := s.Get(ctx, "nope")
		if err != nil {
			t.Fatal(err)
		}
		checkRecords(t, "Get", got, []keystore.Record{})
	})

	t.Run("ordering", func(t *testing.T) {
		open := newBacking(t)
		s := openCleanup(t, open)
		// Byte order, not collation order: "A" < "a" < "a " < "a.x" < "a_b" < "b",
		// and numeric versions (2 < 10). "a " must not be folded onto "a".
		in := []keystore.Record{
			rec("b", 1, "b1"), rec("a_b", 2, "ab2"), rec("a", 10, "a10"), rec("A", 1, "A1"),
			rec("a ", 1, "asp1"), rec("a.x", 1, "ax1"), rec("a", 2, "a2"), rec("a", 1, "a1"),
			rec("émoji-ключ", 3, "u3"),
		}
		in[3].Algorithm = crypto.AlgorithmAESSIV
		for _, r := range in {
			if err := s.Create(ctx, r); err != nil {
				t.Fatalf("Create %q v%d: %v", r.Name, r.Version, err)
			}
		}
		want := make([]keystore.Record, len(in))
		for i, r := range in {
			want[i] = normalized(r)
		}
		slices.SortFunc(want, func(a, b keystore.Record) int {
			if c := strings.Compare(a.Name, b.Name); c != 0 {
				return c
			}
			return int(a.Version) - int(b.Version)
		})
		list, err := s.List(ctx)
		if err != nil {
			t.Fatal(err)
		}
		checkRecords(t, "List", list, want)

		got, err := s.Get(ctx, "a")
		if err != nil {
			t.Fatal(err)
		}
		checkRecords(t, `Get("a")`, got, []keystore.Record{normalized(rec("a", 1, "a1")), normalized(rec("a", 2, "a2")), normalized(rec("a", 10, "a10"))})

		// A second handle on the same data sees the same thing.
		s2 := openCleanup(t, open)
		list2, err := s2.List(ctx)
		if err != nil {
			t.Fatal(err)
		}
		checkRecords(t, "List on reopened store", list2, want)
	})

	t.Run("create existing", func(t *testing.T) {
		s := openCleanup(t, newBacking(t))
		first := rec("k", 1, "first")
		if err := s.Create(ctx, first); err != nil {
			t.Fatal(err)
		}
		second := rec("k", 1, "second")
		second.MasterKeyID = "other"
		second.Algorithm = crypto.AlgorithmAESSIV
		err := s.Create(ctx, second)
		if !errors.Is(err, keystore.ErrExists) {
			t.Fatalf("second Create = %v, want ErrExists", err)
		}
		if !strings.Contains(err.Error(), `"k"`) {
			t.Errorf("error %q does not name the key", err)
		}
		got, err := s.Get(ctx, "k")
		if err != nil {
			t.Fatal(err)
		}
		checkRecords(t, "Get after failed Create", got, []keystore.Record{normalized(first)})
		// Another version of the same name is not a conflict.
		if err := s.Create(ctx, rec("k", 2, "v2")); err != nil {
			t.Fatalf("Create v2: %v", err)
		}
	})

	t.Run("replace", func(t *testing.T) {
		s := openCleanup(t, newBacking(t))
		for _, r := range []keystore.Record{rec("k", 1, "k1"), rec("k", 2, "k2"), rec("j", 1, "j1")} {
			if err := s.Create(ctx, r); err != nil {
				t.Fatal(err)
			}
		}
		if err := s.Replace(ctx, "k", 1, "aws:arn:new", []byte("rewrapped")); err != nil {
			t.Fatal(err)
		}
		want1 := normalized(rec("k", 1, "rewrapped"))
		want1.MasterKeyID = "aws:arn:new"
		list, err := s.List(ctx)
		if err != nil {
			t.Fatal(err)
		}
		checkRecords(t, "List after Replace", list, []keystore.Record{normalized(rec("j", 1, "j1")), want1, normalized(rec("k", 2, "k2"))})

		// Replacing with the same values is not an error.
		if err := s.Replace(ctx, "k", 1, "aws:arn:new", []byte("rewrapped")); err != nil {
			t.Errorf("no-op Replace: %v", err)
		}
		for _, miss := range []struct {
			name    string
			version uint32
		}{{"k", 3}, {"nope", 1}} {
			if err := s.Replace(ctx, miss.name, miss.version, "x", []byte("y")); !errors.Is(err, keystore.ErrNotFound) {
				t.Errorf("Replace %q v%d = %v, want ErrNotFound", miss.name, miss.version, err)
			}
		}
		if err := s.Replace(ctx, "k", 2, "", []byte("y")); err == nil {
			t.Error("Replace with empty master key id succeeded")
		}
		if err := s.Replace(ctx, "k", 2, "x", nil); err == nil {
			t.Error("Replace with empty wrapped succeeded")
		}
		list, err = s.List(ctx)
		if err != nil {
			t.Fatal(err)
		}
		checkRecords(t, "List after failed Replaces", list, []keystore.Record{normalized(rec("j", 1, "j1")), want1, normalized(rec("k", 2, "k2"))})
	})

	t.Run("invalid records", func(t *testing.T) {
		s := openCleanup(t, newBacking(t))
		bad := map[string]func(r *keystore.Record){
			"empty name":       func(r *keystore.Record) { r.Name = "" },
			"control in name":  func(r *keystore.Record) { r.Name = "a\x00b" },
			"long name":        func(r *keystore.Record) { r.Name = strings.Repeat("n", keystore.MaxNameLen+1) },
			"invalid utf-8":    func(r *keystore.Record) { r.Name = "a\xffb" },
			"version 0":        func(r *keystore.Record) { r.Version = 0 },
			"no algorithm":     func(r *keystore.Record) { r.Algorithm = crypto.AlgorithmUnknown },
			"bad algorithm":    func(r *keystore.Record) { r.Algorithm = 99 },
			"no created-at":    func(r *keystore.Record) { r.CreatedAt = time.Time{} },
			"no master key id": func(r *keystore.Record) { r.MasterKeyID = "" },
			"no wrapped":       func(r *keystore.Record) { r.Wrapped = nil },
			"huge wrapped":     func(r *keystore.Record) { r.Wrapped = make([]byte, keystore.MaxWrappedLen+1) },
		}
		for name, mutate := range bad {
			t.Run(name, func(t *testing.T) {
				r := rec("k", 1, "w")
				mutate(&r)
				if err := s.Create(ctx, r); err == nil {
					t.Error("Create accepted the record")
				}
			})
		}
		list, err := s.List(ctx)
		if err != nil {
			t.Fatal(err)
		}
		checkRecords(t, "List after rejected creates", list, []keystore.Record{})
		// The limits themselves are accepted.
		r := rec(strings.Repeat("n", keystore.MaxNameLen), 4294967295, "")
		r.Wrapped = bytes.Repeat([]byte{0xff}, keystore.MaxWrappedLen)
		r.MasterKeyID = strings.Repeat("m", keystore.MaxMasterKeyIDLen)
		if err := s.Create(ctx, r); err != nil {
			t.Fatalf("Create at the limits: %v", err)
		}
		got, err := s.Get(ctx, r.Name)
		if err != nil {
			t.Fatal(err)
		}
		checkRecords(t, "Get at the limits", got, []keystore.Record{normalized(r)})
	})

	t.Run("caller buffers not retained", func(t *testing.T) {
		s := openCleanup(t, newBacking(t))
		r := rec("k", 1, "original")
		if err := s.Create(ctx, r); err != nil {
			t.Fatal(err)
		}
		copy(r.Wrapped, "XXXXXXXX")
		got, err := s.Get(ctx, "k")
		if err != nil {
			t.Fatal(err)
		}
		checkRecords(t, "Get after caller scribbled on its buffer", got, []keystore.Record{normalized(rec("k", 1, "original"))})
	})

	t.Run("concurrent create", func(t *testing.T) {
		open := newBacking(t)
		const n = 8
		stores := make([]keystore.Store, n)
		for i := range stores {
			stores[i] = openCleanup(t, open) // separate handles, as separate instances would have
		}
		errs := make([]error, n)
		start := make(chan struct{})
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() {
				<-start
				errs[i] = stores[i].Create(ctx, rec("race", 1, fmt.Sprintf("w%d", i)))
			})
		}
		close(start)
		wg.Wait()
		winner := -1
		for i, err := range errs {
			switch {
			case err == nil:
				if winner >= 0 {
					t.Errorf("goroutines %d and %d both created the key", winner, i)
				}
				winner = i
			case !errors.Is(err, keystore.ErrExists):
				t.Errorf("goroutine %d: %v, want nil or ErrExists", i, err)
			}
		}
		if winner < 0 {
			t.Fatal("no goroutine created the key")
		}
		list, err := stores[0].List(ctx)
		if err != nil {
			t.Fatal(err)
		}
		checkRecords(t, "List after race", list, []keystore.Record{normalized(rec("race", 1, fmt.Sprintf("w%d", winner)))})
	})

	t.Run("concurrent distinct creates", func(t *testing.T) {
		// No lost updates: every goroutine's own record survives.
		open := newBacking(t)
		const n = 8
		var wg sync.WaitGroup
		errs := make([]error, n)
		for i := range n {
			s := openCleanup(t, open)
			wg.Go(func() { errs[i] = s.Create(ctx, rec(fmt.Sprintf("k%d", i), 1, "w")) })
		}
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Errorf("goroutine %d: %v", i, err)
			}
		}
		list, err := openCleanup(t, open).List(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(list) != n {
			t.Errorf("List has %d records, want %d", len(list), n)
		}
	})

}
