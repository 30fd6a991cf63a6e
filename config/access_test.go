package config_test

import (
	"strings"
	"testing"
)

const accessListener = `
listeners:
  - protocol: postgres
    listen: 127.0.0.1:6432
    upstream: 127.0.0.1:5432
`

// accessTLSListener asks clients for certificates (tls_subjects needs it).
const accessTLSListener = accessListener + `    tls:
      cert_file: server.crt
      key_file: server.key
      client_ca_file: ca.pem
`

func TestAccessParse(t *testing.T) {
	cfg := mustParse(t, accessTLSListener+`
access:
  rules:
    - name: reporting-ssn
      match: {users: [reporting], sources: [10.0.0.0/8, 192.0.2.7, "::ffff:10.0.0.0/104"]}
      columns: [public.users.ssn, "key:pay*", "*"]
      action: mask
      mask: {keep_last: 4}
    - match: {tls_subjects: ["CN=ingest,O=Example"]}
      columns: ["*"]
      action: write_only
      lookup: true
    - columns: [ssn]
      action: null
`)
	a := cfg.Access
	if a == nil || a.Default != "decrypt" || len(a.Rules) != 3 {
		t.Fatalf("access = %+v", a)
	}
	r := a.Rules[0]
	if r.Name != "reporting-ssn" || r.Line != 12 || r.Mask == nil || r.Mask.KeepLast != 4 || r.Mask.Char != "*" {
		t.Errorf("rule 0 = %+v mask %+v", r, r.Mask)
	}
	if a.Rules[2].Action != "null" {
		t.Errorf("action: null read as %q", a.Rules[2].Action)
	}
	if r := a.Rules[1]; r.Action != "write_only" || !r.Lookup || r.Match.TLSSubjects[0] != "CN=ingest,O=Example" {
		t.Errorf("rule 1 = %+v", r)
	}
}

func TestAccessParseErrors(t *testing.T) {
	err := func() error {
		_, err := parse(t, accessListener+`
access:
  default: reveal
  rules:
    - match: {users: [reporting], sources: [10.0.0.0/33]}
      columns: [public.users.ssn]
      action: show
    - match: {users: [reporting]}
      columns: [public.users.salary]
      action: deny
      mask: {keep_last: 4}
    - match: {databases: [""]}
      columns: ["a.b.c.d", "users..ssn", "users.[x"]
      action: mask
      mask: {keep_last: -1, char: "**"}
    - columns: [ssn]
      action: deny
      lookup: true
    - match: {users: [x]}
      columns: [ssn]
      action: null
    - match: {users: [x]}
`)
		return err
	}()
	checkErrors(t, err, []want{
		{"7:12", "access.default", `unknown value "reveal": must be decrypt, mask, ciphertext, null, deny or write_only`},
		{"9:45", "access.rules[0].match.sources[0]", `invalid address or CIDR "10.0.0.0/33"`},
		{"11:15", "access.rules[0].action", `unknown value "show"`},
		{"15:13", "access.rules[1].mask", "mask applies to action mask only (this rule's action is deny)"},
		{"16:27", "access.rules[2].match.databases[0]", "empty value"},
		{"17:17", "access.rules[2].columns[0]", "more than three parts"},
		{"17:28", "access.rules[2].columns[1]", "empty part"},
		{"17:42", "access.rules[2].columns[2]", "not a valid glob"},
		{"19:25", "access.rules[2].mask.keep_last", "must be 0 to 65536"},
		{"19:35", "access.rules[2].mask.char", `exactly one character, got "**"`},
		{"22:15", "access.rules[3].lookup", "lookup applies to actions mask, ciphertext, null and write_only"},
		{"26:7", "access.rules[5].columns", "required: the column patterns"},
		{"26:7", "access.rules[5].action", "required: one of decrypt, mask"},
	})
}

// TestAccessTLSSubjectsNeedClientCA: a rule matching certificate subjects
// on a configuration where no listener asks for certificates could never
// apply: it is an error, not a silent no-op.
func TestAccessTLSSubjectsNeedClientCA(t *testing.T) {
	_, err := parse(t, accessListener+`
access:
  rules:
    - match: {tls_subjects: ["CN=ingest"]}
      columns: ["*"]
      action: deny
`)
	if err == nil || !strings.Contains(err.Error(), "access.rules[0].match.tls_subjects: no listener asks clients for a certificate") {
		t.Fatalf("err = %v", err)
	}
}
