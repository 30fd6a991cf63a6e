package config

import (
	"fmt"
	"net/netip"
	"path"
	"strings"
	"unicode/utf8"
)

// Access actions: what a session may do with the values of an encrypted
// column (docs/access.md).
const (
	AccessDecrypt    = "decrypt"
	AccessMask       = "mask"
	AccessCiphertext = "ciphertext"
	AccessNull       = "null"
	AccessDeny       = "deny"
	AccessWriteOnly  = "write_only"
)

var accessActions = []string{AccessDecrypt, AccessMask, AccessCiphertext, AccessNull, AccessDeny, AccessWriteOnly}

// Access is the access: section: who sees what of the encrypted columns.
// Nil (no section) is the same as default decrypt and no rules.
type Access struct {
	// Default is the action for a column no rule names (default decrypt).
	Default string       `yaml:"default"`
	Rules   []AccessRule `yaml:"rules"`
}

// AccessRule is one rule; the first rule whose match fits a session and
// whose columns name a column decides for it.
type AccessRule struct {
	// Name, optional, names the rule in refusals besides its position.
	Name  string      `yaml:"name,omitempty"`
	Match AccessMatch `yaml:"match"`
	// Columns are patterns: [schema.]table.column or column, each part a
	// glob (*), or key:NAME (the data key name, a glob).
	Columns []string `yaml:"columns"`
	Action  string   `yaml:"action"`
	// Mask applies to action mask (default: every character as *).
	Mask *MaskSpec `yaml:"mask,omitempty"`
	// Lookup lets a session that may not read the column compare values
	// with it (WHERE col = …); not with decrypt (always) or deny (never).
	Lookup bool `yaml:"lookup,omitempty"`
	// Line is the rule's line in the file, for messages (0: unknown).
	Line int `yaml:"-" json:"-"`
}

// AccessMatch selects sessions: every listed field must fit, and a field
// fits when any of its values does. An empty match fits every session.
type AccessMatch struct {
	Users     []string `yaml:"users,omitempty"`
	Databases []string `yaml:"databases,omitempty"`
	// Sources are client address ranges (CIDR) or addresses.
	Sources []string `yaml:"sources,omitempty"`
	// TLSSubjects are client certificate subjects (RFC 2253 form).
	TLSSubjects []string `yaml:"tls_subjects,omitempty"`
}

// MaskSpec is how action mask shows a text value.
type MaskSpec struct {
	KeepFirst int    `yaml:"keep_first,omitempty"`
	KeepLast  int    `yaml:"keep_last,omitempty"`
	Char      string `yaml:"char,omitempty"` // one character; default *
}

// ParseSource reads a match source: a CIDR prefix or a single address.
func ParseSource(s string) (netip.Prefix, error) {
	if a, err := netip.ParseAddr(s); err == nil {
		return netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()), nil
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	if p.Addr().Is4In6() {
		p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
	}
	return p.Masked(), nil
}

func (d *decoder) access(c *Config) {
	a := c.Access
	if a == nil {
		return
	}
	d.nullAction(&a.Default, "access.default")
	d.enum(&a.Default, "access.default", AccessDecrypt, accessActions...)
	verified := false
	for _, l := range c.Listeners {
		verified = verified || l.TLS != nil && l.TLS.ClientCAFile != ""
	}
	for i := range a.Rules {
		rp := fmt.Sprintf("access.rules[%d]", i)
		d.accessRule(&a.Rules[i], rp)
		if len(a.Rules[i].Match.TLSSubjects) > 0 && !verified {
			// Without it no session has a verified subject, and the rule
			// would silently never apply.
			d.errf(rp+".match.tls_subjects", "no listener asks clients for a certificate: set tls.client_ca_file on the listeners this rule is for")
		}
	}
}

