package fieldcrypt_test

import (
	"bytes"
	"context"
	"errors"
	"net/netip"
	"strings"
	"sync"
	"testing"

	"github.com/dbproxy/dbproxy/fieldcrypt"
	"github.com/dbproxy/dbproxy/internal/testkeys"
	"github.com/dbproxy/dbproxy/proxy"
	"github.com/dbproxy/dbproxy/rules"
	"github.com/dbproxy/dbproxy/sqlplan"
	"github.com/dbproxy/dbproxy/value"
)

// The planners take the Cipher as they take the Encryptor.
var _ sqlplan.Encrypter = (*fieldcrypt.Cipher)(nil)

type fixture struct {
	enc      *rules.Encryptor
	det, rnd *rules.ColumnRule
	who      proxy.Principal
}

func newFixture(tb testing.TB) *fixture {
	tb.Helper()
	specs := []rules.Spec{
		{Schema: "public", Table: "users", Column: "email", Key: "email_key", Mode: rules.ModeDeterministic, Type: value.TypeText},
		{Schema: "public", Table: "users", Column: "ssn", Key: "ssn_key", Mode: rules.ModeRandomized, Type: value.TypeText},
	}
	set, err := rules.New(rules.DialectPostgres, specs)
	if err != nil {
		tb.Fatal(err)
	}
	return &fixture{
		enc: rules.NewEncryptor(testkeys.Manager(tb, testkeys.ForRules(specs)...)),
		det: set.Column("", "public", "users", "email"),
		rnd: set.Column("", "public", "users", "ssn"),
		who: proxy.Principal{Listener: "pg", SessionID: 7, User: "alice", Database: "app",
			Client: netip.MustParseAddrPort("192.0.2.1:5000")},
	}
}

// recorder is a Monitor keeping what it is told.
type recorder struct {
	mu   sync.Mutex
	uses []fieldcrypt.Use
}

func (r *recorder) KeyUsed(_ context.Context, u fieldcrypt.Use) {
	r.mu.Lock()
	r.uses = append(r.uses, u)
	r.mu.Unlock()
}

func TestMonitorSeesEachOp(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	rec := &recorder{}
	c := fieldcrypt.New(f.enc, f.who, fieldcrypt.Options{Monitor: rec})
	canon := []byte("alice@example.com")

	ct, err := c.AppendStore(ctx, nil, f.rnd, canon)
	if err != nil {
		t.Fatal(err)
	}
	cts, err := c.EncryptForMatch(ctx, f.det, canon)
	if err != nil || len(cts) != 1 {
		t.Fatalf("match: %d ciphertexts, %v", len(cts), err)
	}
	pt, err := c.Decrypt(ctx, f.rnd, ct)
	if err != nil || !bytes.Equal(pt, canon) {
		t.Fatalf("decrypt: %q, %v", pt, err)
	}
	if n, err := c.LiveVersions(ctx, f.det); n != 1 || err != nil {
		t.Fatalf("LiveVersions = %d, %v", n, err)
	}
	// A failure is reported too: a randomized column cannot be matched.
	if _, err := c.EncryptForMatch(ctx, f.rnd, canon); !errors.Is(err, rules.ErrRandomizedMatch) {
		t.Fatalf("match on a randomized column: %v", err)
	}

	want := []struct {
		op       fieldcrypt.Op
		col      *rules.ColumnRule
		versions int
		bytes    int
		failed   bool
	}{
		{fieldcrypt.OpEncrypt, f.rnd, 1, len(canon), false},
		{fieldcrypt.OpMatch, f.det, 1, len(canon), false},
		{fieldcrypt.OpDecrypt, f.rnd, 1, len(canon), false},
		{fieldcrypt.OpMatch, f.rnd, 0, len(canon), true},
	}
	if len(rec.uses) != len(want) {
		t.Fatalf("monitor told of %d uses, want %d: %+v", len(rec.uses), len(want), rec.uses)
	}
	for i, w := range want {
		u := rec.uses[i]
		if u.Principal != f.who {
			t.Errorf("use %d: principal %+v, want %+v", i, u.Principal, f.who)
		}
		if u.Op != w.op || u.Column != w.col || u.Versions != w.versions || u.Bytes != w.bytes || (u.Err != nil) != w.failed {
			t.Errorf("use %d: %v %s versions %d bytes %d err %v; want %v %s versions %d bytes %d failed %v",
				i, u.Op, u.Column, u.Versions, u.Bytes, u.Err, w.op, w.col, w.versions, w.bytes, w.failed)
		}
		if !w.failed && u.KeyVersion != 1 {
			t.Errorf("use %d: key version %d, want 1", i, u.KeyVersion)
		}
	}
}

