package metrics_test

import (
	"errors"
	"fmt"
	"io"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/dbproxy/dbproxy/metrics"
)

var errTest = errors.New("test failure")

func TestNamesFollowPrometheusConventions(t *testing.T) {
	m := metrics.New(metrics.Options{Version: "test"})
	l := m.Listener("pg")
	l.Refused("dynamic_sql")
	l.CountServer(func() metrics.ServerCounts { return metrics.ServerCounts{} })
	m.ObserveKeyUse("encrypt", "users.email", 10, nil)
	m.ObserveMasterKeyCall("local", "unwrap", time.Millisecond, nil)
	m.Reloaded(true)
	problems, err := testutil.GatherAndLint(m.Registry())
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("%s: %s", p.Metric, p.Text)
	}
}

func TestListener(t *testing.T) {
	m := metrics.New(metrics.Options{})
	l := m.Listener("pg")
	if m.Listener("pg") != l {
		t.Error("Listener returned a second handle for the same name")
	}
	// The series exist at zero before the first event.
	if got := testutil.ToFloat64(metrics.Statements(m, "pg", "forwarded", "")); got != 0 {
		t.Errorf("forwarded = %v before any statement", got)
	}
	l.ConnOpened()
	l.ConnOpened()
	l.ConnClosed()
	l.Handshake()
	l.AuthFailed()
	l.Forwarded()
	l.Rewritten()
	l.Rewritten()
	l.Refused("dynamic_sql")
	for _, src := range []string{"skipped", "cached", "cached", "template", "parsed", "unknown"} {
		l.Planned(src)
	}
	l.FromClient(100)
	l.FromUpstream(250)
	l.UpstreamConnect(3*time.Millisecond, nil)
	l.UpstreamConnect(time.Second, errTest)
	l.CatalogRefreshed(nil)
	l.CatalogRefreshed(errTest)
	l.CountServer(func() metrics.ServerCounts {
		return metrics.ServerCounts{Refused: 4, Evicted: 5, IdleTimeouts: 6, Looped: 7, Handoffs: 8, Streams: 9}
	})

	body := scrape(t, m)
	for _, want := range []string{
		`dbproxy_connections_open{listener="pg"} 1`,
		`dbproxy_connections_total{listener="pg"} 2`,
		`dbproxy_relay_looped_sessions{listener="pg"} 7`,
		`dbproxy_relay_handoffs_total{listener="pg"} 8`,
		`dbproxy_relay_streams_total{listener="pg"} 9`,
		`dbproxy_handshakes_total{listener="pg"} 1`,
		`dbproxy_auth_failures_total{listener="pg"} 1`,
		`dbproxy_statements_total{listener="pg",outcome="forwarded",reason=""} 1`,
		`dbproxy_statements_total{listener="pg",outcome="rewritten",reason=""} 2`,
		`dbproxy_statements_total{listener="pg",outcome="refused",reason="dynamic_sql"} 1`,
		`dbproxy_statement_plans_total{listener="pg",source="skipped"} 1`,
		`dbproxy_statement_plans_total{listener="pg",source="cached"} 2`,
		`dbproxy_statement_plans_total{listener="pg",source="template"} 1`,
		`dbproxy_statement_plans_total{listener="pg",source="parsed"} 1`,
		`dbproxy_bytes_total{direction="client_to_upstream",listener="pg"} 100`,
		`dbproxy_bytes_total{direction="upstream_to_client",listener="pg"} 250`,
		`dbproxy_upstream_connect_duration_seconds_count{listener="pg"} 1`,
		`dbproxy_upstream_connect_failures_total{listener="pg"} 1`,
		`dbproxy_catalog_refreshes_total{listener="pg",outcome="success"} 1`,
		`dbproxy_catalog_refreshes_total{listener="pg",outcome="failure"} 1`,
		`dbproxy_connections_refused_total{listener="pg"} 4`,
		`dbproxy_handshakes_evicted_total{listener="pg"} 5`,
		`dbproxy_idle_timeouts_total{listener="pg"} 6`,
	} {
		if !strings.Contains(body, want+"\n") {
			t.Errorf("scrape lacks %q", want)
		}
	}
}

func TestRefusalReasonsAreBounded(t *testing.T) {
	m := metrics.New(metrics.Options{})
	l := m.Listener("pg")
	for i := range 100 {
		l.Refused(fmt.Sprintf("reason_%d", i))
	}
	if n := testutil.CollectAndCount(m.Registry(), "dbproxy_statements_total"); n != 2+32+1 {
		t.Errorf("%d statement series, want forwarded, rewritten, 32 reasons and other", n)
	}
	if got := testutil.ToFloat64(metrics.Statements(m, "pg", "refused", "other")); got != 100-32 {
		t.Errorf("other = %v, want %d", got, 100-32)
	}
}

