package metrics

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// maxRefusalReasons bounds the distinct reason labels of one listener's
// refusals; further reasons are counted as "other".
const maxRefusalReasons = 32

// listenerCounter names one of a Listener's counters.
type listenerCounter int

const (
	connsTotal listenerCounter = iota
	handshakes
	authFailures
	forwarded
	rewritten
	fromClient
	fromUpstream
	upstreamFailures
	catalogOK
	catalogFailed
	planSkipped
	planCached
	planTemplate
	planParsed
	numCounters
)

// Listener observes one listener's connections and statements. Get it once
// with [Metrics.Listener]; its methods then do one atomic add each. A nil
// *Listener observes nothing.
type Listener struct {
	name            string
	limits          *serverCollector
	connsOpen       prometheus.Gauge
	counters        [numCounters]prometheus.Counter
	upstreamConnect prometheus.Observer

	refusedVec *prometheus.CounterVec // curried: listener, outcome=refused
	refusedMu  sync.RWMutex
	refused    map[string]prometheus.Counter // by reason
}

// Listener returns the handle of the named listener, creating its series
// on first use (at zero, so that they show before the first event).
func (m *Metrics) Listener(name string) *Listener {
	if m == nil {
		return nil
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if l := m.listeners[name]; l != nil {
		return l
	}
	ln := prometheus.Labels{"listener": name}
	l := &Listener{
		name:      name,
		limits:    &m.limits,
		connsOpen: m.connsOpen.With(ln),
		counters: [numCounters]prometheus.Counter{
			connsTotal:       m.connsTotal.With(ln),
			handshakes:       m.handshakes.With(ln),
			authFailures:     m.authFailures.With(ln),
			forwarded:        m.statements.WithLabelValues(name, "forwarded", ""),
			rewritten:        m.statements.WithLabelValues(name, "rewritten", ""),
			fromClient:       m.bytes.WithLabelValues(name, "client_to_upstream"),
			fromUpstream:     m.bytes.WithLabelValues(name, "upstream_to_client"),
			upstreamFailures: m.upstreamFailures.With(ln),
			catalogOK:        m.catalogRefreshes.WithLabelValues(name, "success"),
			catalogFailed:    m.catalogRefreshes.WithLabelValues(name, "failure"),
			planSkipped:      m.plans.WithLabelValues(name, "skipped"),
			planCached:       m.plans.WithLabelValues(name, "cached"),
			planTemplate:     m.plans.WithLabelValues(name, "template"),
			planParsed:       m.plans.WithLabelValues(name, "parsed"),
		},
		upstreamConnect: m.upstreamConnect.With(ln),
		refusedVec:      m.statements.MustCurryWith(prometheus.Labels{"listener": name, "outcome": "refused"}),
		refused:         map[string]prometheus.Counter{},
	}
	m.listeners[name] = l
	return l
}

// add adds n to counter c, on a non-nil l.
func (l *Listener) add(c listenerCounter, n float64) {
	if l != nil {
		l.counters[c].Add(n)
	}
}

// ConnOpened counts a client connection accepted.
func (l *Listener) ConnOpened() {
	if l != nil {
		l.counters[connsTotal].Inc()
		l.connsOpen.Inc()
	}
}

// ConnClosed counts a client connection ended.
func (l *Listener) ConnClosed() {
	if l != nil {
		l.connsOpen.Dec()
	}
}

// Handshake counts a completed client handshake.
func (l *Listener) Handshake() { l.add(handshakes, 1) }

// AuthFailed counts a client handshake that failed authentication.
func (l *Listener) AuthFailed() { l.add(authFailures, 1) }

// Forwarded counts a client statement relayed to the database unchanged.
func (l *Listener) Forwarded() { l.add(forwarded, 1) }

// Rewritten counts a client statement relayed with values encrypted or
// lookups rewritten.
func (l *Listener) Rewritten() { l.add(rewritten, 1) }

// Planned counts a statement text planned by the encryption layer; source
// is how ("skipped", "cached", "template" or "parsed"; anything else is
// not counted).
func (l *Listener) Planned(source string) {
	var c listenerCounter
	switch source {
	case "skipped":
		c = planSkipped
	case "cached":
		c = planCached
	case "template":
		c = planTemplate
	case "parsed":
		c = planParsed
	default:
		return
	}
	l.add(c, 1)
}

// Refused counts a client statement answered with an error and never sent
// to the database; reason says why (a short fixed word such as
// "feature_not_supported", never query text).
func (l *Listener) Refused(reason string) {
	if l != nil {
		l.refusal(reason).Inc()
	}
}

// refusal returns the counter of refusals for reason.
func (l *Listener) refusal(reason string) prometheus.Counter {
	l.refusedMu.RLock()
	c := l.refused[reason]
	l.refusedMu.RUnlock()
	if c != nil {
		return c
	}
	l.refusedMu.Lock()
	defer l.refusedMu.Unlock()
	if c := l.refused[reason]; c != nil {
		return c
	}
	label := reason
	if len(l.refused) >= maxRefusalReasons {
		label = "other"
	}
	c = l.refusedVec.WithLabelValues(label)
	l.refused[reason] = c
	return c
}

// FromClient counts n bytes read from a client (to relay upstream).
func (l *Listener) FromClient(n int) { l.add(fromClient, float64(n)) }

// FromUpstream counts n bytes read from the database (to relay to a
// client).
func (l *Listener) FromUpstream(n int) { l.add(fromUpstream, float64(n)) }

// UpstreamConnect records a connection attempt to the database that took
// d: its duration when it succeeded, a failure otherwise.
func (l *Listener) UpstreamConnect(d time.Duration, err error) {
	if err != nil {
		l.add(upstreamFailures, 1)
		return
	}
	if l != nil {
		l.upstreamConnect.Observe(d.Seconds())
	}
}

// CatalogRefreshed counts a read of the database catalog.
func (l *Listener) CatalogRefreshed(err error) {
	if err != nil {
		l.add(catalogFailed, 1)
		return
	}
	l.add(catalogOK, 1)
}
