package main

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/dbproxy/dbproxy/internal/testenv"
)

// TestKeysWithAWSKMS runs the keys CLI and the key cache against a real AWS
// KMS API server (local-kms, isolated by internal/testenv).
func TestKeysWithAWSKMS(t *testing.T) {
	k := testenv.StartLocalKMS(t)
	k.Setenv(t)

	cfgPath := writeConfig(t, `
keys:
  master_key:
`+awsKMSMasterKey(k)+`  store:
    type: file
    path: keys.json
  cache:
    ttl: 2s
encryption:
  - {table: users, columns: [{name: email, mode: deterministic, type: text}]}
`)

	code, out, errs := runCLI(t, nil, "keys", "init", "--config", cfgPath)
	if code != 0 || !strings.Contains(out, "public.users.email") {
		t.Fatalf("init: exit %d\n%s%s", code, out, errs)
	}
	code, out, errs = runCLI(t, nil, "keys", "list", "--config", cfgPath)
	if code != 0 || !strings.Contains(out, k.KeyARN) {
		t.Fatalf("list should name the KMS key ARN %s: exit %d\n%s%s", k.KeyARN, code, out, errs)
	}
	if code, out, errs = runCLI(t, nil, "keys", "rewrap", "--config", cfgPath); code != 0 {
		t.Fatalf("rewrap: exit %d\n%s%s", code, out, errs)
	}

	ctx := context.Background()
	cfg := loadConfig(t, cfgPath)
	mgr, closeFn := openTestManager(t, cfg)
	defer closeFn()

	const name = "public.users.email"
	ct := encryptText(t, mgr, name, "bob@example.com")
	unwrappedAt := time.Now()

	// KMS gone: the cached key keeps serving until its TTL...
	k.Stop()
	if _, _, err := mgr.Decrypt(ctx, name, nil, ct); err != nil && time.Since(unwrappedAt) < cfg.Keys.Cache.TTL {
		t.Fatalf("cached key stopped working before its TTL with KMS down: %v", err)
	}
	// ...and once the TTL has passed, operations fail with an error naming
	// the key; never a fallback.
	deadline := time.Now().Add(30 * time.Second)
	var lastErr error
	for time.Now().Before(deadline) {
		if _, _, lastErr = mgr.Decrypt(ctx, name, nil, ct); lastErr != nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if lastErr == nil {
		t.Fatal("decrypt kept working with KMS down long after the cache TTL")
	}
	if elapsed := time.Since(unwrappedAt); elapsed < cfg.Keys.Cache.TTL {
		t.Fatalf("decrypt failed %v after unwrap, before the %v TTL: %v", elapsed, cfg.Keys.Cache.TTL, lastErr)
	}
	if msg := lastErr.Error(); !strings.Contains(msg, name) || !strings.Contains(msg, "unreachable") {
		t.Fatalf("error should name the key and say the KMS is unreachable: %v", lastErr)
	}
	if _, err := mgr.Primary(ctx, name); err == nil {
		t.Fatal("Primary returned a key with KMS down after TTL")
	}

	// KMS back: everything works again, same data.
	k.Start()
	pt, _, err := mgr.Decrypt(ctx, name, nil, ct)
	if err != nil || string(pt) != "bob@example.com" {
		t.Fatalf("after KMS restart: %q, %v", pt, err)
	}
}

// awsKMSMasterKey is the YAML of a master_key section (indented below
// keys:) whose key is k's alias.
func awsKMSMasterKey(k *testenv.LocalKMS) string {
	return fmt.Sprintf(`    provider: aws-kms
    key_id: %s
    region: %s
    endpoint: %s
`, k.Alias, k.Region, k.Endpoint)
}
