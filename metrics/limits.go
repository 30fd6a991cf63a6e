package metrics

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// LimitCounts are a listener's totals of connections refused or closed by
// its limits (docs/config.md, listeners[].limits).
type LimitCounts struct {
	Refused      uint64 // over max_connections or max_connections_per_source
	Evicted      uint64 // oldest handshakes closed at max_handshakes
	IdleTimeouts uint64 // sessions ended by idle_timeout
}

// limitCollector reads LimitCounts at each scrape from the sources the
// listeners registered.
type limitCollector struct {
	refused, evicted, idle *prometheus.Desc

	mu      sync.Mutex
	sources map[string]func() LimitCounts // by listener
}

func newLimitCollector() limitCollector {
	desc := func(name, help string) *prometheus.Desc {
		return prometheus.NewDesc(prometheus.BuildFQName(namespace, "", name), help, []string{"listener"}, nil)
	}
	return limitCollector{
		refused: desc("connections_refused_total", "Client connections refused at max_connections or max_connections_per_source."),
		evicted: desc("handshakes_evicted_total", "Client connections closed in their handshake to make room at max_handshakes."),
		idle:    desc("idle_timeouts_total", "Client sessions ended by idle_timeout."),
		sources: map[string]func() LimitCounts{},
	}
}

// CountLimits makes the listener's limit counters read read at each
// scrape (proxy.Server.Counters, translated); a later call replaces it.
func (l *Listener) CountLimits(read func() LimitCounts) {
	if l == nil {
		return
	}
	l.limits.mu.Lock()
	defer l.limits.mu.Unlock()
	l.limits.sources[l.name] = read
}

func (c *limitCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.refused
	ch <- c.evicted
	ch <- c.idle
}

func (c *limitCollector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for name, read := range c.sources {
		n := read()
		ch <- prometheus.MustNewConstMetric(c.refused, prometheus.CounterValue, float64(n.Refused), name)
		ch <- prometheus.MustNewConstMetric(c.evicted, prometheus.CounterValue, float64(n.Evicted), name)
		ch <- prometheus.MustNewConstMetric(c.idle, prometheus.CounterValue, float64(n.IdleTimeouts), name)
	}
}
