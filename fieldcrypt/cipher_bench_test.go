package fieldcrypt_test

import (
	"context"
	"testing"

	"github.com/dbproxy/dbproxy/fieldcrypt"
	"github.com/dbproxy/dbproxy/rules"
)

// cipherLike is what *rules.Encryptor and *fieldcrypt.Cipher both do.
type cipherLike interface {
	AppendStore(ctx context.Context, dst []byte, col *rules.ColumnRule, canon []byte) ([]byte, error)
	AppendMatch(ctx context.Context, buf []byte, cts [][]byte, col *rules.ColumnRule, canon []byte) ([]byte, [][]byte, error)
	AppendDecrypt(ctx context.Context, dst []byte, col *rules.ColumnRule, ct []byte) ([]byte, error)
}

// BenchmarkCipher compares the Encryptor with a Cipher without decorators
// (which must cost nothing more), one with a Guard and a Monitor, and one
// with a Policy.
func BenchmarkCipher(b *testing.B) {
	f := newFixture(b)
	ctx := context.Background()
	canon := []byte("alice@example.com")
	ct, err := f.enc.EncryptForStore(ctx, f.rnd, canon)
	if err != nil {
		b.Fatal(err)
	}
	allow := fieldcrypt.GuardFunc(func(context.Context, fieldcrypt.Access) error { return nil })
	count := fieldcrypt.MonitorFunc(func(context.Context, fieldcrypt.Use) {})
	plain := fieldcrypt.New(f.enc, f.who, fieldcrypt.Options{})
	decorated := fieldcrypt.New(f.enc, f.who, fieldcrypt.Options{Guard: allow, Monitor: count})
	all := fieldcrypt.Decision{Action: fieldcrypt.ActionDecrypt}
	policy := fieldcrypt.New(f.enc, f.who, fieldcrypt.Options{Policy: &fixedPolicy{byColumn: map[string]fieldcrypt.Decision{"ssn": all, "email": all}}})
	for _, bc := range []struct {
		name string
		c    cipherLike
	}{{"Encryptor", f.enc}, {"Cipher", plain}, {"CipherDecorated", decorated}, {"CipherPolicy", policy}} {
		dst, buf, cts := make([]byte, 0, 256), make([]byte, 0, 256), make([][]byte, 0, 4)
		c := bc.c
		benchOp(b, bc.name+"/AppendStore", func() error {
			_, err := c.AppendStore(ctx, dst, f.rnd, canon)
			return err
		})
		benchOp(b, bc.name+"/AppendMatch", func() error {
			_, _, err := c.AppendMatch(ctx, buf, cts, f.det, canon)
			return err
		})
		benchOp(b, bc.name+"/AppendDecrypt", func() error {
			_, err := c.AppendDecrypt(ctx, dst, f.rnd, ct)
			return err
		})
	}
}

// benchOp runs op as the sub-benchmark name, reporting its allocations.
func benchOp(b *testing.B, name string, op func() error) {
	b.Run(name, func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if err := op(); err != nil {
				b.Fatal(err)
			}
		}
	})
}
