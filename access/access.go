package access

import (
	"errors"
	"fmt"
	"net/netip"
	"path"
	"slices"
	"strings"
	"sync"

	"github.com/dbproxy/dbproxy/fieldcrypt"
	"github.com/dbproxy/dbproxy/proxy"
	"github.com/dbproxy/dbproxy/rules"
)

// Rule is one rule of a policy, as configured.
type Rule struct {
	// Name is how refusals name the rule, e.g. `access.rules[1]`.
	Name string
	// The match: each non-empty list must contain the session's value.
	Users, Databases, TLSSubjects []string
	Sources                       []netip.Prefix
	// Columns are the column patterns the rule applies to.
	Columns []string
	// Decision is what the rule decides; its Rule field is set to Name.
	Decision fieldcrypt.Decision
}

// Policy is a compiled access policy. It is immutable and safe for
// concurrent use.
type Policy struct {
	def   fieldcrypt.Decision
	rules []rule
}

type rule struct {
	Rule
	patterns []pattern
}

// pattern is a compiled column pattern: a key glob, or 1 to 3 lower-case
// name globs (column; table, column; schema, table, column).
type pattern struct {
	key   string
	parts []string
}

// New compiles rules, tried in order, over def (whose Rule field names
// the default in refusals). A bad column pattern is an error naming the
// rule.
func New(def fieldcrypt.Decision, rs []Rule) (*Policy, error) {
	p := &Policy{def: def}
	for _, r := range rs {
		cr := rule{Rule: r}
		cr.Decision.Rule = r.Name
		for _, c := range r.Columns {
			pat, err := ParsePattern(c)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", r.Name, err)
			}
			cr.patterns = append(cr.patterns, pat)
		}
		p.rules = append(p.rules, cr)
	}
	return p, nil
}

// ParsePattern reads a column pattern: `key:NAME`, `column`,
// `table.column` or `schema.table.column`, each name a path.Match glob.
func ParsePattern(s string) (pattern, error) {
	if name, ok := strings.CutPrefix(s, "key:"); ok {
		if name == "" {
			return pattern{}, errors.New("column pattern \"key:\" names no key")
		}
		if _, err := path.Match(name, ""); err != nil {
			return pattern{}, fmt.Errorf("column pattern %q: %w", s, err)
		}
		return pattern{key: name}, nil
	}
	parts := strings.Split(strings.ToLower(s), ".")
	if len(parts) > 3 {
		return pattern{}, fmt.Errorf("column pattern %q has more than three parts: use [schema.]table.column", s)
	}
	for _, part := range parts {
		if part == "" {
			return pattern{}, fmt.Errorf("column pattern %q has an empty part: use [schema.]table.column, * or key:NAME", s)
		}
		if _, err := path.Match(part, ""); err != nil {
			return pattern{}, fmt.Errorf("column pattern %q: %w", s, err)
		}
	}
	return pattern{parts: parts}, nil
}

// matches reports whether the pattern names col.
func (p pattern) matches(col *rules.ColumnRule) bool {
	if p.key != "" {
		return glob(p.key, col.Key)
	}
	schema := col.Schema
	if schema == "" {
		schema = col.Database // MySQL: the database is the schema
	}
	names := [3]string{schema, col.Table, col.Column}
	off := len(names) - len(p.parts)
	for i, part := range p.parts {
		if !glob(part, strings.ToLower(names[off+i])) {
			return false
		}
	}
	return true
}

// glob is path.Match without its one separator: a key name may contain
// '/', and `key:*` must still name it (path.Match's * stops at '/'). The
// pattern was checked when it was compiled.
func glob(pattern, name string) bool {
	ok, _ := path.Match(strings.ReplaceAll(pattern, "/", "\x00"), strings.ReplaceAll(name, "/", "\x00"))
	return ok
}

// Unmatched returns the column patterns of the rules that name none of
// cols, as "rule name: pattern" (to catch typos).
func (p *Policy) Unmatched(cols []*rules.ColumnRule) []string {
	var out []string
	for _, r := range p.rules {
		for i, pat := range r.patterns {
			if !slices.ContainsFunc(cols, pat.matches) {
				out = append(out, fmt.Sprintf("%s.columns[%d]: %q", r.Name, i, r.Columns[i]))
			}
		}
	}
	return out
}

// fits reports whether the rule's match fits who.
func (r *rule) fits(who proxy.Principal) bool {
	if len(r.Users) > 0 && !slices.Contains(r.Users, who.User) {
		return false
	}
	if len(r.Databases) > 0 && !slices.Contains(r.Databases, who.Database) {
		return false
	}
	if len(r.TLSSubjects) > 0 && (who.CertSubject == "" || !slices.Contains(r.TLSSubjects, who.CertSubject)) {
		return false
	}
	if len(r.Sources) > 0 {
		addr := who.Client.Addr().Unmap().WithZone("") // a link-local client's zone does not keep it out of its prefix
		if !addr.IsValid() || !slices.ContainsFunc(r.Sources, func(pfx netip.Prefix) bool { return pfx.Contains(addr) }) {
			return false
		}
	}
	return true
}

// For returns the Decider of the sessions of who: the rules whose match
// fits who, with a cache of decisions per column.
func (p *Policy) For(who proxy.Principal) fieldcrypt.Decider {
	d := &decider{def: p.def}
	for i := range p.rules {
		if p.rules[i].fits(who) {
			d.rules = append(d.rules, &p.rules[i])
		}
	}
	if len(d.rules) > 0 {
		d.cache = map[*rules.ColumnRule]fieldcrypt.Decision{}
	}
	return d
}

// Decide is the Decision of p's first rule fitting who and naming col.
func (p *Policy) Decide(who proxy.Principal, col *rules.ColumnRule) fieldcrypt.Decision {
	return p.For(who).Decide(col)
}

type decider struct {
	def   fieldcrypt.Decision
	rules []*rule // the rules whose match fits the session, in order

	mu    sync.RWMutex
	cache map[*rules.ColumnRule]fieldcrypt.Decision
}

func (d *decider) Decide(col *rules.ColumnRule) fieldcrypt.Decision {
	if len(d.rules) == 0 {
		return d.def
	}
	d.mu.RLock()
	v, ok := d.cache[col]
	d.mu.RUnlock()
	if ok {
		return v
	}
	v = d.resolve(col)
	d.mu.Lock()
	d.cache[col] = v
	d.mu.Unlock()
	return v
}

func (d *decider) resolve(col *rules.ColumnRule) fieldcrypt.Decision {
	for _, r := range d.rules {
		if slices.ContainsFunc(r.patterns, func(p pattern) bool { return p.matches(col) }) {
			return r.Decision
		}
	}
	return d.def
}
