package rules_test

import (
	"context"
	"crypto/rand"
	"fmt"
	"testing"

	"github.com/dbproxy/dbproxy/crypto"
	"github.com/dbproxy/dbproxy/crypto/keys"
	"github.com/dbproxy/dbproxy/internal/testkeys"
	"github.com/dbproxy/dbproxy/rules"
	"github.com/dbproxy/dbproxy/value"
)

// BenchmarkEncryptorManager measures the Encryptor over a real key manager
// with cached keys (16-byte values), serially and in parallel.
func BenchmarkEncryptorManager(b *testing.B) {
	ctx := context.Background()
	s := mustNew(b, rules.DialectPostgres, []rules.Spec{
		{Table: "users", Column: "email", Key: "users_email", Mode: rules.ModeDeterministic, Type: value.TypeBytes},
		{Table: "users", Column: "ssn", Key: "ssn", Mode: rules.ModeRandomized, Type: value.TypeBytes},
	})
	m := testkeys.Manager(b, keys.Spec{Name: "users_email", Algorithm: crypto.AlgorithmAESSIV}, keys.Spec{Name: "ssn", Algorithm: rules.ModeRandomized.Algorithm()})
	e := rules.NewEncryptor(m)
	det, rnd := s.Column("", "public", "users", "email"), s.Column("", "public", "users", "ssn")
	pt := make([]byte, 16)
	rand.Read(pt)
	detCT, err := e.EncryptForStore(ctx, det, pt)
	if err != nil {
		b.Fatal(err)
	}
	rndCT, err := e.EncryptForStore(ctx, rnd, pt)
	if err != nil {
		b.Fatal(err)
	}
	type op func(buf []byte, cts [][]byte) error
	ops := []struct {
		name string
		f    op
	}{
		{"store/deterministic", func(buf []byte, _ [][]byte) error { _, err := e.AppendStore(ctx, buf, det, pt); return err }},
		{"store/randomized", func(buf []byte, _ [][]byte) error { _, err := e.AppendStore(ctx, buf, rnd, pt); return err }},
		{"match", func([]byte, [][]byte) error { _, err := e.EncryptForMatch(ctx, det, pt); return err }},
		{"decrypt/deterministic", func(buf []byte, _ [][]byte) error { _, err := e.AppendDecrypt(ctx, buf, det, detCT); return err }},
		{"decrypt/randomized", func(buf []byte, _ [][]byte) error { _, err := e.AppendDecrypt(ctx, buf, rnd, rndCT); return err }},
	}
	for _, o := range ops {
		b.Run(o.name, func(b *testing.B) {
			b.Run("serial", func(b *testing.B) {
				b.ReportAllocs()
				buf, cts := make([]byte, 0, 256), make([][]byte, 0, 4)
				for b.Loop() {
					if err := o.f(buf, cts); err != nil {
						b.Fatal(err)
					}
				}
			})
			b.Run("parallel", func(b *testing.B) {
				b.ReportAllocs()
				b.RunParallel(func(pb *testing.PB) {
					buf, cts := make([]byte, 0, 256), make([][]byte, 0, 4)
					for pb.Next() {
						if err := o.f(buf, cts); err != nil {
							b.Error(err)
							return
						}
					}
				})
			})
		})
	}
}

// BenchmarkAppendMatch measures AppendMatch reusing its buffers, with one
// and two live key versions.
func BenchmarkAppendMatch(b *testing.B) {
	ctx := context.Background()
	s := mustNew(b, rules.DialectPostgres, []rules.Spec{
		{Table: "users", Column: "email", Key: "users_email", Mode: rules.ModeDeterministic, Type: value.TypeBytes},
	})
	m := testkeys.Manager(b, keys.Spec{Name: "users_email", Algorithm: crypto.AlgorithmAESSIV})
	e := rules.NewEncryptor(m)
	det := s.Column("", "public", "users", "email")
	pt := make([]byte, 16)
	for _, versions := range []int{1, 2} {
		if versions == 2 {
			if _, err := m.Rotate(ctx, "users_email"); err != nil {
				b.Fatal(err)
			}
		}
		b.Run(fmt.Sprintf("%dversions", versions), func(b *testing.B) {
			b.Run("serial", func(b *testing.B) {
				b.ReportAllocs()
				buf, cts := make([]byte, 0, 256), make([][]byte, 0, 4)
				for b.Loop() {
					if _, _, err := e.AppendMatch(ctx, buf[:0], cts[:0], det, pt); err != nil {
						b.Fatal(err)
					}
				}
			})
			b.Run("parallel", func(b *testing.B) {
				b.ReportAllocs()
				b.RunParallel(func(pb *testing.PB) {
					buf, cts := make([]byte, 0, 256), make([][]byte, 0, 4)
					for pb.Next() {
						if _, _, err := e.AppendMatch(ctx, buf[:0], cts[:0], det, pt); err != nil {
							b.Error(err)
							return
						}
					}
				})
			})
		})
	}
}
