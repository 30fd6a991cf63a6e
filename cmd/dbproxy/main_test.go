package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/dbproxy/dbproxy/crypto"
	"github.com/dbproxy/dbproxy/crypto/keys"
	"github.com/dbproxy/dbproxy/crypto/kms"
	"github.com/dbproxy/dbproxy/internal/testenv"
	"github.com/dbproxy/dbproxy/value"
)

func TestMain(m *testing.M) { testenv.Main(m) }

func snapshot(t *testing.T, paths ...string) map[string]string {
	t.Helper()
	m := map[string]string{}
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		st, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		m[p] = fmt.Sprintf("%x|%s|%v", b, st.Mode(), st.ModTime().UnixNano())
	}
	return m
}

func TestKeysInitIsIdempotent(t *testing.T) {
	cfgPath := writeConfig(t, localConfig)
	dir := filepath.Dir(cfgPath)
	code, out, errs := runCLI(t, nil, "keys", "init", "--config", cfgPath)
	if code != 0 {
		t.Fatalf("first init: exit %d\n%s%s", code, out, errs)
	}
	for _, want := range []string{"created master key file", "public.users.email", "public.users.ssn", "public.users.salary"} {
		if !strings.Contains(out, want) {
			t.Errorf("first init output lacks %q:\n%s", want, out)
		}
	}
	files := []string{filepath.Join(dir, "master.key"), filepath.Join(dir, "keys.json")}
	for _, f := range files {
		st, err := os.Stat(f)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != 0o600 {
			t.Errorf("%s mode %v, want 0600", f, st.Mode().Perm())
		}
	}
	before := snapshot(t, files...)
	code, out, errs = runCLI(t, nil, "keys", "init", "--config", cfgPath)
	if code != 0 {
		t.Fatalf("second init: exit %d\n%s%s", code, out, errs)
	}
	if strings.Contains(out, "created") {
		t.Errorf("second init created something:\n%s", out)
	}
	after := snapshot(t, files...)
	for _, f := range files {
		if before[f] != after[f] {
			t.Errorf("second init changed %s", f)
		}
	}
}

// longSecretish matches runs that look like encoded key material.
var longSecretish = regexp.MustCompile(`[A-Za-z0-9+/=_-]{40,}`)

func TestKeysListShowsNoKeyMaterial(t *testing.T) {
	cfgPath := writeConfig(t, localConfig)
	dir := filepath.Dir(cfgPath)
	keysInit(t, cfgPath)
	master, err := os.ReadFile(filepath.Join(dir, "master.key"))
	if err != nil {
		t.Fatal(err)
	}
	store, err := os.ReadFile(filepath.Join(dir, "keys.json"))
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Keys []struct {
			Wrapped []byte `json:"wrapped"`
		} `json:"keys"`
	}
	if err := json.Unmarshal(store, &doc); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"keys", "list"}, {"keys", "list", "--json"}} {
		code, out, errs := runCLI(t, nil, append(args, "--config", cfgPath)...)
		if code != 0 {
			t.Fatalf("%v: exit %d\n%s%s", args, code, out, errs)
		}
		all := out + errs
		if !strings.Contains(all, "public.users.email") || !strings.Contains(all, "AES-256-SIV") {
			t.Errorf("%v output lacks the key list:\n%s", args, all)
		}
		if strings.Contains(all, strings.TrimSpace(string(master))) {
			t.Errorf("%v printed the master key", args)
		}
		for _, k := range doc.Keys {
			if strings.Contains(all, base64.StdEncoding.EncodeToString(k.Wrapped)) || strings.Contains(all, fmt.Sprintf("%x", k.Wrapped)) {
				t.Errorf("%v printed wrapped key bytes", args)
			}
		}
		if m := longSecretish.FindString(all); m != "" {
			t.Errorf("%v printed something that looks like key material: %q", args, m)
		}
	}
}

