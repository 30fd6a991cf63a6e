package sqlplan

// Source says how a planner came by the plan of a statement text: what
// the plan cost, for the plan-cache metric (dbproxy_statement_plans_total).
type Source uint8

const (
	// SourceSkipped: not parsed: the pre-filter found that the text cannot
	// touch an encrypted table, or it was refused unread (MySQL, a
	// session whose lexing state the proxy does not know).
	SourceSkipped Source = iota
	// SourceCached: the same text was parsed before (a text planned from
	// a template is not cached itself).
	SourceCached
	// SourceTemplate: the same statement with other constants was planned
	// before; its template gave the plan.
	SourceTemplate
	// SourceParsed: parsed and analysed (the expensive path).
	SourceParsed
)

// String returns the metric's label value of s.
func (s Source) String() string {
	switch s {
	case SourceSkipped:
		return "skipped"
	case SourceCached:
		return "cached"
	case SourceTemplate:
		return "template"
	case SourceParsed:
		return "parsed"
	}
	return "unknown"
}
