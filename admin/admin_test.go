package admin_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dbproxy/dbproxy/admin"
)

// get requests path from h and returns the status and body.
func get(t *testing.T, h http.Handler, method, path string) (int, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(method, path, nil))
	return rec.Code, rec.Body.String()
}

func TestRoutes(t *testing.T) {
	metrics := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "dbproxy_up 1\n") })
	h := admin.New(admin.Options{Metrics: metrics}).Handler()
	for _, tc := range []struct {
		method, path string
		status       int
		body         string
	}{
		{"GET", "/healthz", 200, "ok\n"},
		{"HEAD", "/healthz", 200, ""},
		{"GET", "/readyz", 200, "ready\n"},
		{"GET", "/metrics", 200, "dbproxy_up 1\n"},
		{"GET", "/", 200, "dbproxy admin: /metrics /healthz /readyz\n"},
		{"POST", "/healthz", 405, ""},
		{"GET", "/debug/pprof/", 404, ""},
	} {
		status, body := get(t, h, tc.method, tc.path)
		if status != tc.status || (tc.body != "" && body != tc.body) {
			t.Errorf("%s %s = %d %q, want %d %q", tc.method, tc.path, status, body, tc.status, tc.body)
		}
	}
	if status, _ := get(t, admin.New(admin.Options{}).Handler(), "GET", "/metrics"); status != 404 {
		t.Errorf("/metrics without a handler = %d, want 404", status)
	}
}

func TestReadyzListsFailingChecks(t *testing.T) {
	var keystoreErr atomic.Pointer[error]
	s := admin.New(admin.Options{CheckCache: time.Nanosecond, Checks: []admin.Check{
		{Name: "listeners", Probe: func(context.Context) error { return nil }},
		{Name: "keystore", Probe: func(context.Context) error {
			if p := keystoreErr.Load(); p != nil {
				return *p
			}
			return nil
		}},
		{Name: "master_key", Probe: func(context.Context) error { return errors.New("file master.key:\nmissing") }},
	}})
	status, body := get(t, s.Handler(), "GET", "/readyz")
	if status != 503 || body != "master_key: file master.key: missing\n" {
		t.Errorf("readyz = %d %q", status, body)
	}
	err := errors.New("keystore file keys.json: permission denied")
	keystoreErr.Store(&err)
	time.Sleep(time.Millisecond)
	status, body = get(t, s.Handler(), "GET", "/readyz")
	if want := "keystore: keystore file keys.json: permission denied\nmaster_key: file master.key: missing\n"; status != 503 || body != want {
		t.Errorf("readyz = %d %q, want 503 %q", status, body, want)
	}
}

func TestReadyzCachesAndSharesRounds(t *testing.T) {
	var probes atomic.Int32
	release := make(chan struct{})
	s := admin.New(admin.Options{Checks: []admin.Check{{Name: "kms", Probe: func(context.Context) error {
		probes.Add(1)
		<-release
		return nil
	}}}})
	now := time.Unix(1000, 0)
	var mu sync.Mutex
	s.SetClock(func() time.Time { mu.Lock(); defer mu.Unlock(); return now })
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }

	// A storm of probes while a round runs shares that round.
	var wg sync.WaitGroup
	for range 50 {
		wg.Go(func() {
			if status, _ := get(t, s.Handler(), "GET", "/readyz"); status != 200 {
				t.Errorf("readyz = %d", status)
			}
		})
	}
	for probes.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	time.Sleep(20 * time.Millisecond) // let the other requests join
	close(release)
	wg.Wait()
	if n := probes.Load(); n != 1 {
		t.Errorf("50 concurrent requests ran %d rounds, want 1", n)
	}
	// Within the cache interval the result is reused; after it, a new
	// round runs.
	advance(500 * time.Millisecond)
	get(t, s.Handler(), "GET", "/readyz")
	if n := probes.Load(); n != 1 {
		t.Errorf("%d rounds within the cache interval, want 1", n)
	}
	advance(600 * time.Millisecond)
	get(t, s.Handler(), "GET", "/readyz")
	if n := probes.Load(); n != 2 {
		t.Errorf("%d rounds after the cache interval, want 2", n)
	}
}

func TestReadyzBoundsEachCheck(t *testing.T) {
	stuck := make(chan struct{})
	defer close(stuck)
	s := admin.New(admin.Options{CheckTimeout: 50 * time.Millisecond, Checks: []admin.Check{
		{Name: "slow", Probe: func(ctx context.Context) error { <-stuck; return nil }}, // ignores ctx
		{Name: "polite", Probe: func(ctx context.Context) error { <-ctx.Done(); return ctx.Err() }},
		{Name: "panics", Probe: func(context.Context) error { panic("boom") }},
	}})
	start := time.Now()
	status, body := get(t, s.Handler(), "GET", "/readyz")
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("readyz took %s", d)
	}
	want := "slow: no answer within 50ms\npolite: no answer within 50ms\npanics: check panicked: boom\n"
	if status != 503 || body != want {
		t.Errorf("readyz = %d %q, want 503 %q", status, body, want)
	}
}

func TestServeAndShutdown(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := admin.New(admin.Options{})
	done := make(chan error, 1)
	go func() { done <- s.Serve(l) }()
	resp, err := http.Get("http://" + l.Addr().String() + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != "ok\n" || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") {
		t.Errorf("healthz = %d %q %v", resp.StatusCode, body, resp.Header)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if err := <-done; err != nil {
		t.Errorf("Serve returned %v after Shutdown, want nil", err)
	}
	if _, err := net.Dial("tcp", l.Addr().String()); err == nil {
		t.Error("still accepting after Shutdown")
	}
}
