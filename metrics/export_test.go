package metrics

import "github.com/prometheus/client_golang/prometheus"

// Statements returns the statement counter of a listener, outcome and
// reason.
func Statements(m *Metrics, listener, outcome, reason string) prometheus.Counter {
	return m.statements.WithLabelValues(listener, outcome, reason)
}

// CacheHits returns the key cache hit counter.
func CacheHits(m *Metrics) prometheus.Counter { return m.keyCache[cacheHit] }