func TestKeyUseAndCache(t *testing.T) {
	m := metrics.New(metrics.Options{})
	m.ObserveKeyUse("encrypt", "users.email", 10, nil)
	m.ObserveKeyUse("encrypt", "users.email", 5, nil)
	m.ObserveKeyUse("decrypt", "users.email", 7, errTest)
	m.ObserveKeyUse("lookup", "users.ssn", 0, nil)
	m.KeyCacheHit()
	m.KeyCacheHit()
	m.KeyCacheMiss()
	m.KeyCacheEviction()
	m.ObserveMasterKeyCall("aws-kms", "unwrap", 20*time.Millisecond, nil)
	m.ObserveMasterKeyCall("aws-kms", "unwrap", time.Second, errTest)
	m.Reloaded(true)
	m.Reloaded(false)

	scrape(t, m) // a second handler shares the first one's scrape counter
	body := scrape(t, m)
	for _, want := range []string{
		`promhttp_metric_handler_requests_total{code="200"} 1`,
		`dbproxy_key_operations_total{key="users.email",op="encrypt"} 2`,
		`dbproxy_key_operation_bytes_total{key="users.email",op="encrypt"} 15`,
		`dbproxy_key_operation_errors_total{key="users.email",op="encrypt"} 0`,
		`dbproxy_key_operations_total{key="users.email",op="decrypt"} 1`,
		`dbproxy_key_operation_errors_total{key="users.email",op="decrypt"} 1`,
		`dbproxy_key_operations_total{key="users.ssn",op="lookup"} 1`,
		`dbproxy_key_cache_hits_total 2`,
		`dbproxy_key_cache_misses_total 1`,
		`dbproxy_key_cache_evictions_total 1`,
		`dbproxy_master_key_request_duration_seconds_count{op="unwrap",provider="aws-kms"} 2`,
		`dbproxy_master_key_request_errors_total{op="unwrap",provider="aws-kms"} 1`,
		`dbproxy_reloads_total{outcome="success"} 1`,
		`dbproxy_reloads_total{outcome="failure"} 1`,
		`dbproxy_config_last_reload_successful 0`,
		`dbproxy_build_info{goversion="go`,
		`go_goroutines `,
		`process_cpu_seconds_total `,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("scrape lacks %q", want)
		}
	}
}

func TestInstancesDoNotShare(t *testing.T) {
	a, b := metrics.New(metrics.Options{}), metrics.New(metrics.Options{})
	a.KeyCacheHit()
	if got := testutil.ToFloat64(metrics.CacheHits(b)); got != 0 {
		t.Errorf("second instance counted %v hits", got)
	}
}

func TestNilObservesNothing(t *testing.T) {
	var m *metrics.Metrics
	l := m.Listener("pg")
	l.ConnOpened()
	l.ConnClosed()
	l.Handshake()
	l.AuthFailed()
	l.Refused("x")
	l.FromClient(1)
	l.FromUpstream(1)
	l.UpstreamConnect(time.Second, nil)
	l.CatalogRefreshed(nil)
	l.CountServer(nil)
	m.ObserveKeyUse("encrypt", "k", 1, nil)
	m.ObserveMasterKeyCall("local", "wrap", time.Second, nil)
	m.KeyCacheHit()
	m.KeyCacheMiss()
	m.KeyCacheEviction()
	m.Reloaded(true)
}

func TestHotPathsDoNotAllocate(t *testing.T) {
	m := metrics.New(metrics.Options{})
	l := m.Listener("pg")
	m.ObserveKeyUse("encrypt", "users.email", 10, nil) // creates the series
	l.Refused("dynamic_sql")
	for name, f := range map[string]func(){
		"ObserveKeyUse":     func() { m.ObserveKeyUse("encrypt", "users.email", 10, nil) },
		"Statement":         func() { l.Rewritten() },
		"Statement refused": func() { l.Refused("dynamic_sql") },
		"Planned":           func() { l.Planned("template") },
		"FromClient":        func() { l.FromClient(512) },
		"KeyCacheHit":       m.KeyCacheHit,
	} {
		if n := testing.AllocsPerRun(100, f); n != 0 {
			t.Errorf("%s: %v allocations per call, want 0", name, n)
		}
	}
}

func BenchmarkObserveKeyUse(b *testing.B) {
	m := metrics.New(metrics.Options{})
	for i := range 50 {
		m.ObserveKeyUse("encrypt", fmt.Sprintf("public.t.c%d", i), 1, nil)
	}
	b.Run("serial", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			m.ObserveKeyUse("encrypt", "public.t.c7", 32, nil)
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				m.ObserveKeyUse("encrypt", "public.t.c7", 32, nil)
			}
		})
	})
}

func BenchmarkStatement(b *testing.B) {
	l := metrics.New(metrics.Options{}).Listener("pg")
	b.ReportAllocs()
	for b.Loop() {
		l.Rewritten()
	}
}

func BenchmarkKeyCacheHit(b *testing.B) {
	m := metrics.New(metrics.Options{})
	b.ReportAllocs()
	for b.Loop() {
		m.KeyCacheHit()
	}
}

// scrape returns what the metrics handler serves.
func scrape(t *testing.T, m *metrics.Metrics) string {
	t.Helper()
	srv := httptest.NewServer(m.Handler())
	defer srv.Close()
	resp, err := srv.Client().Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 {
		t.Fatalf("status %d: %s", resp.StatusCode, b)
	}
	return string(b)
}
