package mysqlsql

import (
	"reflect"
	"strconv"
	"strings"
)

// Plan templates: statements that differ only in the constants stored in
// or compared with encrypted columns share one cached plan.
//
// The plan cache is keyed by the exact SQL text, so a text-protocol
// statement whose values are written as literals (every INSERT, every
// lookup by a different value) would miss it every time and pay a full
// parse and analysis. A template is a cached plan that can be re-applied
// to text that differs from the text it was made for only in the values
// of some constants:
//
//   - The literal scan below finds the constants of a string without
//     parsing it; the normalized key is the text with each constant
//     replaced by a placeholder of its class. It gives up (the exact text
//     stays the only key) on anything it is not sure it reads the way the
//     server's lexer does.
//   - A constant varies only if the plan carries its value in a slot (the
//     proxy encrypts it) and nowhere else. That is checked, not assumed:
//     the statement is planned a second time with each such constant
//     replaced by a probe value of the same class, and the two plans must
//     be identical except for those slots, which must hold the probes.
//   - Every other constant is fixed: a hit needs it byte for byte, so the
//     text the server receives outside the slots is the text the planner
//     produced for that very string.
//
// So a varying constant's value only ever reaches the server encrypted,
// and the rest of the rewritten text is what a fresh plan would give. A
// template is built on the second miss of its normalized key: statements
// seen once never pay for the probe.

// Literal classes (the byte after the placeholder NUL in the key).
const (
	litString byte = 's' // '…' without backslash, doubled quote or introducer
	litInt    byte = 'i' // decimal digits, no leading zero, at most 18
)

// litSpan is one constant of a scanned SQL string: bytes [start, end)
// (with the quotes of a string) and its class.
type litSpan struct {
	start, end int
	class      byte
}

// value returns the constant as the parse tree holds it (the text of a
// sqlplan.Literal): a string's body, an integer's digits. The scan admits
// only forms for which these are the server's values too.
func (l litSpan) value(sql string) string {
	if l.class == litString {
		return sql[l.start+1 : l.end-1]
	}
	return sql[l.start:l.end]
}

func isIdentByte(c byte) bool {
	return 'a' <= c|0x20 && c|0x20 <= 'z' || '0' <= c && c <= '9' || c == '_' || c == '$'
}

func isSpaceByte(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'
}

// maxIntDigits keeps an integer constant within int64 (the parser's
// KindInt64, whose text the planner renders with strconv.FormatInt).
const maxIntDigits = 18

// scanLiterals appends the constants of sql to dst. ok is false when the
// scan gave up: on any byte outside printable ASCII and whitespace (so no
// multi-byte character set can hide a quote), on backslashes and double
// quotes (their meaning depends on sql_mode), on comments of any kind
// (executable ones among them), on a quote right after an identifier
// character (an introducer, N'…', X'…', B'…'), on a doubled quote, on a
// string followed by another (MySQL joins them) or by an identifier
// character, on quoted user variables and on unterminated quotes.
// Numbers written any other way than plain digits (1.5, 1e3, 0x1F, 007,
// digits starting an identifier) are not constants here: they stay in
// the key as text.
func scanLiterals(sql string, dst []litSpan) (lits []litSpan, ok bool) {
	n := len(sql)
	for i := 0; i < n; {
		c := sql[i]
		switch {
		case c >= 0x7f || c < ' ' && !isSpaceByte(c):
			return dst, false
		case c == '\\' || c == '"' || c == '#':
			return dst, false
		case c == '-' && i+1 < n && sql[i+1] == '-', c == '/' && i+1 < n && sql[i+1] == '*':
			return dst, false
		case c == '`':
			j := strings.IndexByte(sql[i+1:], '`')
			if j < 0 || !plainBody(sql[i+1:i+1+j]) {
				return dst, false
			}
			i += j + 2
			if i < n && sql[i] == '`' {
				return dst, false // a doubled backtick inside the name
			}
		case c == '@':
			for i < n && sql[i] == '@' {
				i++
			}
			if i < n && (sql[i] == '\'' || sql[i] == '`') {
				return dst, false
			}
			for i < n && (isIdentByte(sql[i]) || sql[i] == '.') {
				i++
			}
		case c == '\'':
			if i > 0 && isIdentByte(sql[i-1]) {
				return dst, false
			}
			j := strings.IndexByte(sql[i+1:], '\'')
			if j < 0 {
				return dst, false
			}
			if !plainBody(sql[i+1 : i+1+j]) {
				return dst, false
			}
			end := i + j + 2
			k := end
			for k < n && isSpaceByte(sql[k]) {
				k++
			}
			if k < n && (sql[k] == '\'' || isIdentByte(sql[k]) && k == end) {
				return dst, false
			}
			dst = append(dst, litSpan{start: i, end: end, class: litString})
			i = end
		case isIdentByte(c):
			j := i
			for j < n && isIdentByte(sql[j]) {
				j++
			}
			digits := true
			for _, d := range []byte(sql[i:j]) {
				if d < '0' || d > '9' {
					digits = false
					break
				}
			}
			if digits && (i == 0 || sql[i-1] != '.') && (j == n || sql[j] != '.') &&
				(c != '0' || j == i+1) && j-i <= maxIntDigits {
				dst = append(dst, litSpan{start: i, end: j, class: litInt})
			}
			i = j
		default:
			i++
		}
	}
	return dst, true
}