func (d *decoder) accessRule(r *AccessRule, rp string) {
	if n := d.node(rp); n != nil {
		r.Line = n.Line
	}
	d.accessMatch(&r.Match, rp+".match")
	if len(r.Columns) == 0 {
		d.errf(rp+".columns", "required: the column patterns the rule applies to ([schema.]table.column, * or key:NAME)")
	}
	for j, c := range r.Columns {
		if msg := checkColumnPattern(c); msg != "" {
			d.errf(fmt.Sprintf("%s.columns[%d]", rp, j), "%s", msg)
		}
	}
	d.nullAction(&r.Action, rp+".action")
	if r.Action == "" {
		d.errf(rp+".action", "required: one of %s", orList(accessActions))
		return
	}
	d.enum(&r.Action, rp+".action", "", accessActions...)
	if r.Mask != nil {
		if r.Action != AccessMask {
			d.errf(rp+".mask", "mask applies to action mask only (this rule's action is %s)", clip(r.Action))
		} else {
			d.accessMask(r.Mask, rp+".mask")
		}
	}
	if r.Lookup && (r.Action == AccessDecrypt || r.Action == AccessDeny) {
		d.errf(rp+".lookup", "lookup applies to actions mask, ciphertext, null and write_only (decrypt always allows lookups, deny never does)")
	}
}

// nullAction reads an action written as a bare YAML null (action: null),
// which the decoder treats as left out, as the action null.
func (d *decoder) nullAction(p *string, path string) {
	info, ok := d.nodes[path]
	if *p == "" && ok && !info.set && info.node != nil && strings.EqualFold(info.node.Value, AccessNull) {
		*p = AccessNull
	}
}

func (d *decoder) accessMatch(m *AccessMatch, mp string) {
	lists := []struct {
		key  string
		vals []string
	}{{"users", m.Users}, {"databases", m.Databases}, {"sources", m.Sources}, {"tls_subjects", m.TLSSubjects}}
	for _, l := range lists {
		for j, v := range l.vals {
			p := fmt.Sprintf("%s.%s[%d]", mp, l.key, j)
			if v == "" {
				d.errf(p, "empty value")
				continue
			}
			if l.key == "sources" {
				if _, err := ParseSource(v); err != nil {
					d.errf(p, "invalid address or CIDR %q: use 10.0.0.0/8, 2001:db8::/32 or a single address", clip(v))
				}
			}
		}
	}
}

// maxMaskKeep bounds keep_first and keep_last.
const maxMaskKeep = 1 << 16

func (d *decoder) accessMask(m *MaskSpec, mp string) {
	// Bounded so that their sum cannot overflow (and show a value whole).
	if m.KeepFirst < 0 || m.KeepFirst > maxMaskKeep {
		d.errf(mp+".keep_first", "must be 0 to %d", maxMaskKeep)
	}
	if m.KeepLast < 0 || m.KeepLast > maxMaskKeep {
		d.errf(mp+".keep_last", "must be 0 to %d", maxMaskKeep)
	}
	if m.Char == "" {
		m.Char = "*"
	} else if utf8.RuneCountInString(m.Char) != 1 || !utf8.ValidString(m.Char) {
		d.errf(mp+".char", "must be exactly one character, got %q", clip(m.Char))
	}
}

// checkColumnPattern returns what is wrong with a column pattern; "" if
// nothing.
func checkColumnPattern(s string) string {
	parts := strings.Split(s, ".")
	if name, ok := strings.CutPrefix(s, "key:"); ok {
		parts = []string{name}
	}
	if len(parts) > 3 {
		return fmt.Sprintf("column pattern %q has more than three parts: use [schema.]table.column, * or key:NAME", clip(s))
	}
	for _, p := range parts {
		if p == "" {
			return fmt.Sprintf("column pattern %q has an empty part: use [schema.]table.column, * or key:NAME", clip(s))
		}
		if _, err := path.Match(p, ""); err != nil {
			return fmt.Sprintf("column pattern %q is not a valid glob: %v", clip(s), err)
		}
	}
	return ""
}
