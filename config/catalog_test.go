package config

import (
	"os"
	"path/filepath"
	"testing"
)

func TestCatalogPassword(t *testing.T) {
	env := map[string]string{"CAT_PW": "s3cret"}
	getenv := func(k string) string { return env[k] }

	var none *Catalog
	if pw, err := none.Password(getenv); pw != "" || err != nil {
		t.Fatalf("nil catalog: %q, %v", pw, err)
	}
	if pw, err := (&Catalog{User: "c", PasswordEnv: "CAT_PW"}).Password(getenv); pw != "s3cret" || err != nil {
		t.Fatalf("env: %q, %v", pw, err)
	}
	if _, err := (&Catalog{User: "c", PasswordEnv: "UNSET_PW"}).Password(getenv); err == nil {
		t.Fatal("unset variable: no error")
	}
	f := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(f, []byte("from-file\r\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if pw, err := (&Catalog{User: "c", PasswordFile: f}).Password(getenv); pw != "from-file" || err != nil {
		t.Fatalf("file: %q, %v", pw, err)
	}
	if _, err := (&Catalog{User: "c", PasswordFile: f + ".missing"}).Password(getenv); err == nil {
		t.Fatal("missing file: no error")
	}
}

func TestParseByteSize(t *testing.T) {
	for in, want := range map[string]ByteSize{
		"0": 0, "1048576": 1 << 20, "16MiB": 16 << 20, "512 KiB": 512 << 10, "1GB": 1e9, "2KB": 2000, "7B": 7, "1GiB": 1 << 30,
	} {
		if got, err := ParseByteSize(in); err != nil || got != want {
			t.Errorf("ParseByteSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "-1", "1.5MiB", "MiB", "12 parsecs", "99999999999999999999", "9223372036854775807GiB"} {
		if _, err := ParseByteSize(in); err == nil {
			t.Errorf("ParseByteSize(%q): no error", in)
		}
	}
}
