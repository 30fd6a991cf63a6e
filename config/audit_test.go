package config_test

import (
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const auditBaseYAML = `listeners:
  - protocol: postgres
    listen: 127.0.0.1:6432
    upstream: db:5432
keys:
  master_key:
    provider: local
    file: master.key
`

func TestAudit(t *testing.T) {
	t.Run("off when omitted", func(t *testing.T) {
		if cfg := mustParse(t, auditBaseYAML); cfg.Audit != nil {
			t.Errorf("Audit = %+v, want nil", cfg.Audit)
		}
	})
	t.Run("valid, with defaults", func(t *testing.T) {
		cfg := mustParse(t, auditBaseYAML+"audit:\n  file: audit.jsonl\n")
		a := cfg.Audit
		if a == nil || a.SummaryInterval != 60*time.Second || a.File != filepath.Join(filepath.Dir(cfg.Path), "audit.jsonl") {
			t.Fatalf("Audit = %+v", a)
		}
		if out := cfg.Redacted(); !strings.Contains(out, "audit:\n  file: "+a.File+"\n  summary_interval: 1m0s\n") {
			t.Errorf("effective config lacks the audit section:\n%s", out)
		}
	})
	tests := []struct {
		name  string
		src   string
		wants []want
	}{
		{"file missing", auditBaseYAML + "audit:\n  summary_interval: 10s\n", []want{{"10:3", "audit.file", "required"}}},
		{"directory missing", auditBaseYAML + "audit:\n  file: nope/audit.jsonl\n", []want{{"10:9", "audit.file", "does not exist"}}},
		{"bad interval", auditBaseYAML + "audit:\n  file: a.jsonl\n  summary_interval: 0s\n",
			[]want{{"11:21", "audit.summary_interval", "must be greater than 0"}}},
		{"not a duration", auditBaseYAML + "audit:\n  file: a.jsonl\n  summary_interval: 60\n",
			[]want{{"11:21", "audit.summary_interval", "duration"}}},
		{"unknown key", auditBaseYAML + "audit:\n  path: a.jsonl\n", []want{
			{"10:3", "audit.path", `unknown key "path"`},
			{"10:3", "audit.file", "required"},
		}},
		{"without keys", "listeners:\n  - protocol: mysql\n    listen: 127.0.0.1:3307\n    upstream: db:3306\naudit:\n  file: a.jsonl\n",
			[]want{{"6:3", "audit", "requires a keys: section"}}},
		{"reserved key name", auditBaseYAML + "encryption:\n  - table: t\n    columns:\n      - name: c\n        type: text\n        key: _audit\n",
			[]want{{"14:14", "encryption[0].columns[0].key", "reserved for the audit log"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parse(t, tt.src)
			checkErrors(t, err, tt.wants)
		})
	}
}
