package mysqlsql

import (
	"reflect"
	"strconv"
	"strings"
)

// Plan templates: statements that differ only in their constants share
// one cached plan.
//
// The plan cache is keyed by the exact SQL text, so a text-protocol
// statement whose values are written as literals (every INSERT, every
// lookup by a different value; what PHP PDO, PyMySQL or go-sql-driver
// with interpolateParams send) would miss it every time and pay a full
// parse and analysis. A template is a cached plan that can be re-applied
// to text that differs from the text it was made for only in the values
// of some constants:
//
//   - The literal scan below finds the constants of a string without
//     parsing it; the normalized key is the text with each constant
//     replaced by a placeholder of its class. It gives up (the exact text
//     stays the only key) on anything it is not sure it reads the way the
//     server's lexer does.
//   - A constant varies only if the parser reads it as a value and the
//     plan holds that value in a slot (the proxy encrypts it) or writes it
//     as it is into the rewritten text, and nowhere else. That is checked,
//     not assumed: the statement is planned a second time with every
//     constant replaced by a probe value of the same class, and the two
//     plans must be identical except where the probes stand for the
//     values (see buildTemplate).
//   - Every other constant is fixed: a hit needs it byte for byte.
//
// On a hit the template's plan is copied with the new values in those
// places: what a fresh plan of the new text gives (TestPlanTemplates and
// FuzzPlanTemplate compare the two). The planner never reads a value to
// decide anything (what does, SET of session state, gives a Plan.Session
// and no template), so a value cannot change the plan's shape. A template
// is built on the second miss of its normalized key: statements seen once
// never pay for the probe.

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
// multi-byte character set can hide a quote), on control characters
// (whitespace among them) inside quotes, on backslashes and double
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
			if j < 0 || !plainBody(sql[i+1:i+1+j]) {
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
			if strings.TrimLeft(sql[i:j], "0123456789") == "" && (i == 0 || sql[i-1] != '.') && (j == n || sql[j] != '.') &&
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

// plainBody reports whether a quoted body is printable ASCII (space
// included, no other whitespace) without backslashes: read the same under
// every character set and sql_mode, and kept as it is in the statement
// texts the parser gives (it turns strings with control characters into
// hex literals).
func plainBody(s string) bool {
	for _, b := range []byte(s) {
		if b >= 0x7f || b < ' ' || b == '\\' {
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
	vary  []int      // constants that may vary
	ties  []tie      // slots that take a constant's value
	// holes, by segment, are the segments the planner rendered varying
	// constants into (nil for a segment without any): fixed text and
	// constants in turn.
	holes [][]segPart
	// mayChange is mayChangeSession of the text: a hit must agree (the
	// word scan also reads inside strings).
	mayChange bool
}

type fixedLit struct {
	lit  int
	text string
}

type tie struct{ slot, lit int }

// segPart is a piece of a segment: text, or (lit >= 0) a constant's value.
type segPart struct {
	text string
	lit  int
}

// instantiate returns the template's plan for sql, whose constants are
// lits, or false if sql's fixed constants differ.
func (t *template) instantiate(sql string, lits []litSpan) (*Plan, bool) {
	for _, f := range t.fixed {
		l := lits[f.lit]
		if sql[l.start:l.end] != f.text {
			return nil, false
		}
	}
	for _, i := range t.vary {
		if containsFold(lits[i].value(sql), markerPrefix) {
			return nil, false // planned afresh, it is refused
		}
	}
	if mayChangeSession(sql) != t.mayChange {
		return nil, false
	}
	cp := *t.plan
	if len(t.ties) > 0 {
		cp.Slots = append([]Slot(nil), t.plan.Slots...)
		for _, tt := range t.ties {
			cp.Slots[tt.slot].Literal.Text = lits[tt.lit].value(sql)
		}
	}
	if t.holes != nil {
		cp.Segments = append([]string(nil), t.plan.Segments...)
		for k, parts := range t.holes {
			if parts != nil {
				cp.Segments[k] = renderParts(parts, sql, lits)
			}
		}
	}
	return &cp, true
}

// renderParts is a segment cut at its constants (segmentHoles) with the
// values of sql's constants put back.
func renderParts(parts []segPart, sql string, lits []litSpan) string {
	var b strings.Builder
	for _, part := range parts {
		if part.lit < 0 {
			b.WriteString(part.text)
		} else {
			b.WriteString(lits[part.lit].value(sql))
		}
	}
	return b.String()
}

// probeValue is the value that replaces constant i of class c in the
// probe text: in no statement (checked), and not a prefix of another.
func probeValue(c byte, i int) string {
	if c == litString {
		return probePrefix + strconv.Itoa(i) + "x"
	}
	return strconv.Itoa(probeBase + i)
}

// Probe values: probePrefix, the constant's index and x for a string;
// probeBase plus the index (nine digits) for an integer.
const (
	probePrefix = "dbproxyprobe"
	probeBase   = 700000000
)

// buildTemplate makes the template of plan, planned for sql whose
// constants are lits; replan plans another text the same way (same
// database, lexing state and pre-filter). It returns nil when no constant
// can vary or the probe shows that the plan depends on more than the
// values of its constants.
//
// The probe text has every constant replaced by a probe value of its
// class. The two plans must be the same but for:
//   - slots whose literal is, in the probe plan, a constant's probe, and in
//     the first plan that constant's value: the constant is tied to them;
//   - segments in which the probe plan has probes, each as a whole quoted
//     string (a string constant) or a whole number (an integer), and which
//     read as the first plan's once each probe is replaced by its
//     constant's value: the constant is rendered there.
//
// Those constants vary, if the parser made each a value; so does every
// such constant of a plan that forwards the text unchanged (nothing of it
// is in the plan). Any other constant is fixed.
func buildTemplate(sql string, lits []litSpan, plan *Plan, replan func(string) (*Plan, error), values func(string) ([]string, bool)) *template {
	if plan.Session != nil {
		return nil
	}
	lower := strings.ToLower(sql)
	probes := make([]string, len(lits))
	var b strings.Builder
	prev := 0
	for i, l := range lits {
		probes[i] = probeValue(l.class, i)
		if strings.Contains(lower, probes[i]) {
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
	probeSQL := b.String()
	probe, err := replan(probeSQL)
	if err != nil || probe == nil || len(probe.Slots) != len(plan.Slots) || len(probe.Segments) != len(plan.Segments) {
		return nil
	}
	// Only a constant the parser makes a value (not the text of PREPARE …
	// FROM '…', an alias, a position in ORDER BY, a character set name)
	// may vary: the planner uses values as values, it does not read them
	// (what does, SET of session state, gives a Plan.Session).
	vals, ok := values(probeSQL)
	if !ok {
		return nil
	}
	isValue := make([]bool, len(lits))
	for _, v := range vals {
		if i := findProbe(probes, v); i >= 0 {
			isValue[i] = true
		}
	}
	// Everything but the slots' literals and the segments must be the same.
	a, c := *plan, *probe
	a.Slots, c.Slots, a.Segments, c.Segments = nil, nil, nil, nil
	if !reflect.DeepEqual(a, c) {
		return nil
	}
	t := &template{plan: plan, mayChange: mayChangeSession(sql)}
	varies := make([]bool, len(lits))
	for k, s := range plan.Slots {
		p := probe.Slots[k]
		if p.Kind != s.Kind || p.Column != s.Column || p.Param != s.Param || p.Literal.Null != s.Literal.Null || p.Literal.Pos != s.Literal.Pos {
			return nil
		}
		if p.Literal.Text == s.Literal.Text {
			continue // not a scanned constant (NULL, a placeholder)
		}
		i := findProbe(probes, p.Literal.Text)
		if i < 0 || !isValue[i] || lits[i].value(sql) != s.Literal.Text {
			return nil
		}
		t.ties = append(t.ties, tie{slot: k, lit: i})
		varies[i] = true
	}
	for k, seg := range probe.Segments {
		parts, ok := segmentHoles(seg, probes, lits)
		if !ok {
			return nil
		}
		if parts == nil {
			if seg != plan.Segments[k] {
				return nil
			}
			continue
		}
		for _, part := range parts {
			if part.lit >= 0 {
				if !isValue[part.lit] {
					return nil
				}
				varies[part.lit] = true
			}
		}
		if renderParts(parts, sql, lits) != plan.Segments[k] {
			return nil
		}
		if t.holes == nil {
			t.holes = make([][]segPart, len(plan.Segments))
		}
		t.holes[k] = parts
	}
	for i, l := range lits {
		if varies[i] || plan.Passthrough && isValue[i] {
			t.vary = append(t.vary, i)
		} else {
			t.fixed = append(t.fixed, fixedLit{lit: i, text: sql[l.start:l.end]})
		}
	}
	if len(t.vary) == 0 {
		return nil
	}
	return t
}

// findProbe returns the constant whose probe is v, or -1.
func findProbe(probes []string, v string) int {
	if i, n := probeAt(probes, v); n == len(v) {
		return i
	}
	return -1
}

// probeAt returns the constant whose probe starts s, and the probe's
// length; 0 if none does. It reads the index from the probe (probeValue)
// rather than trying every probe: a bulk INSERT has thousands.
func probeAt(probes []string, s string) (lit, n int) {
	var i int
	switch {
	case strings.HasPrefix(s, probePrefix):
		j := len(probePrefix)
		for j < len(s) && '0' <= s[j] && s[j] <= '9' {
			j++
		}
		v, err := strconv.Atoi(s[len(probePrefix):j])
		if err != nil {
			return -1, 0
		}
		i = v
	case len(s) >= 9 && s[0] == '7':
		v, err := strconv.Atoi(s[:9])
		if err != nil {
			return -1, 0
		}
		i = v - probeBase
	default:
		return -1, 0
	}
	if i < 0 || i >= len(probes) || !strings.HasPrefix(s, probes[i]) {
		return -1, 0
	}
	return i, len(probes[i])
}

// segmentHoles cuts a segment of the probe plan at the probes in it: nil
// if it has none; false if a probe stands anywhere but as a whole quoted
// string ('probe', where a string constant's value can go as it is: the
// scan admits no quote or backslash in it) or as a whole number (digits
// on neither side, no quote or identifier byte around it).
func segmentHoles(seg string, probes []string, lits []litSpan) ([]segPart, bool) {
	var parts []segPart
	start := 0
	for i := 0; i < len(seg); i++ {
		if seg[i] != 'd' && seg[i] != '7' {
			continue
		}
		j, n := probeAt(probes, seg[i:])
		if n == 0 {
			continue
		}
		end := i + n
		if lits[j].class == litString {
			if i == 0 || seg[i-1] != '\'' || end >= len(seg) || seg[end] != '\'' {
				return nil, false
			}
		} else {
			before, after := byte(' '), byte(' ')
			if i > 0 {
				before = seg[i-1]
			}
			if end < len(seg) {
				after = seg[end]
			}
			if isIdentByte(before) || isIdentByte(after) || before == '\'' || after == '\'' || before == '.' || after == '.' {
				return nil, false
			}
		}
		parts = append(parts, segPart{text: seg[start:i], lit: -1}, segPart{lit: j})
		start = end
		i = end - 1
	}
	if parts == nil {
		return nil, true
	}
	return append(parts, segPart{text: seg[start:], lit: -1}), true
}
