package rules_test

import (
	"context"
	"crypto/rand"
	"fmt"
	"testing"

	"github.com/dbproxy/dbproxy/internal/testkeys"
	"github.com/dbproxy/dbproxy/rules"
	"github.com/dbproxy/dbproxy/value"
)

// BenchmarkEncryptorManager measures the Encryptor over a real key manager
// with cached keys (16-byte values), serially and in parallel.
func BenchmarkEncryptorManager(b *testing.B) {
	ctx := context.Background()
	specs := []rules.Spec{
		{Table: "users", Column: "email", Key: "users_email", Mode: rules.ModeDeterministic, Type: value.TypeBytes},
		{Table: "users", Column: "ssn", Key: "ssn", Mode: rules.ModeRandomized, Type: value.TypeBytes},
	}
	s := mustNew(b, rules.DialectPostgres, specs)
	m := testkeys.Manager(b, testkeys.ForRules(specs)...)
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
	ops := []struct {
		name string
		f    func(buf []byte, cts [][]byte) error
	}{
		{"store/deterministic", func(buf []byte, _ [][]byte) error { _, err := e.AppendStore(ctx, buf, det, pt); return err }},
		{"store/randomized", func(buf []byte, _ [][]byte) error { _, err := e.AppendStore(ctx, buf, rnd, pt); return err }},
		{"match", func([]byte, [][]byte) error { _, err := e.EncryptForMatch(ctx, det, pt); return err }},
		{"decrypt/deterministic", func(buf []byte, _ [][]byte) error { _, err := e.AppendDecrypt(ctx, buf, det, detCT); return err }},
		{"decrypt/randomized", func(buf []byte, _ [][]byte) error { _, err := e.AppendDecrypt(ctx, buf, rnd, rndCT); return err }},
	}
	for _, o := range ops {
		b.Run(o.name, func(b *testing.B) { benchSerialParallel(b, o.f) })
	}
}

// benchSerialParallel runs f as the sub-benchmarks "serial" and "parallel",
// each goroutine with its own empty output buffers.
func benchSerialParallel(b *testing.B, f func(buf []byte, cts [][]byte) error) {
	b.Run("serial", func(b *testing.B) {
		b.ReportAllocs()
		buf, cts := make([]byte, 0, 256), make([][]byte, 0, 4)
		for b.Loop() {
			if err := f(buf, cts); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			buf, cts := make([]byte, 0, 256), make([][]byte, 0, 4)
			for pb.Next() {
				if err := f(buf, cts); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
}

// BenchmarkAppendMatch measures AppendMatch reusing its buffers, with one
// and two live key versions.
func BenchmarkAppendMatch(b *testing.B) {
	ctx := context.Background()
	specs := []rules.Spec{
		{Table: "users", Column: "email", Key: "users_email", Mode: rules.ModeDeterministic, Type: value.TypeBytes},
	}
	s := mustNew(b, rules.DialectPostgres, specs)
	m := testkeys.Manager(b, testkeys.ForRules(specs)...)
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
			benchSerialParallel(b, func(buf []byte, cts [][]byte) error {
				_, _, err := e.AppendMatch(ctx, buf[:0], cts[:0], det, pt)
				return err
			})
		})
	}
}
