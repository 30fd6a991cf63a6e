package config

import (
	"fmt"
	"strconv"
	"strings"
	"unicode"

	"go.yaml.in/yaml/v3"
)

// Helpers that word the error messages: what a YAML node is, keys and
// values clipped for display, and "did you mean" suggestions.

// describe names what node n holds, for "expected X, got Y" messages.
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.AliasNode:
		return "an alias"
	}
	switch n.ShortTag() {
	case "!!str":
		return fmt.Sprintf("string %q", clip(n.Value))
	case "!!int":
		return fmt.Sprintf("integer %s", clip(n.Value))
	case "!!float":
		return fmt.Sprintf("number %s", clip(n.Value))
	case "!!bool":
		return fmt.Sprintf("boolean %s", clip(n.Value))
	case "!!null":
		return "null"
	default:
		return fmt.Sprintf("%s %q", clip(n.ShortTag()), clip(n.Value))
	}
}

// safeKey renders a mapping key for a field path: as is when it is short
// and plain, quoted otherwise (so that an error stays on one line). Known
// keys are always plain.
func safeKey(k string) string {
	k = clip(k)
	if k == "" || strings.ContainsFunc(k, func(r rune) bool { return !unicode.IsPrint(r) || unicode.IsSpace(r) || r == '"' }) {
		return strconv.Quote(k)
	}
	return k
}

// clip shortens user text quoted back in an error message.
func clip(s string) string {
	const limit = 64
	if len(s) <= limit {
		return s
	}
	for i := limit; i > 0; i-- {
		if isRuneStart(s[i]) {
			return s[:i] + "..."
		}
	}
	return "..."
}

func isRuneStart(b byte) bool { return b&0xC0 != 0x80 }

// suggest returns `; did you mean "x"?` for the closest candidate within a
// small edit distance, or the list of valid keys.
func suggest(got string, candidates []string) string {
	best, bestDist := "", 1<<30
	norm := strings.ReplaceAll(strings.ToLower(got), "-", "_")
	for _, c := range candidates {
		if dist := editDistance(norm, c); dist < bestDist {
			best, bestDist = c, dist
		}
	}
	if best != "" && bestDist <= max(1, len(best)/3) {
		return fmt.Sprintf("; did you mean %q?", best)
	}
	return "; valid keys: " + strings.Join(candidates, ", ")
}

// editDistance is the Levenshtein distance between a and b, capped for
// long inputs (an unknown key is never worth a big computation).
func editDistance(a, b string) int {
	if len(a) > 64 {
		return 1 << 30
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
