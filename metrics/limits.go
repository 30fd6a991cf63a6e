package metrics

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// ServerCounts are a listener's totals of connections refused or closed by
// its limits (docs/config.md, listeners[].limits), and what its event
// loops relay.
type ServerCounts struct {
	Refused      uint64 // over max_connections or max_connections_per_source
	Evicted      uint64 // oldest handshakes closed at max_handshakes
	IdleTimeouts uint64 // sessions ended by idle_timeout
	Looped       int    // sessions relayed by an event loop now
	Handoffs     uint64 // hooks that handed their event loop off to wait
	Streams      uint64 // streams relayed off an event loop
}

// serverCollector reads ServerCounts at each scrape from the sources the
// listeners registered.
type serverCollector struct {
	refused, evicted, idle, looped, handoffs, streams *prometheus.Desc

	mu      sync.Mutex
	sources map[string]func() ServerCounts // by listener
}

func newServerCollector() serverCollector {
	desc := func(name, help string) *prometheus.Desc {
		return prometheus.NewDesc(prometheus.BuildFQName(namespace, "", name), help, []string{"listener"}, nil)
	}
	return serverCollector{
		refused: desc("connections_refused_total", "Client connections refused at max_connections or max_connections_per_source."),
		evicted: desc("handshakes_evicted_total", "Client connections closed in their handshake to make room at max_handshakes."),
		idle:    desc("idle_timeouts_total", "Client sessions ended by idle_timeout."),
		looped:  desc("relay_looped_sessions", "Sessions relayed by an event loop now (plain TCP on both legs)."),
		handoffs: desc("relay_handoffs_total",
			"Times a session's encryption hook, about to wait (search_path, catalog or key cache miss), handed its event loop to a new thread."),
		streams: desc("relay_streams_total",
			"Times a looped session's leg, its source streaming (a large result), was relayed off its event loop until the stream ended."),
		sources: map[string]func() ServerCounts{},
	}
}

// CountServer makes the listener's server counters read read at each
// scrape (proxy.Server.Counters, translated); a later call replaces it.
func (l *Listener) CountServer(read func() ServerCounts) {
	if l == nil {
		return
	}
	l.limits.mu.Lock()
	defer l.limits.mu.Unlock()
	l.limits.sources[l.name] = read
}

func (c *serverCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.refused
	ch <- c.evicted
	ch <- c.idle
	ch <- c.looped
	ch <- c.handoffs
	ch <- c.streams
}

func (c *serverCollector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for name, read := range c.sources {
		n := read()
		ch <- prometheus.MustNewConstMetric(c.refused, prometheus.CounterValue, float64(n.Refused), name)
		ch <- prometheus.MustNewConstMetric(c.evicted, prometheus.CounterValue, float64(n.Evicted), name)
		ch <- prometheus.MustNewConstMetric(c.idle, prometheus.CounterValue, float64(n.IdleTimeouts), name)
		ch <- prometheus.MustNewConstMetric(c.looped, prometheus.GaugeValue, float64(n.Looped), name)
		ch <- prometheus.MustNewConstMetric(c.handoffs, prometheus.CounterValue, float64(n.Handoffs), name)
		ch <- prometheus.MustNewConstMetric(c.streams, prometheus.CounterValue, float64(n.Streams), name)
	}
}