// plainBody reports whether a quoted body is printable ASCII and
// whitespace without backslashes: read the same under every character set
// and sql_mode.
func plainBody(s string) bool {
	for _, b := range []byte(s) {
		if b >= 0x7f || b < ' ' && !isSpaceByte(b) || b == '\\' {
			return false
		}
	}
	return true
}

// normalizedKey is sql with each constant replaced by NUL and its class.
func normalizedKey(sql string, lits []litSpan) string {
	var b strings.Builder
	b.Grow(len(sql))
	prev := 0
	for _, l := range lits {
		b.WriteString(sql[prev:l.start])
		b.WriteByte(0)
		b.WriteByte(l.class)
		prev = l.end
	}
	b.WriteString(sql[prev:])
	return b.String()
}

// template is a plan that can be re-applied to any text with the same
// normalized key whose fixed constants are those of the text it was made
// for.
type template struct {
	plan  *Plan
	fixed []fixedLit // constants that must match byte for byte
	ties  []tie      // slots that take a constant's value
	// mayChange is mayChangeSession of the text: a hit must agree (the
	// word scan also reads inside strings).
	mayChange bool
}

type fixedLit struct {
	lit  int
	text string
}

type tie struct{ slot, lit int }

// instantiate returns the template's plan for sql, whose constants are
// lits, or false if sql's fixed constants differ.
func (t *template) instantiate(sql string, lits []litSpan) (*Plan, bool) {
	for _, f := range t.fixed {
		l := lits[f.lit]
		if sql[l.start:l.end] != f.text {
			return nil, false
		}
	}
	for _, tt := range t.ties {
		if containsFold(lits[tt.lit].value(sql), markerPrefix) {
			return nil, false // planned afresh, it is refused
		}
	}
	if mayChangeSession(sql) != t.mayChange {
		return nil, false
	}
	cp := *t.plan
	cp.Slots = append([]Slot(nil), t.plan.Slots...)
	for _, tt := range t.ties {
		cp.Slots[tt.slot].Literal.Text = lits[tt.lit].value(sql)
	}
	return &cp, true
}

// probeValue is the value that replaces constant i of class c in the
// probe text.
func probeValue(c byte, i int) string {
	if c == litString {
		return "dbproxyprobe" + strconv.Itoa(i) + "x"
	}
	return strconv.Itoa(700000000 + i)
}

// buildTemplate makes the template of plan, planned for sql whose
// constants are lits; replan plans another text the same way (same
// database, lexing state and pre-filter). It returns nil when no constant
// can vary or the probe shows that the plan depends on more than the
// values it carries in slots.
func buildTemplate(sql string, lits []litSpan, plan *Plan, replan func(string) (*Plan, error)) *template {
	if plan.Passthrough || plan.Session != nil || len(plan.Slots) == 0 {
		return nil
	}
	// Candidates: constants whose value is the literal of some slot.
	cand := make([]bool, len(lits))
	found := false
	for i, l := range lits {
		v := l.value(sql)
		for _, s := range plan.Slots {
			if (s.Kind == SlotStore || s.Kind == SlotMatch) && !s.Literal.Null && s.Literal.Text == v {
				cand[i], found = true, true
				break
			}
		}
	}
	if !found {
		return nil
	}
	var b strings.Builder
	prev := 0
	probes := make([]string, len(lits))
	for i, l := range lits {
		if !cand[i] {
			continue
		}
		probes[i] = probeValue(l.class, i)
		if strings.Contains(sql, probes[i]) {
			return nil
		}
		b.WriteString(sql[prev:l.start])
		if l.class == litString {
			b.WriteString("'" + probes[i] + "'")
		} else {
			b.WriteString(probes[i])
		}
		prev = l.end
	}
	b.WriteString(sql[prev:])
	probe, err := replan(b.String())
	if err != nil || probe == nil || len(probe.Slots) != len(plan.Slots) {
		return nil
	}
	t := &template{plan: plan, mayChange: mayChangeSession(sql)}
	tied := make([]bool, len(lits))
	for k, s := range plan.Slots {
		p := probe.Slots[k]
		if p.Kind != s.Kind || p.Column != s.Column || p.Param != s.Param || p.Literal.Null != s.Literal.Null || p.Literal.Pos != s.Literal.Pos {
			return nil
		}
		if p.Literal.Text == s.Literal.Text {
			continue
		}
		i := -1
		for j, pv := range probes {
			if cand[j] && pv == p.Literal.Text && lits[j].value(sql) == s.Literal.Text {
				i = j
				break
			}
		}
		if i < 0 {
			return nil
		}
		t.ties = append(t.ties, tie{slot: k, lit: i})
		tied[i] = true
	}
	for i := range cand {
		if cand[i] && !tied[i] {
			// Replaced by a probe that no slot carried: it sits elsewhere
			// in the plan (then the comparison below fails) or nowhere.
			return nil
		}
	}
	// Everything but the slots' literals must be the same.
	a, c := *plan, *probe
	a.Slots, c.Slots = nil, nil
	if !reflect.DeepEqual(a, c) {
		return nil
	}
	if len(t.ties) == 0 {
		return nil
	}
	for i, l := range lits {
		if !tied[i] {
			t.fixed = append(t.fixed, fixedLit{lit: i, text: sql[l.start:l.end]})
		}
	}
	return t
}