func TestGuardRefusal(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	ct, err := f.enc.EncryptForStore(ctx, f.rnd, []byte("123-45-6789"))
	if err != nil {
		t.Fatal(err)
	}
	rec := &recorder{}
	var asked []fieldcrypt.Access
	noSSN := fieldcrypt.GuardFunc(func(_ context.Context, a fieldcrypt.Access) error {
		asked = append(asked, a)
		if a.Column.Column == "ssn" && a.Principal.User != "auditor" {
			return errors.New("user " + a.Principal.User + " may not use this column")
		}
		return nil
	})
	c := fieldcrypt.New(f.enc, f.who, fieldcrypt.Options{Guard: noSSN, Monitor: rec})

	calls := map[fieldcrypt.Op]func() error{
		fieldcrypt.OpEncrypt: func() error { _, err := c.EncryptForStore(ctx, f.rnd, []byte("x")); return err },
		fieldcrypt.OpDecrypt: func() error { _, err := c.AppendDecrypt(ctx, nil, f.rnd, ct); return err },
	}
	for op, call := range calls {
		err := call()
		var r *fieldcrypt.RefusedError
		if !errors.As(err, &r) || r.Op != op || r.Column != f.rnd {
			t.Fatalf("%v: error %v, want a refusal", op, err)
		}
		if !strings.Contains(err.Error(), "public.users.ssn") || !strings.Contains(err.Error(), "alice may not") {
			t.Errorf("%v: error %q does not name the column and the reason", op, err)
		}
	}
	if len(rec.uses) != 2 {
		t.Fatalf("monitor told of %d uses, want the 2 refusals", len(rec.uses))
	}
	for _, u := range rec.uses {
		var r *fieldcrypt.RefusedError
		if !errors.As(u.Err, &r) || u.KeyVersion != 0 || u.Versions != 0 {
			t.Errorf("refused use reported as %+v", u)
		}
	}
	// The other column is allowed; the Guard saw who asked.
	if _, _, err := c.AppendMatch(ctx, nil, nil, f.det, []byte("x")); err != nil {
		t.Fatal(err)
	}
	if last := asked[len(asked)-1]; last.Principal != f.who || last.Op != fieldcrypt.OpMatch || last.Column != f.det {
		t.Errorf("guard asked %+v", last)
	}
	// The same decorators for another user.
	auditor := f.who
	auditor.User = "auditor"
	if pt, err := c.For(auditor).Decrypt(ctx, f.rnd, ct); err != nil || string(pt) != "123-45-6789" {
		t.Fatalf("auditor: %q, %v", pt, err)
	}
	if got := rec.uses[len(rec.uses)-1].Principal.User; got != "auditor" {
		t.Errorf("monitor saw user %q after For, want auditor", got)
	}
}

// TestUndecoratedAllocs: a Cipher without Guard and Monitor allocates no
// more than the Encryptor it wraps.
func TestUndecoratedAllocs(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	c := fieldcrypt.New(f.enc, f.who, fieldcrypt.Options{})
	canon := []byte("alice@example.com")
	ct, _ := f.enc.EncryptForStore(ctx, f.rnd, canon)
	dst := make([]byte, 0, 256)
	buf := make([]byte, 0, 256)
	cts := make([][]byte, 0, 4)
	ops := []struct {
		name      string
		enc, ciph func()
	}{
		{name: "AppendStore",
			enc:  func() { _, _ = f.enc.AppendStore(ctx, dst, f.rnd, canon) },
			ciph: func() { _, _ = c.AppendStore(ctx, dst, f.rnd, canon) }},
		{name: "AppendMatch",
			enc:  func() { _, _, _ = f.enc.AppendMatch(ctx, buf, cts, f.det, canon) },
			ciph: func() { _, _, _ = c.AppendMatch(ctx, buf, cts, f.det, canon) }},
		{name: "AppendDecrypt",
			enc:  func() { _, _ = f.enc.AppendDecrypt(ctx, dst, f.rnd, ct) },
			ciph: func() { _, _ = c.AppendDecrypt(ctx, dst, f.rnd, ct) }},
	}
	for _, op := range ops {
		base := testing.AllocsPerRun(200, op.enc)
		got := testing.AllocsPerRun(200, op.ciph)
		if got > base {
			t.Errorf("%s: %.1f allocations through the Cipher, %.1f through the Encryptor", op.name, got, base)
		}
	}
}

// TestMonitorAllocs: a Monitor costs no allocation per call either (the
// Use is passed by value).
func TestMonitorAllocs(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	var n int
	m := fieldcrypt.MonitorFunc(func(context.Context, fieldcrypt.Use) { n++ })
	g := fieldcrypt.GuardFunc(func(context.Context, fieldcrypt.Access) error { return nil })
	c := fieldcrypt.New(f.enc, f.who, fieldcrypt.Options{Guard: g, Monitor: m})
	canon := []byte("alice@example.com")
	ct, _ := f.enc.EncryptForStore(ctx, f.rnd, canon)
	dst := make([]byte, 0, 256)
	base := testing.AllocsPerRun(200, func() { _, _ = f.enc.AppendDecrypt(ctx, dst, f.rnd, ct) })
	got := testing.AllocsPerRun(200, func() { _, _ = c.AppendDecrypt(ctx, dst, f.rnd, ct) })
	if got > base {
		t.Errorf("AppendDecrypt with Guard and Monitor: %.1f allocations, %.1f without", got, base)
	}
	if n == 0 {
		t.Fatal("monitor not called")
	}
}
