package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestServeRefusesMissingKeyFiles: serve does not start without its
// keystore file or master key file (exit non-zero, naming the file), with
// either master key provider, while keys init still creates them.
func TestServeRefusesMissingKeyFiles(t *testing.T) {
	listener := listenerYAML("postgres", freeAddr(t), "127.0.0.1:1")
	cfgPath := writeConfig(t, listener+localConfig)
	dir := filepath.Dir(cfgPath)
	keystore, master := filepath.Join(dir, "keys.json"), filepath.Join(dir, "master.key")

	serveFails := func(what, file string) {
		t.Helper()
		code, out, errs := runCLI(t, nil, "serve", "--config", cfgPath)
		if code == 0 || !strings.Contains(errs, file) || !strings.Contains(errs, what) {
			t.Fatalf("serve with %s missing: exit %d; want non-zero and an error naming %s %s\n%s%s", file, code, what, file, out, errs)
		}
	}
	serveFails("keystore file", keystore) // before keys init: neither exists
	keysInit(t, cfgPath)
	saved, err := os.ReadFile(keystore)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(keystore); err != nil {
		t.Fatal(err)
	}
	serveFails("keystore file", keystore)
	if err := os.WriteFile(keystore, saved, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(master, master+".bak"); err != nil {
		t.Fatal(err)
	}
	serveFails("master key file", master)
	if err := os.Rename(master+".bak", master); err != nil {
		t.Fatal(err)
	}
	if code, out, errs := runCLI(t, nil, "keys", "list", "--config", cfgPath); code != 0 {
		t.Fatalf("keys list with both files back: exit %d\n%s%s", code, out, errs)
	}

	// aws-kms: the keystore file is checked before KMS is asked anything
	// (the endpoint here answers nothing).
	awsCfg := writeConfig(t, listener+`
keys:
  master_key:
    provider: aws-kms
    key_id: alias/dbproxy
    region: us-east-1
    endpoint: http://127.0.0.1:1
  store:
    type: file
    path: keys.json
encryption:
  - table: users
    columns:
      - name: email
        type: text
`)
	code, out, errs := runCLI(t, nil, "serve", "--config", awsCfg)
	awsKeystore := filepath.Join(filepath.Dir(awsCfg), "keys.json")
	if code == 0 || !strings.Contains(errs, "keystore file") || !strings.Contains(errs, awsKeystore) {
		t.Fatalf("serve (aws-kms) without a keystore file: exit %d; want non-zero naming %s\n%s%s", code, awsKeystore, out, errs)
	}
}
