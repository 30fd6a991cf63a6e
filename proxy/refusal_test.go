package proxy_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"

	"github.com/dbproxy/dbproxy/proxy"
)

func TestFingerprintIgnoresValues(t *testing.T) {
	same := []string{
		"SELECT * FROM users WHERE email = 'alice@example.com' AND id = 42",
		"select *  from users\n where email = 'bob@example.org' -- note\n and id = 7",
		"SELECT * FROM users WHERE email = $$x'y$$ AND id = 1e3 /* c /* nested */ */",
		"SELECT * FROM users WHERE email = 'it''s' AND id = 0x1F",
	}
	want := proxy.Fingerprint([]byte(same[0]))
	if len(want) != 16 {
		t.Fatalf("fingerprint %q: want 16 hex digits", want)
	}
	for _, s := range same[1:] {
		if got := proxy.Fingerprint([]byte(s)); got != want {
			t.Errorf("Fingerprint(%q) = %s, want %s (same shape)", s, got, want)
		}
	}
	for _, s := range []string{
		"SELECT * FROM users WHERE email = $1 AND id = $2",
		"SELECT * FROM accounts WHERE email = 'alice@example.com' AND id = 42",
		"DELETE FROM users WHERE email = 'alice@example.com' AND id = 42",
	} {
		if proxy.Fingerprint([]byte(s)) == want {
			t.Errorf("Fingerprint(%q) = that of another statement shape", s)
		}
	}
}

func TestLogRefusalJSON(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&buf, nil)).With(slog.String("listener", "pg"))
	var obs countingObserver
	stmt := "INSERT INTO users (email) VALUES ('secret-value@example.com')"
	proxy.LogRefusal(context.Background(), log, &obs, proxy.Refusal{
		Statement: []byte(stmt), SQLState: "0A000",
		Message: "dbproxy: statement refused: column public.users.email: not supported",
		Column:  proxy.RefusedColumn("dbproxy: statement refused: column public.users.email: not supported"),
	})
	if obs.refused["feature_not_supported"] != 1 || len(obs.refused) != 1 {
		t.Errorf("refusals counted: %v", obs.refused)
	}
	if strings.Contains(buf.String(), "secret-value") {
		t.Fatalf("refusal log holds a value: %s", buf.String())
	}
	var line map[string]any
	if err := json.Unmarshal(buf.Bytes(), &line); err != nil {
		t.Fatalf("not one JSON line: %q", buf.String())
	}
	for k, v := range map[string]string{"msg": "statement refused", "listener": "pg", "command": "INSERT",
		"column": "public.users.email", "reason": "feature_not_supported", "sqlstate": "0A000",
		"fingerprint": proxy.Fingerprint([]byte(stmt))} {
		if line[k] != v {
			t.Errorf("%s = %v, want %q", k, line[k], v)
		}
	}
}

func TestRefusalReasonBounded(t *testing.T) {
	if got := proxy.RefusalReason("12345"); got != "other" {
		t.Errorf("unknown SQLSTATE: reason %q, want other", got)
	}
	if got := proxy.RefusedColumn("dbproxy: statement refused: a statement changing search_path"); got != "" {
		t.Errorf("column of a refusal naming none: %q", got)
	}
}

type countingObserver struct {
	refused map[string]int
}

func (o *countingObserver) Handshake()       {}
func (o *countingObserver) AuthFailed()      {}
func (o *countingObserver) FromClient(int)   {}
func (o *countingObserver) FromUpstream(int) {}
func (o *countingObserver) Forwarded()       {}
func (o *countingObserver) Rewritten()       {}
func (o *countingObserver) Planned(string)   {}
func (o *countingObserver) Refused(reason string) {
	if o.refused == nil {
		o.refused = map[string]int{}
	}
	o.refused[reason]++
}