func TestKeysRotateKeepsOldDataReadable(t *testing.T) {
	cfgPath := writeConfig(t, localConfig)
	keysInit(t, cfgPath)
	ctx := context.Background()
	cfg := loadConfig(t, cfgPath)

	encrypt := func(name string) []byte {
		t.Helper()
		mgr, closeFn := openTestManager(t, cfg)
		defer closeFn()
		return encryptText(t, mgr, name, "alice@example.com")
	}
	const name = "public.users.email"
	old := encrypt(name)
	code, out, errs := runCLI(t, nil, "keys", "rotate", name, "--config", cfgPath)
	if code != 0 || !strings.Contains(out, "version 2 is now primary") {
		t.Fatalf("rotate: exit %d\n%s%s", code, out, errs)
	}
	fresh := encrypt(name)
	hOld, hNew := must(crypto.ParseHeader(old)), must(crypto.ParseHeader(fresh))
	if hOld.KeyVersion != 1 || hNew.KeyVersion != 2 {
		t.Fatalf("key versions: old %d new %d, want 1 and 2", hOld.KeyVersion, hNew.KeyVersion)
	}
	if bytes.Equal(old, fresh) {
		t.Fatal("deterministic ciphertext unchanged after rotation")
	}
	mgr, closeFn := openTestManager(t, cfg)
	defer closeFn()
	for _, ct := range [][]byte{old, fresh} {
		pt, typ, err := mgr.Decrypt(ctx, name, nil, ct)
		if err != nil {
			t.Fatalf("decrypt v%d: %v", must(crypto.ParseHeader(ct)).KeyVersion, err)
		}
		if string(pt) != "alice@example.com" || typ != value.TypeText {
			t.Fatalf("decrypt: got %q %v", pt, typ)
		}
	}
	live, err := mgr.Live(ctx, name)
	if err != nil || len(live) != 2 {
		t.Fatalf("Live: %d keys, %v; want 2", len(live), err)
	}
	// A new randomized key is XAES-256-GCM.
	if code, out, errs := runCLI(t, nil, "keys", "list", "--config", cfgPath); code != 0 ||
		!regexp.MustCompile(`public\.users\.ssn\s+1\s+\*\s+XAES-256-GCM`).MatchString(out) {
		t.Fatalf("keys list: exit %d\n%s%s", code, out, errs)
	}
	// Rotating a key that does not exist is an error, not a new key.
	if code, _, errs := runCLI(t, nil, "keys", "rotate", "--config", cfgPath, "no.such.key"); code != 1 || !strings.Contains(errs, "no.such.key") {
		t.Fatalf("rotate unknown key: exit %d, stderr %q", code, errs)
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

func TestCheckConfigReportsEveryMistake(t *testing.T) {
	path := filepath.Join("..", "..", "config", "testdata", "three-mistakes.yaml")
	code, out, errs := runCLI(t, nil, "check-config", "--config", path)
	if code != 1 {
		t.Fatalf("exit %d, want 1\n%s%s", code, out, errs)
	}
	for _, want := range []string{"three-mistakes.yaml:8:13: ", "three-mistakes.yaml:15:10: ", "three-mistakes.yaml:23:9: "} {
		if !strings.Contains(errs, want) {
			t.Errorf("stderr lacks %q:\n%s", want, errs)
		}
	}
	code, out, errs = runCLI(t, nil, "check-config", "-v", "--config", filepath.Join("..", "..", "config", "testdata", "example.yaml"))
	if code != 0 || !strings.Contains(out, "OK") || !strings.Contains(out, "listeners:") {
		t.Fatalf("valid config: exit %d\n%s%s", code, out, errs)
	}
}

func TestConfigFlagDefaults(t *testing.T) {
	// DBPROXY_CONFIG overrides the default ./dbproxy.yaml.
	cfgPath := writeConfig(t, localConfig)
	code, out, errs := runCLI(t, map[string]string{"DBPROXY_CONFIG": cfgPath}, "check-config")
	if code != 0 || !strings.Contains(out, cfgPath) {
		t.Fatalf("exit %d\n%s%s", code, out, errs)
	}
}

func TestUsageErrorsExit2(t *testing.T) {
	for _, args := range [][]string{
		{},
		{"frobnicate"},
		{"keys"},
		{"keys", "explode"},
		{"keys", "rotate"},
		{"check-config", "--no-such-flag"},
		{"version", "extra"},
	} {
		t.Run(strings.Join(args, "_"), func(t *testing.T) {
			if code, _, errs := runCLI(t, nil, args...); code != 2 {
				t.Fatalf("exit %d, want 2; stderr %q", code, errs)
			}
		})
	}
}

func TestVersion(t *testing.T) {
	code, out, _ := runCLI(t, nil, "version")
	if code != 0 || !strings.Contains(out, "dbproxy ") || !strings.Contains(out, "go1.") {
		t.Fatalf("exit %d: %q", code, out)
	}
}

// TestKeysRotateLegacyRandomized: a randomized key whose versions are
// legacy AES-256-GCM (made before XAES-256-GCM existed) rotates to an
// XAES-256-GCM version, and the old version stays readable.
func TestKeysRotateLegacyRandomized(t *testing.T) {
	cfgPath := writeConfig(t, localConfig)
	ctx := context.Background()
	cfg := loadConfig(t, cfgPath)
	if _, err := kms.CreateLocalKeyFile(cfg.Keys.MasterKey.File); err != nil {
		t.Fatal(err)
	}
	const name = "public.users.ssn"
	mgr, closeFn := openTestManager(t, cfg)
	defer closeFn()
	if _, err := mgr.Init(ctx, []keys.Spec{{Name: name, Algorithm: crypto.AlgorithmAESGCM}}); err != nil {
		t.Fatal(err)
	}
	old := encryptText(t, mgr, name, "123-45-6789")
	// keys init accepts the legacy key as the randomized column's key.
	if code, out, errs := runCLI(t, nil, "keys", "init", "--config", cfgPath); code != 0 || strings.Contains(out, "created data key "+name) {
		t.Fatalf("init over a legacy key: exit %d\n%s%s", code, out, errs)
	}
	code, out, errs := runCLI(t, nil, "keys", "rotate", name, "--config", cfgPath)
	if code != 0 || !strings.Contains(out, "version 2 is now primary (XAES-256-GCM)") {
		t.Fatalf("rotate: exit %d\n%s%s", code, out, errs)
	}
	code, out, errs = runCLI(t, nil, "keys", "list", "--config", cfgPath)
	if code != 0 || !regexp.MustCompile(`public\.users\.ssn\s+1\s+AES-256-GCM`).MatchString(out) ||
		!regexp.MustCompile(`public\.users\.ssn\s+2\s+\*\s+XAES-256-GCM`).MatchString(out) {
		t.Fatalf("keys list after rotation: exit %d\n%s%s", code, out, errs)
	}
	mgr2, closeFn2 := openTestManager(t, cfg)
	defer closeFn2()
	if pt, _, err := mgr2.Decrypt(ctx, name, nil, old); err != nil || string(pt) != "123-45-6789" {
		t.Fatalf("decrypt legacy value after rotation: %q, %v", pt, err)
	}
	k2, err := mgr2.Primary(ctx, name)
	if err != nil || k2.Version() != 2 || k2.Algorithm() != crypto.AlgorithmXAESGCM {
		t.Fatalf("Primary after rotation = %v, %v", k2, err)
	}
}
