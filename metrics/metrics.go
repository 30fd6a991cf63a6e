package metrics

import (
	"net/http"
	"runtime"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

const namespace = "dbproxy"

// latencyBuckets are the histogram buckets of calls that take from tens
// of microseconds (a local master key, a database on the same host) to
// seconds (a remote KMS or database under trouble), in seconds.
var latencyBuckets = []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}

// Options configures a Metrics.
type Options struct {
	// Version is reported in dbproxy_build_info; empty: "unknown".
	Version string
}

// Metrics holds every dbproxy metric and the registry that exposes them.
// The zero value is not usable; a nil *Metrics observes nothing.
type Metrics struct {
	reg *prometheus.Registry

	// Per listener; Listener curries them.
	connsOpen        *prometheus.GaugeVec
	connsTotal       *prometheus.CounterVec
	handshakes       *prometheus.CounterVec
	authFailures     *prometheus.CounterVec
	statements       *prometheus.CounterVec // listener, outcome, reason
	plans            *prometheus.CounterVec // listener, source
	bytes            *prometheus.CounterVec // listener, direction
	upstreamConnect  *prometheus.HistogramVec
	upstreamFailures *prometheus.CounterVec
	catalogRefreshes *prometheus.CounterVec // listener, outcome

	// Data key uses, by key and operation.
	keyOps    *prometheus.CounterVec
	keyErrors *prometheus.CounterVec
	keyBytes  *prometheus.CounterVec

	keyCache [numKeyCacheEvents]prometheus.Counter

	masterKeyDuration *prometheus.HistogramVec // provider, op
	masterKeyErrors   *prometheus.CounterVec

	reloads         *prometheus.CounterVec // outcome
	reloadOK        prometheus.Gauge
	reloadTimestamp prometheus.Gauge

	mu        sync.Mutex // guards listeners
	listeners map[string]*Listener
	limits    serverCollector

	keyUses      handles[string, keyUses]
	otherKeyUses handles[keyOp, keyUse]
	masterCalls  handles[masterOp, masterCall]
}

// New returns a Metrics with every metric registered on a new registry,
// along with the Go runtime and process collectors.
func New(opts Options) *Metrics {
	m := &Metrics{reg: prometheus.NewRegistry(), listeners: map[string]*Listener{}}
	m.defineListenerMetrics()
	m.defineKeyMetrics()
	m.reloads = m.counterVec("reloads_total", "Configuration reloads (SIGHUP), by outcome: success or failure.", "outcome")
	m.reloadOK = m.gauge("config_last_reload_successful", "1 if the last configuration reload succeeded (or none was tried), else 0.")
	m.reloadTimestamp = m.gauge("config_last_reload_success_timestamp_seconds", "Unix time of the last successful configuration reload, or of the start.")
	m.reloadOK.Set(1)
	m.reloadTimestamp.SetToCurrentTime()
	version := opts.Version
	if version == "" {
		version = "unknown"
	}
	build := prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: namespace, Name: "build_info",
		Help: "Always 1; the labels tell the dbproxy version and the Go version it was built with."}, []string{"version", "goversion"})
	build.WithLabelValues(version, runtime.Version()).Set(1)
	m.reg.MustRegister(build,
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

func (m *Metrics) defineListenerMetrics() {
	m.connsOpen = m.gaugeVec("connections_open", "Client connections open now.", "listener")
	m.connsTotal = m.counterVec("connections_total", "Client connections accepted.", "listener")
	m.handshakes = m.counterVec("handshakes_total", "Client handshakes completed (authenticated sessions).", "listener")
	m.authFailures = m.counterVec("auth_failures_total", "Client handshakes that failed authentication.", "listener")
	m.statements = m.counterVec("statements_total",
		"Client statements, by outcome: forwarded (unchanged), rewritten (encryption applied) or refused (with a reason).",
		"listener", "outcome", "reason")
	m.plans = m.counterVec("statement_plans_total",
		"Statement texts planned by the encryption layer, by source: skipped (not parsed), cached (same text parsed before), "+
			"template (same statement with other constants planned before) or parsed.",
		"listener", "source")
	m.bytes = m.counterVec("bytes_total",
		"Bytes relayed, by direction: client_to_upstream or upstream_to_client, counted as read.", "listener", "direction")
	m.upstreamConnect = m.histogramVec("upstream_connect_duration_seconds",
		"Time to open a connection to the database (TCP and TLS), successful ones only.", "listener")
	m.upstreamFailures = m.counterVec("upstream_connect_failures_total", "Connections to the database that failed to open.", "listener")
	m.catalogRefreshes = m.counterVec("catalog_refreshes_total",
		"Reads of the database catalog (column lists, types), by outcome: success or failure.", "listener", "outcome")
	m.limits = newServerCollector()
	m.reg.MustRegister(&m.limits)
}

func (m *Metrics) defineKeyMetrics() {
	m.keyOps = m.counterVec("key_operations_total",
		"Uses of a data key, by key name and operation (encrypt, decrypt, lookup), failed ones included.", "key", "op")
	m.keyErrors = m.counterVec("key_operation_errors_total", "Uses of a data key that failed, by key name and operation.", "key", "op")
	m.keyBytes = m.counterVec("key_operation_bytes_total", "Bytes of values encrypted, decrypted or looked up, by key name and operation.", "key", "op")
	m.keyCache[cacheHit] = m.counter("key_cache_hits_total", "Data key lookups served from the cache of unwrapped keys.")
	m.keyCache[cacheMiss] = m.counter("key_cache_misses_total", "Data key lookups that had to read the keystore and unwrap the key.")
	m.keyCache[cacheEviction] = m.counter("key_cache_evictions_total", "Unwrapped data keys that left the cache (expired or pushed out by newer ones) and were destroyed.")
	m.masterKeyDuration = m.histogramVec("master_key_request_duration_seconds",
		"Duration of master key provider calls (KMS or local key file), by provider and operation, failed ones included.", "provider", "op")
	m.masterKeyErrors = m.counterVec("master_key_request_errors_total", "Master key provider calls that failed, by provider and operation.", "provider", "op")
}

// Registry returns the registry holding the metrics, for tests and for
// registering more collectors.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Handler serves the metrics in the Prometheus exposition formats. It
// counts its own requests (promhttp_metric_handler_requests_total).
func (m *Metrics) Handler() http.Handler {
	return promhttp.InstrumentMetricHandler(m.reg, promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{
		ErrorHandling:       promhttp.ContinueOnError,
		MaxRequestsInFlight: 4,
		Timeout:             10 * time.Second,
	}))
}

