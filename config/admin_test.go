package config_test

import (
	"strings"
	"testing"
)

func TestAdmin(t *testing.T) {
	t.Run("off when omitted or null", func(t *testing.T) {
		for _, src := range []string{pgListenerYAML, pgListenerYAML + "admin:\n"} {
			if cfg := mustParse(t, src); cfg.Admin != nil {
				t.Errorf("Admin = %+v, want nil", cfg.Admin)
			}
		}
	})
	t.Run("valid", func(t *testing.T) {
		cfg := mustParse(t, pgListenerYAML+"admin:\n  listen: 127.0.0.1:9187\n")
		if cfg.Admin == nil || cfg.Admin.Listen != "127.0.0.1:9187" {
			t.Fatalf("Admin = %+v", cfg.Admin)
		}
		// Another host on the listener's port does not conflict.
		mustParse(t, pgListenerYAML+"admin:\n  listen: 127.0.0.2:6432\n")
		if out := cfg.Redacted(); !strings.Contains(out, "admin:\n  listen: 127.0.0.1:9187\n") {
			t.Errorf("effective config lacks the admin section:\n%s", out)
		}
	})
	tests := []struct {
		name  string
		src   string
		wants []want
	}{
		{"listen missing", "admin: {}\n", []want{{"1:8", "admin.listen", "required: host:port"}}},
		{"not a mapping", "admin: 127.0.0.1:9187\n", []want{{"1:8", "admin", "expected a mapping"}}},
		{"unknown key", "admin:\n  address: 127.0.0.1:9187\n", []want{
			{"2:3", "admin.address", `unknown key "address"; valid keys: listen`},
			{"2:3", "admin.listen", "required: host:port"},
		}},
		{"port not numeric", "admin:\n  listen: localhost:http\n", []want{{"2:11", "admin.listen", `invalid port "http"`}}},
		{"no port", "admin:\n  listen: 127.0.0.1\n", []want{{"2:11", "admin.listen", "must be host:port"}}},
		{"same address as a listener", pgListenerYAML[1:] + "admin:\n  listen: 127.0.0.1:6432\n",
			[]want{{"6:11", "admin.listen", "address 127.0.0.1:6432 conflicts with listeners[0].listen (same port 6432)"}}},
		{"wildcard on a listener's port", pgListenerYAML[1:] + "admin:\n  listen: :6432\n",
			[]want{{"6:11", "admin.listen", "conflicts with listeners[0].listen"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parse(t, tt.src)
			checkErrors(t, err, tt.wants)
		})
	}
}
