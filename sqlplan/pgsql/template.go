package pgsql

import (
	"sort"

	"github.com/dbproxy/dbproxy/sqlplan"
)

// A template is a cached plan that can be re-applied to SQL text that
// differs from the text it was made for only in the values of some
// constants (see "Plan cache" in the package doc). It is built after a
// plan is made, from what the analyzer reported about each constant:
//
//   - A constant varies only if its value is decoded by the literal scan
//     (litString, litInt, litNum) and the analyzer either used it as a
//     plaintext value (usePlain) or tied it to an edit (an EditStore's
//     Literal, a Match literal, an EXECUTE argument), and never pinned it
//     (a decision depends on its value, as in ORDER BY 2).
//   - A constant inside the span of an edit that does not tie it, or cut
//     by an edit boundary, does not vary (the edit's replacement would
//     carry the old text).
//
// Every other constant is fixed: a cache hit needs it byte for byte.
// On a hit the template's plan is copied with every offset shifted by the
// length differences of the constants before it, and every tied Literal
// replaced by the new constant's value. Text between constants is
// identical (same normalized key), so nothing else changes, except
// possibly the pre-filter (Planner.touches) on a statement whose varying constant mentions
// an encrypted table's name: that is recomputed and must agree.
type template struct {
	sql   string    // the SQL the plan was made for
	lits  []litSpan // its constants
	vary  []bool    // per constant
	plan  *Plan
	slots []slot
	// touch holds the statements with a varying constant, and whether
	// Planner.touches was true for their text.
	touch []stmtTouch
}

type slotKind uint8

const (
	slotStore slotKind = iota // Statements[stmt].Edits[item].Literal
	slotMatch                 // Statements[stmt].Edits[item].Match.Literals[sub]
	slotArg                   // Statements[stmt].Execute.Args[item].Literal
	slotElem                  // Statements[stmt].Execute.Args[item].Elems[sub]
)

// slot is one Literal of the plan tied to varying constant lit.
type slot struct {
	kind            slotKind
	stmt, item, sub int
	lit             int
	neg             bool // the grammar folded a minus sign into the constant
	first           bool // first slot of its Match or Elems: copy it
}

type stmtTouch struct {
	stmt  int
	touch bool
}

// tie is a Literal of the plan and where it sits.
type tie struct {
	slot
	src int // Literal.Pos
}

// findLit returns the index of the constant that starts at off.
func findLit(lits []litSpan, off int) (int, bool) {
	j := sort.Search(len(lits), func(j int) bool { return lits[j].start >= off })
	return j, j < len(lits) && lits[j].start == off
}

// resolveSrc maps a Literal.Pos to its constant: the constant starting at
// that offset, or a number right after a minus sign there (the grammar
// folds -5 into one constant located at the sign).
func resolveSrc(sql string, lits []litSpan, src int) (j int, neg, ok bool) {
	if src <= 0 || src > len(sql) {
		return 0, false, false
	}
	loc := src - 1
	if j, ok := findLit(lits, loc); ok {
		return j, false, true
	}
	if sql[loc] == '-' {
		if j, ok := findLit(lits, loc+1); ok && (lits[j].class == litInt || lits[j].class == litNum) {
			return j, true, true
		}
	}
	return 0, false, false
}

// spanTies is the span of an edit (or EXECUTE argument) of a plan and the
// Literals in it.
type spanTies struct {
	start, end int
	ties       []tie
}

// buildTemplate makes the template of pl, planned for sql whose
// constants are lits, or returns nil if no constant can vary.
func buildTemplate(touches func(string) bool, sql string, lits []litSpan, pl *Plan, a *analyzer) *template {
	if len(lits) == 0 || a == nil {
		return nil
	}
	cand := make([]bool, len(lits))
	for _, src := range a.plainLits {
		if j, _, ok := resolveSrc(sql, lits, src); ok {
			cand[j] = true
		}
	}
	// Every Literal of the plan, by edit (or EXECUTE argument) span.
	var spans []spanTies
	for si := range pl.Statements {
		st := &pl.Statements[si]
		for ei := range st.Edits {
			e := &st.Edits[ei]
			sp := spanTies{start: e.Start, end: e.End}
			switch e.Kind {
			case EditStore:
				sp.ties = append(sp.ties, tie{slot{kind: slotStore, stmt: si, item: ei}, e.Literal.Pos})
			case EditMatch:
				for k := range e.Match.Literals {
					sp.ties = append(sp.ties, tie{slot{kind: slotMatch, stmt: si, item: ei, sub: k}, e.Match.Literals[k].Pos})
				}
			}
			spans = append(spans, sp)
		}
		if st.Execute != nil {
			for ai := range st.Execute.Args {
				arg := &st.Execute.Args[ai]
				sp := spanTies{start: arg.Start, end: arg.End}
				switch arg.Kind {
				case ArgLiteral:
					sp.ties = append(sp.ties, tie{slot{kind: slotArg, stmt: si, item: ai}, arg.Literal.Pos})
				case ArgArray:
					for k := range arg.Elems {
						sp.ties = append(sp.ties, tie{slot{kind: slotElem, stmt: si, item: ai, sub: k}, arg.Elems[k].Pos})
					}
				}
				spans = append(spans, sp)
			}
		}
	}
	resolveTies(sql, lits, spans, cand)
	for _, src := range a.pinned {
		if j, _, ok := resolveSrc(sql, lits, src); ok {
			cand[j] = false
		}
	}
	for j := range lits {
		if !lits[j].decodable() {
			cand[j] = false
		}
	}
	fixUntied(lits, spans, cand)
	any := false
	for _, c := range cand {
		any = any || c
	}
	if !any {
		return nil
	}
	t := &template{sql: sql, lits: lits, vary: cand, plan: pl}
	t.addSlots(spans)
	t.addTouches(touches, sql, pl)
	return t
}

