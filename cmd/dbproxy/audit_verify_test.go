package main

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dbproxy/dbproxy/config"
)

// TestAuditVerifyCLI: the keys commands append to the audit file, across
// a rotation; audit verify exits 0 with a summary, 1 naming the first bad
// line (here: a deleted one, and files given out of order), 2 on usage.
func TestAuditVerifyCLI(t *testing.T) {
	cfgPath := writeConfig(t, localKeys+"audit:\n  file: audit.jsonl\n")
	dir := filepath.Dir(cfgPath)
	file, rotated := filepath.Join(dir, "audit.jsonl"), filepath.Join(dir, "audit.jsonl.1")
	keysInit(t, cfgPath)
	keysInit(t, cfgPath) // nothing to do, still recorded
	if err := os.Rename(file, rotated); err != nil {
		t.Fatal(err)
	}
	if code, out, errs := runCLI(t, nil, "keys", "rotate", "_audit", "--config", cfgPath); code != 0 {
		t.Fatalf("keys rotate: exit %d\n%s%s", code, out, errs)
	}
	if code, out, errs := runCLI(t, nil, "keys", "rewrap", "--config", cfgPath); code != 0 {
		t.Fatalf("keys rewrap: exit %d\n%s%s", code, out, errs)
	}
	verify := func(files ...string) (int, string, string) {
		return runCLI(t, nil, append([]string{"audit", "verify", "--config", cfgPath}, files...)...)
	}
	code, out, errs := verify(rotated, file)
	if code != 0 || !strings.HasPrefix(out, "OK: ") || !strings.Contains(out, "in 2 file(s)") {
		t.Fatalf("audit verify: exit %d\n%s%s", code, out, errs)
	}
	b, _ := os.ReadFile(file)
	for _, want := range []string{`"reason":"rotated"`, `"command":"rotate","key":"_audit","version":2`, `"command":"rewrap"`, `"kv":2`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("audit file lacks %s:\n%s", want, b)
		}
	}
	if code, _, errs := verify(file, rotated); code != 1 || !strings.Contains(errs, rotated+":1: ") {
		t.Errorf("files out of order: exit %d\n%s", code, errs)
	}
	lines := strings.SplitAfter(string(b), "\n")
	if err := os.WriteFile(file, []byte(strings.Join(append(lines[:1], lines[2:]...), "")), 0o600); err != nil {
		t.Fatal(err)
	}
	if code, _, errs := verify(rotated, file); code != 1 || !strings.Contains(errs, file+":2: sequence gap") {
		t.Errorf("a deleted line: exit %d\n%s", code, errs)
	}
	for _, args := range [][]string{{"audit"}, {"audit", "verify", "--config", cfgPath}, {"audit", "check", file}, {"audit", "verify", "--bogus", file}} {
		if code, _, errs := runCLI(t, nil, args...); code != 2 {
			t.Errorf("%q: exit %d, want 2\n%s", args, code, errs)
		}
	}
}

// TestAuditNeedsItsKey: with audit: set but no _audit key in the
// keystore, serve does not start and keys rotate changes nothing, both
// saying that keys init creates it.
func TestAuditNeedsItsKey(t *testing.T) {
	cfgPath := writeConfig(t, listenerYAML("postgres", freeAddr(t), "127.0.0.1:1")+localConfig)
	keysInit(t, cfgPath)
	b, _ := os.ReadFile(cfgPath)
	if err := os.WriteFile(cfgPath, append(b, "audit:\n  file: audit.jsonl\n"...), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"serve"}, {"keys", "rotate", "public.users.ssn"}} {
		code, out, errs := runCLI(t, nil, append(args, "--config", cfgPath)...)
		if code != 1 || !strings.Contains(errs, "_audit is not in the keystore (dbproxy keys init creates it)") {
			t.Errorf("%q without the audit key: exit %d\n%s%s", args, code, out, errs)
		}
	}
	if code, out, errs := runCLI(t, nil, "keys", "list", "--config", cfgPath); code != 0 || strings.Count(out, "public.users.ssn") != 1 {
		t.Errorf("keys list: exit %d (the refused rotation must not have run)\n%s%s", code, out, errs)
	}
	keysInit(t, cfgPath)
	if code, out, errs := runCLI(t, nil, "audit", "verify", "--config", cfgPath, filepath.Join(filepath.Dir(cfgPath), "audit.jsonl")); code != 0 {
		t.Errorf("audit verify after keys init: exit %d\n%s%s", code, out, errs)
	}
}

func TestWarnAuditChanged(t *testing.T) {
	a := &config.Audit{File: "/a", SummaryInterval: time.Minute}
	b := *a
	b.SummaryInterval = time.Second
	for _, tc := range []struct {
		cur, next *config.Audit
		warn      bool
	}{{nil, nil, false}, {a, &config.Audit{File: "/a", SummaryInterval: time.Minute}, false}, {a, &b, true}, {nil, a, true}, {a, nil, true}} {
		var buf bytes.Buffer
		warnAuditChanged(slog.New(slog.NewTextHandler(&buf, nil)), &config.Config{Audit: tc.cur}, &config.Config{Audit: tc.next})
		if got := strings.Contains(buf.String(), "audit section changes need a restart"); got != tc.warn {
			t.Errorf("%+v -> %+v: warned %v, want %v", tc.cur, tc.next, got, tc.warn)
		}
	}
}
