package main

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dbproxy/dbproxy/internal/testenv"
)

const pkcs11KeyID = "pkcs11:dbproxy/dbproxy-master"

// pkcs11MasterKey is the YAML of a pkcs11 master key in h (indented by
// indent), with pin (a "pin_env: X" or "pin_file: Y" line).
func pkcs11MasterKey(h *testenv.SoftHSM, indent, pin string) string {
	return fmt.Sprintf("%[1]sprovider: pkcs11\n%[1]smodule: %[2]s\n%[1]stoken_label: %[3]s\n%[1]skey_label: dbproxy-master\n%[1]s%[4]s\n",
		indent, h.Module, h.TokenLabel, pin)
}

// usersRules are the encryption rules of localConfig.
var usersRules = localConfig[len(localKeys):]

// TestServeWithPKCS11: keys init creates the HSM key and the data keys,
// and serve encrypts through a PostgreSQL listener with it.
func TestServeWithPKCS11(t *testing.T) {
	h := testenv.StartSoftHSM(t)
	pg, ctx, direct := startPostgresWith(t, usersTablePG)
	addr := freeAddr(t)
	cfgPath := writeConfig(t, listenerYAML("postgres", addr, pg.Addr())+"keys:\n  master_key:\n"+
		pkcs11MasterKey(h, "    ", "pin_file: hsm.pin")+"  store: {type: file, path: keys.json}\n"+usersRules)
	if err := os.WriteFile(filepath.Join(filepath.Dir(cfgPath), "hsm.pin"), []byte(h.PIN+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PGPASSWORD", pg.Password)
	serveInBackground(t, cfgPath, func(string) string { return "" })

	c := connectRetry(ctx, t, pgURL(pg, addr))
	if _, err := c.Exec(ctx, `INSERT INTO users (email, ssn, salary) VALUES ($1, $2, $3)`, "hsm@example.com", "987-65-4321", int64(7)); err != nil {
		t.Fatalf("insert: %v", err)
	}
	var ssn string
	if err := c.QueryRow(ctx, `SELECT ssn FROM users WHERE email = $1`, "hsm@example.com").Scan(&ssn); err != nil || ssn != "987-65-4321" {
		t.Fatalf("lookup: %q %v", ssn, err)
	}
	var email, rawSSN []byte
	if err := direct.QueryRow(ctx, `SELECT email, ssn FROM users`).Scan(&email, &rawSSN); err != nil {
		t.Fatal(err)
	}
	assertCiphertexts(t, [][]byte{email, rawSSN}, "hsm@example.com", "987-65-4321")

	code, out, errs := runCLI(t, nil, "keys", "list", "--config", cfgPath)
	if code != 0 || strings.Count(out, pkcs11KeyID) != 3 {
		t.Fatalf("keys list should show the three data keys wrapped by %s: exit %d\n%s%s", pkcs11KeyID, code, out, errs)
	}
}

// TestKeysRewrapLocalPKCS11 moves the data keys from a local master key to
// the HSM and back to another local key; the value encrypted at the start
// decrypts at each step with only the current master key configured.
func TestKeysRewrapLocalPKCS11(t *testing.T) {
	h := testenv.StartSoftHSM(t)
	dir := t.TempDir()
	environ := map[string]string{"HSM_PIN": h.PIN}
	write := func(name, body string) string {
		t.Helper()
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	keysRun := func(cfgPath string, env map[string]string, args ...string) string {
		t.Helper()
		code, out, errs := runCLI(t, env, append([]string{"keys"}, append(args, "--config", cfgPath)...)...)
		if code != 0 {
			t.Fatalf("keys %v: exit %d\n%s%s", args, code, out, errs)
		}
		return out
	}
	const store = "  store: {type: file, path: keys.json}\n"
	const name = "public.users.ssn"

	local := write("local.yaml", localConfig)
	keysRun(local, nil, "init")
	mgr, closeFn := openTestManager(t, loadConfig(t, local))
	ct := encryptText(t, mgr, name, "123-45-6789")
	closeFn()

	// The HSM key does not exist yet, and the PIN is wrong: refused,
	// naming the setting, never showing the PIN.
	toHSM := write("to-hsm.yaml", "keys:\n  master_key:\n"+pkcs11MasterKey(h, "    ", "pin_env: HSM_PIN")+
		"    previous_files: [master.key]\n"+store+usersRules)
	code, out, errs := runCLI(t, map[string]string{"HSM_PIN": "0000" + h.PIN}, "keys", "init", "--config", toHSM)
	if code == 0 || !strings.Contains(errs, "keys.master_key") || !strings.Contains(errs, "wrong PIN") || strings.Contains(out+errs, h.PIN) {
		t.Fatalf("keys init with a wrong PIN: exit %d; want an error naming keys.master_key and the wrong PIN, without it\n%s%s", code, out, errs)
	}
	if out := keysRun(toHSM, environ, "init"); !strings.Contains(out, "created master key "+pkcs11KeyID) {
		t.Fatalf("keys init should create the HSM key:\n%s", out)
	}
	if out := keysRun(toHSM, environ, "rewrap"); !strings.Contains(out, "re-wrapped 3 data key version(s) under "+pkcs11KeyID) {
		t.Fatalf("rewrap to the HSM:\n%s", out)
	}
	hsmOnly := write("hsm.yaml", "keys:\n  master_key:\n"+pkcs11MasterKey(h, "    ", "pin_env: HSM_PIN")+store+usersRules)
	mustDecrypt(t, hsmOnly, environ, name, ct, "123-45-6789")

	// Back to a new local key, with the HSM key as a previous one.
	back := write("back.yaml", "keys:\n  master_key:\n    provider: local\n    file: master2.key\n    previous:\n"+
		"      - "+strings.TrimSpace(pkcs11MasterKey(h, "        ", "pin_env: HSM_PIN"))+"\n"+store+usersRules)
	keysRun(back, environ, "init")
	out = keysRun(back, environ, "rewrap")
	if !strings.Contains(out, "re-wrapped 3 data key version(s) under local:") {
		t.Fatalf("rewrap back to local:\n%s", out)
	}
	if out := keysRun(back, environ, "list"); strings.Contains(out, pkcs11KeyID) {
		t.Fatalf("after rewrap no data key should be wrapped by the HSM key:\n%s", out)
	}
	mustDecrypt(t, write("local2.yaml", "keys:\n  master_key: {provider: local, file: master2.key}\n"+store+usersRules), nil, name, ct, "123-45-6789")
}

// mustDecrypt opens the key manager of the config at cfgPath with environ
// and fails unless ct decrypts to want under data key name.
func mustDecrypt(t *testing.T, cfgPath string, environ map[string]string, name string, ct []byte, want string) {
	t.Helper()
	e := env{stdout: &bytes.Buffer{}, stderr: &bytes.Buffer{}, getenv: func(k string) string { return environ[k] }}
	cfg := loadConfig(t, cfgPath)
	mgr, _, closeFn, err := openManager(context.Background(), cfg, e, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer closeFn()
	pt, _, err := mgr.Decrypt(context.Background(), name, nil, ct)
	if err != nil || string(pt) != want {
		t.Fatalf("decrypt with %s: %q, %v; want %q", filepath.Base(cfgPath), pt, err, want)
	}
}