// resolveTies resolves the ties of spans to constants of lits and marks
// those as candidates in cand; a tie to a constant outside its span is
// dropped (the constant then stays fixed unless used plainly elsewhere,
// and the Literal keeps its value).
func resolveTies(sql string, lits []litSpan, spans []spanTies, cand []bool) {
	for si := range spans {
		sp := &spans[si]
		kept := sp.ties[:0]
		for _, t := range sp.ties {
			j, neg, ok := resolveSrc(sql, lits, t.src)
			if !ok {
				continue
			}
			start := lits[j].start
			if neg {
				start--
			}
			if start < sp.start || lits[j].end > sp.end {
				continue
			}
			t.lit, t.neg = j, neg
			cand[j] = true
			kept = append(kept, t)
		}
		sp.ties = kept
	}
}

// fixUntied clears cand for a constant inside (or cut by) a span that
// does not tie it: it is fixed.
func fixUntied(lits []litSpan, spans []spanTies, cand []bool) {
	for _, sp := range spans {
		for j := range lits {
			l := &lits[j]
			cut := (l.start < sp.start && sp.start < l.end) || (l.start < sp.end && sp.end < l.end)
			inside := sp.start < sp.end && sp.start <= l.start && l.end <= sp.end
			if !cut && !inside {
				continue
			}
			tied := false
			for _, t := range sp.ties {
				tied = tied || t.lit == j
			}
			if cut || !tied {
				cand[j] = false
			}
		}
	}
}

// addSlots adds a slot for every tie of spans to a varying constant.
func (t *template) addSlots(spans []spanTies) {
	for _, sp := range spans {
		first := true
		for _, tt := range sp.ties {
			if !t.vary[tt.lit] {
				continue
			}
			s := tt.slot
			s.lit, s.neg = tt.lit, tt.neg
			s.first = first
			if s.kind == slotMatch || s.kind == slotElem {
				first = false
			}
			t.slots = append(t.slots, s)
		}
	}
}

// addTouches records, for every statement of pl with a varying constant,
// whether touches is true for its text.
func (t *template) addTouches(touches func(string) bool, sql string, pl *Plan) {
	for si := range pl.Statements {
		st := &pl.Statements[si]
		for j := range t.lits {
			if t.vary[j] && st.Start <= t.lits[j].start && t.lits[j].end <= st.End {
				t.touch = append(t.touch, stmtTouch{stmt: si, touch: touches(sql[st.Start:st.End])})
				break
			}
		}
	}
}

// instantiate returns the template's plan re-applied to sql (constants
// lits), or ok=false if sql's normalized text differs from the template's
// (a hash collision), a fixed constant differs or a statement's
// Planner.touches changed. The template's own text gets its plan itself.
// The copy is made in sc when it is not nil, else on the heap.
func (t *template) instantiate(touches func(string) bool, sql string, lits []litSpan, sc *PlanScratch) (*Plan, bool) {
	if sql == t.sql {
		return t.plan, true
	}
	if !sameSkeleton(t.sql, t.lits, sql, lits) {
		return nil, false
	}
	if !t.fixedSame(sql, lits) {
		return nil, false
	}
	src := t.plan
	for _, tc := range t.touch {
		st := &src.Statements[tc.stmt]
		if touches(sql[t.remap(lits, st.Start):t.remap(lits, st.End)]) != tc.touch {
			return nil, false
		}
	}
	var ar *planArena
	if sc != nil {
		// Every element handed out is overwritten whole: only the counts
		// start again (zeroing the arena costs write barriers).
		ar = &sc.ar
		ar.nEdit, ar.nMatch, ar.nLit = 0, 0, 0
	} else {
		ar = new(planArena)
	}
	pl := &ar.plan
	*pl = Plan{Params: src.Params, Keyless: src.Keyless, pass: src.pass, Statements: ar.statements(len(src.Statements)), shared: src}
	t.copyStatements(ar, pl, lits)
	t.fillSlots(ar, pl, sql, lits)
	return pl, true
}

