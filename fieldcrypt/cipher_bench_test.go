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
// (which must cost nothing more) and one with a Guard and a Monitor.
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
	for _, bc := range []struct {
		name string
		c    cipherLike
	}{{"Encryptor", f.enc}, {"Cipher", plain}, {"CipherDecorated", decorated}} {
		b.Run(bc.name+"/AppendStore", func(b *testing.B) {
			dst := make([]byte, 0, 256)
			b.ReportAllocs()
			for b.Loop() {
				if _, err := bc.c.AppendStore(ctx, dst, f.rnd, canon); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(bc.name+"/AppendMatch", func(b *testing.B) {
			buf, cts := make([]byte, 0, 256), make([][]byte, 0, 4)
			b.ReportAllocs()
			for b.Loop() {
				if _, _, err := bc.c.AppendMatch(ctx, buf, cts, f.det, canon); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(bc.name+"/AppendDecrypt", func(b *testing.B) {
			dst := make([]byte, 0, 256)
			b.ReportAllocs()
			for b.Loop() {
				if _, err := bc.c.AppendDecrypt(ctx, dst, f.rnd, ct); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