// Reloaded counts a configuration reload: ok says whether it was applied.
func (m *Metrics) Reloaded(ok bool) {
	if m == nil {
		return
	}
	if ok {
		m.reloads.WithLabelValues("success").Inc()
		m.reloadOK.Set(1)
		m.reloadTimestamp.SetToCurrentTime()
		return
	}
	m.reloads.WithLabelValues("failure").Inc()
	m.reloadOK.Set(0)
}

// keyCacheEvent names one of the key cache counters.
type keyCacheEvent int

const (
	cacheHit keyCacheEvent = iota
	cacheMiss
	cacheEviction
	numKeyCacheEvents
)

// countKeyCache counts event e of the key cache, on a non-nil m.
func (m *Metrics) countKeyCache(e keyCacheEvent) {
	if m != nil {
		m.keyCache[e].Inc()
	}
}

// KeyCacheHit counts a data key found in the cache.
func (m *Metrics) KeyCacheHit() { m.countKeyCache(cacheHit) }

// KeyCacheMiss counts a data key not found in the cache.
func (m *Metrics) KeyCacheMiss() { m.countKeyCache(cacheMiss) }

// KeyCacheEviction counts a data key that left the cache.
func (m *Metrics) KeyCacheEviction() { m.countKeyCache(cacheEviction) }

func (m *Metrics) counter(name, help string) prometheus.Counter {
	c := prometheus.NewCounter(prometheus.CounterOpts{Namespace: namespace, Name: name, Help: help})
	m.reg.MustRegister(c)
	return c
}

func (m *Metrics) gauge(name, help string) prometheus.Gauge {
	g := prometheus.NewGauge(prometheus.GaugeOpts{Namespace: namespace, Name: name, Help: help})
	m.reg.MustRegister(g)
	return g
}

func (m *Metrics) counterVec(name, help string, labels ...string) *prometheus.CounterVec {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: name, Help: help}, labels)
	m.reg.MustRegister(c)
	return c
}

func (m *Metrics) gaugeVec(name, help string, labels ...string) *prometheus.GaugeVec {
	g := prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: namespace, Name: name, Help: help}, labels)
	m.reg.MustRegister(g)
	return g
}

func (m *Metrics) histogramVec(name, help string, labels ...string) *prometheus.HistogramVec {
	h := prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: namespace, Name: name, Help: help, Buckets: latencyBuckets}, labels)
	m.reg.MustRegister(h)
	return h
}
