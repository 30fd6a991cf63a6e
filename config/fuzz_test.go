package config_test

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/dbproxy/dbproxy/config"
)

// FuzzParse checks that Parse never panics, that every failure is a
// non-empty config.Errors with real positions, and that any configuration it
// accepts prints (Redacted) to YAML that parses back to the same value.
func FuzzParse(f *testing.F) {
	for _, name := range []string{"example.yaml", "three-mistakes.yaml"} {
		data, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	// The files example.yaml names, so that TLS settings can validate.
	dir := f.TempDir()
	for _, name := range []string{"server.crt", "server.key", "ca.pem"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte("placeholder\n"), 0o600); err != nil {
			f.Fatal(err)
		}
	}
	path := filepath.Join(dir, "dbproxy.yaml")

	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := config.Parse(path, data)
		if err != nil {
			if cfg != nil {
				t.Fatal("Parse returned both a config and an error")
			}
			var errs config.Errors
			if !errors.As(err, &errs) || len(errs) == 0 {
				t.Fatalf("error is %T (%v), want a non-empty config.Errors", err, err)
			}
			for _, fe := range errs {
				if fe == nil || fe.Line < 1 || fe.Col < 1 || fe.File != path || fe.Msg == "" {
					t.Fatalf("bad FieldError %#v", fe)
				}
			}
			_ = err.Error()
			return
		}
		if cfg == nil {
			t.Fatal("Parse returned neither a config nor an error")
		}
		out := cfg.Redacted()
		back, err := config.Parse(path, []byte(out))
		if err != nil {
			t.Fatalf("effective config does not parse back: %v\n%s", err, out)
		}
		if !reflect.DeepEqual(back, cfg) {
			t.Fatalf("effective config parses back differently:\n got %#v\nwant %#v\n%s", back, cfg, out)
		}
	})
}
