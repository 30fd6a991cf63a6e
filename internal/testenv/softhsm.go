package testenv

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// SoftHSM is a throwaway SoftHSM2 token: its own configuration file and
// token directory in t.TempDir(), one initialised token, and
// SOFTHSM2_CONF pointing at it for the rest of the test.
type SoftHSM struct {
	Module     string // the SoftHSM2 PKCS#11 library
	Conf       string // the softhsm2.conf written for this token (SOFTHSM2_CONF)
	TokenLabel string // "dbproxy"
	PIN        string // the user PIN (random)
	SOPIN      string // the security officer PIN (random)
}

// softHSMModules are where Debian's softhsm2 package installs the library.
var softHSMModules = []string{
	"/usr/lib/softhsm/libsofthsm2.so",
	"/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
	"/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
	"/usr/local/lib/softhsm/libsofthsm2.so",
}

// StartSoftHSM initialises a new SoftHSM2 token labelled "dbproxy" with
// random user and SO PINs, and sets SOFTHSM2_CONF (t.Setenv) so that the
// SoftHSM2 library of this process finds it. The library reads
// SOFTHSM2_CONF when it is initialised: a PKCS#11 module must be loaded
// after this call, and finalised before the next test's token is used.
// When SoftHSM2 is not installed the test fails, with the install hint.
func StartSoftHSM(t testing.TB) *SoftHSM {
	t.Helper()
	util, err := lookBin("softhsm2-util")
	if err != nil {
		t.Fatalf("testenv: softhsm2: %v (apt-get install softhsm2)", err)
	}
	module := ""
	for _, m := range softHSMModules {
		if st, err := os.Stat(m); err == nil && !st.IsDir() {
			module = m
			break
		}
	}
	if module == "" {
		t.Fatalf("testenv: softhsm2: %v: no libsofthsm2.so in %v (apt-get install softhsm2)", errNotInstalled, softHSMModules)
	}
	dir := t.TempDir()
	tokens := filepath.Join(dir, "tokens")
	if err := os.Mkdir(tokens, 0o700); err != nil {
		t.Fatalf("testenv: softhsm2: %v", err)
	}
	conf := filepath.Join(dir, "softhsm2.conf")
	text := fmt.Sprintf("directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n", tokens)
	if err := os.WriteFile(conf, []byte(text), 0o600); err != nil {
		t.Fatalf("testenv: softhsm2: %v", err)
	}
	t.Setenv("SOFTHSM2_CONF", conf)
	h := &SoftHSM{Module: module, Conf: conf, TokenLabel: "dbproxy", PIN: randomPIN(), SOPIN: randomPIN()}
	cmd := exec.Command(util, "--init-token", "--free", "--label", h.TokenLabel, "--pin", h.PIN, "--so-pin", h.SOPIN)
	cmd.Env = append(os.Environ(), "SOFTHSM2_CONF="+conf)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("testenv: softhsm2-util --init-token: %v\n%s", err, out)
	}
	return h
}

func randomPIN() string {
	b := make([]byte, 8)
	rand.Read(b)
	return hex.EncodeToString(b)
}
