package main

import (
	"encoding/json"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/dbproxy/dbproxy/crypto"
)

// TestKeysRotateWithPoll: with keys.store.poll set, keys rotate adds a
// version that becomes primary twice the poll after its creation and says
// when; keys list shows it pending until then (text and JSON), and the
// previous version primary. Without poll (the file store's default),
// rotation is primary at once (TestKeysRotateKeepsOldDataReadable).
func TestKeysRotateWithPoll(t *testing.T) {
	cfgPath := writeConfig(t, strings.Replace(localConfig, "store: {type: file, path: keys.json}",
		"store: {type: file, path: keys.json, poll: 1h}", 1))
	keysInit(t, cfgPath)
	before := time.Now()
	code, out, errs := runCLI(t, nil, "keys", "rotate", "public.users.email", "--config", cfgPath)
	m := regexp.MustCompile(`version 2 added \(AES-256-SIV\); it becomes primary at (\S+), in 2h0m0s`).FindStringSubmatch(out)
	if code != 0 || m == nil {
		t.Fatalf("rotate: exit %d\n%s%s", code, out, errs)
	}
	at, err := time.Parse(time.RFC3339, strings.TrimSuffix(m[1], ","))
	if err != nil || at.Before(before.Add(2*time.Hour-time.Second)) || at.After(time.Now().Add(2*time.Hour)) {
		t.Fatalf("primary at %q (%v), want two hours from now", m[1], err)
	}
	code, out, errs = runCLI(t, nil, "keys", "list", "--config", cfgPath)
	if code != 0 || !regexp.MustCompile(`public\.users\.email\s+1\s+\*\s+AES-256-SIV`).MatchString(out) ||
		!regexp.MustCompile(`public\.users\.email\s+2\s+pending until \S+\s+AES-256-SIV`).MatchString(out) {
		t.Fatalf("keys list: exit %d\n%s%s", code, out, errs)
	}
	code, out, errs = runCLI(t, nil, "keys", "list", "--json", "--config", cfgPath)
	var infos []struct {
		Name             string
		Version          uint32
		Primary, Pending bool
		PrimaryAt        time.Time
	}
	if code != 0 || json.Unmarshal([]byte(out), &infos) != nil {
		t.Fatalf("keys list --json: exit %d\n%s%s", code, out, errs)
	}
	for _, k := range infos {
		if k.Name == "public.users.email" && k.Version == 2 && (!k.Pending || k.Primary || !k.PrimaryAt.Truncate(time.Second).Equal(at)) {
			t.Fatalf("keys list --json, version 2: %+v; want pending until %s", k, at)
		}
		if k.Name == "public.users.email" && k.Version == 1 && (!k.Primary || k.Pending) {
			t.Fatalf("keys list --json, version 1: %+v; want primary", k)
		}
	}
	// Encryption uses version 1 meanwhile.
	mgr, closeFn := openTestManager(t, loadConfig(t, cfgPath))
	defer closeFn()
	if h := must(crypto.ParseHeader(encryptText(t, mgr, "public.users.email", "x"))); h.KeyVersion != 1 {
		t.Fatalf("encrypted under version %d while version 2 is pending, want 1", h.KeyVersion)
	}
}
