package main

import (
	"fmt"
	"strings"

	"github.com/dbproxy/dbproxy/access"
	"github.com/dbproxy/dbproxy/config"
	"github.com/dbproxy/dbproxy/fieldcrypt"
	"github.com/dbproxy/dbproxy/rules"
)

// configPolicy compiles cfg's access: section against its encryption
// rules as both protocols see them (accessPolicy).
func configPolicy(cfg *config.Config) (fieldcrypt.Policy, error) {
	if cfg.Access == nil {
		return nil, nil
	}
	var sets []*rules.Set
	for _, d := range []rules.Dialect{rules.DialectPostgres, rules.DialectMySQL} {
		if set, _, err := ruleSet(cfg, d); err == nil {
			sets = append(sets, set)
		}
	}
	return accessPolicy(cfg, sets...)
}

// accessPolicy compiles cfg's access: section (nil: none, every session
// decrypts every column). sets are the rule sets of the listeners'
// protocols: a column pattern naming no column of any of them is an
// error (a typo would leave the column readable), positioned at its rule.
func accessPolicy(cfg *config.Config, sets ...*rules.Set) (fieldcrypt.Policy, error) {
	a := cfg.Access
	if a == nil {
		return nil, nil
	}
	def, err := accessDecision(a.Default, nil, false)
	if err != nil {
		return nil, fmt.Errorf("%s: access.default: %w", cfg.Path, err)
	}
	def.Rule = "access.default"
	var rs []access.Rule
	for i, r := range a.Rules {
		name := fmt.Sprintf("access.rules[%d]", i)
		if r.Name != "" {
			name += fmt.Sprintf(" %q", r.Name)
		}
		ar := access.Rule{Name: name, Users: r.Match.Users, Databases: r.Match.Databases,
			TLSSubjects: r.Match.TLSSubjects, Columns: r.Columns}
		for _, src := range r.Match.Sources {
			pfx, err := config.ParseSource(src)
			if err != nil {
				return nil, fmt.Errorf("%s:%d: %s.match.sources: %w", cfg.Path, r.Line, name, err)
			}
			ar.Sources = append(ar.Sources, pfx)
		}
		if ar.Decision, err = accessDecision(r.Action, r.Mask, r.Lookup); err != nil {
			return nil, fmt.Errorf("%s:%d: %s.action: %w", cfg.Path, r.Line, name, err)
		}
		rs = append(rs, ar)
	}
	p, err := access.New(def, rs)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", cfg.Path, err)
	}
	var cols []*rules.ColumnRule
	for _, set := range sets {
		for _, t := range set.Tables() {
			cols = append(cols, t.Columns...)
		}
	}
	if bad := p.Unmatched(cols); len(bad) > 0 {
		return nil, fmt.Errorf("%s: access: column patterns naming no encrypted column: %s", cfg.Path, strings.Join(bad, ", "))
	}
	return p, nil
}

// accessDecision is the Decision of a configured action.
func accessDecision(action string, mask *config.MaskSpec, lookup bool) (fieldcrypt.Decision, error) {
	act, ok := fieldcrypt.ParseAction(action)
	if !ok {
		return fieldcrypt.Decision{}, fmt.Errorf("unknown action %q", action)
	}
	d := fieldcrypt.Decision{Action: act, Lookup: lookup}
	if mask != nil {
		d.Mask = fieldcrypt.Mask{KeepFirst: mask.KeepFirst, KeepLast: mask.KeepLast}
		for _, r := range mask.Char {
			d.Mask.Char = r
		}
	}
	return d, nil
}