// fixedSame reports whether every fixed constant of the template has the
// same class and text in sql (constants lits).
func (t *template) fixedSame(sql string, lits []litSpan) bool {
	for j := range lits {
		if t.vary[j] {
			continue
		}
		o, n := &t.lits[j], &lits[j]
		if n.class != o.class || sql[n.start:n.end] != t.sql[o.start:o.end] {
			return false
		}
	}
	return true
}

// remap maps offset off of the template's text to the text whose
// constants are lits.
func (t *template) remap(lits []litSpan, off int) int {
	// k constants end at or before off; the text after the last of
	// them is the same in both strings.
	k := sort.Search(len(t.lits), func(j int) bool { return t.lits[j].end > off })
	if k == 0 {
		return off
	}
	return lits[k-1].end + (off - t.lits[k-1].end)
}

// copyStatements fills pl.Statements with the template plan's statements,
// their edits and EXECUTE arguments moved to the text whose constants are
// lits.
func (t *template) copyStatements(ar *planArena, pl *Plan, lits []litSpan) {
	src := t.plan
	for si := range src.Statements {
		st := src.Statements[si]
		st.Start, st.End = t.remap(lits, st.Start), t.remap(lits, st.End)
		if len(st.Edits) > 0 {
			edits := ar.edits(len(st.Edits))
			for ei, e := range st.Edits {
				e.Start, e.End = t.remap(lits, e.Start), t.remap(lits, e.End)
				edits[ei] = e
			}
			st.Edits = edits
		}
		if st.Execute != nil && len(st.Execute.Args) > 0 {
			ex := *st.Execute
			ex.Args = make([]Arg, len(st.Execute.Args))
			for ai, arg := range st.Execute.Args {
				arg.Start, arg.End = t.remap(lits, arg.Start), t.remap(lits, arg.End)
				ex.Args[ai] = arg
			}
			st.Execute = &ex
		}
		pl.Statements[si] = st
	}
}

// fillSlots sets every slot's Literal of pl to the value of its constant
// in sql, copying the Match or Elems it sits in first.
func (t *template) fillSlots(ar *planArena, pl *Plan, sql string, lits []litSpan) {
	for _, s := range t.slots {
		lit := sqlplan.Literal{Text: lits[s.lit].value(sql, s.neg)}
		st := &pl.Statements[s.stmt]
		switch s.kind {
		case slotStore:
			st.Edits[s.item].Literal = lit
		case slotMatch:
			e := &st.Edits[s.item]
			if s.first {
				m := ar.match()
				*m = *e.Match
				m.Literals = append(ar.literals(len(m.Literals)), m.Literals...)
				e.Match = m
			}
			e.Match.Literals[s.sub] = lit
		case slotArg:
			st.Execute.Args[s.item].Literal = lit
		case slotElem:
			arg := &st.Execute.Args[s.item]
			if s.first {
				arg.Elems = append([]sqlplan.Literal(nil), arg.Elems...)
			}
			arg.Elems[s.sub] = lit
		}
	}
}

// planArena holds an instantiated plan of the common small shapes (one
// statement, up to four edits, say an INSERT of three encrypted values,
// and one match) in a single allocation, or none in a PlanScratch; larger
// plans take what does not fit from the heap. Every slice handed out is
// clipped to its length, so appending to it never writes into a
// neighbour.
type planArena struct {
	plan    Plan
	stmts   [1]Statement
	edit    [4]Edit
	matches [1]Match
	lits    [2]sqlplan.Literal

	nEdit, nMatch, nLit int
}

func (a *planArena) statements(n int) []Statement {
	if n <= len(a.stmts) {
		return a.stmts[:n:n]
	}
	return make([]Statement, n)
}

func (a *planArena) edits(n int) []Edit {
	if a.nEdit+n > len(a.edit) {
		return make([]Edit, n)
	}
	e := a.edit[a.nEdit : a.nEdit+n : a.nEdit+n]
	a.nEdit += n
	return e
}

func (a *planArena) match() *Match {
	if a.nMatch == len(a.matches) {
		return new(Match)
	}
	a.nMatch++
	return &a.matches[a.nMatch-1]
}

// literals returns an empty slice with room for n literals.
func (a *planArena) literals(n int) []sqlplan.Literal {
	if a.nLit+n > len(a.lits) {
		return make([]sqlplan.Literal, 0, n)
	}
	l := a.lits[a.nLit : a.nLit : a.nLit+n]
	a.nLit += n
	return l
}
